//! Durable forwarding queue: a segmented write-ahead log.
//!
//! Received trace payloads are appended here before the receiver acknowledges
//! them to the client; the forwarder reads them back with [`Wal::peek_batch`],
//! sends them upstream and calls [`Wal::ack`]. Space is reclaimed a whole
//! segment at a time once every record in it is acknowledged.
//!
//! # On-disk layout (directory `dir`)
//!
//! * `{first_id:020}.wal` — segment files. The name is the [`RecordId`] of the
//!   segment's first record, so ids never need to be stored per record: each
//!   frame takes the next id (a tombstone frame takes as many as it says).
//!   Zero-padded so that lexical order equals numeric order when a human
//!   lists the directory.
//! * `ack` — the acknowledgement position: two 32-byte slots
//!   (`b"CPWALAK2"`, sequence u64LE, next_unacked u64LE, CRC-32 u32LE, 4 zero
//!   bytes) written in turn in place with one positioned write; the valid
//!   slot with the higher sequence wins, so a torn write falls back to the
//!   previous position. Created on open (write `ack.tmp`, fsync, rename,
//!   fsync the directory; a leftover `ack.tmp` is deleted). The old 20-byte
//!   `CPWALACK` file is read once and replaced.
//!
//! Segment file = 8-byte header `b"CPWALv02"` (magic + format version, so a
//! future format is refused instead of being "repaired") followed by records:
//!
//! ```text
//! +-----------+-----------+---------------+------------------+
//! | len u32LE | crc u32LE | unix_ms u64LE | payload (len B)  |
//! +-----------+-----------+---------------+------------------+
//! ```
//!
//! `crc` is CRC-32 (IEEE, `crc32fast`) over the 8 timestamp bytes followed by
//! the payload. The timestamp is *the* time of the record: when it was
//! queued, returned with it by [`Wal::peek_records_from`] (the queue keeps no
//! second one in its payload — that was format `v01`, which is refused) and
//! used for [`Wal::oldest_unacked_age`]. It is covered by the CRC, so a
//! damaged timestamp is detected like a damaged payload. A zero-filled tail
//! (common after a crash on some filesystems) fails the CRC and is treated
//! as torn. [`Frame`] is the one codec of this layout: appends, the recovery
//! scan and reads all go through it.
//!
//! A **tombstone** is a frame whose time is `u64::MAX`: written by recovery
//! over a damaged region (or after a sealed segment whose successor starts
//! later), its payload's first 8 bytes (u64 LE; 1 if shorter) say how many
//! ids it stands for. It keeps later ids stable and stops the next start
//! from counting the same loss again. Readers skip it.
//!
//! If the `ack` file is unreadable or corrupt it is treated as "nothing
//! acknowledged" (redeliver, never lose).
//!
//! # Guarantees
//!
//! * **Appends**: [`Wal::append_parts_at`] returns only after the record is
//!   written to the file (one positioned write of header+payload), so a
//!   process crash cannot lose it (the data is in the kernel page cache).
//!   Durability against power loss is the caller's: production opens the WAL
//!   with [`FsyncPolicy::Never`] and the disk queue (`queue/disk.rs`) runs a group
//!   commit — after its append, an exporter takes the sync gate and, unless
//!   another exporter's `fdatasync` already covered its record, syncs the
//!   file handle from [`Wal::sync_handle`] *outside* the WAL lock, covering
//!   every record appended before it began; with `fsync = "interval"` a timer
//!   calls [`Wal::sync`] instead. [`FsyncPolicy::Always`] (sync inside every
//!   append) is the simple reference the tests use.
//! * **Segment ordering**: the active segment is fsynced before the next one is
//!   created (whatever the policy), and a new segment is fsynced together with
//!   its directory entry before any record goes into it. So after power loss
//!   only the *newest* segment can have a torn tail; damage found in an older
//!   segment means media corruption and is reported separately.
//! * **Recovery**: [`Wal::open`] scans every record of every segment and
//!   verifies its CRC. At a damaged frame it skips exactly that record if
//!   its length field leads to a valid frame, else resynchronises on the
//!   next frame that is valid, has a plausible time and is followed by a
//!   valid frame or the end ([`resync_at`]); the records after the damage
//!   are kept. The ids a damaged region held are known exactly in a sealed
//!   segment (the next segment's name bounds them); in the newest one an
//!   unknown region gets as many ids as it could hold, so a mistake
//!   redelivers rather than skips. Damage at the end of the newest segment
//!   (a torn append) is truncated; elsewhere it is overwritten by a
//!   tombstone. Ids missing between segments, or between the ack position
//!   and the first segment, are a deleted segment. Every undelivered loss is
//!   returned in [`Recovery::lost`] by reason (the caller counts and logs
//!   it). A segment of a newer format, or segments whose ids overlap, make
//!   `open` fail (the caller disables that destination).
//! * **Failed writes**: if a write fails half-way (e.g. ENOSPC) the segment is
//!   truncated back to the last good record, so garbage never sits between
//!   good records. If that truncation or an fsync fails, the `Wal` is
//!   *poisoned*: appends return [`WalError::Poisoned`] until it is reopened
//!   (after a failed fsync the kernel may have dropped dirty pages, so only a
//!   rescan knows what is on disk). Peek/ack keep working so delivery drains.
//! * **Delivery is at-least-once**: [`Wal::persist_ack`] writes the position
//!   (process-crash safe), [`Wal::sync_ack`] makes it durable; it is durable
//!   before any segment is deleted. After a crash, records
//!   after the last persisted ack are delivered again — including records that
//!   were delivered upstream but whose ack had not been persisted yet, and a
//!   record whose `append` returned an error after the write (fsync failure).
//!   Consumers must tolerate duplicates. Records are never dropped by the
//!   queue except by recovery truncation of damaged data (reported) or an
//!   explicit ack.
//! * **Ids** are strictly increasing, also across restarts and after every
//!   segment has been reclaimed (the ack position bounds the next id from
//!   below). They may have gaps where corrupt data was discarded.
//! * **Space**: `max_bytes` bounds the sum of segment file sizes. Acked records
//!   only free space when their whole segment is deleted; when an append would
//!   exceed the bound and the active segment is fully acked, it is rotated out
//!   and deleted first, so a caught-up queue never reports `Full`.
//!
//! Not provided: inter-process locking (one `Wal` per directory is the
//! caller's job — `File::try_lock` needs Rust 1.89, above the crate MSRV);
//! Unix only (positioned reads/writes via `std::os::unix::fs::FileExt`).

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};

const SEG_MAGIC: [u8; 8] = *b"CPWALv02";
const SEG_MAGIC_FAMILY: &[u8] = b"CPWALv";
const SEG_HEADER_LEN: u64 = 8;
const REC_HEADER_LEN: u64 = 16;
const SEG_SUFFIX: &str = ".wal";
const ACK_FILE: &str = "ack";
const ACK_TMP: &str = "ack.tmp";
const ACK_MAGIC: [u8; 8] = *b"CPWALAK2";
const ACK_SLOT_LEN: usize = 32;
const ACK_FILE_LEN: usize = 2 * ACK_SLOT_LEN;
/// The time field of a tombstone frame: not a record but a note left by
/// recovery that a run of ids (its payload's first 8 bytes, u64 LE; one
/// if shorter) was lost, so ids after it keep their numbers.
const TOMBSTONE_MS: u64 = u64::MAX;

/// Identifier of a record: a per-directory sequence number, strictly increasing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId(pub u64);

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// When appended data is flushed to stable storage by the WAL itself.
///
/// Production uses `Never`: the disk queue (`queue/disk.rs`) drives syncing
/// itself — group commit for `fsync = "always"` (one `fdatasync`, outside
/// the WAL lock, covers every append made before it started), a timer for
/// `fsync = "interval"`. `Always` is the simple reference the tests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `fdatasync` before every `append` returns: acknowledged == durable.
    Always,
    /// Only on [`Wal::sync`] / [`Wal::sync_handle`], segment rotation and drop.
    Never,
}

/// Configuration for [`Wal::open`].
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// Target segment size; a segment is rotated before it would exceed this.
    /// A single larger record gets a segment of its own.
    pub segment_bytes: u64,
    /// Bound on the total size of all segment files.
    pub max_bytes: u64,
    pub fsync: FsyncPolicy,
}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 16 << 20,
            max_bytes: 512 << 20,
            fsync: FsyncPolicy::Always,
        }
    }
}

/// Damaged bytes recovery found in a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptTail {
    pub segment: PathBuf,
    /// Byte offset in the segment file where the damage starts.
    pub offset: u64,
    pub reason: String,
    /// Bytes of the damaged region (cut off when it ends the newest
    /// segment, overwritten by a tombstone elsewhere).
    pub discarded_bytes: u64,
}

/// Why undelivered records were lost (the `reason` label of
/// `chainpulse_forward_queue_lost_records_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// A record (or a run of them) whose bytes fail their CRC.
    DamagedRecord,
    /// The newest segment ends in a partial record: an append cut short by
    /// a crash or power loss (with `fsync = "always"` never acknowledged).
    TornTail,
    /// Ids with no segment: a segment file deleted by someone else.
    MissingSegment,
}

impl LossReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LossReason::DamagedRecord => "damaged_record",
            LossReason::TornTail => "torn_tail",
            LossReason::MissingSegment => "missing_segment",
        }
    }
}

/// Undelivered records recovery found gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    pub reason: LossReason,
    pub segment: PathBuf,
    pub offset: u64,
    /// First and last id of the lost run (as numbered after recovery).
    pub ids: (u64, u64),
    /// How many undelivered records; `None` when it cannot be known (a
    /// torn tail, or damage of unknown extent in the newest segment, which
    /// no later segment bounds).
    pub records: Option<u64>,
    /// Damaged bytes (0 for a missing segment).
    pub bytes: u64,
}

/// What [`Wal::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Intact records found in all segments (acked or not).
    pub records: u64,
    /// Payload bytes of those records.
    pub bytes: u64,
    /// Records still to be delivered after recovery.
    pub unacked_records: u64,
    /// Torn/corrupt tail of the newest segment, cut off (expected after a
    /// crash).
    pub corrupt_tail: Option<CorruptTail>,
    /// Every other damaged region (not expected from a crash: media
    /// corruption or tampering); skipped, the records after it kept.
    pub damaged: Vec<CorruptTail>,
    /// Undelivered records lost, by reason (already-acknowledged ids that
    /// were damaged or missing are not counted).
    pub lost: Vec<Loss>,
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// Appending would exceed `max_bytes`; map to back-pressure (HTTP 503 /
    /// gRPC RESOURCE_EXHAUSTED) and retry after deliveries are acked.
    #[error("write-ahead log full: {used} bytes used, limit {max}")]
    Full { used: u64, max: u64 },
    /// The record can never fit (larger than `max_bytes` or 4 GiB); retrying
    /// will not help.
    #[error("record of {len} bytes can never fit in the write-ahead log (max_bytes {max})")]
    RecordTooLarge { len: u64, max: u64 },
    #[error("write-ahead log I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A record failed verification when read back for delivery. `ack(id)`
    /// skips it (losing it) if the operator decides to.
    #[error("corrupt record {id} in {} at offset {offset}: {reason}", path.display())]
    CorruptRecord {
        id: RecordId,
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("unsupported write-ahead log format in {}: {detail}", path.display())]
    Unsupported { path: PathBuf, detail: String },
    #[error("inconsistent write-ahead log directory: {0}")]
    Inconsistent(String),
    #[error("ack of record {upto} but the last appended id is below {next}")]
    AckOutOfRange { upto: RecordId, next: RecordId },
    #[error("write-ahead log poisoned by an earlier I/O failure; reopen it to recover")]
    Poisoned,
    #[error("invalid write-ahead log config: {0}")]
    InvalidConfig(String),
}

fn io_err(path: &Path, source: io::Error) -> WalError {
    WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Wall-clock unix milliseconds (0 if the clock is before 1970): record
/// timestamps here, and queue ages in `queue` and `destination`.
pub(crate) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A record's frame header, `len u32LE | crc u32LE | unix_ms u64LE`: the one
/// codec of the record layout (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frame {
    len: u64,
    crc: u32,
    unix_ms: u64,
}

impl Frame {
    /// The frame of a payload made of `parts`, appended to `buf` (header,
    /// then the parts).
    fn encode(buf: &mut Vec<u8>, unix_ms: u64, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&unix_ms.to_le_bytes());
        for p in parts {
            crc.update(p);
        }
        buf.extend_from_slice(&(len as u32).to_le_bytes());
        buf.extend_from_slice(&crc.finalize().to_le_bytes());
        buf.extend_from_slice(&unix_ms.to_le_bytes());
        for p in parts {
            buf.extend_from_slice(p);
        }
    }

    fn decode(h: &[u8; REC_HEADER_LEN as usize]) -> Frame {
        let [l0, l1, l2, l3, c0, c1, c2, c3, t0, t1, t2, t3, t4, t5, t6, t7] = *h;
        Frame {
            len: u64::from(u32::from_le_bytes([l0, l1, l2, l3])),
            crc: u32::from_le_bytes([c0, c1, c2, c3]),
            unix_ms: u64::from_le_bytes([t0, t1, t2, t3, t4, t5, t6, t7]),
        }
    }

    /// `None` when the payload matches the CRC, else the computed CRC.
    fn mismatch(&self, payload: &[u8]) -> Option<u32> {
        let mut h = crc32fast::Hasher::new();
        h.update(&self.unix_ms.to_le_bytes());
        h.update(payload);
        let actual = h.finalize();
        (actual != self.crc).then_some(actual)
    }
}

/// One record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub id: RecordId,
    /// When it was appended (unix milliseconds).
    pub unix_ms: u64,
    pub payload: Bytes,
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

fn segment_name(first_id: u64) -> String {
    format!("{first_id:020}{SEG_SUFFIX}")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SEG_SUFFIX)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// One record's place in its segment file.
#[derive(Debug, Clone, Copy)]
struct Rec {
    id: u64,
    /// File offset of its frame header.
    off: u64,
    /// Payload length.
    len: u64,
}

impl Rec {
    fn end(&self) -> u64 {
        self.off + REC_HEADER_LEN + self.len
    }
}

struct Segment {
    first_id: u64,
    path: PathBuf,
    file: File,
    /// Every intact record, in file (and id) order. Ids are explicit because
    /// a skipped damaged region or a tombstone leaves a gap.
    recs: Vec<Rec>,
    /// Length of the valid prefix of the file (== file length).
    len: u64,
    /// The id after the last record or tombstone: the next segment's first
    /// id when sealed, the next append's id when active.
    end: u64,
}

/// What one segment's scan found, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Rec {
        off: u64,
        len: u64,
    },
    /// A tombstone left by an earlier recovery: `count` ids skipped.
    /// `damaged`: its own bytes fail the CRC (header intact): the ids it
    /// stood for were counted when it was written, so not again; it is
    /// rewritten.
    Tomb {
        count: u64,
        damaged: Option<(u64, u64, String)>,
    },
    /// Damaged bytes `[off, off + bytes)`; `exact`: exactly one record
    /// (its length field was intact and led to a valid frame or the end).
    Hole {
        off: u64,
        bytes: u64,
        exact: bool,
        reason: String,
    },
}

/// The frame at `pos` of a segment image, if its header fits, its length
/// fits and its CRC holds.
fn frame_at(data: &[u8], pos: usize) -> Result<Frame, String> {
    let remaining = data.len().saturating_sub(pos);
    let Some(h) = data
        .get(pos..pos + REC_HEADER_LEN as usize)
        .and_then(|h| <&[u8; REC_HEADER_LEN as usize]>::try_from(h).ok())
    else {
        return Err(format!("torn record header ({remaining} bytes)"));
    };
    let frame = Frame::decode(h);
    let body = remaining as u64 - REC_HEADER_LEN;
    if frame.len > body {
        return Err(format!(
            "torn record: length {} but only {body} bytes follow",
            frame.len
        ));
    }
    let start = pos + REC_HEADER_LEN as usize;
    if let Some(actual) = frame.mismatch(&data[start..start + frame.len as usize]) {
        return Err(format!(
            "crc mismatch: stored {:#010x}, computed {actual:#010x}",
            frame.crc
        ));
    }
    Ok(frame)
}

/// Earliest record time a resynchronisation accepts (2017-07-14): frames
/// found by scanning must carry a plausible time, not just a valid CRC.
const MIN_PLAUSIBLE_MS: u64 = 1_500_000_000_000;
/// How far in the future a resynchronised frame's time may be.
const MAX_CLOCK_AHEAD_MS: u64 = 24 * 3600 * 1000;

/// A frame found by resynchronisation: valid, with a plausible time, and
/// followed by another valid frame or by the end of the file. Random bytes
/// pass with probability about 2^-32 × 2^-26 × 2^-32 per position (CRC-32,
/// timestamp window, then a second CRC-32 unless it ends the file). A
/// frame embedded in a record's payload passes too: see the README.
fn resync_at(data: &[u8], pos: usize, now: u64) -> bool {
    let Some(h) = data
        .get(pos..pos + REC_HEADER_LEN as usize)
        .and_then(|h| <&[u8; REC_HEADER_LEN as usize]>::try_from(h).ok())
    else {
        return false;
    };
    let f = Frame::decode(h);
    let plausible = f.unix_ms == TOMBSTONE_MS
        || (MIN_PLAUSIBLE_MS..=now.saturating_add(MAX_CLOCK_AHEAD_MS)).contains(&f.unix_ms);
    if !plausible || f.len > (data.len() - pos) as u64 - REC_HEADER_LEN {
        return false;
    }
    let Ok(f) = frame_at(data, pos) else {
        return false;
    };
    let next = pos + (REC_HEADER_LEN + f.len) as usize;
    next == data.len() || frame_at(data, next).is_ok()
}

/// Scans a segment image (header included) record by record. At a damaged
/// frame: if its length field leads to a valid frame (or exactly to the
/// end), one record is skipped; otherwise the scan looks byte by byte for
/// the next frame [`resync_at`] accepts, and what lies between is a hole of
/// unknown record count.
fn scan_image(data: &[u8], now: u64) -> Vec<Item> {
    let n = data.len();
    let mut items = Vec::new();
    let mut pos = SEG_HEADER_LEN as usize;
    while pos < n {
        match frame_at(data, pos) {
            Ok(f) => {
                if f.unix_ms == TOMBSTONE_MS {
                    items.push(Item::Tomb {
                        count: tombstone_count(data, pos, f.len),
                        damaged: None,
                    });
                } else {
                    items.push(Item::Rec {
                        off: pos as u64,
                        len: f.len,
                    });
                }
                pos += (REC_HEADER_LEN + f.len) as usize;
            }
            Err(reason) => {
                if let Some(h) = data.get(pos..pos + 4) {
                    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
                    let next = pos + REC_HEADER_LEN as usize + len;
                    let tomb = data
                        .get(pos + 8..pos + 16)
                        .is_some_and(|t| t == TOMBSTONE_MS.to_le_bytes());
                    if next <= n && (next == n || frame_at(data, next).is_ok()) && tomb {
                        items.push(Item::Tomb {
                            count: tombstone_count(data, pos, len as u64),
                            damaged: Some((pos as u64, (next - pos) as u64, reason)),
                        });
                        pos = next;
                        continue;
                    }
                    if next <= n && (next == n || frame_at(data, next).is_ok()) {
                        items.push(Item::Hole {
                            off: pos as u64,
                            bytes: (next - pos) as u64,
                            exact: true,
                            reason,
                        });
                        pos = next;
                        continue;
                    }
                }
                let found = (pos + 1..n).find(|&q| resync_at(data, q, now));
                let to = found.unwrap_or(n);
                items.push(Item::Hole {
                    off: pos as u64,
                    bytes: (to - pos) as u64,
                    exact: false,
                    reason,
                });
                pos = to;
            }
        }
    }
    items
}

/// The id count a tombstone at `pos` with a payload of `len` bytes holds.
fn tombstone_count(data: &[u8], pos: usize, len: u64) -> u64 {
    let at = pos + REC_HEADER_LEN as usize;
    match data.get(at..at + 8) {
        Some(c) if len >= 8 => {
            u64::from_le_bytes(c.try_into().unwrap_or([1, 0, 0, 0, 0, 0, 0, 0])).max(1)
        }
        _ => 1,
    }
}

/// A tombstone frame of exactly `bytes` bytes (>= 16) saying `count` ids
/// are skipped; `None` if the count cannot be written in that space.
fn tombstone(bytes: u64, count: u64) -> Option<Vec<u8>> {
    let len = bytes.checked_sub(REC_HEADER_LEN)?;
    let mut payload = vec![0u8; len as usize];
    if len >= 8 {
        payload[..8].copy_from_slice(&count.to_le_bytes());
    } else if count != 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes as usize);
    Frame::encode(&mut out, TOMBSTONE_MS, &[&payload]);
    Some(out)
}

/// What recovering one segment found (see [`Recovery`]).
#[derive(Default)]
struct SegmentReport {
    tail: Option<CorruptTail>,
    damaged: Vec<CorruptTail>,
    lost: Vec<Loss>,
}

impl Segment {
    fn end_id(&self) -> u64 {
        self.end
    }

    /// Index of the first record with id `>= id`.
    fn index_from(&self, id: u64) -> usize {
        self.recs.partition_point(|r| r.id < id)
    }

    fn create(dir: &Path, first_id: u64) -> Result<Segment, WalError> {
        let path = dir.join(segment_name(first_id));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        let res = file
            .write_all_at(&SEG_MAGIC, 0)
            .and_then(|()| file.sync_all());
        if let Err(e) = res {
            let _ = fs::remove_file(&path);
            return Err(io_err(&path, e));
        }
        sync_dir(dir)?;
        Ok(Segment {
            first_id,
            path,
            file,
            recs: Vec::new(),
            len: SEG_HEADER_LEN,
            end: first_id,
        })
    }

    /// Opens and scans an existing segment and repairs what it finds.
    /// `next_first` is the next segment's first id (`None` for the newest,
    /// active segment). Damage in the middle is skipped (records after it
    /// are kept where their own CRC holds) and overwritten by a tombstone
    /// saying how many ids it held, so the next start neither counts it
    /// again nor renumbers what follows; damage at the end of the newest
    /// segment (a torn append) is truncated. Ids missing between this
    /// segment and the next (a deleted segment) get a tombstone too.
    fn recover(
        path: PathBuf,
        first_id: u64,
        next_first: Option<u64>,
    ) -> Result<(Segment, SegmentReport), WalError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        let mut data = Vec::new();
        (&file)
            .read_to_end(&mut data)
            .map_err(|e| io_err(&path, e))?;
        let file_len = data.len() as u64;
        let mut report = SegmentReport::default();
        let mut seg = Segment {
            first_id,
            path,
            file,
            recs: Vec::new(),
            len: file_len,
            end: first_id,
        };
        let sealed = next_first.is_some();
        let mut header_damaged = false;
        if file_len < SEG_HEADER_LEN {
            header_damaged = true;
            data = SEG_MAGIC.to_vec();
            seg.file
                .set_len(0)
                .and_then(|()| seg.file.write_all_at(&SEG_MAGIC, 0))
                .map_err(|e| io_err(&seg.path, e))?;
            seg.len = SEG_HEADER_LEN;
            let t = CorruptTail {
                segment: seg.path.clone(),
                offset: 0,
                reason: format!("torn segment header ({file_len} bytes)"),
                discarded_bytes: file_len,
            };
            if sealed {
                report.damaged.push(t);
            } else {
                report.tail = Some(t);
            }
        } else if data[..8] != SEG_MAGIC {
            if data[..6] == *SEG_MAGIC_FAMILY && data[6..8].iter().all(u8::is_ascii_digit) {
                return Err(WalError::Unsupported {
                    detail: format!(
                        "segment version {:?} (this build reads {:?})",
                        String::from_utf8_lossy(&data[6..8]),
                        String::from_utf8_lossy(&SEG_MAGIC[6..8]),
                    ),
                    path: seg.path,
                });
            }
            // Only the header is damaged: rewrite it, keep every record
            // whose own CRC holds.
            header_damaged = true;
            seg.file
                .write_all_at(&SEG_MAGIC, 0)
                .map_err(|e| io_err(&seg.path, e))?;
            report.damaged.push(CorruptTail {
                segment: seg.path.clone(),
                offset: 0,
                reason: "bad segment header magic (rewritten)".into(),
                discarded_bytes: 0,
            });
        }

        let items = scan_image(&data, now_millis());
        // Ids: one per record, `count` per tombstone, one per exact hole and
        // at least one per hole of unknown size. A sealed segment ends where
        // the next begins, which fixes the total: the slack goes to its
        // first unknown hole (so every record gets the highest id it can
        // have — a mistake redelivers rather than loses), or, with none, is
        // a run of missing ids after this segment. The newest segment has
        // no such bound: an unknown hole in its middle gets as many ids as
        // it could hold (16 bytes a record).
        let trailing_hole = !sealed && matches!(items.last(), Some(Item::Hole { .. }));
        let body_items = if trailing_hole {
            &items[..items.len() - 1]
        } else {
            &items[..]
        };
        let mut counts: Vec<u64> = body_items
            .iter()
            .map(|it| match it {
                Item::Rec { .. } => 1,
                // Its stored count may be the damaged part: bounded by
                // the next segment like an unknown hole.
                Item::Tomb {
                    damaged: Some(_), ..
                } if sealed => 1,
                Item::Tomb { count, .. } => *count,
                Item::Hole { exact: true, .. } => 1,
                Item::Hole { bytes, .. } if !sealed => (bytes / REC_HEADER_LEN).max(1),
                Item::Hole { .. } => 1,
            })
            .collect();
        let min_end = first_id.saturating_add(counts.iter().sum::<u64>());
        let mut missing_after = 0;
        if let Some(next) = next_first {
            if min_end > next {
                return Err(WalError::Inconsistent(format!(
                    "{} holds ids up to at least {} but the next segment starts at {next}",
                    seg.path.display(),
                    min_end - 1
                )));
            }
            let slack = next - min_end;
            let first_unknown = body_items.iter().position(|it| {
                matches!(
                    it,
                    Item::Hole { exact: false, .. }
                        | Item::Tomb {
                            damaged: Some(_),
                            ..
                        }
                )
            });
            match first_unknown {
                Some(i) => counts[i] += slack,
                None => missing_after = slack,
            }
        }

        let mut id = first_id;
        let mut repairs: Vec<(u64, Vec<u8>)> = Vec::new();
        for (it, count) in body_items.iter().zip(&counts) {
            match it {
                Item::Rec { off, len } => seg.recs.push(Rec {
                    id,
                    off: *off,
                    len: *len,
                }),
                Item::Tomb {
                    damaged: Some((off, bytes, reason)),
                    ..
                } => {
                    let count = *count;
                    report.damaged.push(CorruptTail {
                        segment: seg.path.clone(),
                        offset: *off,
                        reason: format!("damaged tombstone (its ids were counted when it was written): {reason}"),
                        discarded_bytes: *bytes,
                    });
                    if let Some(t) = tombstone(*bytes, count) {
                        repairs.push((*off, t));
                    }
                }
                Item::Tomb { .. } => {}
                Item::Hole {
                    off,
                    bytes,
                    exact,
                    reason,
                } => {
                    report.damaged.push(CorruptTail {
                        segment: seg.path.clone(),
                        offset: *off,
                        reason: reason.clone(),
                        discarded_bytes: *bytes,
                    });
                    report.lost.push(Loss {
                        reason: LossReason::DamagedRecord,
                        segment: seg.path.clone(),
                        offset: *off,
                        ids: (id, id + count - 1),
                        records: (*exact || sealed).then_some(*count),
                        bytes: *bytes,
                    });
                    let last = std::ptr::eq(it, &body_items[body_items.len() - 1]);
                    match tombstone(*bytes, *count) {
                        Some(t) => repairs.push((*off, t)),
                        // A short damaged end of a sealed segment: cut it
                        // and put the tombstone there instead.
                        None if last => {
                            seg.file.set_len(*off).map_err(|e| io_err(&seg.path, e))?;
                            seg.len = *off;
                            if let Some(t) = tombstone(REC_HEADER_LEN + 8, *count) {
                                repairs.push((*off, t));
                            }
                        }
                        None => tracing::warn!(segment = %seg.path.display(), offset = off,
                            "write-ahead log: damaged region too small for a tombstone; it will be reported again on the next start"),
                    }
                }
            }
            id += count;
        }
        if missing_after > 0 {
            report.lost.push(Loss {
                reason: if header_damaged && seg.recs.is_empty() {
                    LossReason::DamagedRecord
                } else {
                    LossReason::MissingSegment
                },
                segment: seg.path.clone(),
                offset: seg.len,
                ids: (id, id + missing_after - 1),
                records: Some(missing_after),
                bytes: 0,
            });
            let mut t = Vec::new();
            Frame::encode(&mut t, TOMBSTONE_MS, &[&missing_after.to_le_bytes()]);
            repairs.push((seg.len, t));
            id += missing_after;
        }
        if trailing_hole {
            if let Some(Item::Hole {
                off,
                bytes,
                exact,
                reason,
            }) = items.last()
            {
                seg.file.set_len(*off).map_err(|e| io_err(&seg.path, e))?;
                seg.len = *off;
                report.lost.push(Loss {
                    reason: if *exact {
                        LossReason::DamagedRecord
                    } else {
                        LossReason::TornTail
                    },
                    segment: seg.path.clone(),
                    offset: *off,
                    ids: (id, id),
                    records: exact.then_some(1),
                    bytes: *bytes,
                });
                report.tail = Some(CorruptTail {
                    segment: seg.path.clone(),
                    offset: *off,
                    reason: reason.clone(),
                    discarded_bytes: *bytes,
                });
            }
        }
        for (off, bytes) in &repairs {
            seg.file
                .write_all_at(bytes, *off)
                .map_err(|e| io_err(&seg.path, e))?;
            seg.len = seg.len.max(off + bytes.len() as u64);
        }
        if header_damaged || trailing_hole || !repairs.is_empty() {
            seg.file.sync_all().map_err(|e| io_err(&seg.path, e))?;
        }
        seg.end = id;
        Ok((seg, report))
    }
}

/// The write-ahead log. Not thread-safe by itself; wrap it in a mutex.
pub struct Wal {
    dir: PathBuf,
    cfg: WalConfig,
    /// Never empty; the back is the active (appended-to) segment.
    segments: VecDeque<Segment>,
    next_id: u64,
    /// First id not acknowledged.
    ack_next: u64,
    /// What the `ack` file says (`<= ack_next`; see [`Wal::ack_volatile`]).
    ack_persisted: u64,
    /// What the `ack` file says *on stable storage*.
    ack_durable: u64,
    ack: AckFile,
    used_bytes: u64,
    unsynced: u64,
    oldest_ts: Option<u64>,
    buf: Vec<u8>,
    poisoned: bool,
}

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("next_id", &self.next_id)
            .field("ack_next", &self.ack_next)
            .field("used_bytes", &self.used_bytes)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl Wal {
    /// Opens (creating if needed) the log in `dir` and recovers its contents.
    pub fn open(dir: impl AsRef<Path>, cfg: WalConfig) -> Result<(Wal, Recovery), WalError> {
        let dir = dir.as_ref().to_path_buf();
        if cfg.segment_bytes < SEG_HEADER_LEN + REC_HEADER_LEN {
            return Err(WalError::InvalidConfig(format!(
                "segment_bytes {} is below the minimum {}",
                cfg.segment_bytes,
                SEG_HEADER_LEN + REC_HEADER_LEN
            )));
        }
        if cfg.max_bytes < cfg.segment_bytes.max(2 * SEG_HEADER_LEN + REC_HEADER_LEN) {
            return Err(WalError::InvalidConfig(format!(
                "max_bytes {} is below segment_bytes {}",
                cfg.max_bytes, cfg.segment_bytes
            )));
        }
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        match fs::remove_file(dir.join(ACK_TMP)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_err(&dir.join(ACK_TMP), e))
            }
            _ => {}
        }
        let acked = read_ack(&dir)?;
        let mut ack_next = acked.next;

        let mut found = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| io_err(&dir, e))? {
            let entry = entry.map_err(|e| io_err(&dir, e))?;
            if let Some(id) = entry.file_name().to_str().and_then(parse_segment_name) {
                found.push((id, entry.path()));
            }
        }
        found.sort();

        let mut recovery = Recovery::default();
        let mut segments: VecDeque<Segment> = VecDeque::new();
        let firsts: Vec<u64> = found.iter().map(|(id, _)| *id).collect();
        for (i, (first_id, path)) in found.into_iter().enumerate() {
            let (seg, report) = Segment::recover(path, first_id, firsts.get(i + 1).copied())?;
            recovery.records += seg.recs.len() as u64;
            recovery.bytes += seg.recs.iter().map(|r| r.len).sum::<u64>();
            if let Some(t) = report.tail {
                recovery.corrupt_tail = Some(t);
            }
            recovery.damaged.extend(report.damaged);
            recovery.lost.extend(report.lost);
            segments.push_back(seg);
        }

        // Ids below the first segment and at or above the ack position were
        // never delivered: the ack position is made durable before any
        // segment is deleted, so a gap there is a segment deleted by
        // someone else. (An ack file of the old format, or none at all,
        // cannot tell: its writer deleted segments first.)
        if let Some(first) = segments.front() {
            if first.first_id > ack_next {
                if acked.trusted {
                    recovery.lost.push(Loss {
                        reason: LossReason::MissingSegment,
                        segment: first.path.clone(),
                        offset: 0,
                        ids: (ack_next, first.first_id - 1),
                        records: Some(first.first_id - ack_next),
                        bytes: 0,
                    });
                } else if ack_next > 0 || first.first_id > 0 {
                    tracing::warn!(dir = %dir.display(), ack = ack_next, first_segment = first.first_id,
                        "write-ahead log: no ack file of this format; ids below the first segment are taken as delivered");
                }
                ack_next = first.first_id;
            }
        }
        // What was already delivered is no loss.
        for l in &mut recovery.lost {
            if l.ids.1 < ack_next && l.ids.0 <= l.ids.1 {
                l.records = Some(0);
            } else if l.ids.0 < ack_next {
                l.records = l.records.map(|r| r.saturating_sub(ack_next - l.ids.0));
            }
        }
        recovery.lost.retain(|l| l.records != Some(0));
        let next_id = segments
            .back()
            .map_or(ack_next, |s| s.end_id().max(ack_next));
        let ack = AckFile::create(&dir, ack_next)?;
        let mut wal = Wal {
            dir,
            cfg,
            segments,
            next_id,
            ack_next,
            ack_persisted: ack_next,
            ack_durable: ack_next,
            ack,
            used_bytes: 0,
            unsynced: 0,
            oldest_ts: None,
            buf: Vec::new(),
            poisoned: false,
        };
        // Drop fully acknowledged segments (a crash may have interrupted
        // reclamation). If the ack position is past everything on disk, all of
        // it goes and a fresh segment starts at the ack position, so ids keep
        // increasing.
        wal.used_bytes = wal.segments.iter().map(|s| s.len).sum();
        if wal.segments.back().is_none_or(|s| s.end_id() < next_id) {
            let seg = Segment::create(&wal.dir, next_id)?;
            wal.used_bytes += seg.len;
            wal.segments.push_back(seg);
        }
        wal.reclaim();
        wal.refresh_oldest_ts();
        recovery.unacked_records = wal.len_records();
        tracing::info!(
            dir = %wal.dir.display(),
            records = recovery.records,
            unacked = recovery.unacked_records,
            next_id = wal.next_id,
            "write-ahead log opened"
        );
        Ok((wal, recovery))
    }

    #[cfg(test)]
    /// Appends one record; see the module docs for what "returned" guarantees
    /// under each [`FsyncPolicy`].
    pub fn append(&mut self, payload: &[u8]) -> Result<RecordId, WalError> {
        self.append_parts(&[payload])
    }

    /// [`Wal::append`] of the concatenation of `parts`, without the caller
    /// having to concatenate them first.
    #[cfg(test)]
    pub fn append_parts(&mut self, parts: &[&[u8]]) -> Result<RecordId, WalError> {
        self.append_parts_at(now_millis(), parts)
    }

    /// [`Wal::append_parts`] with the record's time given (`unix_ms`, the
    /// one timestamp the record carries).
    pub fn append_parts_at(&mut self, unix_ms: u64, parts: &[&[u8]]) -> Result<RecordId, WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        let payload_len: usize = parts.iter().map(|p| p.len()).sum();
        let rec_len = REC_HEADER_LEN + payload_len as u64;
        if payload_len > u32::MAX as usize || rec_len + SEG_HEADER_LEN > self.cfg.max_bytes {
            return Err(WalError::RecordTooLarge {
                len: payload_len as u64,
                max: self.cfg.max_bytes,
            });
        }
        let mut rotate = self.needs_rotation(rec_len);
        let needed = |w: &Wal, rotate: bool| {
            w.used_bytes + rec_len + if rotate { SEG_HEADER_LEN } else { 0 }
        };
        if needed(self, rotate) > self.cfg.max_bytes {
            let active = self.active();
            if !active.recs.is_empty() && active.end_id() <= self.ack_next {
                // Everything is delivered; rotating frees the active segment.
                self.rotate()?;
                rotate = false;
            }
            if needed(self, rotate) > self.cfg.max_bytes {
                return Err(WalError::Full {
                    used: self.used_bytes,
                    max: self.cfg.max_bytes,
                });
            }
        }
        if rotate {
            self.rotate()?;
        }

        let ts = unix_ms;
        self.buf.clear();
        Frame::encode(&mut self.buf, ts, parts);

        let seg = self.segments.back_mut().expect("active segment");
        let start = seg.len;
        if let Err(e) = seg.file.write_all_at(&self.buf, start) {
            // Never leave a partial record in front of later ones.
            if let Err(e2) = seg.file.set_len(start) {
                tracing::error!(segment = %seg.path.display(), error = %e2, "write-ahead log: cannot roll back a failed write; poisoned");
                self.poisoned = true;
            }
            return Err(io_err(&seg.path, e));
        }
        seg.recs.push(Rec {
            id: self.next_id,
            off: start,
            len: payload_len as u64,
        });
        seg.len += rec_len;
        seg.end = self.next_id + 1;
        self.used_bytes += rec_len;
        let id = self.next_id;
        self.next_id += 1;
        if self.oldest_ts.is_none() {
            self.oldest_ts = Some(ts);
        }
        self.unsynced += 1;
        if self.cfg.fsync == FsyncPolicy::Always {
            self.sync_active()?;
        }
        Ok(RecordId(id))
    }

    /// Would [`Wal::append`] of a payload of `len` bytes succeed now (as far
    /// as space goes)? Mirrors its accounting, including the rotation that
    /// frees a fully acknowledged active segment.
    pub fn would_fit(&self, len: u64) -> bool {
        let rec_len = REC_HEADER_LEN + len;
        if len > u64::from(u32::MAX) || rec_len + SEG_HEADER_LEN > self.cfg.max_bytes {
            return false;
        }
        let rotate = self.needs_rotation(rec_len);
        let extra = if rotate { SEG_HEADER_LEN } else { 0 };
        if self.used_bytes + rec_len + extra <= self.cfg.max_bytes {
            return true;
        }
        let active = self.active();
        if !active.recs.is_empty() && active.end_id() <= self.ack_next {
            let after = self.used_bytes.saturating_sub(active.len) + SEG_HEADER_LEN;
            return after + rec_len <= self.cfg.max_bytes;
        }
        false
    }

    /// Flushes appended records to stable storage (a no-op when nothing is
    /// pending).
    pub fn sync(&mut self) -> Result<(), WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        if self.unsynced == 0 {
            return Ok(());
        }
        self.sync_active()
    }

    #[cfg(test)]
    /// Up to `max_records` records, from the oldest unacknowledged one, whose
    /// payloads total at most `max_bytes` — except that the first record is
    /// always returned even if it alone is larger (so delivery cannot stall).
    /// Does not consume anything: the same records come back until acked.
    pub fn peek_batch(
        &self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(RecordId, Bytes)>, WalError> {
        self.peek_batch_from(RecordId(self.ack_next), max_records, max_bytes)
    }

    /// [`Wal::peek_batch`] starting at `from` (or the oldest unacknowledged
    /// record, whichever is later): reads ahead without acknowledging, e.g.
    /// to scan the whole queue on start-up.
    #[cfg(test)]
    pub fn peek_batch_from(
        &self,
        from: RecordId,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(RecordId, Bytes)>, WalError> {
        Ok(self
            .peek_records_from(from, max_records, max_bytes)?
            .into_iter()
            .map(|r| (r.id, r.payload))
            .collect())
    }

    /// [`Wal::peek_batch_from`] with each record's timestamp.
    pub fn peek_records_from(
        &self,
        from: RecordId,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, WalError> {
        let mut out = Vec::new();
        let Some((mut si, mut ri)) = self.locate(from.0.max(self.ack_next)) else {
            return Ok(out);
        };
        let mut total = 0u64;
        let mut done = false;
        while !done && si < self.segments.len() && out.len() < max_records {
            let seg = &self.segments[si];
            let mut rj = ri;
            while rj < seg.recs.len() && out.len() + (rj - ri) < max_records {
                let plen = seg.recs[rj].len;
                if total + plen > max_bytes as u64 && !(out.is_empty() && rj == ri) {
                    done = true;
                    break;
                }
                total += plen;
                rj += 1;
            }
            if rj > ri {
                let start = seg.recs[ri].off;
                let end = seg.recs[rj - 1].end();
                let mut buf = BytesMut::zeroed((end - start) as usize);
                seg.file
                    .read_exact_at(&mut buf, start)
                    .map_err(|e| io_err(&seg.path, e))?;
                let buf = buf.freeze();
                for r in &seg.recs[ri..rj] {
                    let off = (r.off - start) as usize;
                    let mut hdr = [0u8; REC_HEADER_LEN as usize];
                    hdr.copy_from_slice(&buf[off..off + REC_HEADER_LEN as usize]);
                    let frame = Frame::decode(&hdr);
                    let id = RecordId(r.id);
                    let corrupt = |reason: String| WalError::CorruptRecord {
                        id,
                        path: seg.path.clone(),
                        offset: r.off,
                        reason,
                    };
                    if frame.len != r.len {
                        return Err(corrupt(format!(
                            "length field {} != indexed {}",
                            frame.len, r.len
                        )));
                    }
                    let payload =
                        buf.slice(off + REC_HEADER_LEN as usize..(r.end() - start) as usize);
                    if frame.mismatch(&payload).is_some() {
                        return Err(corrupt("crc mismatch on read".into()));
                    }
                    out.push(Record {
                        id,
                        unix_ms: frame.unix_ms,
                        payload,
                    });
                }
            }
            si += 1;
            ri = 0;
        }
        Ok(out)
    }

    #[cfg(test)]
    /// Marks every record with id `<= upto` delivered. The position is durable
    /// when this returns; segments whose records are all acked are deleted.
    /// Acking an already-acked id is a no-op.
    pub fn ack(&mut self, upto: RecordId) -> Result<(), WalError> {
        // Deleting fully acked segments before the position is durable is
        // safe (see `ack_volatile`); the caller learns of a failed write.
        self.ack_volatile(upto)?;
        self.persist_ack()
    }

    /// Like [`Wal::ack`], without writing the `ack` file (no fsync, no
    /// rename): for a consumer acking every few milliseconds. Segments whose
    /// records are all acked are still deleted — safe, since a crash then
    /// redelivers from the oldest remaining segment (more duplicates, never a
    /// loss). Call [`Wal::persist_ack`] periodically to bound the duplicates.
    pub fn ack_volatile(&mut self, upto: RecordId) -> Result<(), WalError> {
        if upto.0 >= self.next_id {
            return Err(WalError::AckOutOfRange {
                upto,
                next: RecordId(self.next_id),
            });
        }
        let new_next = upto.0 + 1;
        if new_next <= self.ack_next {
            return Ok(());
        }
        self.ack_next = new_next;
        self.reclaim();
        self.refresh_oldest_ts();
        Ok(())
    }

    /// Writes the acknowledgement position if [`Wal::ack_volatile`] moved it.
    /// One positioned write into the `ack` file, no fsync: cheap enough
    /// for every delivered batch, and it survives the process's death (the
    /// page cache does). [`Wal::sync_ack`] makes it durable.
    pub fn persist_ack(&mut self) -> Result<(), WalError> {
        if self.ack_persisted < self.ack_next {
            self.ack.write(self.ack_next)?;
            self.ack_persisted = self.ack_next;
        }
        Ok(())
    }

    /// [`Wal::persist_ack`], then fsync the `ack` file: before a segment is
    /// deleted (so a gap below the first segment always means a loss), on
    /// [`Queue::sync`](super::Queue::sync) and on close.
    pub fn sync_ack(&mut self) -> Result<(), WalError> {
        self.persist_ack()?;
        if self.ack_durable < self.ack_persisted {
            self.ack.sync()?;
            self.ack_durable = self.ack_persisted;
        }
        Ok(())
    }

    /// A handle on the active segment and the id below which its records
    /// were appended: fsyncing the handle makes them durable, and can be
    /// done without holding the `Wal` (so appends and reads go on meanwhile).
    /// Earlier segments were fsynced when they were sealed.
    pub fn sync_handle(&self) -> Result<(File, RecordId), WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        let seg = self.active();
        let f = seg.file.try_clone().map_err(|e| io_err(&seg.path, e))?;
        Ok((f, RecordId(self.next_id)))
    }

    /// Unacknowledged records.
    pub fn len_records(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| (s.recs.len() - s.index_from(self.ack_next)) as u64)
            .sum()
    }

    /// Bytes on disk in segment files — the quantity bounded by `max_bytes`
    /// (includes headers and acked records whose segment is not yet deleted).
    pub fn len_bytes(&self) -> u64 {
        self.used_bytes
    }

    /// Time since the oldest unacknowledged record was appended (wall clock;
    /// saturates at zero if the clock went backwards). `None` when empty.
    pub fn oldest_unacked_age(&self) -> Option<Duration> {
        self.oldest_ts
            .map(|ts| Duration::from_millis(now_millis().saturating_sub(ts)))
    }

    /// Id the next append will get.
    pub fn next_id(&self) -> RecordId {
        RecordId(self.next_id)
    }

    fn active(&self) -> &Segment {
        self.segments.back().expect("active segment")
    }

    fn needs_rotation(&self, rec_len: u64) -> bool {
        let a = self.active();
        !a.recs.is_empty() && a.len + rec_len > self.cfg.segment_bytes
    }

    fn sync_active(&mut self) -> Result<(), WalError> {
        let seg = self.segments.back().expect("active segment");
        if let Err(e) = seg.file.sync_data() {
            tracing::error!(segment = %seg.path.display(), error = %e, "write-ahead log: fsync failed; poisoned");
            self.poisoned = true;
            return Err(io_err(&seg.path, e));
        }
        self.unsynced = 0;
        Ok(())
    }

    /// Seals the active segment (fsync) and starts a new one at `next_id`.
    fn rotate(&mut self) -> Result<(), WalError> {
        self.sync_active()?;
        let seg = Segment::create(&self.dir, self.next_id)?;
        self.used_bytes += seg.len;
        self.segments.push_back(seg);
        self.reclaim();
        Ok(())
    }

    /// Deletes sealed segments whose records are all acknowledged.
    fn reclaim(&mut self) {
        while self.segments.len() > 1 && self.segments[0].end_id() <= self.ack_next {
            if let Err(e) = self.sync_ack() {
                tracing::warn!(error = %e, "write-ahead log: cannot make the ack position durable; acknowledged segments stay until it works");
                return;
            }
            let path = &self.segments[0].path;
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(segment = %path.display(), error = %e, "write-ahead log: cannot delete acknowledged segment; will retry");
                    return;
                }
            }
            let seg = self.segments.pop_front().expect("segment");
            self.used_bytes -= seg.len;
        }
    }

    /// Position of the first record with id `>= id`. A segment holding no
    /// record (header only) holds no position, even when its first id is
    /// above `id` (found by fuzzing: it was indexed at start-up and panicked).
    fn locate(&self, id: u64) -> Option<(usize, usize)> {
        self.segments
            .iter()
            .enumerate()
            .find(|(_, s)| s.recs.last().is_some_and(|r| r.id >= id))
            .map(|(i, s)| (i, s.index_from(id)))
    }

    fn refresh_oldest_ts(&mut self) {
        self.oldest_ts = None;
        let Some((si, ri)) = self.locate(self.ack_next) else {
            return;
        };
        let seg = &self.segments[si];
        let mut ts = [0u8; 8];
        match seg.file.read_exact_at(&mut ts, seg.recs[ri].off + 8) {
            Ok(()) => self.oldest_ts = Some(u64::from_le_bytes(ts)),
            Err(e) => {
                tracing::warn!(segment = %seg.path.display(), error = %e, "write-ahead log: cannot read record timestamp")
            }
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if self.unsynced > 0 && !self.poisoned {
            let _ = self.sync_active();
        }
        let _ = self.sync_ack();
    }
}

/// What the `ack` file says.
struct AckState {
    next: u64,
    /// Written by this format, whose writer makes the position durable
    /// before deleting a segment: ids between it and the first segment
    /// were lost, not delivered.
    trusted: bool,
}

fn read_ack(dir: &Path) -> Result<AckState, WalError> {
    let path = dir.join(ACK_FILE);
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(AckState {
                next: 0,
                trusted: false,
            })
        }
        Err(e) => return Err(io_err(&path, e)),
    };
    let slot = |s: &[u8]| -> Option<(u64, u64)> {
        let body = s.get(..24)?;
        let crc = u32::from_le_bytes(s.get(24..28)?.try_into().ok()?);
        (body[..8] == ACK_MAGIC && crc32fast::hash(body) == crc).then(|| {
            let seq = u64::from_le_bytes(body[8..16].try_into().unwrap_or_default());
            let next = u64::from_le_bytes(body[16..24].try_into().unwrap_or_default());
            (seq, next)
        })
    };
    if data.len() == ACK_FILE_LEN {
        let best = data
            .chunks_exact(ACK_SLOT_LEN)
            .filter_map(slot)
            .max_by_key(|(seq, _)| *seq);
        if let Some((_, next)) = best {
            return Ok(AckState {
                next,
                trusted: true,
            });
        }
    }
    if data.len() == 20 && data[0..8] == *b"CPWALACK" {
        let crc = u32::from_le_bytes(data[16..20].try_into().unwrap_or_default());
        if crc32fast::hash(&data[0..16]) == crc {
            return Ok(AckState {
                next: u64::from_le_bytes(data[8..16].try_into().unwrap_or_default()),
                trusted: false,
            });
        }
    }
    tracing::warn!(path = %path.display(), "write-ahead log: invalid ack file; redelivering everything on disk");
    Ok(AckState {
        next: 0,
        trusted: false,
    })
}

/// The `ack` file, kept open: two 32-byte slots written in turn with a
/// positioned write, the newer (higher sequence) valid one wins. A write
/// that tears (power loss) leaves the other slot: an older position, more
/// duplicates, never a loss.
struct AckFile {
    path: PathBuf,
    file: File,
    seq: u64,
}

impl AckFile {
    fn slot(seq: u64, next: u64) -> [u8; ACK_SLOT_LEN] {
        let mut s = [0u8; ACK_SLOT_LEN];
        s[0..8].copy_from_slice(&ACK_MAGIC);
        s[8..16].copy_from_slice(&seq.to_le_bytes());
        s[16..24].copy_from_slice(&next.to_le_bytes());
        let crc = crc32fast::hash(&s[0..24]);
        s[24..28].copy_from_slice(&crc.to_le_bytes());
        s
    }

    /// Writes a fresh file holding `next` (tmp, fsync, rename, fsync dir).
    fn create(dir: &Path, next: u64) -> Result<AckFile, WalError> {
        let mut data = [0u8; ACK_FILE_LEN];
        data[..ACK_SLOT_LEN].copy_from_slice(&Self::slot(1, next));
        data[ACK_SLOT_LEN..].copy_from_slice(&Self::slot(0, next));
        let tmp = dir.join(ACK_TMP);
        let file = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        file.write_all_at(&data, 0)
            .and_then(|()| file.sync_all())
            .map_err(|e| io_err(&tmp, e))?;
        drop(file);
        let path = dir.join(ACK_FILE);
        fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
        sync_dir(dir)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        Ok(AckFile { path, file, seq: 1 })
    }

    /// One positioned write, no fsync: survives the process's death (the
    /// page cache does), not power loss.
    fn write(&mut self, next: u64) -> Result<(), WalError> {
        let seq = self.seq + 1;
        let off = (seq % 2) * ACK_SLOT_LEN as u64;
        self.file
            .write_all_at(&Self::slot(seq, next), off)
            .map_err(|e| io_err(&self.path, e))?;
        self.seq = seq;
        Ok(())
    }

    fn sync(&self) -> Result<(), WalError> {
        self.file.sync_data().map_err(|e| io_err(&self.path, e))
    }
}

#[cfg(test)]
fn write_ack(dir: &Path, next_unacked: u64) -> Result<(), WalError> {
    AckFile::create(dir, next_unacked).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::{BufRead, Write};
    use std::process::{Command, Stdio};

    /// A volatile ack that never reached the `ack` file (a crash right after)
    /// costs duplicates, never records: segments it already deleted were
    /// fully delivered, and the rest is delivered again.
    #[test]
    fn volatile_acks_lost_in_a_crash_redeliver_without_loss() {
        let dir = tempfile::tempdir().expect("tmp");
        let c = cfg(4096, 1 << 20, FsyncPolicy::Never);
        let (mut wal, _) = Wal::open(dir.path(), c.clone()).expect("open");
        let mut ids = Vec::new();
        for i in 0..40u32 {
            ids.push(wal.append(&[i as u8; 500]).expect("append"));
        }
        wal.ack(ids[5]).expect("durable ack");
        wal.ack_volatile(ids[29]).expect("volatile ack");
        assert_eq!(wal.len_records(), 10);
        wal.sync().expect("sync");
        // A crash: no Drop, so the volatile position is never written.
        std::mem::forget(wal);
        let (wal, rec) = Wal::open(dir.path(), c).expect("reopen");
        let got: Vec<u64> = wal
            .peek_batch(1000, 1 << 20)
            .expect("peek")
            .into_iter()
            .map(|(id, _)| id.0)
            .collect();
        for id in &ids[30..] {
            assert!(got.contains(&id.0), "record {id} lost");
        }
        // Deleting the acknowledged segments made the position durable
        // first, so nothing is redelivered here.
        assert_eq!(got, ids[30..].iter().map(|i| i.0).collect::<Vec<_>>());
        assert_eq!(rec.unacked_records, got.len() as u64);
    }

    fn cfg(segment_bytes: u64, max_bytes: u64, fsync: FsyncPolicy) -> WalConfig {
        WalConfig {
            segment_bytes,
            max_bytes,
            fsync,
        }
    }

    fn small() -> WalConfig {
        cfg(256, 1 << 20, FsyncPolicy::Never)
    }

    fn open(dir: &Path, c: WalConfig) -> (Wal, Recovery) {
        Wal::open(dir, c).expect("open")
    }

    fn all(wal: &Wal) -> Vec<(u64, Vec<u8>)> {
        wal.peek_batch(usize::MAX, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(id, b)| (id.0, b.to_vec()))
            .collect()
    }

    fn payload(i: u64) -> Vec<u8> {
        let mut p = format!("record-{i}-").into_bytes();
        p.resize(p.len() + (i as usize * 7) % 50, b'x');
        p
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wal"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn wal_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Wal>();
        check::<WalError>();
    }

    #[test]
    fn append_peek_ack_reclaim() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, rec) = open(tmp.path(), small());
        assert_eq!(rec, Recovery::default());
        assert_eq!(wal.oldest_unacked_age(), None);
        for i in 0..40 {
            assert_eq!(wal.append(&payload(i)).unwrap(), RecordId(i));
        }
        assert_eq!(wal.len_records(), 40);
        assert!(wal.oldest_unacked_age().is_some());
        let segs_before = segment_files(tmp.path()).len();
        assert!(segs_before > 3, "small segments rotate: {segs_before}");
        let sum: u64 = segment_files(tmp.path())
            .iter()
            .map(|p| fs::metadata(p).unwrap().len())
            .sum();
        assert_eq!(wal.len_bytes(), sum);

        let batch = wal.peek_batch(10, usize::MAX).unwrap();
        assert_eq!(batch.len(), 10);
        for (id, b) in &batch {
            assert_eq!(&b[..], &payload(id.0)[..]);
        }
        // peek does not consume
        assert_eq!(wal.peek_batch(10, usize::MAX).unwrap(), batch);
        wal.ack(batch.last().unwrap().0).unwrap();
        assert_eq!(wal.len_records(), 30);
        assert_eq!(wal.peek_batch(1, usize::MAX).unwrap()[0].0, RecordId(10));
        assert!(
            segment_files(tmp.path()).len() < segs_before,
            "acked segments deleted"
        );
        // re-ack of older id is a no-op; ack past the end is rejected
        wal.ack(RecordId(3)).unwrap();
        assert_eq!(wal.len_records(), 30);
        assert!(matches!(
            wal.ack(RecordId(40)),
            Err(WalError::AckOutOfRange { .. })
        ));

        wal.ack(RecordId(39)).unwrap();
        assert_eq!(wal.len_records(), 0);
        assert!(wal.peek_batch(10, usize::MAX).unwrap().is_empty());
        assert_eq!(wal.oldest_unacked_age(), None);
        assert_eq!(
            segment_files(tmp.path()).len(),
            1,
            "only the active segment remains"
        );
        assert_eq!(wal.append(b"after").unwrap(), RecordId(40));
        assert_eq!(all(&wal), vec![(40, b"after".to_vec())]);
    }

    #[test]
    fn peek_batch_limits() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(tmp.path(), small());
        for n in [10usize, 20, 30, 200] {
            wal.append(&vec![b'a'; n]).unwrap();
        }
        let ids = |v: Vec<(RecordId, Bytes)>| v.into_iter().map(|(i, _)| i.0).collect::<Vec<_>>();
        assert_eq!(ids(wal.peek_batch(10, 30).unwrap()), vec![0, 1]);
        assert_eq!(ids(wal.peek_batch(10, 29).unwrap()), vec![0]);
        assert_eq!(ids(wal.peek_batch(2, 1000).unwrap()), vec![0, 1]);
        assert!(wal.peek_batch(0, 1000).unwrap().is_empty());
        wal.ack(RecordId(2)).unwrap();
        // an oversized first record is still returned alone
        assert_eq!(ids(wal.peek_batch(10, 5).unwrap()), vec![3]);
    }

    #[test]
    fn reopen_keeps_unacked_records_and_ack_position() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = open(tmp.path(), small());
            for i in 0..30 {
                wal.append(&payload(i)).unwrap();
            }
            wal.ack(RecordId(11)).unwrap();
        }
        let (mut wal, rec) = open(tmp.path(), small());
        assert_eq!(rec.corrupt_tail, None);
        assert_eq!(rec.unacked_records, 18);
        assert_eq!(wal.len_records(), 18);
        let got = all(&wal);
        assert_eq!(got.len(), 18);
        for (id, p) in &got {
            assert_eq!(p, &payload(*id));
        }
        assert_eq!(got[0].0, 12);
        // new appends continue the id sequence
        assert_eq!(wal.append(b"x").unwrap(), RecordId(30));
        wal.ack(RecordId(20)).unwrap();
        drop(wal);
        let (wal, _) = open(tmp.path(), small());
        assert_eq!(all(&wal)[0].0, 21);
        assert_eq!(wal.len_records(), 10);
    }

    #[test]
    fn ids_keep_increasing_after_everything_is_acked_and_reclaimed() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = open(tmp.path(), small());
            for i in 0..20 {
                wal.append(&payload(i)).unwrap();
            }
            wal.ack(RecordId(19)).unwrap();
        }
        // Simulate reclamation having deleted every segment before a crash.
        for p in segment_files(tmp.path()) {
            fs::remove_file(p).unwrap();
        }
        let (mut wal, rec) = open(tmp.path(), small());
        assert_eq!(rec.unacked_records, 0);
        assert_eq!(wal.append(b"new").unwrap(), RecordId(20));
        // An ack file ahead of the segments (segments written but not synced
        // before power loss) must not let new records count as acked.
        drop(wal);
        write_ack(tmp.path(), 100).unwrap();
        let (mut wal, _) = open(tmp.path(), small());
        assert_eq!(wal.len_records(), 0);
        assert_eq!(wal.append(b"later").unwrap(), RecordId(100));
        assert_eq!(wal.len_records(), 1);
        assert_eq!(all(&wal), vec![(100, b"later".to_vec())]);
    }

    fn last_segment(dir: &Path) -> PathBuf {
        segment_files(dir).pop().unwrap()
    }

    fn fill(dir: &Path, n: u64) -> u64 {
        let (mut wal, _) = open(dir, cfg(1 << 20, 4 << 20, FsyncPolicy::Never));
        for i in 0..n {
            wal.append(&payload(i)).unwrap();
        }
        wal.len_bytes()
    }

    #[test]
    fn torn_tail_is_reported_truncated_and_appends_continue() {
        let tmp = tempfile::tempdir().unwrap();
        let full_len = fill(tmp.path(), 10);
        let seg = last_segment(tmp.path());
        // Cut the last record in the middle of its payload.
        let last_len = REC_HEADER_LEN + payload(9).len() as u64;
        let cut = full_len - last_len + REC_HEADER_LEN + 3;
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(cut)
            .unwrap();

        let c = cfg(1 << 20, 4 << 20, FsyncPolicy::Always);
        let (mut wal, rec) = open(tmp.path(), c.clone());
        let tail = rec.corrupt_tail.clone().expect("torn tail reported");
        assert_eq!(tail.segment, seg);
        assert_eq!(tail.offset, full_len - last_len);
        assert!(tail.reason.contains("torn"), "{}", tail.reason);
        assert_eq!(tail.discarded_bytes, REC_HEADER_LEN + 3);
        assert_eq!(rec.records, 9);
        assert_eq!(fs::metadata(&seg).unwrap().len(), full_len - last_len);
        let got = all(&wal);
        assert_eq!(
            got.iter().map(|r| r.0).collect::<Vec<_>>(),
            (0..9).collect::<Vec<_>>()
        );
        assert_eq!(wal.append(b"fresh").unwrap(), RecordId(9));
        drop(wal);
        let (wal, rec) = open(tmp.path(), c);
        assert_eq!(rec.corrupt_tail, None, "clean after repair");
        assert_eq!(all(&wal).len(), 10);
        assert_eq!(all(&wal)[9], (9, b"fresh".to_vec()));

        // A torn record header (fewer than 16 bytes) is also detected.
        drop(wal);
        let len = fs::metadata(&seg).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[1, 2, 3, 4, 5]).unwrap();
        let (_, rec) = open(tmp.path(), small());
        let tail = rec.corrupt_tail.unwrap();
        assert_eq!(tail.offset, len);
        assert!(tail.reason.contains("header"), "{}", tail.reason);
    }

    #[test]
    fn corrupt_tail_is_reported_and_earlier_records_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let full_len = fill(tmp.path(), 10);
        let seg = last_segment(tmp.path());
        // Flip one payload byte of record 7: records 0..7 survive.
        let mut off = SEG_HEADER_LEN;
        for i in 0..7 {
            off += REC_HEADER_LEN + payload(i).len() as u64;
        }
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&seg)
            .unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, off + REC_HEADER_LEN + 2).unwrap();
        f.write_all_at(&[b[0] ^ 0x40], off + REC_HEADER_LEN + 2)
            .unwrap();
        drop(f);

        let (mut wal, rec) = open(tmp.path(), small());
        assert_eq!(rec.corrupt_tail, None, "not at the end: not a tail");
        let hole = &rec.damaged[0];
        assert_eq!(hole.offset, off);
        assert!(hole.reason.contains("crc"), "{}", hole.reason);
        assert_eq!(
            hole.discarded_bytes,
            REC_HEADER_LEN + payload(7).len() as u64
        );
        assert!(full_len > off + hole.discarded_bytes);
        assert_eq!(rec.lost.len(), 1);
        assert_eq!((rec.lost[0].ids, rec.lost[0].records), ((7, 7), Some(1)));
        // The records after the damaged one are recovered, ids unchanged.
        let got = all(&wal);
        assert_eq!(
            got.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4, 5, 6, 8, 9]
        );
        for (id, p) in &got {
            assert_eq!(p, &payload(*id));
        }
        assert_eq!(wal.append(b"ok").unwrap(), RecordId(10));
        drop(wal);
        let (wal, rec) = open(tmp.path(), small());
        assert_eq!(rec.corrupt_tail, None);
        assert!(
            rec.damaged.is_empty() && rec.lost.is_empty(),
            "counted once"
        );
        assert_eq!(all(&wal).len(), 10);
    }

    #[test]
    fn garbage_length_and_bad_segment_header() {
        let tmp = tempfile::tempdir().unwrap();
        let full_len = fill(tmp.path(), 3);
        let seg = last_segment(tmp.path());
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        // Length field of record 2 claims ~4 GiB: torn, not a huge allocation.
        let rec2 = full_len - REC_HEADER_LEN - payload(2).len() as u64;
        f.write_all_at(&[0xff; 4], rec2).unwrap();
        drop(f);
        let (wal, rec) = open(tmp.path(), small());
        let tail = rec.corrupt_tail.unwrap();
        assert_eq!(tail.offset, rec2);
        assert!(tail.reason.contains("length"), "{}", tail.reason);
        assert_eq!(all(&wal).len(), 2);
        drop(wal);

        // Zero-filled / garbage segment header on the newest segment: the
        // header is rewritten, the records whose CRC holds are kept.
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&[0; 8], 0).unwrap();
        drop(f);
        let (mut wal, rec) = open(tmp.path(), small());
        assert_eq!(rec.corrupt_tail, None);
        assert_eq!(rec.damaged[0].offset, 0);
        assert!(rec.damaged[0].reason.contains("magic"));
        assert!(rec.lost.is_empty(), "{rec:?}");
        assert_eq!(wal.len_records(), 2);
        let id = wal.append(b"x").unwrap();
        assert_eq!(all(&wal)[2], (id.0, b"x".to_vec()));
        drop(wal);
        let (_, rec) = open(tmp.path(), small());
        assert_eq!(rec.damaged, vec![], "repaired");

        // A future format version is refused, not "repaired".
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(b"CPWALv99", 0).unwrap();
        drop(f);
        assert!(matches!(
            Wal::open(tmp.path(), small()),
            Err(WalError::Unsupported { .. })
        ));
    }

    #[test]
    fn corruption_in_sealed_segment_keeps_later_segments() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = open(tmp.path(), small());
            for i in 0..30 {
                wal.append(&payload(i)).unwrap();
            }
        }
        let segs = segment_files(tmp.path());
        assert!(segs.len() >= 3);
        let f = OpenOptions::new().write(true).open(&segs[0]).unwrap();
        f.write_all_at(b"!", SEG_HEADER_LEN + REC_HEADER_LEN)
            .unwrap(); // record 0 payload
        drop(f);
        let (wal, rec) = open(tmp.path(), small());
        assert_eq!(rec.corrupt_tail, None);
        assert_eq!(rec.damaged.len(), 1);
        let got = all(&wal);
        assert_eq!(got.len(), 29, "only the damaged record is lost");
        assert!(got.iter().all(|(id, p)| p == &payload(*id)));
        assert_eq!(got.last().unwrap().0, 29, "later segments kept");
        assert_eq!(rec.lost.len(), 1);
        assert_eq!(rec.lost[0].reason, LossReason::DamagedRecord);
        assert_eq!((rec.lost[0].ids, rec.lost[0].records), ((0, 0), Some(1)));
        drop(wal);
        // Repaired: the next start finds nothing new and keeps the ids.
        let (wal, rec) = open(tmp.path(), small());
        assert!(rec.lost.is_empty() && rec.damaged.is_empty(), "{rec:?}");
        assert_eq!(all(&wal), got);
    }

    #[test]
    fn full_and_too_large_and_oversized_records() {
        let tmp = tempfile::tempdir().unwrap();
        let c = cfg(1024, 4096, FsyncPolicy::Never);
        let (mut wal, _) = open(tmp.path(), c.clone());
        let rec = vec![7u8; 200];
        let mut n = 0;
        let err = loop {
            match wal.append(&rec) {
                Ok(_) => n += 1,
                Err(e) => break e,
            }
        };
        match err {
            WalError::Full { used, max } => {
                assert_eq!(max, 4096);
                assert!(
                    used <= 4096 && used + 216 > 4096 - SEG_HEADER_LEN,
                    "used {used}"
                );
            }
            e => panic!("expected Full, got {e}"),
        }
        assert!(wal.len_bytes() <= 4096);
        assert!(n >= 15, "{n}");
        assert!(matches!(
            wal.append(&vec![0u8; 5000]),
            Err(WalError::RecordTooLarge {
                len: 5000,
                max: 4096
            })
        ));
        // Partial ack frees whole segments only.
        wal.ack(RecordId(4)).unwrap();
        assert!(wal.append(&rec).is_ok());
        // Acking everything frees everything, including the active segment.
        wal.ack(RecordId(wal.next_id().0 - 1)).unwrap();
        let big = vec![9u8; 3000]; // > segment_bytes: a segment of its own
        let id = wal.append(&big).unwrap();
        let after = wal.append(b"small").unwrap();
        let files = segment_files(tmp.path());
        let big_seg = files
            .iter()
            .find(|p| p.file_name().unwrap().to_str().unwrap() == segment_name(id.0))
            .expect("segment for the big record");
        assert_eq!(
            fs::metadata(big_seg).unwrap().len(),
            SEG_HEADER_LEN + REC_HEADER_LEN + 3000
        );
        assert!(files
            .iter()
            .any(|p| p.file_name().unwrap().to_str().unwrap() == segment_name(after.0)));
        let got = all(&wal);
        assert_eq!(got[0], (id.0, big));
        drop(wal);
        let (wal, rec) = open(tmp.path(), c);
        assert_eq!(rec.corrupt_tail, None);
        assert_eq!(all(&wal).len(), 2);
    }

    #[test]
    fn fsync_policies_and_config_validation() {
        for p in [FsyncPolicy::Always, FsyncPolicy::Never] {
            let tmp = tempfile::tempdir().unwrap();
            let (mut wal, _) = open(tmp.path(), cfg(512, 1 << 20, p));
            for i in 0..10 {
                wal.append(&payload(i)).unwrap();
            }
            wal.sync().unwrap();
            assert_eq!(wal.unsynced, 0);
            drop(wal);
            let (wal, _) = open(tmp.path(), WalConfig::default());
            assert_eq!(all(&wal).len(), 10);
        }
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            Wal::open(tmp.path(), cfg(4, 1 << 20, FsyncPolicy::Never)),
            Err(WalError::InvalidConfig(_))
        ));
    }

    #[test]
    fn corrupt_ack_file_redelivers_instead_of_losing() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = open(tmp.path(), small());
            for i in 0..5 {
                wal.append(&payload(i)).unwrap();
            }
            wal.ack(RecordId(2)).unwrap();
        }
        fs::write(tmp.path().join(ACK_FILE), b"garbage").unwrap();
        fs::write(tmp.path().join(ACK_TMP), b"leftover").unwrap();
        let (wal, _) = open(tmp.path(), small());
        assert!(!tmp.path().join(ACK_TMP).exists());
        assert_eq!(all(&wal)[0].0, 0);
    }

    const CRASH_DIR_ENV: &str = "CHAINPULSE_WAL_CRASH_DIR";
    const CRASH_ROUND_ENV: &str = "CHAINPULSE_WAL_CRASH_ROUND";

    fn crash_cfg() -> WalConfig {
        cfg(4096, 64 << 20, FsyncPolicy::Always)
    }

    fn crash_payload(round: u64, i: u64) -> Vec<u8> {
        let mut p = format!("round{round}-rec{i}-").into_bytes();
        p.resize(p.len() + (i as usize * 37) % 300, b'z');
        p
    }

    /// Child-process body for `crash_kill_mid_append_loses_nothing_acknowledged`;
    /// a no-op when run as a normal test.
    #[test]
    fn crash_child_helper() {
        let Ok(dir) = std::env::var(CRASH_DIR_ENV) else {
            return;
        };
        let round: u64 = std::env::var(CRASH_ROUND_ENV).unwrap().parse().unwrap();
        let (mut wal, _) = Wal::open(&dir, crash_cfg()).unwrap();
        let mut out = io::stdout().lock();
        for i in 0u64.. {
            let id = wal.append(&crash_payload(round, i)).unwrap();
            // Reported only after append returned: the record is acknowledged.
            writeln!(out, "APPENDED {} {i}", id.0).unwrap();
            out.flush().unwrap();
        }
    }

    #[test]
    fn crash_kill_mid_append_loses_nothing_acknowledged() {
        let tmp = tempfile::tempdir().unwrap();
        let mut expected: HashMap<u64, Vec<u8>> = HashMap::new();
        for round in 0..4u64 {
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args(["crash_child_helper", "--nocapture", "--test-threads=1"])
                .env(CRASH_DIR_ENV, tmp.path())
                .env(CRASH_ROUND_ENV, round.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut lines = io::BufReader::new(child.stdout.take().unwrap()).lines();
            let mut seen = 0;
            let kill_after = 100 + round * 57;
            let parse = |line: &str, expected: &mut HashMap<u64, Vec<u8>>| -> u64 {
                let Some(rest) = line.strip_prefix("APPENDED ") else {
                    return 0;
                };
                {
                    let mut it = rest.split(' ').map(|x| x.parse::<u64>().unwrap());
                    let (id, i) = (it.next().unwrap(), it.next().unwrap());
                    assert!(
                        expected.insert(id, crash_payload(round, i)).is_none(),
                        "id reused"
                    );
                }
                1
            };
            for line in lines.by_ref() {
                seen += parse(&line.unwrap(), &mut expected);
                if seen >= kill_after {
                    child.kill().unwrap(); // SIGKILL, mid-loop
                    break;
                }
            }
            for line in lines {
                match line {
                    Ok(l) => seen += parse(&l, &mut expected),
                    Err(_) => break,
                }
            }
            let status = child.wait().unwrap();
            assert!(!status.success(), "child must have been killed");
            assert!(seen >= kill_after);

            let (wal, rec) = Wal::open(tmp.path(), crash_cfg()).unwrap();
            let got: HashMap<u64, Vec<u8>> = all(&wal).into_iter().collect();
            for (id, p) in &expected {
                assert_eq!(
                    got.get(id),
                    Some(p),
                    "acknowledged record {id} lost (round {round}, {rec:?})"
                );
            }
        }
        assert!(expected.len() >= 400);
    }
}
