//! Every input a fuzz target (`fuzz/`) ever crashed on, replayed through
//! the same entry point the target calls (`chainpulse::fuzzing`), so a
//! crash fixed once stays fixed without cargo-fuzz or a nightly compiler.
//!
//! The inputs live in `fuzz/regressions/<target>/` (one file each, named
//! after what broke); the committed seed corpora in `fuzz/seeds/<target>/`
//! are replayed too, which proves each harness still reaches the stages it
//! claims to. A new crash: copy the artifact from `fuzz/artifacts/<target>/`
//! into `fuzz/regressions/<target>/`, fix, and say what it was in a test
//! below when it needs more than "does not panic".

use chainpulse::fuzzing::{self, PipelineHarness};
use std::path::{Path, PathBuf};

fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.file_name().is_none_or(|n| n != ".keep"))
        .map(|p| {
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, data)
        })
        .collect();
    out.sort();
    out
}

fn all_inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v = inputs("regressions", target);
    v.extend(inputs("seeds", target));
    v
}

#[test]
fn otlp_protobuf_inputs() {
    let h = PipelineHarness::new();
    for (path, data) in all_inputs("otlp_protobuf") {
        eprintln!("{}", path.display());
        h.protobuf(&data);
    }
}

#[test]
fn otlp_json_inputs() {
    let h = PipelineHarness::new();
    for (path, data) in all_inputs("otlp_json") {
        eprintln!("{}", path.display());
        h.json(&data);
    }
}

#[test]
fn config_inputs() {
    for (path, data) in all_inputs("config") {
        eprintln!("{}", path.display());
        let dir = tempfile::tempdir().expect("temp dir");
        let _ = fuzzing::check_config(&data, dir.path());
    }
}

#[test]
fn wal_reader_inputs() {
    for (path, data) in all_inputs("wal_reader") {
        eprintln!("{}", path.display());
        let dir = tempfile::tempdir().expect("temp dir");
        let _ = fuzzing::open_disk_queue(&data, dir.path());
    }
}

/// The seeds are real queue directories, so every record in them is read.
#[test]
fn wal_reader_seeds_are_read_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    fuzzing::make_queue_dir(dir.path(), 40, 10).expect("queue dir");
    let packed = fuzzing::pack_queue_dir(dir.path()).expect("pack");
    let replay = tempfile::tempdir().expect("temp dir");
    let read = fuzzing::open_disk_queue(&packed, replay.path()).expect("a healthy queue opens");
    // 30 unacknowledged + the one the harness queues itself.
    assert_eq!(read.records, 31);
}

/// Issue 13 (found again by `wal_reader` in its first executions): a queue
/// directory with no ack file and a header-only first segment starting above
/// the ack position panicked at start-up (`index out of bounds` in
/// `Wal::refresh_oldest_ts`), exit 101 on every restart. Now it opens, holds
/// nothing, and takes and delivers new records.
#[test]
fn header_only_segment_above_the_ack_position_opens() {
    let mut input = vec![0u8]; // no ack file
    input.extend_from_slice(fuzzing::WAL_FILE_SEPARATOR);
    input.push(5); // 00000000000000000005.wal
    input.extend_from_slice(b"CPWALv02"); // its header, no record
    let dir = tempfile::tempdir().expect("temp dir");
    let read = fuzzing::open_disk_queue(&input, dir.path()).expect("opens");
    assert_eq!(read.records, 1, "only the record queued after opening");
}

/// Writes `fuzz/seeds/wal_reader/` (run by hand:
/// `cargo test --test fuzz_regressions -- --ignored write_wal_seeds`).
#[test]
#[ignore]
fn write_wal_seeds() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/wal_reader");
    for (name, records, acked) in [
        ("empty", 0, 0),
        ("one-record", 1, 0),
        ("some-acked", 12, 5),
        ("rotated", 200, 0),
        ("rotated-acked", 200, 150),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        fuzzing::make_queue_dir(dir.path(), records, acked).expect("queue dir");
        let packed = fuzzing::pack_queue_dir(dir.path()).expect("pack");
        std::fs::write(out.join(format!("{name}.bin")), packed).expect("write seed");
    }
}
