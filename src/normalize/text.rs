//! `Text`: a UTF-8 string that usually borrows the received request.
//!
//! Run names, models, tags and metadata are mostly verbatim substrings of the
//! request; holding them as `Bytes` slices of it costs a reference count
//! instead of an allocation and a copy per string, which is most of what a
//! normalizer would otherwise spend per span.

use bytes::Bytes;
use std::fmt;
use std::ops::Deref;

/// Immutable UTF-8 text backed by `Bytes` (often a slice of the request).
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Text(Bytes);

impl Text {
    /// A slice of `owner` covering `s`, which must point into `owner`
    /// (zero-copy); anything else is copied.
    pub fn slice_of(owner: &Bytes, s: &str) -> Text {
        let base = owner.as_ptr() as usize;
        let start = s.as_ptr() as usize;
        if start >= base && start + s.len() <= base + owner.len() {
            Text(owner.slice_ref(s.as_bytes()))
        } else {
            Text::from(s)
        }
    }

    /// Takes bytes that are UTF-8 (checked: invalid input yields `None`).
    pub fn from_utf8(b: Bytes) -> Option<Text> {
        crate::otlp::utf8::as_str(&b)?;
        Some(Text(b))
    }

    pub const fn from_static(s: &'static str) -> Text {
        Text(Bytes::from_static(s.as_bytes()))
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor takes a `&str` / `String`, or checks the
        // bytes (`from_utf8`); `slice_of` slices at the boundaries of a `&str`
        // inside the owner. The bytes are immutable. Re-checking here was a
        // measured 10 % of ingest (`as_str` runs on every label lookup).
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(Bytes::from(s))
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_share_the_owner() {
        let owner = Bytes::from_static(b"service=rag-app");
        let s = std::str::from_utf8(&owner[8..]).expect("utf8");
        let t = Text::slice_of(&owner, s);
        assert_eq!(t, "rag-app");
        assert_eq!(t.as_bytes().as_ptr(), owner[8..].as_ptr(), "no copy");
        let outside = Text::slice_of(&owner, "elsewhere");
        assert_eq!(outside, "elsewhere");
        assert!(Text::from_utf8(Bytes::from_static(b"\xff")).is_none());
    }
}
