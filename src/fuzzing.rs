//! Entry points for the cargo-fuzz targets in `fuzz/` and for
//! `tests/fuzz_regressions.rs`, which replays every input a fuzzer ever
//! crashed on through the very same function.
//!
//! Why a module at all: the disk queue is crate-private (`forward::queue`),
//! and the pipeline needs a runtime, a forwarder and a reader on the other
//! end to be exercised the way the server exercises it. Keeping that setup
//! here (rather than in each target) means a crash found by the fuzzer and
//! its regression test run identical code. Nothing here is a second code
//! path: every function calls what the server calls — `Pipeline::ingest`
//! (decode → validate → forward prepare + queue → normalize → aggregate),
//! `receive::json::to_protobuf`, `receive::gzip::inflate`, the registry's
//! render, the KPI API's queries, `Config::load` + `check_files`, and the
//! forwarding queue's `open` / `peek_after` / `ack` / `push`.
//!
//! Hidden from the docs; not an API.
#![doc(hidden)]

use crate::api::query::{KpiQuery, TopQuery};
use crate::config::{Config, Overrides};
use crate::export::Registry;
use crate::forward::config::{QueueConfig, QueueKind};
use crate::forward::queue::Queue;
use crate::forward::Forwarder;
use crate::pipeline::Pipeline;
use crate::receive::{gzip, json, Protocol};
use bytes::Bytes;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// The configuration the pipeline harness runs with: defaults, plus one
/// forward destination with a memory queue (so forwarding's prepare step —
/// redaction, truncation, rejected-span removal — runs on every input),
/// and tight label / truncation limits so the fuzzer reaches them.
///
/// The destination's endpoint is a closed loopback port and its batches
/// wait an hour, so nothing is sent anywhere; a full queue drops (counted)
/// instead of pushing back, so a long run keeps reaching the stages after
/// forwarding.
fn harness_config(closed_port: u16) -> Result<Config, String> {
    let text = format!(
        r#"
[assembly]
max_spans = 20000

[forward.redact]
rules = [{{ name = "employee_id", pattern = "EMP-[0-9]{{6}}" }}]

[forward.truncate]
max_attribute_bytes = 256

[[forward.destinations]]
name = "fuzz"
protocol = "http"
endpoint = "http://127.0.0.1:{closed_port}/v1/traces"
queue = {{ kind = "memory", max_bytes = 4194304, on_full = "drop" }}
batch = {{ flush_interval_ms = 3600000, max_bytes = 8388608, max_spans = 1000000 }}
retry = {{ initial_backoff_ms = 60000, max_backoff_ms = 600000 }}
"#
    );
    Config::from_toml_str(&text).map_err(|e| e.to_string())
}

/// What the first input byte of a pipeline input asks for after ingest.
#[derive(Debug, Clone, Copy)]
struct Actions(u8);

impl Actions {
    /// Release every held trace (assembly drain), as at shutdown.
    fn drain(self) -> bool {
        self.0 & 0x01 != 0
    }
    /// The periodic sweep (traces past their timeout, histogram upkeep).
    fn tick(self) -> bool {
        self.0 & 0x02 != 0
    }
    /// Render `/metrics`.
    fn render(self) -> bool {
        self.0 & 0x04 != 0
    }
    /// Build the KPI API's answers.
    fn kpis(self) -> bool {
        self.0 & 0x08 != 0
    }
    /// The body is gzip (inflated with the receivers' limit first).
    fn gzip(self) -> bool {
        self.0 & 0x10 != 0
    }
}

/// The whole ingest pipeline, built once and fed many inputs (as a server
/// is fed many requests: state such as held traces, label sets and KPI
/// windows carries over between inputs, which is what finds bugs in it).
pub struct PipelineHarness {
    runtime: tokio::runtime::Runtime,
    pipeline: Arc<Pipeline>,
}

impl PipelineHarness {
    /// Panics when the fixed harness configuration is invalid (a bug in
    /// this file, not an input).
    pub fn new() -> PipelineHarness {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
        // A port that was just free: connecting to it is refused at once.
        let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a loopback port");
        let config = harness_config(closed_port).expect("the harness configuration is valid");
        let registry = Arc::new(Registry::with_limits(config.limits.label_limits()));
        let pipeline = runtime.block_on(async {
            let forwarder = Forwarder::start(&config, registry.clone()).expect("forwarder starts");
            Pipeline::new(&config, registry, forwarder).expect("pipeline")
        });
        PipelineHarness {
            runtime,
            pipeline: Arc::new(pipeline),
        }
    }

    /// `data[0]` picks the follow-up actions, the rest is an OTLP/protobuf
    /// `ExportTraceServiceRequest` body.
    pub fn protobuf(&self, data: &[u8]) {
        self.run(data, Protocol::HttpProtobuf);
    }

    /// `data[0]` picks the follow-up actions, the rest is an OTLP/JSON body.
    pub fn json(&self, data: &[u8]) {
        self.run(data, Protocol::HttpJson);
    }

    fn run(&self, data: &[u8], protocol: Protocol) {
        let Some((&first, body)) = data.split_first() else {
            return;
        };
        let actions = Actions(first);
        let p = &self.pipeline;
        let limit = p.max_request_bytes();
        let body = if actions.gzip() {
            match gzip::inflate(body, limit) {
                Ok(b) => b,
                Err(_) => return,
            }
        } else {
            Bytes::copy_from_slice(body)
        };
        let body = match protocol {
            Protocol::HttpJson => match json::to_protobuf(&body) {
                Ok(b) => b,
                Err(_) => return,
            },
            _ => body,
        };
        self.runtime.block_on(async {
            if let Ok(slot) = p.try_begin(protocol) {
                let _ = p.ingest(&slot, protocol, body).await;
            }
            if actions.tick() {
                p.tick();
            }
            if actions.drain() {
                p.drain();
            }
            if actions.render() {
                p.registry().run_upkeep();
                let text = p.registry().render();
                std::hint::black_box(text);
            }
            if actions.kpis() {
                let none = HashMap::new();
                if let Ok(q) = KpiQuery::parse(&none) {
                    let chains = q.run(p).await;
                    let out =
                        serde_json::json!({ "window": q.window.to_string(), "chains": chains });
                    std::hint::black_box(out.to_string());
                }
                for by in ["user", "session", "chain", "model"] {
                    let params = HashMap::from([("by".to_string(), by.to_string())]);
                    if let Ok(q) = TopQuery::parse(&params) {
                        let top = q.run(p).await;
                        std::hint::black_box(serde_json::to_string(&top).ok());
                    }
                }
            }
        });
    }
}

impl Default for PipelineHarness {
    fn default() -> Self {
        Self::new()
    }
}

/// `check-config` on arbitrary text: load (defaults ← file ← no env ← no
/// flags) with validation, the file checks, and the effective
/// configuration printed back. Errors are fine; a panic is a bug.
pub fn check_config(text: &[u8], dir: &Path) -> Result<String, String> {
    let path = dir.join("chainpulse.toml");
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    let config = Config::load(Some(&path), std::iter::empty(), &Overrides::default())
        .map_err(|e| e.to_string())?;
    config.check_files().map_err(|e| e.to_string())?;
    Ok(config.to_toml())
}

/// Separates the files packed into one `wal_reader` input.
pub const WAL_FILE_SEPARATOR: &[u8] = b"\n@@CPWAL-FILE@@\n";

/// What [`open_disk_queue`] read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct QueueRead {
    pub records: u64,
    pub bytes: u64,
}

/// Lays out a disk-queue directory from one fuzz input and runs the
/// forwarder's whole life on it: open (recovery), deliver everything
/// (`peek_after` + `ack`, as the sender does), queue a new request, deliver
/// it, and reopen.
///
/// Input: byte 0 holds flags (bit 0: write an `ack` file), then files
/// separated by [`WAL_FILE_SEPARATOR`]: the first is the ack file's
/// contents, each later one a segment whose first byte is its first record
/// id (`{id:020}.wal`) and whose remaining bytes are its contents.
///
/// Errors (damage reported by the queue) are fine; a panic is a bug, and so
/// is a queue that still holds records after everything was acknowledged.
pub fn open_disk_queue(data: &[u8], dir: &Path) -> Result<QueueRead, String> {
    let Some((&flags, rest)) = data.split_first() else {
        return Ok(QueueRead::default());
    };
    let mut files = split(rest, WAL_FILE_SEPARATOR);
    let ack = files.next().unwrap_or_default();
    if flags & 1 != 0 {
        std::fs::write(dir.join("ack"), ack).map_err(|e| e.to_string())?;
    }
    for f in files {
        let Some((&first_id, contents)) = f.split_first() else {
            continue;
        };
        std::fs::write(dir.join(format!("{:020}.wal", first_id)), contents)
            .map_err(|e| e.to_string())?;
    }
    let cfg = QueueConfig {
        kind: QueueKind::Disk,
        // Small segments, so the new record below may rotate.
        segment_bytes: 4096,
        max_bytes: 1 << 20,
        ..QueueConfig::default()
    };
    let mut read = QueueRead::default();
    {
        let (queue, _opened) = Queue::open(dir, &cfg).map_err(|e| e.to_string())?;
        deliver_all(&queue, &mut read)?;
        let body = Bytes::from_static(b"\x0a\x00");
        queue.push(1, &body).map_err(|e| e.to_string())?;
        let before = read.records;
        deliver_all(&queue, &mut read)?;
        assert_eq!(read.records, before + 1, "a pushed record is peeked back");
    }
    let (queue, _opened) = Queue::open(dir, &cfg).map_err(|e| e.to_string())?;
    let left = queue.depth().records;
    assert_eq!(left, 0, "records left after everything was acknowledged");
    Ok(read)
}

/// The sender's loop without the network: peek a batch after the last id
/// handed out, acknowledge it, until nothing is left.
fn deliver_all(queue: &Queue, read: &mut QueueRead) -> Result<(), String> {
    let mut after = 0;
    loop {
        let batch = queue
            .peek_after(after, 64, 1 << 20)
            .map_err(|e| e.to_string())?;
        let Some(last) = batch.last() else {
            return Ok(());
        };
        assert!(last.id > after, "peek_after returned an old record");
        after = last.id;
        let spans: u64 = batch.iter().map(|e| u64::from(e.spans)).sum();
        read.records += batch.len() as u64;
        read.bytes += batch.iter().map(|e| e.body.len() as u64).sum::<u64>();
        queue.ack(after, spans).map_err(|e| e.to_string())?;
    }
}

/// Packs a disk-queue directory into the `wal_reader` input format (to
/// turn a real, possibly damaged, queue directory into a seed or a
/// regression input). Segment files whose first id does not fit in a
/// byte, and any other file, are left out.
pub fn pack_queue_dir(dir: &Path) -> std::io::Result<Vec<u8>> {
    let ack = std::fs::read(dir.join("ack")).ok();
    let mut out = vec![u8::from(ack.is_some())];
    out.extend_from_slice(ack.as_deref().unwrap_or_default());
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let Some(id) = name.strip_suffix(".wal").and_then(|s| s.parse::<u8>().ok()) else {
            continue;
        };
        out.extend_from_slice(WAL_FILE_SEPARATOR);
        out.push(id);
        out.extend_from_slice(&std::fs::read(dir.join(&name))?);
    }
    Ok(out)
}

/// Builds a healthy queue directory with `records` small requests, the
/// first `acked` of them acknowledged (seeds for the fuzzer).
pub fn make_queue_dir(dir: &Path, records: u32, acked: u64) -> Result<(), String> {
    let cfg = QueueConfig {
        kind: QueueKind::Disk,
        segment_bytes: 4096,
        max_bytes: 1 << 20,
        ..QueueConfig::default()
    };
    let (queue, _) = Queue::open(dir, &cfg).map_err(|e| e.to_string())?;
    for i in 0..records {
        let body = Bytes::from(format!("request {i}").into_bytes());
        queue.push(1, &body).map_err(|e| e.to_string())?;
    }
    if acked > 0 {
        queue.ack(acked, acked).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn split<'a>(data: &'a [u8], sep: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.windows(sep.len()).position(|w| w == sep) {
            Some(i) => {
                rest = Some(&r[i + sep.len()..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}
