//! The byte pipeline, knowing nothing of etcd or buckets: plaintext chunks in, a spool copy on
//! disk, and compressed + encrypted chunks out, with sizes and SHA-256 of what came out.
//! Runs on a blocking thread because zstd and age are synchronous writers.

mod seal;

pub use seal::{SealConfig, SealError, SealOutput, seal};
