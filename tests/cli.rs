//! The binary itself: signals, exit codes, check-config.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_chainpulse");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[test]
fn sigterm_exits_zero_after_draining() {
    let (g, h, m) = (free_port(), free_port(), free_port());
    let mut child = Command::new(BIN)
        .args(["--grpc-addr", &format!("127.0.0.1:{g}")])
        .args(["--http-addr", &format!("127.0.0.1:{h}")])
        .args(["--metrics-addr", &format!("127.0.0.1:{m}")])
        .env("CHAINPULSE_LOG__FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    // Every log line is JSON; wait for the one that says we are listening.
    let mut listening = false;
    for line in lines.by_ref().take(20) {
        let line = line.expect("utf8");
        let log: serde_json::Value = serde_json::from_str(&line).expect("JSON logs");
        if log["message"] == "chainpulse listening" {
            assert_eq!(log["grpc"], format!("127.0.0.1:{g}"));
            listening = true;
            break;
        }
    }
    assert!(listening, "no 'chainpulse listening' log line");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let started = Instant::now();
    loop {
        if let Some(code) = child.try_wait().expect("wait") {
            assert!(code.success(), "exit status {code:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "did not stop within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l.contains("chainpulse stopped")),
        "{rest:?}"
    );
}

#[test]
fn check_config_names_the_bad_key() {
    let dir = std::env::temp_dir().join(format!("chainpulse-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let good = dir.join("good.toml");
    std::fs::write(&good, "[assembly]\ntrace_timeout_ms = 2500\n").expect("write");
    let out = Command::new(BIN)
        .args(["check-config"])
        .arg(&good)
        .output()
        .expect("run");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("trace_timeout_ms = 2500"), "{stdout}");
    assert!(stdout.contains("grpc_addr = \"0.0.0.0:4317\""), "{stdout}");

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[cardinality]\nmax_series_per_family = -3\n").expect("write");
    let out = Command::new(BIN)
        .args(["check-config"])
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cardinality.max_series_per_family:"),
        "{stderr}"
    );

    let out = Command::new(BIN)
        .args(["check-config"])
        .arg(dir.join("missing.toml"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let out = Command::new(BIN)
        .args(["--grpc-addr", &format!("127.0.0.1:{port}")])
        .args([
            "--http-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen for OTLP/gRPC on 127.0.0.1:{port}")),
        "{stderr}"
    );
}
