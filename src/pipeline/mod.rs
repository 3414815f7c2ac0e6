//! The byte pipeline, knowing nothing of etcd or buckets: plaintext chunks in, a spool copy on
//! disk, and compressed + encrypted chunks out, with sizes and SHA-256 of what came out; and the
//! reverse for fetching a backup. Runs on blocking threads because zstd and age are synchronous.

mod seal;
mod unseal;

pub use seal::{SealConfig, SealError, SealOutput, seal};
pub use unseal::{UnsealError, UnsealOutput, unseal};
