//! Application metadata: which keys a run keeps, and reading them.
//!
//! OpenInference puts a LangChain run's whole metadata in one JSON string
//! (`metadata`), on every span: LangGraph's `langgraph_*` and `checkpoint_*`
//! keys, `ls_*` keys, the application's own. Parsing every member of it into
//! the run was 10–11 % of ingest CPU at 10 k spans/s, although only a handful
//! of keys are ever read: those normalization reads itself
//! ([`NORMALIZE_KEYS`]) and those the configuration names (promoted labels,
//! the batch-pricing key, cache-hit keys). [`super::kept::Names::Only`] keeps
//! just those; the rest of the document is skipped without being validated,
//! copied or reference-counted. [`super::kept::Names::All`] keeps everything
//! (the library's default, for callers that want the whole run).

use super::extract::Extracted;
use super::kept::Names;
use super::text::Text;
use super::value::to_value_text;
use crate::otlp_view::any_value::Value;
use bytes::Bytes;
use std::borrow::Cow;

/// The metadata keys normalization itself reads: the LangSmith model and
/// provider hints, the session and user conventions, LangGraph's node name.
pub const NORMALIZE_KEYS: [&str; 10] = [
    "ls_model_name",
    "ls_provider",
    "session_id",
    "thread_id",
    "conversation_id",
    "langfuse_session_id",
    "user_id",
    "langfuse_user_id",
    "user",
    "langgraph_node",
];

/// The span's metadata as (key, value text): OpenInference's JSON members
/// first, then the dialect-prefixed attributes, in that order (a lookup
/// takes the first entry of a key).
pub fn metadata(x: &Extracted<'_>, keys: &Names) -> Vec<(Text, Text)> {
    let mut out: Vec<(Text, Text)> = Vec::new();
    if let Some(Value::StringValue(owner)) = x.oi_metadata.and_then(|v| v.value.as_ref()) {
        json_object_into(owner, keys, &mut out);
    }
    for &(key, kv_key, value, json_encoded) in &x.prefixed_metadata {
        if !keys.keeps(key.as_bytes()) {
            continue;
        }
        let key = Text::slice_of(kv_key, key);
        let text = if json_encoded {
            match &value.value {
                Some(Value::StringValue(owner)) => json_scalar_text(owner, owner),
                _ => to_value_text(value),
            }
        } else {
            to_value_text(value)
        };
        out.push((key, text));
    }
    out
}

/// The kept members of a JSON object, appended as (key, value text); a
/// repeated key keeps its last value (as a JSON object decoder does). Keys
/// and strings without escapes are slices of `owner`. Anything but a whole,
/// valid JSON object appends nothing.
pub fn json_object_into(owner: &Bytes, keys: &Names, out: &mut Vec<(Text, Text)>) {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
    use serde_json::value::RawValue;

    /// A map key, borrowed from the input when it has no escapes.
    struct Key;
    impl<'de> DeserializeSeed<'de> for Key {
        type Value = Cow<'de, str>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            struct K;
            impl<'de> Visitor<'de> for K {
                type Value = Cow<'de, str>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a string key")
                }
                fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                    Ok(Cow::Borrowed(s))
                }
                fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                    Ok(Cow::Owned(s.to_owned()))
                }
                fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
                    Ok(Cow::Owned(s))
                }
            }
            d.deserialize_str(K)
        }
    }

    struct Members<'k> {
        keys: &'k Names,
    }
    impl<'de> Visitor<'de> for Members<'_> {
        type Value = Vec<(Cow<'de, str>, &'de RawValue)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut kept: Self::Value = Vec::new();
            while let Some(key) = map.next_key_seed(Key)? {
                if !self.keys.keeps(key.as_bytes()) {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                let value: &'de RawValue = map.next_value()?;
                match kept.iter_mut().find(|(k, _)| *k == key) {
                    Some(slot) => slot.1 = value,
                    None => kept.push((key, value)),
                }
            }
            Ok(kept)
        }
    }

    let mut de = serde_json::Deserializer::from_slice(owner);
    let Ok(kept) = de.deserialize_map(Members { keys }) else {
        return;
    };
    if de.end().is_err() {
        return;
    }
    for (k, v) in kept {
        let key = match k {
            Cow::Borrowed(k) => Text::slice_of(owner, k),
            Cow::Owned(k) => Text::from(k),
        };
        let raw = v.get();
        out.push((key, json_scalar_text(raw.as_bytes(), owner)));
    }
}

/// A JSON value's text: a string literal's content (a slice of `owner` when
/// it has no escapes), anything else its JSON text.
pub fn json_scalar_text(raw: &[u8], owner: &Bytes) -> Text {
    let trimmed = raw.trim_ascii();
    if trimmed.len() >= 2 && trimmed[0] == b'"' && trimmed[trimmed.len() - 1] == b'"' {
        let inner = &trimmed[1..trimmed.len() - 1];
        if !inner.contains(&b'\\') {
            if let Some(s) = crate::otlp::utf8::as_str(inner) {
                return Text::slice_of(owner, s);
            }
        }
        if let Ok(s) = serde_json::from_slice::<String>(trimmed) {
            return Text::from(s);
        }
    }
    match crate::otlp::utf8::as_str(trimmed) {
        Some(s) => Text::slice_of(owner, s),
        None => Text::default(),
    }
}

/// A metadata value; the first entry of a key wins.
pub fn meta_value<'m>(metadata: &'m [(Text, Text)], key: &str) -> Option<&'m str> {
    metadata
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

pub fn meta_text(metadata: &[(Text, Text)], keys: &[&str]) -> Option<Text> {
    keys.iter().find_map(|key| {
        metadata
            .iter()
            .find(|(k, v)| *k == *key && !v.is_empty())
            .map(|(_, v)| v.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(owner: &Bytes) -> Vec<(Text, Text)> {
        let mut out = Vec::new();
        json_object_into(owner, &Names::All, &mut out);
        out
    }

    #[test]
    fn json_metadata_is_sliced_and_decoded() {
        let owner = Bytes::from_static(
            br#"{"user_id": "u-1", "n": 3, "nested": {"a": [1]}, "esc": "a\"b"}"#,
        );
        let out = all(&owner);
        assert_eq!(meta_value(&out, "user_id"), Some("u-1"));
        assert_eq!(meta_value(&out, "n"), Some("3"));
        assert_eq!(meta_value(&out, "nested"), Some(r#"{"a": [1]}"#));
        assert_eq!(meta_value(&out, "esc"), Some("a\"b"));
        let user = &out.iter().find(|(k, _)| *k == "user_id").expect("kept").1;
        assert_eq!(user.as_bytes().as_ptr(), owner[13..].as_ptr(), "borrowed");
        // Langfuse v5: a JSON-encoded string value.
        let encoded = Bytes::from_static(br#""prod""#);
        assert_eq!(json_scalar_text(&encoded, &encoded), "prod");
    }

    #[test]
    fn only_the_kept_keys_are_read() {
        let owner = Bytes::from_static(
            br#"{"langgraph_step": 1, "env": "prod", "checkpoint_ns": "x:1", "user_id": "u", "big": {"deep": ["\u00e9", 1]}}"#,
        );
        let keys = crate::normalize::Kept::used_by(["env"], []).metadata;
        let mut out = Vec::new();
        json_object_into(&owner, &keys, &mut out);
        let got: Vec<(&str, &str)> = out.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, vec![("env", "prod"), ("user_id", "u")]);
    }

    #[test]
    fn escaped_keys_repeats_and_garbage() {
        let owner = Bytes::from_static(br#"{"us\u0065r_id": "a", "user_id": "b", "x": 1}"#);
        let out = all(&owner);
        assert_eq!(
            meta_value(&out, "user_id"),
            Some("b"),
            "the last value wins"
        );
        assert_eq!(out.len(), 2);
        for bad in [
            &b"not json"[..],
            b"[1, 2]",
            br#"{"user_id": "u""#,
            br#"{"user_id": "u"} trailing"#,
            b"",
        ] {
            assert!(all(&Bytes::copy_from_slice(bad)).is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn prefixed_metadata_is_filtered_too() {
        use crate::otlp_view::{AnyValue, KeyValue};
        let kv = |k: &'static str, v: &'static str| KeyValue {
            key: Bytes::from_static(k.as_bytes()),
            value: Some(AnyValue {
                value: Some(Value::StringValue(Bytes::from_static(v.as_bytes()))),
            }),
        };
        let attrs = vec![
            kv("langsmith.metadata.user_id", "u-9"),
            kv("langsmith.metadata.revision", "abc"),
        ];
        let x = Extracted::from_attributes(&attrs);
        let kept = metadata(&x, &crate::normalize::Kept::used_by([], []).metadata);
        assert_eq!(kept.len(), 1);
        assert_eq!(meta_value(&kept, "user_id"), Some("u-9"));
        assert_eq!(metadata(&x, &Names::All).len(), 2);
    }
}
