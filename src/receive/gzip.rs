//! gzip request bodies, for both transports.
//!
//! A gzip file may hold several members (RFC 1952 §2.2: `cat a.gz b.gz` is
//! valid, and some clients compress in chunks), so every member is inflated;
//! anything after the last member that is not another member is refused
//! rather than silently dropped, since the request is acknowledged whole.
//! Inflation stops one byte past `limit`, so a bomb costs at most the limit.

use super::budget::Reservation;
use super::IngestError;
use bytes::Bytes;
use std::io::Read;

pub fn inflate(raw: &[u8], limit: usize) -> Result<Bytes, IngestError> {
    inflate_reserved(raw, limit, None)
}

/// As [`inflate`], reserving each inflated chunk in `budget` before it is
/// kept (so inflation stops when the in-flight memory budget is used up).
pub fn inflate_reserved(
    raw: &[u8],
    limit: usize,
    mut budget: Option<&mut Reservation>,
) -> Result<Bytes, IngestError> {
    const CHUNK: usize = 64 * 1024;
    let mut out = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    let mut decoder = flate2::read::MultiGzDecoder::new(raw);
    loop {
        let n = match decoder.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(IngestError::MalformedGzip(e.to_string())),
        };
        if out.len() + n > limit {
            return Err(IngestError::DecompressedTooLarge { limit });
        }
        if let Some(b) = budget.as_deref_mut() {
            b.grow(n)?;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).expect("gzip");
        e.finish().expect("gzip")
    }

    #[test]
    fn every_member_is_read_and_trailing_garbage_refused() {
        let mut two = gz(b"hello ");
        two.extend(gz(b"world"));
        assert_eq!(
            inflate(&two, 1024).expect("two members"),
            &b"hello world"[..]
        );
        let mut bad = gz(b"hello");
        bad.extend_from_slice(b"\0\0junk");
        assert_eq!(inflate(&bad, 1024).unwrap_err().reason(), "malformed_gzip");
        assert_eq!(
            inflate(&two, 8),
            Err(IngestError::DecompressedTooLarge { limit: 8 })
        );
    }
}
