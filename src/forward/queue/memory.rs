//! The memory queue: a bounded deque of export requests. Fastest; lost on a
//! crash or restart (and counted as dropped at shutdown).

use super::{take_after, Depth, Entry, PushError};
use crate::forward::queue::wal::now_millis;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bookkeeping charged per in-memory record on top of its bytes.
const ENTRY_OVERHEAD: u64 = 64;

pub(super) struct Memory {
    entries: VecDeque<Entry>,
    bytes: u64,
    next_id: u64,
}

impl Memory {
    pub(super) fn new() -> Memory {
        Memory {
            entries: VecDeque::new(),
            bytes: 0,
            next_id: 1,
        }
    }

    pub(super) fn has_room(&self, len: u64, max_bytes: u64) -> bool {
        self.bytes + len + ENTRY_OVERHEAD <= max_bytes
    }

    /// Queues one request; `spans_total` is the queue's span count, raised
    /// before the record is visible to the sender (so an ack can never
    /// subtract spans not yet added).
    pub(super) fn push(
        &mut self,
        spans: u32,
        body: &Bytes,
        enqueued_ms: u64,
        max_bytes: u64,
        spans_total: &AtomicU64,
    ) -> Result<(), PushError> {
        let cost = body.len() as u64 + ENTRY_OVERHEAD;
        if cost > max_bytes {
            return Err(PushError::TooLarge {
                len: body.len() as u64,
                max: max_bytes,
            });
        }
        if self.bytes + cost > max_bytes {
            return Err(PushError::Full {
                used: self.bytes,
                max: max_bytes,
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        self.bytes += cost;
        spans_total.fetch_add(u64::from(spans), Ordering::Relaxed);
        self.entries.push_back(Entry {
            id,
            spans,
            enqueued_ms,
            body: body.clone(),
        });
        Ok(())
    }

    pub(super) fn peek_after(
        &self,
        after: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Vec<Entry> {
        take_after(&self.entries, after, max_records, max_bytes)
    }

    /// Removes every record with id `<= upto`.
    pub(super) fn ack(&mut self, upto: u64) {
        while self.entries.front().is_some_and(|e| e.id <= upto) {
            if let Some(e) = self.entries.pop_front() {
                self.bytes -= e.body.len() as u64 + ENTRY_OVERHEAD;
            }
        }
    }

    pub(super) fn depth(&self, spans: u64) -> Depth {
        Depth {
            records: self.entries.len() as u64,
            spans,
            bytes: self.bytes,
            oldest_age: self
                .entries
                .front()
                .map(|e| Duration::from_millis(now_millis().saturating_sub(e.enqueued_ms))),
        }
    }

    /// Empties the queue; returns the spans it held.
    pub(super) fn discard(&mut self) -> u64 {
        let spans: u64 = self.entries.iter().map(|e| u64::from(e.spans)).sum();
        self.entries.clear();
        self.bytes = 0;
        spans
    }
}
