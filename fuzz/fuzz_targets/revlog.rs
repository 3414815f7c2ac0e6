//! Any bytes through the revision-log segment reader: errors are fine, panics, hangs and
//! runaway allocations are bugs. Seed it with segment plaintexts (see docs/pitr.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut r) = lifeboat::revlog::codec::Reader::new(data) {
        while let Ok(Some(_)) = r.next_revision() {}
    }
    for tag in 0..8u8 {
        let _ = lifeboat::revlog::codec::decode_payload(tag, data);
    }
});
