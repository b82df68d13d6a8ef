//! A request body as it arrives, held within the in-flight memory budget.
//!
//! hyper and h2 hand a body over in frames that are already `Bytes` slices
//! of their read buffers. Copying each frame into one growing buffer cost a
//! copy of every byte plus the copies of each doubling (a 680 KiB SDK batch
//! was copied about three times before decoding: memmove was 10 % of ingest
//! CPU with such requests). Instead, frames of at least [`KEEP_FRAME`] bytes
//! are kept as they are, and smaller ones are coalesced into a buffer of at
//! most [`COALESCE`] bytes, so the list of pieces stays short whatever the
//! client does (a trickle of 1-byte frames costs one small buffer, not a
//! `Bytes` per byte). [`BodyBuffer::finish`] returns the body in one piece:
//! the piece itself when it arrived in one (no copy at all), else one copy
//! into a buffer of exactly the body's size.
//!
//! Every byte is reserved before it is kept: a frame's length, the
//! coalescing buffer's capacity, and at the end the joined copy while the
//! pieces still exist. So what a body holds is what has arrived (plus one
//! coalescing buffer), never what it announced — the slow-upload rule of
//! `budget`.

use super::budget::Reservation;
use super::IngestError;
use bytes::Bytes;

/// Frames at least this long are kept without a copy.
pub const KEEP_FRAME: usize = 8 * 1024;
/// Smaller frames are copied into a buffer of this capacity.
pub const COALESCE: usize = 16 * 1024;

/// The pieces of one body, in order.
#[derive(Default)]
pub struct BodyBuffer {
    pieces: Vec<Bytes>,
    small: Vec<u8>,
    len: usize,
}

impl BodyBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes received so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps `data` after reserving it (refused, nothing kept, when the
    /// budget is exhausted).
    pub fn push(&mut self, data: Bytes, reservation: &mut Reservation) -> Result<(), IngestError> {
        if data.is_empty() {
            return Ok(());
        }
        if data.len() >= KEEP_FRAME {
            reservation.grow(data.len())?;
            self.flush_small();
            self.len += data.len();
            self.pieces.push(data);
            return Ok(());
        }
        if self.small.len() + data.len() > self.small.capacity() {
            if !self.small.is_empty() {
                self.flush_small();
            }
            reservation.grow(COALESCE)?;
            self.small = Vec::with_capacity(COALESCE);
        }
        self.small.extend_from_slice(&data);
        self.len += data.len();
        Ok(())
    }

    /// The first `N` bytes, once that many have arrived.
    pub fn prefix<const N: usize>(&self) -> Option<[u8; N]> {
        if self.len < N {
            return None;
        }
        let mut out = [0u8; N];
        let mut at = 0;
        for piece in self.pieces.iter().map(|p| &p[..]).chain([&self.small[..]]) {
            let n = (N - at).min(piece.len());
            out[at..at + n].copy_from_slice(&piece[..n]);
            at += n;
            if at == N {
                return Some(out);
            }
        }
        None
    }

    /// The whole body in one piece. `reservation` must hold nothing but
    /// this body's pieces; afterwards it holds the returned bytes (its
    /// capacity, when they had to be joined).
    pub fn finish(mut self, reservation: &mut Reservation) -> Result<Bytes, IngestError> {
        if self.pieces.is_empty() {
            // Small bodies: the coalescing buffer, reserved at its capacity.
            return Ok(Bytes::from(self.small));
        }
        if self.small.is_empty() && self.pieces.len() == 1 {
            return Ok(self.pieces.pop().unwrap_or_default());
        }
        reservation.grow(self.len)?;
        let mut joined = Vec::with_capacity(self.len);
        for piece in &self.pieces {
            joined.extend_from_slice(piece);
        }
        joined.extend_from_slice(&self.small);
        let before = reservation.held();
        drop(self);
        reservation.shrink(before.saturating_sub(joined.capacity()));
        Ok(Bytes::from(joined))
    }

    /// Moves the coalescing buffer into the pieces (its reservation, its
    /// capacity, stays with it).
    fn flush_small(&mut self) {
        if !self.small.is_empty() {
            let small = std::mem::take(&mut self.small);
            self.pieces.push(Bytes::from(small));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receive::budget::MemoryBudget;
    use metrics::Gauge;

    fn budget() -> std::sync::Arc<MemoryBudget> {
        MemoryBudget::new(Gauge::noop(), 64 << 20, 0)
    }

    #[test]
    fn one_large_frame_is_not_copied() {
        let b = budget();
        let mut r = b.reservation();
        let frame = Bytes::from(vec![7u8; 100_000]);
        let ptr = frame.as_ptr();
        let mut body = BodyBuffer::new();
        body.push(frame, &mut r).expect("fits");
        let out = body.finish(&mut r).expect("fits");
        assert_eq!(out.as_ptr(), ptr, "the frame itself");
        assert_eq!(r.held(), 100_000);
    }

    #[test]
    fn mixed_frames_join_in_order_and_reserve_exactly() {
        let b = budget();
        let mut r = b.reservation();
        let mut body = BodyBuffer::new();
        let mut expected = Vec::new();
        for (i, n) in [3usize, 20_000, 1, 5_000, 9_000, 2, 70_000, 4]
            .into_iter()
            .enumerate()
        {
            let frame: Vec<u8> = (0..n).map(|j| (i * 31 + j) as u8).collect();
            expected.extend_from_slice(&frame);
            body.push(Bytes::from(frame), &mut r).expect("fits");
        }
        assert_eq!(body.len(), expected.len());
        assert_eq!(body.prefix::<5>().expect("5 bytes")[..], expected[..5]);
        let out = body.finish(&mut r).expect("fits");
        assert_eq!(&out[..], &expected[..]);
        assert_eq!(r.held(), expected.len(), "what is held is the joined body");
        assert_eq!(b.used(), expected.len());
    }

    #[test]
    fn a_trickle_holds_what_it_sent() {
        let b = budget();
        let mut r = b.reservation();
        let mut body = BodyBuffer::new();
        for _ in 0..50_000 {
            body.push(Bytes::from_static(b"x"), &mut r).expect("fits");
        }
        // 50,000 one-byte frames: four coalescing buffers, not 50,000 pieces.
        assert_eq!(body.pieces.len(), 3);
        assert!(r.held() <= 50_000 + COALESCE, "{}", r.held());
        assert_eq!(body.prefix::<2>(), Some(*b"xx"));
        let out = body.finish(&mut r).expect("fits");
        assert_eq!(out.len(), 50_000);
        assert_eq!(r.held(), 50_000);
    }

    #[test]
    fn over_the_budget_is_refused() {
        let b = MemoryBudget::new(Gauge::noop(), 30_000, 0);
        let mut r = b.reservation();
        let mut body = BodyBuffer::new();
        body.push(Bytes::from(vec![0u8; 20_000]), &mut r)
            .expect("fits");
        let e = body
            .push(Bytes::from(vec![0u8; 20_000]), &mut r)
            .unwrap_err();
        assert_eq!(e.reason(), "memory_limit");
        assert_eq!(body.len(), 20_000, "nothing of the refused frame kept");
        assert_eq!(r.held(), 20_000);
        assert_eq!(BodyBuffer::new().prefix::<1>(), None);
    }
}
