//! The disk queue: the write-ahead log of `wal.rs`, plus what production
//! needs around it.
//!
//! * **Group commit** (`fsync = "always"`): `push` appends under the WAL lock,
//!   then takes the sync gate; unless another exporter's `fdatasync` already
//!   covered its record (`synced_below`), it takes a handle of the active
//!   segment ([`Wal::sync_handle`]) and syncs it *outside* the WAL lock, so
//!   appends and the sender's reads go on meanwhile, and one sync covers
//!   every record appended before it began. `fsync = "interval"` leaves it
//!   to a timer (`Queue::sync`), `"never"` to the kernel.
//! * **Acks**: every delivered batch's position goes to the `ack` file at
//!   once, with one positioned write and no fsync (see `Wal::persist_ack`):
//!   that survives SIGKILL, so a crashed process redelivers only the batches
//!   in flight, not a second's worth. It is fsynced on every `sync` (the
//!   `interval` timer, shutdown) and before a segment is deleted; a power
//!   loss may fall back to an older position — duplicates, never a loss.
//! * **The newest records stay in memory too** (up to [`RECENT_MAX_BYTES`]):
//!   the sender usually wants what was just appended, and serving it from
//!   memory spares reading it back and checking its CRC again.
//! * **The record payload** is the span count (u32 LE) then the request's
//!   bytes; the record's time is the WAL's own timestamp.

use super::wal::{FsyncPolicy, Record, RecordId, Recovery, Wal, WalConfig, WalError};
use super::{take_after, Depth, Entry, PushError};
use crate::forward::config::{FsyncMode, QueueConfig};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The queue's header inside a WAL record's payload: the span count (u32
/// LE). The record's time is the WAL's own timestamp, not repeated here.
const HEADER: usize = 4;

/// Bound of a disk queue's in-memory copy of its newest records.
const RECENT_MAX_BYTES: u64 = 16 << 20;

pub(super) struct Disk {
    wal: Mutex<Wal>,
    /// Serializes fsyncs; appenders wait here, and whoever gets it syncs for
    /// everyone who appended before.
    sync_gate: Mutex<()>,
    /// Every id below this is on stable storage.
    synced_below: AtomicU64,
    fsync: FsyncMode,
    recent: Mutex<Recent>,
}

#[derive(Default)]
struct Recent {
    entries: VecDeque<Entry>,
    bytes: u64,
}

pub(super) fn wal_err(e: WalError) -> PushError {
    match e {
        WalError::Full { used, max } => PushError::Full { used, max },
        WalError::RecordTooLarge { len, max } => PushError::TooLarge { len, max },
        other => PushError::Io(other),
    }
}

impl Disk {
    /// Opens (or creates) the log; returns what recovery found and the
    /// spans the queue still holds.
    pub(super) fn open(dir: &Path, cfg: &QueueConfig) -> Result<(Disk, Recovery, u64), WalError> {
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
        let disk = Disk {
            wal: Mutex::new(wal),
            sync_gate: Mutex::new(()),
            synced_below: AtomicU64::new(next),
            fsync: cfg.fsync,
            recent: Mutex::new(Recent::default()),
        };
        Ok((disk, recovery, spans))
    }

    pub(super) fn has_room(&self, len: u64) -> bool {
        self.wal.lock().would_fit(len + HEADER as u64)
    }

    /// Queues one request: returns once it is in the log, and with
    /// `fsync = "always"` on stable storage (group commit). Blocks on file
    /// I/O. `spans_total` is raised before the append makes the record
    /// visible to the sender, and taken back if the append fails.
    pub(super) fn push(
        &self,
        spans: u32,
        body: &Bytes,
        enqueued_ms: u64,
        spans_total: &AtomicU64,
    ) -> Result<(), PushError> {
        let header: [u8; HEADER] = spans.to_le_bytes();
        spans_total.fetch_add(u64::from(spans), Ordering::Relaxed);
        let id = {
            let mut wal = self.wal.lock();
            let id = match wal.append_parts_at(enqueued_ms, &[&header, body]) {
                Ok(id) => id,
                Err(e) => {
                    spans_total.fetch_sub(u64::from(spans), Ordering::Relaxed);
                    return Err(wal_err(e));
                }
            };
            // Still under the WAL lock: the copy keeps WAL order.
            let mut recent = self.recent.lock();
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
        if self.fsync == FsyncMode::Always {
            // Group commit: one fsync covers every append made before it
            // started, and runs without the WAL lock so appends and the
            // sender's reads go on meanwhile.
            let _gate = self.sync_gate.lock();
            if self.synced_below.load(Ordering::Acquire) <= id.0 {
                let (file, below) = self.wal.lock().sync_handle().map_err(wal_err)?;
                if file.sync_data().is_err() {
                    // Let the WAL see the failure itself (it poisons
                    // itself: the kernel may have dropped the pages).
                    self.wal.lock().sync().map_err(wal_err)?;
                }
                self.synced_below.store(below.0, Ordering::Release);
            }
        }
        Ok(())
    }

    /// fsync what was appended, and make the delivery position durable.
    pub(super) fn sync(&self) -> Result<(), WalError> {
        let (file, below) = self.wal.lock().sync_handle()?;
        if file.sync_data().is_err() {
            self.wal.lock().sync()?;
        }
        self.synced_below.store(below.0, Ordering::Release);
        self.wal.lock().sync_ack()
    }

    pub(super) fn peek_after(
        &self,
        after: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, WalError> {
        {
            let recent = self.recent.lock();
            if recent.entries.front().is_some_and(|e| e.id <= after + 1) {
                // Every newer record is in memory too.
                return Ok(take_after(&recent.entries, after, max_records, max_bytes));
            }
        }
        // Entry ids are WAL ids + 1 (0 means "none"): the first WAL id after
        // entry `after` is WAL id `after`.
        let batch = self
            .wal
            .lock()
            .peek_records_from(RecordId(after), max_records, max_bytes)?;
        Ok(batch.into_iter().map(entry).collect())
    }

    /// Records every entry with id `<= upto` delivered.
    pub(super) fn ack(&self, upto: u64) -> Result<(), WalError> {
        let mut wal = self.wal.lock();
        if upto == 0 {
            return Ok(());
        }
        wal.ack_volatile(RecordId(upto - 1))?;
        let mut recent = self.recent.lock();
        while recent.entries.front().is_some_and(|e| e.id <= upto) {
            if let Some(e) = recent.entries.pop_front() {
                recent.bytes -= e.body.len() as u64;
            }
        }
        drop(recent);
        wal.persist_ack()
    }

    pub(super) fn depth(&self, spans: u64) -> Depth {
        let wal = self.wal.lock();
        Depth {
            records: wal.len_records(),
            spans,
            bytes: wal.len_bytes(),
            oldest_age: wal.oldest_unacked_age(),
        }
    }
}

/// A queue entry from a WAL record.
fn entry(r: Record) -> Entry {
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
