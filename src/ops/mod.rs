//! Operations shared by the CLI and the daemon. They never print; they return reports and
//! errors, and log progress through `tracing`.

pub mod backup;
pub mod keys;
pub mod list;
pub mod load;

pub use backup::{BackupReport, backup};
pub use list::{ListReport, ListedBackup, list};
pub use load::{LoadedPolicy, load_policy};
