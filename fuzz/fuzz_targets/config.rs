//! Arbitrary text as a configuration file through `check-config`'s path:
//! TOML parse, defaults, validation, file checks, the effective
//! configuration printed back. Errors are fine; panics are bugs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let _ = chainpulse::fuzzing::check_config(data, dir.path());
});
