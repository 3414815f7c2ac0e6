//! lifeboat: verified, encrypted backups of etcd clusters and guided restores.
//!
//! Layers, from pure to effectful (each may use only those above it):
//!
//! - [`model`], [`policy`]: pure types (ids, key layout, manifests, the YAML policy).
//! - [`bbolt`], [`etcddb`], [`runbook`], [`retention`], [`retry`], [`revlog`]: pure logic
//!   (reading snapshots, recovery runbooks, retention plans, retries inside a slot, the revision
//!   log's format, restore plans and window).
//! - [`etcd`], [`pipeline`], [`store`]: the etcd client side, the byte pipeline (spool, zstd,
//!   age), and object storage. They know nothing of each other.
//! - [`ops`]: the operations (backup, list, ...) composing them; shared by CLI and daemon, they
//!   never print.
//! - [`daemon`]: the scheduler, metrics and health endpoint around the same operations.
//! - [`cli`]: argument parsing and all printing.
//!
//! Data flow of a backup:
//!
//! ```text
//! member --gRPC--> StreamAccount (sizes, SHA-256 trailer)
//!                    └─> seal thread: spool .part (0600) + zstd -> age -> 1 MiB chunks
//!                                         └─> fan-out: multipart upload to every destination
//! all verified and completed -> manifest at every destination (the commit)
//! ```

pub mod bbolt;
pub mod cli;
pub mod daemon;
pub mod error;
pub mod etcd;
pub mod etcddb;
pub mod k8s;
pub mod model;
pub mod ops;
pub mod pipeline;
pub mod policy;
pub mod progress;
pub mod retention;
pub mod retry;
pub mod revlog;
pub mod runbook;
pub mod store;
pub mod telemetry;
pub mod watchdog;

pub use error::{Error, Kind, Result};
