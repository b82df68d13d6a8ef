//! One destination's queue: export requests waiting to be sent.
//!
//! The unit is one accepted export request (its protobuf bytes, after
//! redaction), never a re-encoded span: OTLP's `ExportTraceServiceRequest`
//! is a single repeated field, so the concatenation of several encoded
//! requests is itself a valid request and batching is a byte copy.
//!
//! Two kinds behind one interface. `Memory` is a bounded deque. `Disk` is the
//! write-ahead log of `wal.rs`: `push` returns only once the record is in the
//! log (and, with `fsync = "always"`, on stable storage — the fsync is shared
//! by every request that appended while the previous one ran: group commit),
//! so an export acknowledged to the application survives SIGKILL.
//!
//! One consumer (the destination's sender) peeks a batch, sends it, then acks
//! up to its last id; records are never removed before they are delivered or
//! classified as permanently failed.

#[cfg(test)]
mod model;
pub(crate) mod wal;

use crate::forward::config::{FsyncMode, QueueConfig, QueueKind};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use wal::{now_millis, FsyncPolicy, RecordId, Recovery, Wal, WalConfig, WalError};

/// The queue's header inside a WAL record's payload: the span count (u32
/// LE). The record's time is the WAL's own timestamp, not repeated here.
const HEADER: usize = 4;
/// Bookkeeping charged per in-memory record on top of its bytes.
const ENTRY_OVERHEAD: u64 = 64;

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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    pub records: u64,
    pub spans: u64,
    pub bytes: u64,
    pub oldest_age: Option<Duration>,
}

struct MemState {
    entries: VecDeque<Entry>,
    bytes: u64,
    next_id: u64,
}

struct DiskState {
    wal: Mutex<Wal>,
    /// Serializes fsyncs; appenders wait here, and whoever gets it syncs for
    /// everyone who appended before.
    sync_gate: Mutex<()>,
    /// Every id below this is on stable storage.
    synced_below: AtomicU64,
    fsync: FsyncMode,
    /// Acks are recorded in memory at once and written to the `ack` file at
    /// most this often (a crash in between redelivers: duplicates, not loss).
    last_ack_persist: Mutex<std::time::Instant>,
    /// The newest records, also kept in memory (bounded by
    /// `RECENT_MAX_BYTES`): the sender usually wants what was just
    /// appended, and serving it from here spares reading it back from the
    /// file and checking its CRC again. Older records come from the file.
    recent: Mutex<Recent>,
}

#[derive(Default)]
struct Recent {
    entries: VecDeque<Entry>,
    bytes: u64,
}

/// Bound of a disk queue's in-memory copy of its newest records.
const RECENT_MAX_BYTES: u64 = 16 << 20;

/// How often a disk queue's delivery position is made durable.
const ACK_PERSIST_EVERY: Duration = Duration::from_secs(1);

enum Inner {
    Memory(Mutex<MemState>),
    Disk(Box<DiskState>),
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

fn wal_err(e: WalError) -> PushError {
    match e {
        WalError::Full { used, max } => PushError::Full { used, max },
        WalError::RecordTooLarge { len, max } => PushError::TooLarge { len, max },
        other => PushError::Io(other),
    }
}

impl Queue {
    pub fn memory(max_bytes: u64) -> Queue {
        Queue {
            inner: Inner::Memory(Mutex::new(MemState {
                entries: VecDeque::new(),
                bytes: 0,
                next_id: 1,
            })),
            max_bytes,
            spans: AtomicU64::new(0),
            notify: Notify::new(),
        }
    }

    /// Opens (or creates) a disk queue and counts the spans it still holds.
    pub fn disk(dir: &Path, cfg: &QueueConfig) -> Result<(Queue, Opened), WalError> {
        let wal_cfg = WalConfig {
            segment_bytes: cfg.segment_bytes,
            max_bytes: cfg.effective_max_bytes(),
            // Syncing is driven from here (group commit / timer).
            fsync: FsyncPolicy::Never,
        };
        let (wal, recovery) = Wal::open(dir, wal_cfg)?;
        let mut spans = 0u64;
        let mut from = RecordId(0);
        loop {
            let batch = wal.peek_records_from(from, 4096, 64 << 20)?;
            let Some(last) = batch.last() else { break };
            from = RecordId(last.id.0 + 1);
            spans += batch
                .iter()
                .map(|r| u64::from(spans_of(&r.payload)))
                .sum::<u64>();
        }
        let next = wal.next_id().0;
        let q = Queue {
            inner: Inner::Disk(Box::new(DiskState {
                wal: Mutex::new(wal),
                sync_gate: Mutex::new(()),
                synced_below: AtomicU64::new(next),
                fsync: cfg.fsync,
                last_ack_persist: Mutex::new(std::time::Instant::now()),
                recent: Mutex::new(Recent::default()),
            })),
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
    /// `Err` only if the blocking task panicked.
    pub async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Queue) -> T + Send + 'static,
    ) -> Result<T, String> {
        if self.is_disk() {
            let q = self.clone();
            tokio::task::spawn_blocking(move || f(&q))
                .await
                .map_err(|e| format!("queue task failed: {e}"))
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
            Inner::Memory(m) => m.lock().bytes + len + ENTRY_OVERHEAD <= self.max_bytes,
            Inner::Disk(d) => d.wal.lock().would_fit(len + HEADER as u64),
        }
    }

    /// Queues one request. Disk: blocks on file I/O (run it off the async
    /// workers), and returns once the record is as durable as `fsync` says.
    pub fn push(&self, spans: u32, body: &Bytes) -> Result<(), PushError> {
        let enqueued_ms = now_millis();
        match &self.inner {
            Inner::Memory(m) => {
                let cost = body.len() as u64 + ENTRY_OVERHEAD;
                let mut m = m.lock();
                if cost > self.max_bytes {
                    return Err(PushError::TooLarge {
                        len: body.len() as u64,
                        max: self.max_bytes,
                    });
                }
                if m.bytes + cost > self.max_bytes {
                    return Err(PushError::Full {
                        used: m.bytes,
                        max: self.max_bytes,
                    });
                }
                let id = m.next_id;
                m.next_id += 1;
                m.bytes += cost;
                // Counted before the record is visible to the sender, so an
                // ack can never subtract spans not yet added.
                self.spans.fetch_add(u64::from(spans), Ordering::Relaxed);
                m.entries.push_back(Entry {
                    id,
                    spans,
                    enqueued_ms,
                    body: body.clone(),
                });
            }
            Inner::Disk(d) => {
                let header: [u8; HEADER] = spans.to_le_bytes();
                // Counted before the append makes it visible to the sender
                // (see the memory case); taken back if the append fails.
                self.spans.fetch_add(u64::from(spans), Ordering::Relaxed);
                let id = {
                    let mut wal = d.wal.lock();
                    let id = match wal.append_parts_at(enqueued_ms, &[&header, body]) {
                        Ok(id) => id,
                        Err(e) => {
                            self.spans.fetch_sub(u64::from(spans), Ordering::Relaxed);
                            return Err(wal_err(e));
                        }
                    };
                    // Still under the WAL lock: the copy keeps WAL order.
                    let mut recent = d.recent.lock();
                    recent.bytes += body.len() as u64;
                    recent.entries.push_back(Entry {
                        id: id.0 + 1,
                        spans,
                        enqueued_ms,
                        body: body.clone(),
                    });
                    while recent.bytes > RECENT_MAX_BYTES {
                        match recent.entries.pop_front() {
                            Some(e) => recent.bytes -= e.body.len() as u64,
                            None => break,
                        }
                    }
                    id
                };
                if d.fsync == FsyncMode::Always {
                    // Group commit: one fsync covers every append made before
                    // it started, and runs without the WAL lock so appends
                    // and the sender's reads go on meanwhile.
                    let _gate = d.sync_gate.lock();
                    if d.synced_below.load(Ordering::Acquire) <= id.0 {
                        let (file, below) = d.wal.lock().sync_handle().map_err(wal_err)?;
                        if file.sync_data().is_err() {
                            // Let the WAL see the failure itself (it poisons
                            // itself: the kernel may have dropped the pages).
                            d.wal.lock().sync().map_err(wal_err)?;
                        }
                        d.synced_below.store(below.0, Ordering::Release);
                    }
                }
            }
        }
        self.notify.notify_one();
        Ok(())
    }

    /// fsync what was appended (the `interval` timer, and shutdown).
    pub fn sync(&self) -> Result<(), WalError> {
        if let Inner::Disk(d) = &self.inner {
            let (file, below) = d.wal.lock().sync_handle()?;
            if file.sync_data().is_err() {
                d.wal.lock().sync()?;
            }
            d.synced_below.store(below.0, Ordering::Release);
            d.wal.lock().persist_ack()?;
            *d.last_ack_persist.lock() = std::time::Instant::now();
        }
        Ok(())
    }

    #[cfg(test)]
    /// The oldest records, up to `max_records` and `max_bytes` of bodies
    /// (always at least one record when not empty). Nothing is removed.
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
            Inner::Memory(m) => Ok(take_after(&m.lock().entries, after, max_records, max_bytes)),
            Inner::Disk(d) => {
                {
                    let recent = d.recent.lock();
                    if recent.entries.front().is_some_and(|e| e.id <= after + 1) {
                        // Every newer record is in memory too.
                        return Ok(take_after(&recent.entries, after, max_records, max_bytes));
                    }
                }
                // Entry ids are WAL ids + 1 (0 means "none"): the first WAL
                // id after entry `after` is WAL id `after`.
                let batch =
                    d.wal
                        .lock()
                        .peek_records_from(RecordId(after), max_records, max_bytes)?;
                Ok(batch.into_iter().map(disk_entry).collect())
            }
        }
    }

    /// Removes every record with id `<= upto` (delivered, or failed for
    /// good); `spans` is how many spans they held.
    pub fn ack(&self, upto: u64, spans: u64) -> Result<(), WalError> {
        match &self.inner {
            Inner::Memory(m) => {
                let mut m = m.lock();
                while m.entries.front().is_some_and(|e| e.id <= upto) {
                    if let Some(e) = m.entries.pop_front() {
                        m.bytes -= e.body.len() as u64 + ENTRY_OVERHEAD;
                    }
                }
            }
            Inner::Disk(d) => {
                let mut wal = d.wal.lock();
                if upto == 0 {
                    return Ok(());
                }
                wal.ack_volatile(RecordId(upto - 1))?;
                let mut recent = d.recent.lock();
                while recent.entries.front().is_some_and(|e| e.id <= upto) {
                    if let Some(e) = recent.entries.pop_front() {
                        recent.bytes -= e.body.len() as u64;
                    }
                }
                drop(recent);
                let mut last = d.last_ack_persist.lock();
                if last.elapsed() >= ACK_PERSIST_EVERY {
                    wal.persist_ack()?;
                    *last = std::time::Instant::now();
                }
            }
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
            Inner::Memory(m) => {
                let m = m.lock();
                Depth {
                    records: m.entries.len() as u64,
                    spans,
                    bytes: m.bytes,
                    oldest_age: m
                        .entries
                        .front()
                        .map(|e| Duration::from_millis(now_millis().saturating_sub(e.enqueued_ms))),
                }
            }
            Inner::Disk(d) => {
                let wal = d.wal.lock();
                Depth {
                    records: wal.len_records(),
                    spans,
                    bytes: wal.len_bytes(),
                    oldest_age: wal.oldest_unacked_age(),
                }
            }
        }
    }

    /// Empties a memory queue (shutdown: what could not be sent is lost and
    /// must be counted). Returns the spans dropped. No-op on disk.
    pub fn discard_memory(&self) -> u64 {
        if let Inner::Memory(m) = &self.inner {
            let mut m = m.lock();
            let spans: u64 = m.entries.iter().map(|e| u64::from(e.spans)).sum();
            m.entries.clear();
            m.bytes = 0;
            self.spans.store(0, Ordering::Relaxed);
            return spans;
        }
        0
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

fn disk_entry(r: wal::Record) -> Entry {
    let body = if r.payload.len() >= HEADER {
        r.payload.slice(HEADER..)
    } else {
        Bytes::new()
    };
    Entry {
        id: r.id.0 + 1,
        spans: spans_of(&r.payload),
        enqueued_ms: r.unix_ms,
        body,
    }
}

/// The span count from a disk record's header.
fn spans_of(payload: &[u8]) -> u32 {
    match payload {
        [a, b, c, d, ..] => u32::from_le_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
