//! age key generation, so operators need no extra tool to get started.

use crate::error::{Error, Kind, Result};
use age::secrecy::ExposeSecret;
use std::io::Write;
use std::path::Path;

/// Write a new age X25519 identity to `path` (0600, never overwriting) and return its recipient.
pub fn generate_identity(path: &Path) -> Result<String> {
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let mut f = super::create_private_file(path).map_err(|e| {
        Error::new(
            Kind::Io,
            format!(
                "cannot create identity file {}: {e}; choose a new path (existing files are \
                     never overwritten)",
                path.display()
            ),
        )
    })?;
    let body = format!(
        "# created: {}\n# public key: {recipient}\n{}\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        id.to_string().expose_secret()
    );
    f.write_all(body.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| {
            Error::new(
                Kind::Io,
                format!("writing identity file {}: {e}", path.display()),
            )
        })?;
    Ok(recipient)
}
