//! Synthetic bbolt files built byte by byte, healthy and damaged. Real etcd snapshots are
//! covered by the integration tests.

use super::*;
use crate::etcddb;

const PS: usize = 1024;

fn put_u16(p: &mut [u8], off: usize, v: u16) {
    p[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(p: &mut [u8], off: usize, v: u32) {
    p[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(p: &mut [u8], off: usize, v: u64) {
    p[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// A page header plus elements, with keys/values packed after the element array.
fn node(id: u64, flags: u16, elems: &[(u32, Vec<u8>, Vec<u8>)], size: usize) -> Vec<u8> {
    let mut p = vec![0u8; size];
    put_u64(&mut p, 0, id);
    put_u16(&mut p, 8, flags);
    put_u16(&mut p, 10, elems.len() as u16);
    put_u32(&mut p, 12, (size / PS).saturating_sub(1) as u32);
    let mut data = HEADER + elems.len() * ELEMENT;
    for (i, (f, k, v)) in elems.iter().enumerate() {
        let e = HEADER + i * ELEMENT;
        let pos = (data - e) as u32;
        if flags == FLAG_BRANCH {
            put_u32(&mut p, e, pos);
            put_u32(&mut p, e + 4, k.len() as u32);
            put_u64(&mut p, e + 8, u64::from(*f));
        } else {
            put_u32(&mut p, e, *f);
            put_u32(&mut p, e + 4, pos);
            put_u32(&mut p, e + 8, k.len() as u32);
            put_u32(&mut p, e + 12, v.len() as u32);
        }
        p[data..data + k.len()].copy_from_slice(k);
        p[data + k.len()..data + k.len() + v.len()].copy_from_slice(v);
        data += k.len() + v.len();
    }
    p
}

fn leaf(id: u64, kvs: &[(&[u8], Vec<u8>)]) -> Vec<u8> {
    let e: Vec<_> = kvs
        .iter()
        .map(|(k, v)| (0, k.to_vec(), v.clone()))
        .collect();
    node(id, FLAG_LEAF, &e, PS)
}

fn meta(id: u64, root: u64, pgid: u64, txid: u64, freelist: u64) -> Vec<u8> {
    let mut p = vec![0u8; PS];
    put_u64(&mut p, 0, id);
    put_u16(&mut p, 8, FLAG_META);
    put_u32(&mut p, 16, MAGIC);
    put_u32(&mut p, 20, VERSION);
    put_u32(&mut p, 24, PS as u32);
    put_u64(&mut p, 32, root);
    put_u64(&mut p, 48, freelist);
    put_u64(&mut p, 56, pgid);
    put_u64(&mut p, 64, txid);
    let sum = fnv1a64(&p[16..72]);
    put_u64(&mut p, 72, sum);
    p
}

fn bucket_value(root: u64) -> Vec<u8> {
    let mut v = vec![0u8; 16];
    put_u64(&mut v, 0, root);
    v
}

fn inline_bucket(kvs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let e: Vec<_> = kvs
        .iter()
        .map(|(k, v)| (0, k.to_vec(), v.to_vec()))
        .collect();
    let size =
        HEADER + e.len() * ELEMENT + kvs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    let mut v = bucket_value(0);
    v.extend(node(0, FLAG_LEAF, &e, size));
    v
}

fn rev(main: u64, sub: u64, tomb: bool) -> Vec<u8> {
    let mut k = main.to_be_bytes().to_vec();
    k.push(b'_');
    k.extend(sub.to_be_bytes());
    if tomb {
        k.push(b't');
    }
    k
}

fn kv(key: &[u8], value: &[u8], rev: u8) -> Vec<u8> {
    let mut v = vec![0x0a, key.len() as u8];
    v.extend(key);
    v.extend([0x10, rev, 0x18, rev, 0x20, 1, 0x2a, value.len() as u8]);
    v.extend(value);
    v
}

/// A small etcd-shaped database:
/// page 2: root leaf {"key" -> page 3, "meta" -> inline}; page 3: branch -> 4, 5 (5 has one
/// overflow page: 5, 6); pages 7: free. Revisions 2..=5: put a, put b, put c, delete a.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

fn healthy() -> (Vec<u8>, Entries) {
    let entries = vec![
        (rev(2, 0, false), kv(b"a", b"1", 2)),
        (rev(3, 0, false), kv(b"b", &[7u8; 100], 3)),
        (rev(4, 0, false), kv(b"c", b"3", 4)),
        (rev(5, 0, true), kv(b"a", b"", 5)),
    ];
    let meta_bucket = inline_bucket(&[(b"consistent_index", &9u64.to_be_bytes())]);
    let mut root = node(
        2,
        FLAG_LEAF,
        &[
            (LEAF_BUCKET, b"key".to_vec(), bucket_value(3)),
            (LEAF_BUCKET, b"meta".to_vec(), meta_bucket),
        ],
        PS,
    );
    root.truncate(PS);
    let branch = node(
        3,
        FLAG_BRANCH,
        &[
            (4, entries[0].0.clone(), vec![]),
            (5, entries[2].0.clone(), vec![]),
        ],
        PS,
    );
    let l4 = leaf(
        4,
        &[
            (&entries[0].0, entries[0].1.clone()),
            (&entries[1].0, entries[1].1.clone()),
        ],
    );
    let l5 = node(
        5,
        FLAG_LEAF,
        &[
            (0, entries[2].0.clone(), entries[2].1.clone()),
            (0, entries[3].0.clone(), entries[3].1.clone()),
        ],
        2 * PS,
    );
    let mut db = Vec::new();
    db.extend(meta(0, 2, 8, 11, NO_FREELIST));
    db.extend(meta(1, 2, 8, 10, NO_FREELIST));
    db.extend(root);
    db.extend(branch);
    db.extend(l4);
    db.extend(l5);
    db.extend(vec![0u8; PS]); // page 7, free
    (db, entries)
}

struct Collect(Vec<(usize, Vec<u8>, Option<Vec<u8>>)>);
impl Visitor for Collect {
    fn entry(&mut self, depth: usize, key: &[u8], item: Item<'_>) {
        let v = match item {
            Item::Value(v) => Some(v.to_vec()),
            Item::Bucket => None,
        };
        self.0.push((depth, key.to_vec(), v));
    }
}

fn problems(db: &[u8]) -> Result<Vec<String>, String> {
    let d = Db::open(db, db.len() as u64).map_err(|e| e.to_string())?;
    let r = walk(&d, &mut Collect(Vec::new())).map_err(|e| e.to_string())?;
    Ok(r.problems.iter().map(ToString::to_string).collect())
}

fn set_meta_root(db: &mut [u8], page: usize, field: usize, v: u64) {
    let base = page * PS;
    put_u64(db, base + field, v);
    let sum = fnv1a64(&db[base + 16..base + 72]);
    put_u64(db, base + 72, sum);
}

#[test]
fn walks_a_healthy_database_in_order() {
    let (db, entries) = healthy();
    let d = Db::open(&db[..], db.len() as u64).unwrap();
    assert_eq!(
        (d.meta_page(), d.meta().txid, d.size()),
        (0, 11, 8 * PS as u64)
    );
    let mut c = Collect(Vec::new());
    let r = walk(&d, &mut c).unwrap();
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!(
        r.stats,
        Stats {
            branch_pages: 1,
            leaf_pages: 3,
            overflow_pages: 1,
            buckets: 2,
            inline_buckets: 1,
            entries: 7,
            free_pages: 1
        }
    );
    let mut want = vec![(0, b"key".to_vec(), None)];
    want.extend(entries.iter().map(|(k, v)| (1, k.clone(), Some(v.clone()))));
    want.push((0, b"meta".to_vec(), None));
    want.push((
        1,
        b"consistent_index".to_vec(),
        Some(9u64.to_be_bytes().to_vec()),
    ));
    assert_eq!(c.0, want);
}

#[test]
fn status_matches_an_independent_computation() {
    let (db, entries) = healthy();
    let i = etcddb::inspect(&db[..], db.len() as u64).unwrap();
    assert!(i.is_ok(), "{:?}", i.problems());
    let mut all = b"key".to_vec();
    for (k, v) in &entries {
        all.extend(k);
        all.extend(v);
    }
    all.extend(b"meta");
    all.extend(b"consistent_index");
    all.extend(9u64.to_be_bytes());
    let st = &i.status;
    assert_eq!(st.hash, crc32c::crc32c(&all));
    assert_eq!((st.revision, st.total_key, st.live_keys), (5, 5, 2));
    assert_eq!(
        (st.total_size, st.consistent_index, st.key_entries),
        (8 * PS as u64, Some(9), 4)
    );
}

#[test]
fn crc32c_check_value() {
    assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
}

#[test]
fn broken_meta_pages() {
    let (db, _) = healthy();
    // Either meta broken: the other is used, and the check reports the broken one.
    for page in [0usize, 1] {
        let mut bad = db.clone();
        bad[page * PS + 40] ^= 1; // sequence field: only the checksum notices
        let d = Db::open(&bad[..], bad.len() as u64).unwrap();
        assert_eq!(d.meta_page(), 1 - page as u64);
        let p = problems(&bad).unwrap();
        assert_eq!(
            p,
            vec![format!("page {page}: invalid meta page: checksum mismatch")]
        );
    }
    let mut both = db.clone();
    both[40] ^= 1;
    both[PS + 40] ^= 1;
    let e = problems(&both).unwrap_err();
    assert!(
        e.contains("not a bbolt database or both meta pages are damaged"),
        "{e}"
    );
    let mut be = db.clone();
    be[16..20].copy_from_slice(&MAGIC.to_be_bytes());
    be[PS + 16..PS + 20].copy_from_slice(&MAGIC.to_be_bytes());
    assert!(problems(&be).unwrap_err().contains("big-endian"));
    assert!(
        problems(&vec![0u8; 8192])
            .unwrap_err()
            .contains("no bbolt magic")
    );
}

#[test]
fn truncated_files_are_refused() {
    let (db, _) = healthy();
    for cut in [0, 10, 80, PS, 2 * PS, 3 * PS + 5, db.len() - 1] {
        let e = problems(&db[..cut]).unwrap_err();
        assert!(
            e.contains("truncated") || e.contains("too small") || e.contains("damaged"),
            "cut {cut}: {e}"
        );
    }
}

#[test]
fn cycles_and_bad_pointers_are_reported() {
    let (db, _) = healthy();
    // Branch page 3, element 1 child pointer at 16 + 16 + 8.
    let child = 3 * PS + HEADER + ELEMENT + 8;
    for (target, want) in [
        (3u64, "page 3: multiple references"),
        (4, "page 4: multiple references"),
        (99, "page 99: out of bounds: 8"),
        (1, "page 1: out of bounds: 8"),
        (
            7,
            "page 7: header names page 0; the page is misplaced or overwritten",
        ),
    ] {
        let mut bad = db.clone();
        put_u64(&mut bad, child, target);
        let p = problems(&bad).unwrap();
        assert!(p.iter().any(|m| m == want), "child {target}: {p:?}");
    }
    // Bucket root pointing at the root page itself.
    let mut bad = db.clone();
    let v = 2 * PS + HEADER + 2 * ELEMENT + 3; // value of "key"
    put_u64(&mut bad, v, 2);
    assert!(
        problems(&bad)
            .unwrap()
            .contains(&"page 2: multiple references".to_owned())
    );
}

#[test]
fn out_of_order_keys_and_bad_elements() {
    let (db, _) = healthy();
    let mut swapped = db.clone();
    // Make leaf 4's second key (revision 3) sort before its first.
    let e1 = 4 * PS + HEADER + ELEMENT;
    let pos = u32_at(&swapped, e1 + 4) as usize;
    swapped[e1 + pos + 7] = 1;
    let p = problems(&swapped).unwrap();
    assert!(
        p.iter()
            .any(|m| m.starts_with("page 4: key 1") && m.contains("not above")),
        "{p:?}"
    );
    let mut below = db.clone();
    below[5 * PS + HEADER + 2 * ELEMENT + 7] = 1; // first key of page 5 below its separator
    let p = problems(&below).unwrap();
    assert!(
        p.iter().any(|m| m.contains("below its parent branch key")),
        "{p:?}"
    );
    let mut far = db.clone();
    put_u32(&mut far, 4 * PS + HEADER + 12, 1 << 30); // vsize of element 0
    let p = problems(&far).unwrap();
    assert!(
        p.iter().any(|m| m.contains("runs past the 1024-byte page")),
        "{p:?}"
    );
    let mut many = db.clone();
    put_u16(&mut many, 4 * PS + 10, u16::MAX);
    let p = problems(&many).unwrap();
    assert!(
        p.iter().any(|m| m.contains("65535 elements do not fit")),
        "{p:?}"
    );
    let mut over = db.clone();
    put_u32(&mut over, 5 * PS + 12, u32::MAX);
    let p = problems(&over).unwrap();
    assert!(
        p.iter()
            .any(|m| m.contains("overflow pages run past the high-water mark")),
        "{p:?}"
    );
    let mut typ = db.clone();
    put_u16(&mut typ, 4 * PS + 8, 0x20);
    assert!(
        problems(&typ)
            .unwrap()
            .contains(&"page 4: invalid type: unknown<20>".to_owned())
    );
}

#[test]
fn persisted_freelist_is_checked() {
    let (mut db, _) = healthy();
    let free_page = |ids: &[u64]| {
        let mut p = vec![0u8; PS];
        put_u64(&mut p, 0, 7);
        put_u16(&mut p, 8, FLAG_FREELIST);
        put_u16(&mut p, 10, ids.len() as u16);
        for (i, id) in ids.iter().enumerate() {
            put_u64(&mut p, HEADER + 8 * i, *id);
        }
        p
    };
    // Page 7 holds the freelist; page 8 is added as a free page.
    db.extend(vec![0u8; PS]);
    for m in [0, 1] {
        set_meta_root(&mut db, m, 48, 7);
        set_meta_root(&mut db, m, 56, 9);
    }
    db[7 * PS..8 * PS].copy_from_slice(&free_page(&[8]));
    assert_eq!(problems(&db).unwrap(), Vec::<String>::new());
    db[7 * PS..8 * PS].copy_from_slice(&free_page(&[]));
    assert_eq!(
        problems(&db).unwrap(),
        vec!["page 8: unreachable unfreed".to_owned()]
    );
    db[7 * PS..8 * PS].copy_from_slice(&free_page(&[8, 4, 8]));
    let p = problems(&db).unwrap();
    assert!(
        p.contains(&"page 8: already freed".to_owned())
            && p.contains(&"page 4: reachable freed".to_owned()),
        "{p:?}"
    );
}

#[test]
fn non_etcd_content_is_reported() {
    let (mut db, _) = healthy();
    // Rename bucket "key" to "kez": a bbolt file, but not etcd's.
    let e0 = 2 * PS + HEADER;
    let pos = u32_at(&db, e0 + 4) as usize;
    db[e0 + pos + 2] = b'z';
    let i = etcddb::inspect(&db[..], db.len() as u64).unwrap();
    assert!(i.check.is_ok());
    assert!(
        i.problems().iter().any(|m| m.contains("no bucket \"key\"")),
        "{:?}",
        i.problems()
    );
}

/// Every single-byte corruption and every truncation of a small file: no panic, no hang, and
/// anything that still passes must have an intact structure.
#[test]
fn every_byte_flipped_and_every_length() {
    let (db, _) = healthy();
    for cut in 0..db.len() {
        let _ = etcddb::inspect(&db[..cut], cut as u64);
    }
    for i in 0..db.len() {
        for x in [0x01u8, 0x80, 0xff] {
            let mut bad = db.clone();
            bad[i] ^= x;
            let _ = etcddb::inspect(&bad[..], bad.len() as u64);
        }
    }
}
