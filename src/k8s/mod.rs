//! Kubernetes objects out of etcd values: key layout, storage encodings, encryption at rest,
//! decoding to Kubernetes JSON, apply-ready cleanup and object diffs. Pure: no I/O, no tokio.

pub mod clean;
pub mod decode;
pub mod diff;
pub mod encryption;
pub mod keys;
pub mod schema;
pub mod value;
pub mod yaml;
