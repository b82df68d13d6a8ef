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
//!   segment's first record, so ids never need to be stored per record: record
//!   `k` of a segment has id `first_id + k`. Zero-padded so that lexical order
//!   equals numeric order when a human lists the directory.
//! * `ack` — the acknowledgement position, replaced atomically
//!   (write `ack.tmp`, fsync it, rename over `ack`, fsync the directory).
//!   A leftover `ack.tmp` from a crash is deleted on open.
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
//! The `ack` file is 20 bytes: `b"CPWALACK"`, `next_unacked u64LE` (first id
//! *not* acknowledged), CRC-32 of the preceding 16 bytes. If it is unreadable
//! or corrupt it is treated as "nothing acknowledged" (redeliver, never lose).
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
//!   verifies its CRC. At the first torn (short header / length past the end
//!   of file) or corrupt (CRC mismatch, bad segment header) record, the
//!   segment is truncated there, the event is logged with `tracing::warn!` and
//!   returned in [`Recovery`]; every record before it is kept. Truncation
//!   makes later appends start on a clean record boundary. Records *after*
//!   the damage in the same segment are discarded (there is no resync scan);
//!   later segments are kept.
//! * **Failed writes**: if a write fails half-way (e.g. ENOSPC) the segment is
//!   truncated back to the last good record, so garbage never sits between
//!   good records. If that truncation or an fsync fails, the `Wal` is
//!   *poisoned*: appends return [`WalError::Poisoned`] until it is reopened
//!   (after a failed fsync the kernel may have dropped dirty pages, so only a
//!   rescan knows what is on disk). Peek/ack keep working so delivery drains.
//! * **Delivery is at-least-once**: [`Wal::ack`] persists the position durably
//!   before returning and before deleting segments. After a crash, records
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
use std::io::{self, BufReader, Read};
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
const ACK_MAGIC: [u8; 8] = *b"CPWALACK";
const ACK_LEN: usize = 20;

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

/// Where recovery found damaged data and cut it off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptTail {
    pub segment: PathBuf,
    /// Byte offset in the segment file where the damaged record starts; the
    /// file was truncated to this length.
    pub offset: u64,
    pub reason: String,
    /// Bytes removed by the truncation.
    pub discarded_bytes: u64,
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
    /// Torn/corrupt tail of the newest segment (expected after a crash).
    pub corrupt_tail: Option<CorruptTail>,
    /// Damage found in older, sealed segments (not expected from a crash:
    /// suggests media corruption). Each was truncated at the damage.
    pub sealed_corruption: Vec<CorruptTail>,
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

struct Segment {
    first_id: u64,
    path: PathBuf,
    file: File,
    /// File offset of each record's header.
    offsets: Vec<u64>,
    /// Length of the valid prefix of the file (== file length).
    len: u64,
}

impl Segment {
    fn end_id(&self) -> u64 {
        self.first_id + self.offsets.len() as u64
    }

    /// `[start, end)` file range of record `idx` (header included).
    fn span(&self, idx: usize) -> (u64, u64) {
        let start = self.offsets[idx];
        let end = self.offsets.get(idx + 1).copied().unwrap_or(self.len);
        (start, end)
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
            offsets: Vec::new(),
            len: SEG_HEADER_LEN,
        })
    }

    /// Opens and scans an existing segment, truncating at the first damage.
    fn recover(path: PathBuf, first_id: u64) -> Result<(Segment, Option<CorruptTail>), WalError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        let file_len = file.metadata().map_err(|e| io_err(&path, e))?.len();
        let mut seg = Segment {
            first_id,
            path,
            file,
            offsets: Vec::new(),
            len: SEG_HEADER_LEN,
        };

        let mut damage: Option<(u64, String)> = None;
        let mut magic = [0u8; 8];
        if file_len < SEG_HEADER_LEN {
            damage = Some((0, format!("torn segment header ({file_len} bytes)")));
        } else {
            seg.file
                .read_exact_at(&mut magic, 0)
                .map_err(|e| io_err(&seg.path, e))?;
            if magic != SEG_MAGIC {
                if magic.starts_with(SEG_MAGIC_FAMILY) {
                    return Err(WalError::Unsupported {
                        path: seg.path,
                        detail: format!(
                            "segment version {:?}",
                            String::from_utf8_lossy(&magic[6..])
                        ),
                    });
                }
                damage = Some((0, "bad segment header magic".to_string()));
            }
        }

        if damage.is_none() {
            damage = seg.scan(file_len)?;
        }

        let tail = match damage {
            None => None,
            Some((offset, reason)) => {
                let res = if offset == 0 {
                    seg.file
                        .set_len(0)
                        .and_then(|()| seg.file.write_all_at(&SEG_MAGIC, 0))
                } else {
                    seg.file.set_len(offset)
                };
                res.and_then(|()| seg.file.sync_all())
                    .map_err(|e| io_err(&seg.path, e))?;
                seg.len = offset.max(SEG_HEADER_LEN);
                Some(CorruptTail {
                    segment: seg.path.clone(),
                    offset,
                    reason,
                    discarded_bytes: file_len - offset,
                })
            }
        };
        Ok((seg, tail))
    }

    /// Reads records from the header on; returns the first damage, if any.
    fn scan(&mut self, file_len: u64) -> Result<Option<(u64, String)>, WalError> {
        let mut reader = BufReader::with_capacity(256 << 10, &self.file);
        let mut hdr = [0u8; REC_HEADER_LEN as usize];
        reader
            .read_exact(&mut [0u8; SEG_HEADER_LEN as usize])
            .map_err(|e| io_err(&self.path, e))?;
        let mut pos = SEG_HEADER_LEN;
        let mut payload = Vec::new();
        while pos < file_len {
            let remaining = file_len - pos;
            if remaining < REC_HEADER_LEN {
                return Ok(Some((
                    pos,
                    format!("torn record header ({remaining} bytes)"),
                )));
            }
            reader
                .read_exact(&mut hdr)
                .map_err(|e| io_err(&self.path, e))?;
            let frame = Frame::decode(&hdr);
            let len = frame.len;
            if len > remaining - REC_HEADER_LEN {
                return Ok(Some((
                    pos,
                    format!(
                        "torn record: length {len} but only {} bytes follow",
                        remaining - REC_HEADER_LEN
                    ),
                )));
            }
            payload.resize(len as usize, 0);
            reader
                .read_exact(&mut payload)
                .map_err(|e| io_err(&self.path, e))?;
            if let Some(actual) = frame.mismatch(&payload) {
                return Ok(Some((
                    pos,
                    format!(
                        "crc mismatch: stored {:#010x}, computed {actual:#010x}",
                        frame.crc
                    ),
                )));
            }
            self.offsets.push(pos);
            pos += REC_HEADER_LEN + len;
            self.len = pos;
        }
        Ok(None)
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
        let ack_next = read_ack(&dir)?;

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
        let n = found.len();
        for (i, (first_id, path)) in found.into_iter().enumerate() {
            let (seg, tail) = Segment::recover(path, first_id)?;
            if let Some(prev) = segments.back() {
                if prev.end_id() > first_id {
                    return Err(WalError::Inconsistent(format!(
                        "{} holds records up to id {} but {} starts at {first_id}",
                        prev.path.display(),
                        prev.end_id() - 1,
                        seg.path.display()
                    )));
                }
            }
            recovery.records += seg.offsets.len() as u64;
            recovery.bytes += seg.len - SEG_HEADER_LEN - REC_HEADER_LEN * seg.offsets.len() as u64;
            if let Some(t) = tail {
                tracing::warn!(
                    segment = %t.segment.display(),
                    offset = t.offset,
                    discarded_bytes = t.discarded_bytes,
                    reason = %t.reason,
                    sealed = i + 1 < n,
                    "write-ahead log: damaged tail truncated; earlier records kept"
                );
                if i + 1 < n {
                    recovery.sealed_corruption.push(t);
                } else {
                    recovery.corrupt_tail = Some(t);
                }
            }
            segments.push_back(seg);
        }

        let next_id = segments
            .back()
            .map_or(ack_next, |s| s.end_id().max(ack_next));
        let mut wal = Wal {
            dir,
            cfg,
            segments,
            next_id,
            ack_next,
            ack_persisted: ack_next,
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
            if !active.offsets.is_empty() && active.end_id() <= self.ack_next {
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
        seg.offsets.push(start);
        seg.len += rec_len;
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
        if !active.offsets.is_empty() && active.end_id() <= self.ack_next {
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
            while rj < seg.offsets.len() && out.len() + (rj - ri) < max_records {
                let (s, e) = seg.span(rj);
                let plen = e - s - REC_HEADER_LEN;
                if total + plen > max_bytes as u64 && !(out.is_empty() && rj == ri) {
                    done = true;
                    break;
                }
                total += plen;
                rj += 1;
            }
            if rj > ri {
                let start = seg.offsets[ri];
                let end = seg.span(rj - 1).1;
                let mut buf = BytesMut::zeroed((end - start) as usize);
                seg.file
                    .read_exact_at(&mut buf, start)
                    .map_err(|e| io_err(&seg.path, e))?;
                let buf = buf.freeze();
                for k in ri..rj {
                    let (s, e) = seg.span(k);
                    let off = (s - start) as usize;
                    let mut hdr = [0u8; REC_HEADER_LEN as usize];
                    hdr.copy_from_slice(&buf[off..off + REC_HEADER_LEN as usize]);
                    let frame = Frame::decode(&hdr);
                    let len = frame.len;
                    let id = RecordId(seg.first_id + k as u64);
                    let corrupt = |reason: String| WalError::CorruptRecord {
                        id,
                        path: seg.path.clone(),
                        offset: s,
                        reason,
                    };
                    if len != e - s - REC_HEADER_LEN {
                        return Err(corrupt(format!(
                            "length field {len} != indexed {}",
                            e - s - REC_HEADER_LEN
                        )));
                    }
                    let payload = buf.slice(off + REC_HEADER_LEN as usize..(e - start) as usize);
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
    pub fn persist_ack(&mut self) -> Result<(), WalError> {
        if self.ack_persisted < self.ack_next {
            write_ack(&self.dir, self.ack_next)?;
            self.ack_persisted = self.ack_next;
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
            .map(|s| s.end_id().saturating_sub(s.first_id.max(self.ack_next)))
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
        !a.offsets.is_empty() && a.len + rec_len > self.cfg.segment_bytes
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
            .find(|(_, s)| s.end_id() > id && !s.offsets.is_empty())
            .map(|(i, s)| (i, id.saturating_sub(s.first_id) as usize))
    }

    fn refresh_oldest_ts(&mut self) {
        self.oldest_ts = None;
        let Some((si, ri)) = self.locate(self.ack_next) else {
            return;
        };
        let seg = &self.segments[si];
        let mut ts = [0u8; 8];
        match seg.file.read_exact_at(&mut ts, seg.offsets[ri] + 8) {
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
        let _ = self.persist_ack();
    }
}

fn read_ack(dir: &Path) -> Result<u64, WalError> {
    let path = dir.join(ACK_FILE);
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(&path, e)),
    };
    let valid = data.len() == ACK_LEN
        && data[0..8] == ACK_MAGIC
        && crc32fast::hash(&data[0..16]) == u32::from_le_bytes(data[16..20].try_into().unwrap());
    if !valid {
        tracing::warn!(path = %path.display(), "write-ahead log: invalid ack file; redelivering everything on disk");
        return Ok(0);
    }
    Ok(u64::from_le_bytes(data[8..16].try_into().unwrap()))
}

fn write_ack(dir: &Path, next_unacked: u64) -> Result<(), WalError> {
    let mut data = [0u8; ACK_LEN];
    data[0..8].copy_from_slice(&ACK_MAGIC);
    data[8..16].copy_from_slice(&next_unacked.to_le_bytes());
    let crc = crc32fast::hash(&data[0..16]);
    data[16..20].copy_from_slice(&crc.to_le_bytes());
    let tmp = dir.join(ACK_TMP);
    let file = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    file.write_all_at(&data, 0)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_err(&tmp, e))?;
    drop(file);
    let path = dir.join(ACK_FILE);
    fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
    sync_dir(dir)
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
        assert!(
            got.len() > 10,
            "the unpersisted acks are redelivered: {got:?}"
        );
        assert!(got.iter().all(|id| *id > ids[5].0), "durable acks hold");
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
        let tail = rec.corrupt_tail.expect("corruption reported");
        assert_eq!(tail.offset, off);
        assert!(tail.reason.contains("crc"), "{}", tail.reason);
        assert_eq!(tail.discarded_bytes, full_len - off);
        let got = all(&wal);
        assert_eq!(got.len(), 7);
        for (id, p) in &got {
            assert_eq!(p, &payload(*id));
        }
        assert_eq!(wal.append(b"ok").unwrap(), RecordId(7));
        drop(wal);
        let (wal, rec) = open(tmp.path(), small());
        assert_eq!(rec.corrupt_tail, None);
        assert_eq!(all(&wal).len(), 8);
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

        // Zero-filled / garbage segment header on the newest segment.
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&[0; 8], 0).unwrap();
        drop(f);
        let (mut wal, rec) = open(tmp.path(), small());
        let tail = rec.corrupt_tail.unwrap();
        assert_eq!(tail.offset, 0);
        assert!(tail.reason.contains("magic"));
        assert_eq!(wal.len_records(), 0);
        let id = wal.append(b"x").unwrap();
        assert_eq!(all(&wal), vec![(id.0, b"x".to_vec())]);
        drop(wal);

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
        assert_eq!(rec.sealed_corruption.len(), 1);
        let got = all(&wal);
        let lost = 30 - got.len() as u64;
        assert!(lost >= 1 && got.iter().all(|(id, p)| p == &payload(*id)));
        assert_eq!(got.last().unwrap().0, 29, "later segments kept");
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
