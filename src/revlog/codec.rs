//! The plaintext of a revision-log segment: a header, then length-delimited records, then an
//! `END` record holding the SHA-256 of everything before it. Pure and bounds-checked: a reader
//! never trusts a length it has not checked against the bytes left and [`MAX_RECORD`].
//!
//! ```text
//! header   "LBREVLOG" u16 version(1) u16 reserved
//! record   u8 tag | u32 len (LE) | payload[len]
//!   REV    i64 revision | i64 observed (Unix ns) | u8 flags        a revision starts
//!   LEASE  i64 id | i64 granted TTL in seconds (-1: unknown)        needed from here on
//!   PUT    i64 create | i64 mod | i64 version | i64 lease | u32 klen | key | value
//!   DELETE i64 mod | key
//!   END    i64 last revision | u64 revisions | u64 events | [32] SHA-256 of all bytes before it
//! ```
//!
//! Events and leases belong to the revision of the `REV` record before them; a revision's
//! events are in the order etcd reported them (the order of its transaction).

use sha2::{Digest, Sha256};

/// First bytes of every segment plaintext.
pub const MAGIC: &[u8; 8] = b"LBREVLOG";
/// Format version written after [`MAGIC`].
pub const VERSION: u16 = 1;
/// Largest record accepted: far above etcd's request limit (1.5 MiB by default; etcd warns
/// above 10 MiB), so that a corrupt length cannot make a reader allocate gigabytes.
pub const MAX_RECORD: usize = 256 << 20;

const TAG_REV: u8 = 1;
const TAG_LEASE: u8 = 2;
const TAG_PUT: u8 = 3;
const TAG_DELETE: u8 = 4;
const TAG_END: u8 = 5;

/// `REV` flag: the revision arrived in a batch of several (catching up), so its observed time
/// is only an upper bound.
pub const FLAG_CATCHUP: u8 = 1;

/// One key-value event, as etcd's watch reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A put, with everything etcd stores about the key after it.
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        create_revision: i64,
        mod_revision: i64,
        version: i64,
        lease: i64,
    },
    /// A delete (its tombstone's revision).
    Delete { key: Vec<u8>, mod_revision: i64 },
}

impl Event {
    /// The revision the event belongs to.
    pub fn revision(&self) -> i64 {
        match self {
            Event::Put { mod_revision, .. } | Event::Delete { mod_revision, .. } => *mod_revision,
        }
    }

    /// Bytes of key and value (what a replay request carries).
    pub fn payload_len(&self) -> usize {
        match self {
            Event::Put { key, value, .. } => key.len() + value.len(),
            Event::Delete { key, .. } => key.len(),
        }
    }
}

/// One record of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A revision starts.
    Rev {
        revision: i64,
        observed_ns: i64,
        flags: u8,
    },
    /// A lease the following events use, with its granted TTL (`-1`: unknown).
    Lease { id: i64, ttl: i64 },
    /// An event of the current revision.
    Event(Event),
    /// The end: totals and the SHA-256 of every byte before this record.
    End {
        last_revision: i64,
        revisions: u64,
        events: u64,
        sha256: [u8; 32],
    },
}

/// Why a segment's plaintext cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

fn err<T>(msg: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError(msg.into()))
}

/// The header bytes.
pub fn header() -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes());
    h
}

/// Length of [`header`].
pub const HEADER_LEN: usize = 12;

/// Encode one record.
pub fn encode(r: &Record) -> Vec<u8> {
    let mut p = Vec::new();
    let tag = match r {
        Record::Rev {
            revision,
            observed_ns,
            flags,
        } => {
            p.extend_from_slice(&revision.to_le_bytes());
            p.extend_from_slice(&observed_ns.to_le_bytes());
            p.push(*flags);
            TAG_REV
        }
        Record::Lease { id, ttl } => {
            p.extend_from_slice(&id.to_le_bytes());
            p.extend_from_slice(&ttl.to_le_bytes());
            TAG_LEASE
        }
        Record::Event(e) => return encode_event(e),
        Record::End {
            last_revision,
            revisions,
            events,
            sha256,
        } => {
            p.extend_from_slice(&last_revision.to_le_bytes());
            p.extend_from_slice(&revisions.to_le_bytes());
            p.extend_from_slice(&events.to_le_bytes());
            p.extend_from_slice(sha256);
            TAG_END
        }
    };
    frame(tag, &p)
}

/// A record: its tag, the payload's length and the payload.
fn frame(tag: u8, p: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + p.len());
    out.push(tag);
    out.extend_from_slice(&(p.len() as u32).to_le_bytes());
    out.extend_from_slice(p);
    out
}

/// Encode one event record (what [`encode`] gives for `Record::Event`).
pub fn encode_event(e: &Event) -> Vec<u8> {
    let mut p = Vec::new();
    let tag = match e {
        Event::Put {
            key,
            value,
            create_revision,
            mod_revision,
            version,
            lease,
        } => {
            for v in [create_revision, mod_revision, version, lease] {
                p.extend_from_slice(&v.to_le_bytes());
            }
            p.extend_from_slice(&(key.len() as u32).to_le_bytes());
            p.extend_from_slice(key);
            p.extend_from_slice(value);
            TAG_PUT
        }
        Event::Delete { key, mod_revision } => {
            p.extend_from_slice(&mod_revision.to_le_bytes());
            p.extend_from_slice(key);
            TAG_DELETE
        }
    };
    frame(tag, &p)
}

/// The fingerprint of one revision: SHA-256 over its event records as [`encode_event`] writes
/// them, in order. `REV` and `LEASE` records are left out: they hold when the revision was seen
/// and TTLs, which are not the history. Two clusters agree at a revision when its events are the
/// same bytes; a cluster restored from an older backup that has written past the revision since
/// almost never does (a write's value, key, versions and lease would all have to repeat).
#[derive(Clone, Default)]
pub struct RevisionDigest(Sha256);

impl RevisionDigest {
    /// Add one event, as the bytes of [`encode_event`] (or a writer's event record).
    pub fn add_encoded(&mut self, record: &[u8]) {
        self.0.update(record);
    }

    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// [`RevisionDigest`] of the events of one revision.
pub fn revision_digest<'a>(events: impl IntoIterator<Item = &'a Event>) -> [u8; 32] {
    let mut d = RevisionDigest::default();
    for e in events {
        d.add_encoded(&encode_event(e));
    }
    d.finish()
}

/// Reads little-endian fields out of a payload, refusing to read past its end.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return err(format!(
                "{what}: needs {n} bytes, {} left in the record",
                self.0.len()
            ));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn i64(&mut self, what: &str) -> Result<i64, DecodeError> {
        let b = self.take(8, what)?;
        Ok(i64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
    fn done(&self, what: &str) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            err(format!(
                "{what}: {} unexpected bytes at its end",
                self.0.len()
            ))
        }
    }
}

/// Decode one record's payload.
pub fn decode_payload(tag: u8, payload: &[u8]) -> Result<Record, DecodeError> {
    let mut f = Fields(payload);
    let r = match tag {
        TAG_REV => {
            let revision = f.i64("REV revision")?;
            let observed_ns = f.i64("REV observed time")?;
            let flags = f.take(1, "REV flags")?[0];
            f.done("REV")?;
            Record::Rev {
                revision,
                observed_ns,
                flags,
            }
        }
        TAG_LEASE => {
            let id = f.i64("LEASE id")?;
            let ttl = f.i64("LEASE ttl")?;
            f.done("LEASE")?;
            Record::Lease { id, ttl }
        }
        TAG_PUT => {
            let create_revision = f.i64("PUT create revision")?;
            let mod_revision = f.i64("PUT mod revision")?;
            let version = f.i64("PUT version")?;
            let lease = f.i64("PUT lease")?;
            let klen = f.take(4, "PUT key length")?;
            let klen = u32::from_le_bytes(klen.try_into().expect("4 bytes")) as usize;
            let key = f.take(klen, "PUT key")?.to_vec();
            let value = f.rest().to_vec();
            Record::Event(Event::Put {
                key,
                value,
                create_revision,
                mod_revision,
                version,
                lease,
            })
        }
        TAG_DELETE => {
            let mod_revision = f.i64("DELETE mod revision")?;
            let key = f.rest().to_vec();
            Record::Event(Event::Delete { key, mod_revision })
        }
        TAG_END => {
            let last_revision = f.i64("END last revision")?;
            let revisions = f.u64("END revisions")?;
            let events = f.u64("END events")?;
            let sha256: [u8; 32] = f.take(32, "END sha256")?.try_into().expect("32 bytes");
            f.done("END")?;
            Record::End {
                last_revision,
                revisions,
                events,
                sha256,
            }
        }
        other => return err(format!("unknown record tag {other}")),
    };
    Ok(r)
}

/// Builds a segment's plaintext incrementally, keeping only totals and a running hash; the
/// bytes go wherever the caller writes them (a spool file).
#[derive(Clone)]
pub struct Writer {
    hasher: Sha256,
    bytes: u64,
    revisions: u64,
    events: u64,
    last_revision: Option<i64>,
    first_revision: Option<i64>,
    /// Events and payload bytes of the revision being written, and the most of each so far.
    current: (u64, u64),
    max_events: u64,
    max_bytes: u64,
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

/// What a finished segment holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    pub first_revision: i64,
    pub last_revision: i64,
    pub revisions: u64,
    pub events: u64,
    /// Most events in one revision (a replay's `--max-txn-ops` must allow it).
    pub max_events_per_revision: u64,
    /// Most key and value bytes in one revision (a replay's request limit must allow it).
    pub max_revision_bytes: u64,
    /// Plaintext length, END record included.
    pub plaintext_len: u64,
    /// SHA-256 of the whole plaintext, END record included.
    pub plaintext_sha256: [u8; 32],
}

impl Writer {
    pub fn new() -> Self {
        Self {
            hasher: Sha256::new(),
            bytes: 0,
            revisions: 0,
            events: 0,
            last_revision: None,
            first_revision: None,
            current: (0, 0),
            max_events: 0,
            max_bytes: 0,
        }
    }

    fn emit(&mut self, b: Vec<u8>) -> Vec<u8> {
        self.hasher.update(&b);
        self.bytes += b.len() as u64;
        b
    }

    /// The header: the first bytes to write.
    pub fn start(&mut self) -> Vec<u8> {
        self.emit(header())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.bytes
    }

    /// Nothing but the header written.
    pub fn is_empty(&self) -> bool {
        self.revisions == 0
    }

    /// Revisions written so far.
    pub fn revisions(&self) -> u64 {
        self.revisions
    }

    /// The last revision started, if any.
    pub fn last_revision(&self) -> Option<i64> {
        self.last_revision
    }

    /// Encode `r`, keeping the totals; returns the bytes to write.
    pub fn record(&mut self, r: &Record) -> Vec<u8> {
        match r {
            Record::Rev { revision, .. } => {
                self.close_revision();
                self.revisions += 1;
                self.last_revision = Some(*revision);
                self.first_revision.get_or_insert(*revision);
            }
            Record::Event(e) => {
                self.events += 1;
                self.current.0 += 1;
                self.current.1 += e.payload_len() as u64;
            }
            Record::Lease { .. } | Record::End { .. } => {}
        }
        self.emit(encode(r))
    }

    fn close_revision(&mut self) {
        self.max_events = self.max_events.max(self.current.0);
        self.max_bytes = self.max_bytes.max(self.current.1);
        self.current = (0, 0);
    }

    /// The END record's bytes and the segment's totals; `None` for a segment without
    /// revisions.
    pub fn finish(mut self) -> Option<(Vec<u8>, Totals)> {
        self.close_revision();
        let (first, last) = (self.first_revision?, self.last_revision?);
        let head: [u8; 32] = self.hasher.clone().finalize().into();
        let end = Record::End {
            last_revision: last,
            revisions: self.revisions,
            events: self.events,
            sha256: head,
        };
        let b = self.emit(encode(&end));
        Some((
            b,
            Totals {
                first_revision: first,
                last_revision: last,
                revisions: self.revisions,
                events: self.events,
                max_events_per_revision: self.max_events,
                max_revision_bytes: self.max_bytes,
                plaintext_len: self.bytes,
                plaintext_sha256: self.hasher.finalize().into(),
            },
        ))
    }
}

/// One revision read back: its leases to grant first, then its events in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    pub revision: i64,
    pub observed_ns: i64,
    pub flags: u8,
    pub leases: Vec<(i64, i64)>,
    pub events: Vec<Event>,
}

/// Reads a segment's plaintext from any `Read`, one revision at a time (memory: one revision),
/// checking the header, that revisions are dense and ascending, that every event belongs to
/// its revision, and at the end that the totals and the SHA-256 match.
pub struct Reader<R> {
    inner: R,
    hasher: Sha256,
    current: Option<Revision>,
    revisions: u64,
    events: u64,
    last: Option<i64>,
    ended: bool,
}

impl<R: std::io::Read> Reader<R> {
    /// Check the header and start reading.
    pub fn new(mut inner: R) -> Result<Self, DecodeError> {
        let mut h = [0u8; HEADER_LEN];
        inner
            .read_exact(&mut h)
            .map_err(|e| DecodeError(format!("reading the header: {e}")))?;
        if &h[..8] != MAGIC {
            return err("not a lifeboat revision-log segment (bad magic)");
        }
        let v = u16::from_le_bytes([h[8], h[9]]);
        if v != VERSION {
            return err(format!(
                "segment format version {v} is not {VERSION}; upgrade lifeboat"
            ));
        }
        let mut hasher = Sha256::new();
        hasher.update(h);
        Ok(Self {
            inner,
            hasher,
            current: None,
            revisions: 0,
            events: 0,
            last: None,
            ended: false,
        })
    }

    fn next_record(&mut self) -> Result<Option<(Record, Vec<u8>)>, DecodeError> {
        let mut head = [0u8; 5];
        match read_full(&mut self.inner, &mut head) {
            Ok(0) => return Ok(None),
            Ok(5) => {}
            Ok(n) => return err(format!("truncated: {n} of 5 bytes of a record header")),
            Err(e) => return err(format!("reading: {e}")),
        }
        let len = u32::from_le_bytes(head[1..5].try_into().expect("4 bytes")) as usize;
        if len > MAX_RECORD {
            return err(format!(
                "a record of {len} bytes is larger than {MAX_RECORD}"
            ));
        }
        let mut payload = vec![0u8; len];
        match read_full(&mut self.inner, &mut payload) {
            Ok(n) if n == len => {}
            Ok(n) => return err(format!("truncated: {n} of {len} bytes of a record")),
            Err(e) => return err(format!("reading: {e}")),
        }
        let r = decode_payload(head[0], &payload)?;
        let mut raw = head.to_vec();
        raw.extend_from_slice(&payload);
        Ok(Some((r, raw)))
    }

    /// The next whole revision, or `None` after a valid END.
    pub fn next_revision(&mut self) -> Result<Option<Revision>, DecodeError> {
        loop {
            if self.ended {
                return Ok(None);
            }
            let Some((rec, raw)) = self.next_record()? else {
                return err("truncated: the segment ends without its END record");
            };
            match rec {
                Record::End {
                    last_revision,
                    revisions,
                    events,
                    sha256,
                } => {
                    let got: [u8; 32] = self.hasher.clone().finalize().into();
                    if got != sha256 {
                        return err("the segment's SHA-256 does not match its END record");
                    }
                    if Some(last_revision) != self.last
                        || revisions != self.revisions
                        || events != self.events
                    {
                        return err(format!(
                            "END says {revisions} revisions and {events} events up to \
                             {last_revision}, but the segment holds {} and {} up to {:?}",
                            self.revisions, self.events, self.last
                        ));
                    }
                    if self.next_record()?.is_some() {
                        return err("bytes after the END record");
                    }
                    self.ended = true;
                    return Ok(self.current.take());
                }
                Record::Rev {
                    revision,
                    observed_ns,
                    flags,
                } => {
                    self.hasher.update(&raw);
                    if let Some(last) = self.last
                        && revision != last + 1
                    {
                        return err(format!(
                            "revision {revision} follows {last}: revisions must be dense"
                        ));
                    }
                    self.last = Some(revision);
                    self.revisions += 1;
                    let done = self.current.replace(Revision {
                        revision,
                        observed_ns,
                        flags,
                        leases: Vec::new(),
                        events: Vec::new(),
                    });
                    if let Some(d) = done {
                        return Ok(Some(d));
                    }
                }
                Record::Lease { id, ttl } => {
                    self.hasher.update(&raw);
                    match &mut self.current {
                        Some(c) => c.leases.push((id, ttl)),
                        None => return err("a LEASE record before any REV"),
                    }
                }
                Record::Event(e) => {
                    self.hasher.update(&raw);
                    self.events += 1;
                    match &mut self.current {
                        Some(c) if c.revision == e.revision() => c.events.push(e),
                        Some(c) => {
                            return err(format!(
                                "an event of revision {} inside revision {}",
                                e.revision(),
                                c.revision
                            ));
                        }
                        None => return err("an event before any REV"),
                    }
                }
            }
        }
    }

    /// Every revision after the END's checks, for small segments and tests.
    pub fn read_all(mut self) -> Result<Vec<Revision>, DecodeError> {
        let mut out = Vec::new();
        while let Some(r) = self.next_revision()? {
            out.push(r);
        }
        Ok(out)
    }
}

/// Read until `buf` is full or the input ends; how many bytes were read.
fn read_full(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &[u8], rev: i64, lease: i64) -> Record {
        Record::Event(Event::Put {
            key: key.as_bytes().to_vec(),
            value: value.to_vec(),
            create_revision: rev,
            mod_revision: rev,
            version: 1,
            lease,
        })
    }

    fn rev(r: i64) -> Record {
        Record::Rev {
            revision: r,
            observed_ns: r * 1000,
            flags: 0,
        }
    }

    fn segment(records: &[Record]) -> (Vec<u8>, Totals) {
        let mut w = Writer::new();
        let mut out = w.start();
        for r in records {
            out.extend(w.record(r));
        }
        let (end, totals) = w.finish().unwrap();
        out.extend(end);
        (out, totals)
    }

    fn sample() -> Vec<Record> {
        vec![
            rev(10),
            Record::Lease { id: 7, ttl: 60 },
            put("a", b"1", 10, 7),
            put("b\0bin", &[0, 255, 1], 10, 0),
            rev(11),
            Record::Event(Event::Delete {
                key: b"a".to_vec(),
                mod_revision: 11,
            }),
            rev(12),
            put("c", &vec![9u8; 300_000], 12, 0),
        ]
    }

    #[test]
    fn a_revision_digest_is_its_events_as_written_and_nothing_else() {
        let events = |value: &[u8]| {
            vec![
                Event::Put {
                    key: b"a".to_vec(),
                    value: value.to_vec(),
                    create_revision: 5,
                    mod_revision: 9,
                    version: 2,
                    lease: 7,
                },
                Event::Delete {
                    key: b"b".to_vec(),
                    mod_revision: 9,
                },
            ]
        };
        let d = revision_digest(&events(b"x"));
        // What a streamer hashes from the records it writes (REV and LEASE records left out,
        // so the time observed and TTLs do not count).
        let mut w = Writer::new();
        w.start();
        let mut streamed = RevisionDigest::default();
        w.record(&rev(9));
        w.record(&Record::Lease { id: 7, ttl: 60 });
        for e in events(b"x") {
            streamed.add_encoded(&w.record(&Record::Event(e)));
        }
        assert_eq!(streamed.finish(), d);
        assert_ne!(revision_digest(&events(b"y")), d);
        let mut reordered = events(b"x");
        reordered.reverse();
        assert_ne!(revision_digest(&reordered), d);
        assert_ne!(revision_digest(&events(b"x")[..1]), d);
    }

    #[test]
    fn round_trip_with_totals() {
        let (bytes, t) = segment(&sample());
        assert_eq!((t.first_revision, t.last_revision), (10, 12));
        assert_eq!((t.revisions, t.events), (3, 4));
        assert_eq!(t.max_events_per_revision, 2);
        assert_eq!(t.max_revision_bytes, 300_001);
        assert_eq!(t.plaintext_len, bytes.len() as u64);
        let whole: [u8; 32] = Sha256::digest(&bytes).into();
        assert_eq!(t.plaintext_sha256, whole);
        let revs = Reader::new(&bytes[..]).unwrap().read_all().unwrap();
        assert_eq!(revs.len(), 3);
        assert_eq!(revs[0].leases, vec![(7, 60)]);
        assert_eq!(revs[0].events.len(), 2);
        assert_eq!(revs[1].events.len(), 1);
        assert_eq!(revs[2].events[0].payload_len(), 300_001);
    }

    #[test]
    fn damage_is_refused() {
        let (bytes, _) = segment(&sample());
        // Every truncation.
        for cut in 0..bytes.len() {
            let r = Reader::new(&bytes[..cut]).and_then(|r| r.read_all());
            assert!(r.is_err(), "truncated at {cut} was accepted");
        }
        // Every single flipped byte in the first 200 and the last 80.
        for i in (0..200).chain(bytes.len() - 80..bytes.len()) {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            let r = Reader::new(&b[..]).and_then(|r| r.read_all());
            assert!(r.is_err(), "flipped byte {i} was accepted");
        }
        // Extra bytes after END.
        let mut b = bytes.clone();
        b.push(0);
        assert!(Reader::new(&b[..]).unwrap().read_all().is_err());
    }

    #[test]
    fn gaps_and_foreign_events_are_refused() {
        let (b, _) = segment(&[rev(1), put("a", b"x", 1, 0), rev(3), put("b", b"y", 3, 0)]);
        let e = Reader::new(&b[..]).unwrap().read_all().unwrap_err();
        assert!(e.0.contains("dense"), "{e}");
        let (b, _) = segment(&[rev(1), put("a", b"x", 2, 0)]);
        let e = Reader::new(&b[..]).unwrap().read_all().unwrap_err();
        assert!(e.0.contains("inside revision"), "{e}");
    }

    #[test]
    fn huge_lengths_are_refused_without_allocating() {
        let mut b = header();
        b.push(TAG_PUT);
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        let e = Reader::new(&b[..]).unwrap().read_all().unwrap_err();
        assert!(e.0.contains("larger than"), "{e}");
    }

    #[test]
    fn an_empty_writer_finishes_with_nothing() {
        let mut w = Writer::new();
        let _ = w.start();
        assert!(w.is_empty());
        assert!(w.finish().is_none());
    }
}
