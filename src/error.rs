//! The crate's one public error: a kind (which maps to an exit code) and a message that says what
//! failed, on what, and what to do. Messages never carry secrets; sources are kept for `--verbose`
//! style chains but are written by libraries we trust not to echo credentials.

use std::fmt;

/// What class of failure this is. Each maps to a documented exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// A policy file is invalid or a file it names cannot be used.
    Policy,
    /// No etcd member could serve a snapshot, or the stream from it failed.
    Etcd,
    /// The bytes received are not what etcd said it sent (trailer, size).
    Verify,
    /// A destination (object store, directory) failed.
    Storage,
    /// Encryption setup or key material failed.
    Crypto,
    /// Local filesystem work (spool) failed.
    Io,
    /// A bug or an unexpected state.
    Internal,
    /// Stopped by a signal (SIGTERM, SIGINT) before the commit; nothing was committed.
    Cancelled,
    /// Refused because of how it was asked: an existing output without `--force`, a declined
    /// confirmation, a non-empty data directory.
    Usage,
}

impl Kind {
    /// Exit code for this kind; documented in the README.
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Internal => 1,
            Kind::Usage => 2,
            Kind::Policy => 3,
            Kind::Etcd => 4,
            Kind::Verify => 5,
            Kind::Storage => 6,
            Kind::Crypto => 7,
            Kind::Io => 8,
            Kind::Cancelled => 9,
        }
    }
}

/// Error with a kind and a complete, human-readable message.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// Set when a retry cannot help although the kind usually could (rejected credentials).
    permanent: bool,
}

/// Crate-wide result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind`; `message` must say what failed, on what, and what to do.
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
            permanent: false,
        }
    }

    /// Mark as an error no retry can fix (rejected credentials, a certificate the member does
    /// not accept), whatever its kind.
    pub fn permanent(mut self) -> Self {
        self.permanent = true;
        self
    }

    /// Whether running again later could succeed: trouble with etcd, a destination, the spool
    /// or a snapshot's verification may pass; an invalid policy, key material, usage, a bug or a
    /// cancellation will not, and neither will errors marked [`Error::permanent`].
    pub fn is_retryable(&self) -> bool {
        !self.permanent
            && matches!(
                self.kind,
                Kind::Etcd | Kind::Verify | Kind::Storage | Kind::Io
            )
    }

    /// Attach the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The class of failure.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The message without the source chain.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Message followed by every cause, `: `-separated, for one-line reports.
    pub fn chain(&self) -> String {
        use std::error::Error as _;
        append_sources(self.message.clone(), self.source())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Append `source` and its causes to `out`, `: `-separated, skipping text already present
/// (many libraries repeat their cause in their own message).
pub fn append_sources(
    mut out: String,
    source: Option<&(dyn std::error::Error + 'static)>,
) -> String {
    let mut next = source;
    while let Some(e) = next {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        next = e.source();
    }
    out
}
