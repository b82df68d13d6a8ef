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

use super::metadata::MetadataKeys;

/// Which tags a run keeps.
#[derive(Debug, Clone, Default)]
pub enum TagNames {
    /// Every tag.
    #[default]
    All,
    /// Only these (exact); none when empty.
    Only(Vec<Box<str>>),
}

impl TagNames {
    /// No tag can be kept: the tags need not be read at all.
    pub fn none(&self) -> bool {
        matches!(self, TagNames::Only(names) if names.is_empty())
    }

    pub fn keeps(&self, tag: &str) -> bool {
        match self {
            TagNames::All => true,
            TagNames::Only(names) => names.iter().any(|n| **n == *tag),
        }
    }
}

/// Metadata keys and tags a run keeps.
#[derive(Debug, Clone, Default)]
pub struct Kept {
    pub metadata: MetadataKeys,
    pub tags: TagNames,
}

impl Kept {
    /// Everything.
    pub fn all() -> Kept {
        Kept::default()
    }

    /// What normalization reads itself plus what later stages read: the
    /// metadata keys and tag names their configuration names.
    pub fn used_by<'a>(
        metadata: impl IntoIterator<Item = &'a str>,
        tags: impl IntoIterator<Item = &'a str>,
    ) -> Kept {
        Kept {
            metadata: MetadataKeys::used_by(metadata),
            tags: TagNames::Only(tags.into_iter().map(Box::from).collect()),
        }
    }
}
