//! gzip request bodies, for both transports.
//!
//! A gzip file may hold several members (RFC 1952 §2.2: `cat a.gz b.gz` is
//! valid, and some clients compress in chunks), so every member is inflated;
//! anything after the last member that is not another member is refused
//! rather than silently dropped, since the request is acknowledged whole.
//! Inflation stops one byte past `limit`, so a bomb costs at most the limit.

use super::IngestError;
use bytes::Bytes;
use std::io::Read;

pub fn inflate(raw: &[u8], limit: usize) -> Result<Bytes, IngestError> {
    let mut out = Vec::with_capacity((raw.len().saturating_mul(4)).min(limit));
    let mut decoder = flate2::read::MultiGzDecoder::new(raw).take(limit as u64 + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| IngestError::MalformedGzip(e.to_string()))?;
    if out.len() > limit {
        return Err(IngestError::DecompressedTooLarge { limit });
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
