//! Errors raised while building a price table.
//!
//! Every error names *where* the problem is (the origin: the built-in table,
//! a file path, or the inline config) and *which key* is wrong, because the
//! person reading it is an operator editing a TOML file, not a Rust caller.
//! Lookups and cost computation never fail: an unknown model is
//! [`Cost::Unpriced`](super::Cost::Unpriced), not an error.

use std::path::PathBuf;

/// A price table could not be built from the configured sources.
#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    /// The user's price file could not be read.
    #[error("cannot read price file {}: {source}", .path.display())]
    Read {
        /// The configured `pricing.file`.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },

    /// A price file is not valid TOML, or does not match the schema
    /// (unknown field, wrong type, missing `input`...).
    #[error("{origin}: invalid price table{}: {message}", .line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    Parse {
        /// The file (or `built-in prices.json`) that failed to parse.
        origin: String,
        /// 1-based line of the offending token, when the parser knows it.
        line: Option<usize>,
        /// The parser's description of the problem.
        message: String,
    },

    /// A value parsed but makes no sense: negative or non-finite price,
    /// discount outside `0..=1`, alias to nothing, two keys naming the same
    /// model, empty names.
    #[error("{origin}: {key}: {problem}")]
    Invalid {
        /// The file, `built-in prices.json`, or `pricing config`.
        origin: String,
        /// The TOML path of the bad value, e.g. `models."gpt-4o".input`.
        key: String,
        /// What is wrong with the value and what is expected.
        problem: String,
    },
}

impl PricingError {
    /// Convert a TOML deserialization error, turning its byte span into a
    /// line number (the span alone is useless to someone reading a log).
    pub(crate) fn from_toml(origin: &str, src: &str, err: &toml::de::Error) -> Self {
        let line = err.span().map(|span| {
            let end = span.start.min(src.len());
            src.as_bytes()[..end]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1
        });
        PricingError::Parse {
            origin: origin.to_string(),
            line,
            message: err.message().to_string(),
        }
    }

    pub(crate) fn invalid(origin: &str, key: String, problem: impl Into<String>) -> Self {
        PricingError::Invalid {
            origin: origin.to_string(),
            key,
            problem: problem.into(),
        }
    }
}
