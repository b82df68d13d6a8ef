//! Reading OTLP `AnyValue`s leniently.
//!
//! Instrumentations disagree on types (token counts as ints, doubles or
//! strings; booleans as strings), so every accessor accepts the reasonable
//! encodings and returns `None` for anything else instead of failing the span.

use super::text::Text;
use crate::otlp_view::{any_value::Value, AnyValue};

/// The string inside a string value. UTF-8 was checked by `receive::validate`;
/// a value that is somehow not UTF-8 reads as absent rather than panicking.
pub fn as_str(v: &AnyValue) -> Option<&str> {
    match &v.value {
        // Validated on receipt; checked again (cheaply: `otlp::utf8`) rather
        // than trusted with `unsafe`.
        Some(Value::StringValue(b)) => crate::otlp::utf8::as_str(b),
        _ => None,
    }
}

/// A non-empty string value.
pub fn as_nonempty_str(v: &AnyValue) -> Option<&str> {
    as_str(v).map(str::trim).filter(|s| !s.is_empty())
}

/// An integer from an int, an integral double, or a numeric string.
pub fn as_i64(v: &AnyValue) -> Option<i64> {
    match &v.value {
        Some(Value::IntValue(i)) => Some(*i),
        Some(Value::DoubleValue(d)) if d.is_finite() && d.fract() == 0.0 => Some(*d as i64),
        Some(Value::StringValue(_)) => as_str(v)?.trim().parse().ok(),
        _ => None,
    }
}

/// A token count: a non-negative integer.
pub fn as_count(v: &AnyValue) -> Option<u64> {
    as_i64(v).and_then(|i| u64::try_from(i).ok())
}

/// A float from a double, an int or a numeric string.
pub fn as_f64(v: &AnyValue) -> Option<f64> {
    match &v.value {
        Some(Value::DoubleValue(d)) => Some(*d),
        Some(Value::IntValue(i)) => Some(*i as f64),
        Some(Value::StringValue(_)) => as_str(v)?.trim().parse().ok(),
        _ => None,
    }
    .filter(|f| f.is_finite())
}

/// A boolean from a bool or a `"true"` / `"false"` string.
pub fn as_bool(v: &AnyValue) -> Option<bool> {
    match &v.value {
        Some(Value::BoolValue(b)) => Some(*b),
        Some(Value::StringValue(_)) => match as_str(v)?.trim() {
            s if s.eq_ignore_ascii_case("true") => Some(true),
            s if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Any value rendered as text: scalars as themselves, structures as JSON.
pub fn to_text(v: &AnyValue) -> String {
    match &v.value {
        Some(Value::StringValue(_)) => as_str(v).unwrap_or_default().to_owned(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => hex::encode(b),
        Some(_) => to_json(v).to_string(),
        None => String::new(),
    }
}

/// Any value as a JSON value.
pub fn to_json(v: &AnyValue) -> serde_json::Value {
    use serde_json::Value as J;
    match &v.value {
        Some(Value::StringValue(_)) => J::String(as_str(v).unwrap_or_default().to_owned()),
        Some(Value::BoolValue(b)) => J::Bool(*b),
        Some(Value::IntValue(i)) => J::from(*i),
        Some(Value::DoubleValue(d)) => serde_json::Number::from_f64(*d).map_or(J::Null, J::Number),
        Some(Value::BytesValue(b)) => J::String(hex::encode(b)),
        Some(Value::ArrayValue(a)) => J::Array(a.values.iter().map(to_json).collect()),
        Some(Value::KvlistValue(kv)) => J::Object(
            kv.values
                .iter()
                .map(|kv| {
                    let key = std::str::from_utf8(&kv.key).unwrap_or_default().to_owned();
                    (key, kv.value.as_ref().map_or(J::Null, to_json))
                })
                .collect(),
        ),
        None => J::Null,
    }
}

/// The raw bytes of a string value, sliced from the request (no copy).
pub fn raw_bytes(v: &AnyValue) -> Option<bytes::Bytes> {
    match &v.value {
        Some(Value::StringValue(b)) if !b.is_empty() => Some(b.clone()),
        _ => None,
    }
}

/// A string value as `Text`, sharing the request's bytes.
pub fn as_text(v: &AnyValue) -> Option<Text> {
    match &v.value {
        Some(Value::StringValue(b)) => Text::from_utf8(b.clone()),
        _ => None,
    }
}

/// A non-empty, trimmed string value as `Text` (zero-copy).
pub fn as_nonempty_text(v: &AnyValue) -> Option<Text> {
    let Some(Value::StringValue(b)) = &v.value else {
        return None;
    };
    let s = as_nonempty_str(v)?;
    Some(Text::slice_of(b, s))
}

/// Any value as `Text`: strings shared, other scalars and structures rendered.
pub fn to_value_text(v: &AnyValue) -> Text {
    as_text(v).unwrap_or_else(|| Text::from(to_text(v)))
}
