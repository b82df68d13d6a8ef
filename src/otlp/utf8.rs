//! UTF-8 checks of protobuf `string` fields, cheap for the short ones.
//!
//! A span carries dozens of strings; most are attribute keys and label-like
//! values of 5 to 60 bytes, a few are prompts and outputs of kilobytes.
//! `simdutf8` is fast on the long ones, but under 64 bytes it hands the work
//! to the standard library's byte loop, behind two calls. With every key and
//! value checked on receipt (and some read again by normalization) that was
//! 15 % of the in-process ingest profile. Short strings are almost always
//! ASCII, and "every byte below 0x80" is one OR over a few machine words, so
//! that is tried first; anything else goes to `simdutf8`, which is exact.

/// `bytes` as `&str` when it is valid UTF-8.
#[inline]
pub fn as_str(bytes: &[u8]) -> Option<&str> {
    if bytes.len() < 64 && is_ascii_short(bytes) {
        // SAFETY: every byte is below 0x80 (checked just above), and a
        // sequence of ASCII bytes is valid UTF-8.
        return Some(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    simdutf8::basic::from_utf8(bytes).ok()
}

/// Whether `bytes` is valid UTF-8 (see [`as_str`]).
#[inline]
pub fn is_valid(bytes: &[u8]) -> bool {
    as_str(bytes).is_some()
}

/// All bytes ASCII, eight at a time (the tail in one word read from the
/// end, overlapping what was already checked).
#[inline]
fn is_ascii_short(bytes: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let n = bytes.len();
    if n < 8 {
        return bytes.iter().fold(0u8, |acc, b| acc | b) < 0x80;
    }
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[i..i + 8]);
        u64::from_ne_bytes(w)
    };
    let mut acc = word(n - 8);
    let mut i = 0;
    while i + 8 <= n {
        acc |= word(i);
        i += 8;
    }
    acc & HIGH == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn agrees_with_the_standard_library_on_edges() {
        let cases: &[&[u8]] = &[
            b"",
            b"a",
            b"service.name",
            b"exactly8",
            b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde",
            "caf\u{e9}".as_bytes(),
            "\u{1F600} emoji at the start".as_bytes(),
            b"bad \xff in the middle",
            b"\xc3",
            b"truncated at the end \xe2\x82",
            b"0123456\x80",
            b"\x80123456789",
            b"overlong \xc0\xaf",
            b"surrogate \xed\xa0\x80",
        ];
        for c in cases {
            assert_eq!(
                as_str(c),
                std::str::from_utf8(c).ok(),
                "{:?}",
                String::from_utf8_lossy(c)
            );
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_standard_library(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(as_str(&bytes), std::str::from_utf8(&bytes).ok());
        }

        #[test]
        fn agrees_on_mostly_ascii(s in "[ -~]{0,80}", at in 0usize..80, b in 0x80u8..=0xff) {
            let mut bytes = s.into_bytes();
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] = b;
            }
            prop_assert_eq!(as_str(&bytes), std::str::from_utf8(&bytes).ok());
        }
    }
}
