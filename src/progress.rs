//! Progress of long transfers (snapshot streams, downloads). Operations report to whatever the
//! front end installed: the CLI installs a terminal progress bar when stderr is a terminal and
//! the output is not JSON; otherwise (daemon, logs, tests) reports go nowhere. This keeps the
//! operations free of printing.

use std::sync::OnceLock;

/// Something that draws progress.
pub trait Sink: Send + Sync {
    /// A new transfer of `total` bytes (when known).
    fn start(&self, label: &str, total: Option<u64>) -> Box<dyn Bar>;
}

/// One transfer's progress display.
pub trait Bar: Send + Sync {
    /// `done` bytes so far, of `total` when known.
    fn set(&self, done: u64, total: Option<u64>);
    /// The transfer ended (successfully or not): remove the display.
    fn finish(&self);
}

static SINK: OnceLock<Box<dyn Sink>> = OnceLock::new();

/// Install the process's progress sink (once; later calls are ignored).
pub fn install(sink: Box<dyn Sink>) {
    let _ = SINK.set(sink);
}

/// Progress of one transfer; finished when dropped.
pub struct Progress(Option<Box<dyn Bar>>);

/// Start reporting a transfer.
pub fn start(label: &str, total: Option<u64>) -> Progress {
    Progress(SINK.get().map(|s| s.start(label, total)))
}

impl Progress {
    /// `done` bytes so far.
    pub fn set(&self, done: u64, total: Option<u64>) {
        if let Some(b) = &self.0 {
            b.set(done, total);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.finish();
        }
    }
}
