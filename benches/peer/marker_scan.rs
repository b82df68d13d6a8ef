//! Standalone micro-benchmark of the cached-generation marker search (issue 11): the old four `windows()`
//! scans against one `memchr::memmem` search, on real LLM outputs. Not built by cargo (it lives under
//! benches/peer/, which cargo does not scan). Run, after `cargo build --release`:
//!
//!   python3 - <<'PY'   # every output string of tests/fixtures, NUL-separated
//!   import json, glob
//!   keys = {'output.value', 'traceloop.entity.output', 'gen_ai.completion', 'langfuse.observation.output',
//!           'gen_ai.output.messages'}
//!   outs = []
//!   def walk(o):
//!       if isinstance(o, dict):
//!           if o.get('key') in keys and o.get('value', {}).get('stringValue'):
//!               outs.append(o['value']['stringValue'])
//!           for x in o.values(): walk(x)
//!       elif isinstance(o, list):
//!           for x in o: walk(x)
//!   for f in glob.glob('tests/fixtures/*.json'): walk(json.load(open(f)))
//!   open('/tmp/outs.bin', 'wb').write(b'\0'.join(x.encode() for x in outs))
//!   PY
//!   # the memchr rlib built with its `std` feature (runtime AVX2 detection); pick the right one of target/release/deps
//!   rustc -O --edition 2021 benches/peer/marker_scan.rs --extern memchr=target/release/deps/libmemchr-HASH.rlib -o /tmp/marker_scan
//!   /tmp/marker_scan /tmp/outs.bin
use std::time::Instant;
const KEY: &[u8] = b"\"total_cost\":";
fn old(out: &[u8]) -> bool {
    let marker = |m: &[u8]| out.windows(m.len()).any(|w| w == m);
    marker(b"\"total_cost\": 0,")
        || marker(b"\"total_cost\":0,")
        || marker(b"\"total_cost\": 0}")
        || marker(b"\"total_cost\":0}")
}
fn tail(out: &[u8], at: usize) -> bool {
    let rest = &out[at + KEY.len()..];
    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
    matches!(rest, [b'0', b',' | b'}', ..])
}
fn finder(f: &memchr::memmem::Finder<'_>, out: &[u8]) -> bool {
    f.find_iter(out).any(|at| tail(out, at))
}
fn memchr_t(out: &[u8]) -> bool {
    // every 't' of "total_cost": memchr for the rarest-ish byte then compare
    memchr::memchr_iter(b'_', out)
        .any(|i| i >= 6 && out[i - 6..].starts_with(KEY) && tail(out, i - 6))
}
fn bench(name: &str, outs: &[&[u8]], f: impl Fn(&[u8]) -> bool) {
    let n = 20000;
    let mut h = 0u32;
    let t = Instant::now();
    for _ in 0..n {
        for o in outs {
            h += f(std::hint::black_box(o)) as u32;
        }
    }
    println!(
        "{name}: {:.1} ns/output (hits {h})",
        t.elapsed().as_nanos() as f64 / (n * outs.len()) as f64
    );
}
fn main() {
    let all = std::fs::read(std::env::args().nth(1).unwrap()).unwrap();
    let outs: Vec<&[u8]> = all.split(|&b| b == 0).filter(|s| s.len() > 3).collect();
    let f = memchr::memmem::Finder::new(KEY);
    for o in &outs {
        assert_eq!(old(o), finder(&f, o));
        assert_eq!(old(o), memchr_t(o));
    }
    for _ in 0..2 {
        bench("old 4x windows", &outs, old);
        bench("memmem Finder", &outs, |o| finder(&f, o));
        bench("memchr '_' + compare", &outs, memchr_t);
    }
}
