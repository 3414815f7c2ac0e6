//! The two encodings inside etcd's `key` bucket: revision keys and `mvccpb.KeyValue` values.

/// A revision key: `main` (8 bytes BE) `_` `sub` (8 bytes BE), plus `t` for a tombstone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RevKey {
    /// Main revision.
    pub main: i64,
    /// Sub revision (index within the transaction).
    pub sub: i64,
    /// Whether this entry deletes the key.
    pub tombstone: bool,
}

impl RevKey {
    /// Decode as etcd 3.6's `BytesToBucketKey` (stricter than 3.4/3.5, which panic on short
    /// keys and accept anything else).
    pub fn parse(k: &[u8]) -> Result<Self, String> {
        if !(k.len() == 17 || k.len() == 18) || k[8] != b'_' {
            return Err(format!(
                "{} is not a revision key (8 bytes, '_', 8 bytes[, 't'])",
                crate::bbolt::show(k)
            ));
        }
        let main = u64::from_be_bytes(k[0..8].try_into().expect("8 bytes"));
        let sub = u64::from_be_bytes(k[9..17].try_into().expect("8 bytes"));
        let (Ok(main), Ok(sub)) = (i64::try_from(main), i64::try_from(sub)) else {
            return Err(format!(
                "revision key {} is negative",
                crate::bbolt::show(k)
            ));
        };
        Ok(Self {
            main,
            sub,
            tombstone: k.len() == 18 && k[17] == b't',
        })
    }
}

/// The fields of `mvccpb.KeyValue` (key=1, create_revision=2, mod_revision=3, version=4,
/// value=5, lease=6). Later occurrences win, as in protobuf.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyValue<'a> {
    pub key: &'a [u8],
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub value: &'a [u8],
    pub lease: i64,
}

fn varint(b: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

impl<'a> KeyValue<'a> {
    /// Decode protobuf wire data; malformed data is an error (gogo/protobuf refuses it too).
    pub fn parse(b: &'a [u8]) -> Result<Self, String> {
        let mut kv = KeyValue::default();
        let mut pos = 0;
        while pos < b.len() {
            let tag = varint(b, &mut pos)?;
            let (field, wire) = (tag >> 3, tag & 7);
            if field == 0 {
                return Err("field number 0".into());
            }
            match wire {
                0 => {
                    let v = varint(b, &mut pos)? as i64;
                    match field {
                        2 => kv.create_revision = v,
                        3 => kv.mod_revision = v,
                        4 => kv.version = v,
                        6 => kv.lease = v,
                        _ => {}
                    }
                }
                1 => {
                    pos = pos
                        .checked_add(8)
                        .filter(|&p| p <= b.len())
                        .ok_or("truncated fixed64")?
                }
                5 => {
                    pos = pos
                        .checked_add(4)
                        .filter(|&p| p <= b.len())
                        .ok_or("truncated fixed32")?
                }
                2 => {
                    let len = varint(b, &mut pos)?;
                    let end = usize::try_from(len)
                        .ok()
                        .and_then(|l| pos.checked_add(l))
                        .filter(|&e| e <= b.len())
                        .ok_or("length-delimited field runs past the end")?;
                    match field {
                        1 => kv.key = &b[pos..end],
                        5 => kv.value = &b[pos..end],
                        _ => {}
                    }
                    pos = end;
                }
                w => return Err(format!("unsupported wire type {w}")),
            }
            if matches!(
                (field, wire),
                (1 | 5, 0 | 1 | 5) | (2 | 3 | 4 | 6, 1 | 2 | 5)
            ) {
                return Err(format!("field {field} has wire type {wire}"));
            }
        }
        Ok(kv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rev_keys() {
        let mut k = [0u8; 18];
        k[7] = 5;
        k[8] = b'_';
        k[16] = 2;
        assert_eq!(
            RevKey::parse(&k[..17]).unwrap(),
            RevKey {
                main: 5,
                sub: 2,
                tombstone: false
            }
        );
        k[17] = b't';
        assert!(RevKey::parse(&k).unwrap().tombstone);
        assert!(RevKey::parse(&k[..16]).is_err());
        k[8] = b'x';
        assert!(RevKey::parse(&k).is_err());
        let mut neg = [0xffu8; 17];
        neg[8] = b'_';
        assert!(RevKey::parse(&neg).is_err());
    }

    #[test]
    fn key_values() {
        // key="a", create=3, mod=4, version=1, value="xyz", lease=7
        let b = [
            0x0a, 1, b'a', 0x10, 3, 0x18, 4, 0x20, 1, 0x2a, 3, b'x', b'y', b'z', 0x30, 7,
        ];
        let kv = KeyValue::parse(&b).unwrap();
        assert_eq!(
            kv,
            KeyValue {
                key: b"a",
                create_revision: 3,
                mod_revision: 4,
                version: 1,
                value: b"xyz",
                lease: 7
            }
        );
        assert_eq!(KeyValue::parse(&[]).unwrap(), KeyValue::default());
        for bad in [
            &[0x0a, 5, b'a'][..],
            &[0x0a][..],
            &[0x08, 0x80][..],
            &[0x0f][..],
            &[0x08, 1][..],
        ] {
            assert!(KeyValue::parse(bad).is_err(), "{bad:?}");
        }
    }
}
