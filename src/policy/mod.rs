//! Backup policies: the YAML contract users write. Parsing is pure (text in, [`Policy`] out);
//! files a policy names (recipients, password, TLS) are read by the operations layer.
//!
//! Validation happens while deserializing, inside small newtypes, so every error carries the
//! line and column of the offending value.

mod schema;
mod types;

pub use schema::policy_schema;
pub use types::*;

use std::fmt;

/// A policy that failed to parse or validate, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// File name as given by the caller.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong and what is expected.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{}:{}: {}", self.file, l, c, self.message),
            (Some(l), None) => write!(f, "{}:{}: {}", self.file, l, self.message),
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for PolicyError {}

/// Parse and validate a policy. `file` is only used in error messages.
pub fn parse(file: &str, text: &str) -> Result<Policy, PolicyError> {
    let doc: PolicyDocument = serde_yaml_ng::from_str(text).map_err(|e| {
        let loc = e.location();
        let mut message = e.to_string();
        if let Some(l) = &loc {
            // serde_yaml_ng appends " at line L column C"; we print the location up front.
            message = message.replacen(
                &format!(" at line {} column {}", l.line(), l.column()),
                "",
                1,
            );
        }
        PolicyError {
            file: file.to_owned(),
            line: loc.as_ref().map(|l| l.line()),
            column: loc.as_ref().map(|l| l.column()),
            message,
        }
    })?;
    Ok(doc.into_policy())
}

#[cfg(test)]
mod tests;
