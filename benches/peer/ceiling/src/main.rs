//! The decode-only ceiling: how many spans per second one core can turn from OTLP protobuf bytes into
//! prost structs, for a given request body. No I/O, no normalization: nothing a collector can beat.
//!
//! Per second of this process's *CPU time* (utime + stime from /proc/self/stat), not of wall time: the
//! collectors it is compared with are measured by their CPU time too, and on a shared machine wall time also
//! counts the time other processes held the core (under load that inflated the ceiling's cost several-fold).
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::time::{Duration, Instant};

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: ceiling BODY.pb [seconds]");
    let secs: f64 = std::env::args()
        .nth(2)
        .map(|s| s.parse().unwrap())
        .unwrap_or(3.0);
    let body = std::fs::read(&path).expect("read body");
    let first = ExportTraceServiceRequest::decode(body.as_slice()).expect("decode");
    let spans: usize = first
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs_f64(secs) {
        for _ in 0..64 {
            let req = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
            std::hint::black_box(&req);
            n += 1;
        }
    }
    let el = cpu_seconds() - cpu0;
    let sps = n as f64 * spans as f64 / el;
    println!("{{\"spans_per_request\": {spans}, \"bytes_per_request\": {}, \"requests_per_s\": {:.0}, \"spans_per_s_one_core\": {:.0}, \"mb_per_s\": {:.1}}}",
             body.len(), n as f64 / el, sps, n as f64 * body.len() as f64 / el / 1e6);
}

/// This process's CPU time (user + system) in seconds, from /proc/self/stat (clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat[stat.rfind(')').expect("stat") + 2..]
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / 100.0
}
