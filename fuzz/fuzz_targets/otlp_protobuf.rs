//! OTLP/protobuf bytes through the whole pipeline the server runs:
//! decode → validate → forward prepare + queue → normalize → aggregate,
//! then (as `data[0]` asks) sweep, drain, render `/metrics`, build the KPI
//! API's answers. See `chainpulse::fuzzing::PipelineHarness`.
#![no_main]

use chainpulse::fuzzing::PipelineHarness;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static HARNESS: OnceLock<PipelineHarness> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    HARNESS.get_or_init(PipelineHarness::new).protobuf(data);
});
