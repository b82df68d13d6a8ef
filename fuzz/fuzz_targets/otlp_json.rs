//! OTLP/JSON bytes through the receivers' JSON conversion and then the
//! whole pipeline, as `otlp_protobuf`. See `chainpulse::fuzzing::PipelineHarness`.
#![no_main]

use chainpulse::fuzzing::PipelineHarness;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static HARNESS: OnceLock<PipelineHarness> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    HARNESS.get_or_init(PipelineHarness::new).json(data);
});
