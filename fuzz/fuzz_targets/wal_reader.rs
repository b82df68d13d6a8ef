//! Arbitrary bytes as a disk-queue directory (ack file + segment files):
//! open with recovery, deliver and acknowledge everything, queue and
//! deliver one more, reopen. Errors are fine; panics are bugs. See
//! `chainpulse::fuzzing::open_disk_queue` for the input layout.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let _ = chainpulse::fuzzing::open_disk_queue(data, dir.path());
});
