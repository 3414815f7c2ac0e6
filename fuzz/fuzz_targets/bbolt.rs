//! Any bytes through the bbolt reader and etcd status: errors are fine, panics, hangs and
//! runaway allocations are bugs. Seed it with real snapshots (see docs/inspect.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    if let Ok(i) = lifeboat::etcddb::inspect(data, len) {
        let _ = i.problems();
    }
    let _ = lifeboat::etcddb::live_keys(data, len, b"/");
});
