//! Model-based test of the disk queue (and the WAL under it), in the spirit
//! of Vector's buffer tests: random appends, acks, restarts and torn tails
//! run against the real queue and against an in-memory model, and the two
//! must agree.
//!
//! The model is the list of every record whose `push` returned `Ok` (each
//! acknowledged to an application), and how many of them the consumer has
//! acked. Without a restart the queue must hold exactly the unacked ones, in
//! order. A restart may redeliver records acked since the ack position was
//! last persisted (at-least-once: duplicates, never loss), so after one the
//! queue must hold a suffix of the list that starts at or before the
//! consumer's position: nothing acknowledged and undelivered is ever lost,
//! nothing is ever reordered. A torn tail (bytes of an append that never
//! returned, left by a crash) must be cut off without touching a record
//! before it.

use super::{Queue, QueueConfig, QueueKind};
use crate::forward::config::FsyncMode;
use bytes::Bytes;
use proptest::prelude::*;
use std::path::Path;

#[derive(Debug, Clone)]
enum Op {
    /// Push a record of `len` bytes holding `spans` spans.
    Push { spans: u32, len: usize },
    /// The consumer delivers (peeks, then acks) up to `n` records.
    Ack(usize),
    /// Close and reopen; first append `torn` to the newest segment file,
    /// as a crash in the middle of an append would (empty: a clean restart).
    Restart { torn: Vec<u8> },
    /// Close, flip one byte of a segment file (which one and where: the
    /// two numbers modulo what exists), reopen: media damage.
    Flip { seg: usize, at: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u32..5, 8usize..300).prop_map(|(spans, len)| Op::Push { spans, len }),
        3 => (0usize..6).prop_map(Op::Ack),
        1 => prop_oneof![
            Just(Vec::new()),
            proptest::collection::vec(any::<u8>(), 1..40),
            (1usize..40).prop_map(|n| vec![0u8; n]),
        ]
        .prop_map(|torn| Op::Restart { torn }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(seg, at)| Op::Flip { seg, at }),
    ]
}

/// A body that says which record it is (first 8 bytes), padded to `len`.
fn body(seq: u64, len: usize) -> Bytes {
    let mut b = seq.to_le_bytes().to_vec();
    b.resize(len.max(8), (seq % 251) as u8);
    Bytes::from(b)
}

fn config(fsync: FsyncMode) -> QueueConfig {
    QueueConfig {
        kind: QueueKind::Disk,
        // Small segments and a small bound: rotation, reclaiming and `Full`
        // all happen within a few dozen operations.
        segment_bytes: 512,
        max_bytes: 4096,
        fsync,
        ..QueueConfig::default()
    }
}

fn tear(dir: &Path, torn: &[u8]) {
    let newest = std::fs::read_dir(dir)
        .expect("queue dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .max();
    if let Some(path) = newest {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("segment");
        f.write_all(torn).expect("tear");
    }
}

fn flip(dir: &Path, seg: usize, at: usize) {
    use std::os::unix::fs::FileExt;
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .expect("queue dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segs.sort();
    let Some(path) = segs.get(seg % segs.len().max(1)) else {
        return;
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("segment");
    let len = f.metadata().expect("len").len();
    if len <= 8 {
        return;
    }
    // Past the segment header: a damaged header is rewritten, not a loss.
    let at = 8 + (at as u64 % (len - 8));
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).expect("read");
    f.write_all_at(&[b[0] ^ 0x10], at).expect("flip");
}

/// Everything the queue holds, oldest first, as (spans, body).
fn contents(q: &Queue) -> Vec<(u32, Bytes)> {
    q.peek(usize::MAX, usize::MAX)
        .expect("peek")
        .into_iter()
        .map(|e| (e.spans, e.body))
        .collect()
}

fn run(ops: &[Op], fsync: FsyncMode) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = config(fsync);
    let (mut q, _) = Queue::open(dir.path(), &cfg).expect("open");
    // Every acknowledged record, and how many the consumer has delivered.
    let mut log: Vec<(u32, Bytes)> = Vec::new();
    let mut delivered = 0usize;
    let mut seq = 0u64;
    for op in ops {
        match op {
            Op::Push { spans, len } => {
                seq += 1;
                let b = body(seq, *len);
                if q.push(*spans, &b).is_ok() {
                    log.push((*spans, b));
                }
            }
            Op::Ack(n) => {
                let batch = q.peek(*n, usize::MAX).expect("peek");
                prop_assert!(batch.len() <= *n);
                for (i, e) in batch.iter().enumerate() {
                    prop_assert_eq!(&e.body, &log[delivered + i].1, "delivery order");
                    prop_assert!(e.enqueued_ms > 0, "every record has its time");
                }
                if let Some(last) = batch.last() {
                    let spans = batch.iter().map(|e| u64::from(e.spans)).sum();
                    q.ack(last.id, spans).expect("ack");
                    delivered += batch.len();
                }
            }
            Op::Restart { torn } => {
                drop(q);
                tear(dir.path(), torn);
                let (reopened, opened) = Queue::open(dir.path(), &cfg).expect("reopen");
                q = reopened;
                let got = contents(&q);
                // A suffix of the log, starting at or before the consumer.
                prop_assert!(
                    got.len() >= log.len() - delivered,
                    "an acknowledged record was lost"
                );
                let start = log.len() - got.len();
                prop_assert_eq!(&got[..], &log[start..], "lost, reordered or changed");
                let spans: u64 = got.iter().map(|(s, _)| u64::from(*s)).sum();
                prop_assert_eq!(opened.recovered_spans, spans);
                delivered = start;
            }
            Op::Flip { seg, at } => {
                drop(q);
                flip(dir.path(), *seg, *at);
                let (reopened, opened) = Queue::open(dir.path(), &cfg).expect("reopen");
                q = reopened;
                let got = contents(&q);
                let rec = opened.recovery.expect("disk");
                // What is left is the undelivered records in order, minus
                // the lost ones, and every lost one is counted (a count
                // can exceed the loss only when a flip lands on an earlier
                // repair's tombstone header: counted again), unless the
                // damage's extent is unknown (newest segment).
                // Records after a damaged one whose extent is unknown get
                // ids past the range that may be lost, which can be past
                // the ack position: an acknowledged record may come back
                // (delivered twice — never lost), so `got` is checked
                // against the whole log, in order.
                let pending = &log[delivered..];
                let mut it = log.iter();
                for g in &got {
                    prop_assert!(
                        it.any(|p| p == g),
                        "reordered, changed or invented: {:?}",
                        rec
                    );
                }
                let missing = pending.iter().filter(|p| !got.contains(p)).count() as u64;
                let counted: Option<u64> = rec.lost.iter().map(|l| l.records).sum();
                match counted {
                    Some(c) => prop_assert!(
                        missing <= c,
                        "lost {} but counted {}: {:?}",
                        missing,
                        c,
                        rec
                    ),
                    None => prop_assert!(
                        rec.lost.iter().any(|l| l.bytes > 0),
                        "an uncounted loss without damaged bytes: {:?}",
                        rec
                    ),
                }
                // The model now is what survived.
                let kept: Vec<(u32, Bytes)> = got;
                log.truncate(delivered);
                log.extend(kept);
            }
        }
        let got = contents(&q);
        prop_assert_eq!(&got[..], &log[delivered..]);
        let depth = q.depth();
        prop_assert_eq!(depth.records, got.len() as u64);
        prop_assert_eq!(
            depth.spans,
            got.iter().map(|(s, _)| u64::from(*s)).sum::<u64>()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn disk_queue_never_loses_nor_reorders(ops in proptest::collection::vec(op(), 1..80)) {
        run(&ops, FsyncMode::Never)?;
    }

    #[test]
    fn disk_queue_with_group_commit_never_loses_nor_reorders(ops in proptest::collection::vec(op(), 1..60)) {
        run(&ops, FsyncMode::Always)?;
    }
}
