//! What a normalized run keeps of the application's own context.
//!
//! Metadata and tags are free-form: a LangGraph span carries a dozen
//! metadata keys, an OpenLLMetry span its tags inside the whole
//! `traceloop.entity.input` JSON (prompts included). Later stages read only
//! a few of them, named by the configuration, so the pipeline asks for just
//! those ([`Kept::used_by`]) and normalization skips the rest unread: the
//! whole-input JSON parse for OpenLLMetry's tags was 8 % of in-process
//! ingest CPU on the real captures, and is not done at all when no tag is
//! promoted to a label (the default). [`Kept::all`] keeps everything (the
//! library's `normalize_request`, and the tests that check what each
//! dialect carries).

use super::metadata::NORMALIZE_KEYS;

/// Which names (metadata keys, or tags) a run keeps.
#[derive(Debug, Clone, Default)]
pub enum Names {
    /// Every one.
    #[default]
    All,
    /// Only these (exact, case-sensitive); none when empty.
    Only(Vec<Box<str>>),
}

impl Names {
    /// Nothing can be kept: the source need not be read at all.
    pub fn none(&self) -> bool {
        matches!(self, Names::Only(names) if names.is_empty())
    }

    #[inline]
    pub fn keeps(&self, name: &[u8]) -> bool {
        match self {
            Names::All => true,
            Names::Only(names) => names.iter().any(|n| n.as_bytes() == name),
        }
    }
}

/// Metadata keys and tags a run keeps.
#[derive(Debug, Clone, Default)]
pub struct Kept {
    pub metadata: Names,
    pub tags: Names,
}

impl Kept {
    /// Everything.
    pub fn all() -> Kept {
        Kept::default()
    }

    /// What normalization reads itself ([`NORMALIZE_KEYS`]) plus what later
    /// stages read: the metadata keys and tag names their configuration
    /// names.
    pub fn used_by<'a>(
        metadata: impl IntoIterator<Item = &'a str>,
        tags: impl IntoIterator<Item = &'a str>,
    ) -> Kept {
        let mut keys: Vec<Box<str>> = NORMALIZE_KEYS.iter().map(|k| Box::from(*k)).collect();
        for k in metadata {
            if !keys.iter().any(|have| **have == *k) {
                keys.push(Box::from(k));
            }
        }
        Kept {
            metadata: Names::Only(keys),
            tags: Names::Only(tags.into_iter().map(Box::from).collect()),
        }
    }
}
