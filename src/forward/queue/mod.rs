//! One destination's queue: export requests waiting to be sent.
//!
//! The unit is one accepted export request (its protobuf bytes, after
//! preparation), never a re-encoded span: OTLP's `ExportTraceServiceRequest`
//! is a single repeated field, so the concatenation of several encoded
//! requests is itself a valid request and batching is a byte copy.
//!
//! Two kinds behind one interface: [`memory`] is a bounded deque; [`disk`]
//! is the write-ahead log of [`wal`], where `push` returns only once the
//! record is in the log (and, with `fsync = "always"`, on stable storage —
//! one fsync shared by every request that appended before it began: group
//! commit, see `disk.rs`), so an export acknowledged to the application
//! survives SIGKILL.
//!
//! One consumer (the destination's sender) peeks a batch, sends it, then acks
//! up to its last id; records are never removed before they are delivered or
//! classified as permanently failed. `model.rs` checks this against an
//! in-memory model (random pushes, acks, restarts, torn tails).

mod disk;
mod memory;
#[cfg(test)]
mod model;
pub(crate) mod wal;

use crate::forward::config::{QueueConfig, QueueKind};
use bytes::Bytes;
use disk::Disk;
use memory::Memory;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use wal::{now_millis, Recovery, WalError};

/// One queued export request.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Increasing, starting at 1 (0 stands for "before the first").
    pub id: u64,
    pub spans: u32,
    /// Unix milliseconds when it was queued.
    pub enqueued_ms: u64,
    /// An encoded `ExportTraceServiceRequest`.
    pub body: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("forwarding queue full ({used} of {max} bytes)")]
    Full { used: u64, max: u64 },
    #[error("request of {len} bytes can never fit in the forwarding queue (max {max} bytes)")]
    TooLarge { len: u64, max: u64 },
    #[error("forwarding queue I/O error")]
    Io(#[source] WalError),
}

/// Why the sender could not read or ack the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("the disk queue task failed")]
    Task(#[from] tokio::task::JoinError),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    pub records: u64,
    pub spans: u64,
    pub bytes: u64,
    pub oldest_age: Option<Duration>,
}

enum Inner {
    Memory(Mutex<Memory>),
    Disk(Box<Disk>),
}

pub struct Queue {
    inner: Inner,
    max_bytes: u64,
    spans: AtomicU64,
    notify: Notify,
}

/// What opening a disk queue found.
#[derive(Debug, Default)]
pub struct Opened {
    pub recovery: Option<Recovery>,
    pub recovered_spans: u64,
}

impl Queue {
    pub fn memory(max_bytes: u64) -> Queue {
        Queue {
            inner: Inner::Memory(Mutex::new(Memory::new())),
            max_bytes,
            spans: AtomicU64::new(0),
            notify: Notify::new(),
        }
    }

    /// Opens (or creates) a disk queue and counts the spans it still holds.
    pub fn disk(dir: &Path, cfg: &QueueConfig) -> Result<(Queue, Opened), WalError> {
        let (disk, recovery, spans) = Disk::open(dir, cfg)?;
        let q = Queue {
            inner: Inner::Disk(Box::new(disk)),
            max_bytes: cfg.effective_max_bytes(),
            spans: AtomicU64::new(spans),
            notify: Notify::new(),
        };
        Ok((
            q,
            Opened {
                recovery: Some(recovery),
                recovered_spans: spans,
            },
        ))
    }

    pub fn open(dir: &Path, cfg: &QueueConfig) -> Result<(Queue, Opened), WalError> {
        match cfg.kind {
            QueueKind::Memory => Ok((Queue::memory(cfg.effective_max_bytes()), Opened::default())),
            QueueKind::Disk => Queue::disk(dir, cfg),
        }
    }

    /// Runs `f` on the queue where it belongs: a disk queue does file I/O
    /// (and may fsync), so on tokio's blocking pool; a memory queue inline.
    /// `Err` only if the blocking task panicked or was cancelled.
    pub async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Queue) -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        if self.is_disk() {
            let q = self.clone();
            tokio::task::spawn_blocking(move || f(&q)).await
        } else {
            Ok(f(self))
        }
    }

    pub fn is_disk(&self) -> bool {
        matches!(self.inner, Inner::Disk(_))
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Woken on every push.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    /// Would a request of `len` bytes fit now? (An admission check before
    /// ingest commits to anything; `push` re-checks.)
    pub fn has_room(&self, len: usize) -> bool {
        let len = len as u64;
        match &self.inner {
            Inner::Memory(m) => m.lock().has_room(len, self.max_bytes),
            Inner::Disk(d) => d.has_room(len),
        }
    }

    /// Queues one request. Disk: blocks on file I/O (run it off the async
    /// workers), and returns once the record is as durable as `fsync` says.
    pub fn push(&self, spans: u32, body: &Bytes) -> Result<(), PushError> {
        let enqueued_ms = now_millis();
        match &self.inner {
            Inner::Memory(m) => {
                m.lock()
                    .push(spans, body, enqueued_ms, self.max_bytes, &self.spans)?
            }
            Inner::Disk(d) => d.push(spans, body, enqueued_ms, &self.spans)?,
        }
        self.notify.notify_one();
        Ok(())
    }

    /// fsync what was appended (the `interval` timer, and shutdown).
    pub fn sync(&self) -> Result<(), WalError> {
        match &self.inner {
            Inner::Memory(_) => Ok(()),
            Inner::Disk(d) => d.sync(),
        }
    }

    /// The oldest records, up to `max_records` and `max_bytes` of bodies
    /// (always at least one record when not empty). Nothing is removed.
    #[cfg(test)]
    pub fn peek(&self, max_records: usize, max_bytes: usize) -> Result<Vec<Entry>, WalError> {
        self.peek_after(0, max_records, max_bytes)
    }

    /// Like [`Queue::peek`], from the first record after id `after` (records
    /// already handed to an export call still in flight are skipped).
    pub fn peek_after(
        &self,
        after: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, WalError> {
        match &self.inner {
            Inner::Memory(m) => Ok(m.lock().peek_after(after, max_records, max_bytes)),
            Inner::Disk(d) => d.peek_after(after, max_records, max_bytes),
        }
    }

    /// Removes every record with id `<= upto` (delivered, or failed for
    /// good); `spans` is how many spans they held.
    pub fn ack(&self, upto: u64, spans: u64) -> Result<(), WalError> {
        match &self.inner {
            Inner::Memory(m) => m.lock().ack(upto),
            Inner::Disk(d) => d.ack(upto)?,
        }
        let _ = self
            .spans
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some(s.saturating_sub(spans))
            });
        Ok(())
    }

    pub fn depth(&self) -> Depth {
        let spans = self.spans.load(Ordering::Relaxed);
        match &self.inner {
            Inner::Memory(m) => m.lock().depth(spans),
            Inner::Disk(d) => d.depth(spans),
        }
    }

    /// Empties a memory queue (shutdown: what could not be sent is lost and
    /// must be counted). Returns the spans dropped. No-op on disk.
    pub fn discard_memory(&self) -> u64 {
        match &self.inner {
            Inner::Memory(m) => {
                let spans = m.lock().discard();
                self.spans.store(0, Ordering::Relaxed);
                spans
            }
            Inner::Disk(_) => 0,
        }
    }
}

/// Records after id `after`: at most `max_records`, and `max_bytes` of
/// bodies (the first one always, so delivery cannot stall).
fn take_after(
    entries: &VecDeque<Entry>,
    after: u64,
    max_records: usize,
    max_bytes: usize,
) -> Vec<Entry> {
    let start = entries.partition_point(|e| e.id <= after);
    let mut out = Vec::new();
    let mut total = 0usize;
    for e in entries.range(start..).take(max_records) {
        if !out.is_empty() && total + e.body.len() > max_bytes {
            break;
        }
        total += e.body.len();
        out.push(e.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::config::FsyncMode;

    fn body(n: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; n])
    }

    #[test]
    fn memory_queue_is_bounded_and_fifo() {
        let q = Queue::memory(1000);
        q.push(3, &body(400, 1)).expect("fits");
        q.push(2, &body(400, 2)).expect("fits");
        assert!(matches!(
            q.push(1, &body(400, 3)),
            Err(PushError::Full { .. })
        ));
        assert!(matches!(
            q.push(1, &body(2000, 3)),
            Err(PushError::TooLarge { .. })
        ));
        let d = q.depth();
        assert_eq!((d.records, d.spans), (2, 5));
        let b = q.peek(10, 100).expect("peek");
        assert_eq!(
            b.len(),
            1,
            "the first record always comes even if over max_bytes"
        );
        let b = q.peek(10, 10_000).expect("peek");
        assert_eq!(b.iter().map(|e| e.body[0]).collect::<Vec<_>>(), vec![1, 2]);
        q.ack(b[0].id, 3).expect("ack");
        assert_eq!(q.depth().spans, 2);
        q.push(1, &body(400, 3)).expect("room again");
        assert_eq!(q.peek(10, 10_000).expect("peek")[0].body[0], 2);
    }

    #[test]
    fn disk_queue_survives_reopen_with_span_counts() {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = QueueConfig {
            kind: QueueKind::Disk,
            max_bytes: 1 << 20,
            segment_bytes: 64 * 1024,
            ..QueueConfig::default()
        };
        {
            let (q, opened) = Queue::disk(dir.path(), &cfg).expect("open");
            assert_eq!(opened.recovered_spans, 0);
            for i in 0..10u8 {
                q.push(u32::from(i), &body(1000, i)).expect("push");
            }
            let b = q.peek(3, 1 << 20).expect("peek");
            assert_eq!(b.len(), 3);
            assert_eq!(b[2].body[..], body(1000, 2)[..]);
            q.ack(b[2].id, 1 + 2).expect("ack");
        }
        let (q, opened) = Queue::disk(dir.path(), &cfg).expect("reopen");
        assert_eq!(opened.recovered_spans, (3..10).sum::<u64>());
        let b = q.peek(100, 1 << 20).expect("peek");
        assert_eq!(b.len(), 7);
        assert_eq!(b[0].spans, 3);
        assert_eq!(b[0].body[0], 3);
        assert!(b[0].enqueued_ms > 0);
    }

    /// Reading ahead crosses from the file (records evicted from the
    /// in-memory tail) into memory without skipping or repeating a record.
    #[test]
    fn disk_reads_cross_from_file_to_memory_in_order() {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = QueueConfig {
            kind: QueueKind::Disk,
            max_bytes: 256 << 20,
            segment_bytes: 4 << 20,
            fsync: FsyncMode::Never,
            ..QueueConfig::default()
        };
        let (q, _) = Queue::disk(dir.path(), &cfg).expect("open");
        for i in 0..40u8 {
            q.push(1, &body(600 * 1024, i)).expect("push");
        }
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let b = q.peek_after(after, 3, 64 << 20).expect("peek");
            let Some(last) = b.last() else { break };
            after = last.id;
            seen.extend(b.iter().map(|e| e.body[0]));
        }
        assert_eq!(seen, (0..40).collect::<Vec<u8>>());
        q.ack(after, 40).expect("ack");
        assert!(q.peek(10, 1 << 20).expect("peek").is_empty());
        assert_eq!(q.depth().spans, 0);
    }

    #[test]
    fn disk_queue_reports_full() {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = QueueConfig {
            kind: QueueKind::Disk,
            max_bytes: 128 * 1024,
            segment_bytes: 64 * 1024,
            fsync: FsyncMode::Never,
            ..QueueConfig::default()
        };
        let (q, _) = Queue::disk(dir.path(), &cfg).expect("open");
        let mut n = 0;
        loop {
            match q.push(1, &body(10_000, 0)) {
                Ok(()) => n += 1,
                Err(PushError::Full { .. }) => break,
                Err(e) => panic!("{e}"),
            }
            assert!(n < 100, "never full");
        }
        assert!(n >= 10, "{n}");
        assert!(!q.has_room(10_000));
    }
}
