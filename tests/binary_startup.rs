//! The real `qrusty` binary as an operator starts it: settings from the environment and
//! `--help`, the data directory, the memory-mode warning, the log format and filter, one
//! listener for everything, a SIGTERM that exits 0 with the log durable, and resident
//! memory that does not follow payload sizes.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_qrusty");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port` (Linux: the
/// socket's inode in /proc/net/tcp among the process's descriptors).
fn listens_on(pid: u32, port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = format!("0100007F:{port:04X}");
    let inode = table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Fields: slot, local address, remote address, state (0A: listening), ..., inode.
        (fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A"))
            .then(|| fields.get(9).map(|i| i.to_string()))
            .flatten()
    });
    let Some(inode) = inode else { return false };
    let socket = format!("socket:[{inode}]");
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == socket))
}

/// A server process whose stdout and stderr go to files in `dir`.
struct Proc {
    child: Child,
    base: String,
    out: PathBuf,
}

/// Starts the binary on a free port with `env` on top of a clean environment.
fn spawn(dir: &Path, name: &str, env: &[(&str, &str)]) -> Proc {
    let port = free_port();
    let out = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&out).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file));
    let child = cmd.spawn().expect("the qrusty binary starts");
    Proc { child, base: format!("http://127.0.0.1:{port}"), out }
}

impl Proc {
    /// Waits until this server listens on its port and answers /health: the port was
    /// free when picked, but another process may have taken it before the server bound
    /// it, and a /health answer would then come from that one.
    async fn wait_healthy(&mut self) {
        let client = reqwest::Client::new();
        let port: u16 = self.base.rsplit(':').next().unwrap().parse().unwrap();
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if listens_on(self.child.id(), port) {
                if let Ok(r) = client.get(format!("{}/health", self.base)).send().await {
                    if r.status().is_success() {
                        return;
                    }
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("server exited with {status}: {}", self.output());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("server at {} did not become healthy: {}", self.base, self.output());
    }

    /// Sends SIGTERM and returns the exit code.
    fn terminate(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let end = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("no exit within 30 s of SIGTERM: {}", self.output());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (status.code(), self.output())
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

async fn publish(base: &str, queue: &str, payload: &str) {
    let body = json!({"queue": queue, "priority": 1, "payload": payload});
    let r = reqwest::Client::new().post(format!("{base}/publish")).json(&body).send().await;
    assert_eq!(r.unwrap().status(), 200);
}

async fn get_json(base: &str, path: &str) -> Value {
    reqwest::get(format!("{base}{path}")).await.unwrap().json().await.unwrap()
}

fn run_to_end(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

// Verifies: SYS-0006, SYS-0010, SYS-0011, SYS-0025, SYS-0012
#[tokio::test]
async fn one_listener_serves_everything_the_data_dir_is_made_and_sigterm_keeps_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("not/yet/there");
    let env = [("DATA_PATH", data.to_str().unwrap()), ("RUST_LOG", "info")];
    let mut server = spawn(tmp.path(), "first", &env);
    server.wait_healthy().await;
    assert!(data.is_dir(), "DATA_PATH is created with its parents");
    let addr = server.base.trim_start_matches("http://").to_owned();
    assert!(server.output().contains(&format!("server listening addr={addr}")));
    // stdout is a file here, not a terminal: no colour codes in the lines.
    assert!(!server.output().contains('\u{1b}'), "{}", server.output());

    // The API, the WebSocket endpoint and the web UI share the one port.
    publish(&server.base, "kept", "before SIGTERM").await;
    let ui = reqwest::get(format!("{}/ui", server.base)).await.unwrap();
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.unwrap().contains("<html"));
    let (ws, reply) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await.unwrap();
    assert_eq!(reply.status(), 101);
    drop(ws);

    let (code, log) = server.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("shutdown complete"), "{log}");

    let mut again = spawn(tmp.path(), "second", &env);
    again.wait_healthy().await;
    let stats = get_json(&again.base, "/queue-stats/kept").await;
    assert_eq!(stats["total"], 1, "the message published before SIGTERM is back");
    assert_eq!(again.terminate().0, Some(0));
}

// Verifies: SYS-0008, SYS-0012, PER-0027
#[tokio::test]
async fn memory_mode_warns_once_writes_nothing_and_restarts_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let env =
        [("DATA_PATH", data.to_str().unwrap()), ("STORAGE_MODE", "memory"), ("RUST_LOG", "warn")];
    let mut server = spawn(tmp.path(), "memory", &env);
    server.wait_healthy().await;
    publish(&server.base, "volatile", "gone after a restart").await;
    let (code, log) = server.terminate();
    assert_eq!(code, Some(0), "{log}");

    let warnings: Vec<&str> = log.lines().filter(|l| l.contains(" WARN ")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("not persisted"), "{log}");
    // RUST_LOG=warn keeps the INFO lines out.
    assert!(!log.contains(" INFO "), "{log}");
    let written = std::fs::read_dir(&data).map(|d| d.count()).unwrap_or(0);
    assert_eq!(written, 0, "nothing under DATA_PATH in memory mode");

    let mut again = spawn(tmp.path(), "memory-again", &env);
    again.wait_healthy().await;
    assert_eq!(get_json(&again.base, "/queues").await, json!([]));
    assert_eq!(again.terminate().0, Some(0));
}

// Verifies: SYS-0012, SYS-0025
#[tokio::test]
async fn json_log_format_writes_one_object_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let env = [("STORAGE_MODE", "memory"), ("QRUSTY_LOG_FORMAT", "json"), ("RUST_LOG", "info")];
    let mut server = spawn(tmp.path(), "json", &env);
    server.wait_healthy().await;
    let (code, log) = server.terminate();
    assert_eq!(code, Some(0), "{log}");

    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let listening = lines.iter().find(|l| l["fields"]["message"] == "server listening");
    assert_eq!(listening.expect("a listening line")["level"], "INFO");
}

// Verifies: SYS-0007
#[test]
fn an_unknown_storage_mode_stops_the_start_naming_the_accepted_ones() {
    let out = run_to_end(&[], &[("STORAGE_MODE", "sqlite"), ("BIND_ADDR", "127.0.0.1:0")]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("sqlite") && text.contains("wal") && text.contains("memory"), "{text}");
}

// Verifies: SYS-0031
#[test]
fn an_idle_timeout_below_the_websocket_ping_stops_the_start() {
    let env = [("QRUSTY_IDLE_TIMEOUT_SECS", "30"), ("BIND_ADDR", "127.0.0.1:0")];
    let out = run_to_end(&["--storage-mode", "memory"], &env);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("QRUSTY_IDLE_TIMEOUT_SECS=30"), "{text}");
}

// Verifies: SYS-0009
#[test]
fn help_lists_every_setting_with_its_environment_variable() {
    let out = run_to_end(&["--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for (flag, env) in [
        ("--bind-addr", "BIND_ADDR"),
        ("--data-path", "DATA_PATH"),
        ("--storage-mode", "STORAGE_MODE"),
        ("--fsync", "QRUSTY_FSYNC"),
        ("--segment-bytes", "QRUSTY_SEGMENT_BYTES"),
        ("--recovery", "QRUSTY_RECOVERY"),
        ("--max-body-bytes", "QRUSTY_MAX_BODY_BYTES"),
        ("--api-token", "QRUSTY_API_TOKEN"),
        ("--max-queues", "QRUSTY_MAX_QUEUES"),
        ("--max-messages-per-queue", "QRUSTY_MAX_MESSAGES_PER_QUEUE"),
        ("--log", "RUST_LOG"),
        ("--log-format", "QRUSTY_LOG_FORMAT"),
        ("--webui-dir", "WEBUI_DIR"),
        ("--ws-ping-interval-secs", "WS_PING_INTERVAL_SECS"),
        ("--ws-ping-timeout-secs", "WS_PING_TIMEOUT_SECS"),
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
        assert!(help.contains(&format!("[env: {env}")), "{env} missing from --help:\n{help}");
    }
    assert!(help.contains("[default: 127.0.0.1:6784]"), "{help}");
}

/// Resident memory of a process, from /proc, in bytes.
fn vm_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("a VmRSS line");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// How much the server's resident memory grows while `n` messages of `size`-byte payloads
/// are queued (restarted once, so the queue is rebuilt from the log too).
async fn rss_growth(tmp: &Path, name: &str, n: usize, size: usize) -> (u64, u64) {
    let data = tmp.join(name);
    let env = [("DATA_PATH", data.to_str().unwrap()), ("QRUSTY_FSYNC", "never")];
    let mut server = spawn(tmp, name, &env);
    server.wait_healthy().await;
    let before = vm_rss(server.child.id());
    let client = reqwest::Client::new();
    for start in (0..n).step_by(50) {
        let messages: Vec<Value> = (start..(start + 50).min(n))
            .map(|i| json!({"priority": 1, "payload": format!("{i:08}{}", "r".repeat(size - 8))}))
            .collect();
        let body = json!({"queue": "rss", "messages": messages});
        let r = client.post(format!("{}/publish-batch", server.base)).json(&body).send().await;
        assert_eq!(r.unwrap().status(), 200);
    }
    let grown = vm_rss(server.child.id()).saturating_sub(before);
    assert_eq!(server.terminate().0, Some(0));

    let mut again = spawn(tmp, &format!("{name}-again"), &env);
    again.wait_healthy().await;
    assert_eq!(get_json(&again.base, "/queue-stats/rss").await["total"], n);
    let replayed = vm_rss(again.child.id());
    assert_eq!(again.terminate().0, Some(0));
    (grown, replayed)
}

// Verifies: SYS-0034
/// Resident memory per queued message does not depend on the payload size: 10 KiB
/// payloads (50 MB of them here) cost about what 100-byte ones do. The margins are wide:
/// allocator caches and request buffers come and go.
#[tokio::test]
async fn resident_memory_per_queued_message_does_not_grow_with_the_payload() {
    const N: usize = 5000;
    let tmp = tempfile::tempdir().unwrap();
    let (small_grown, small_replayed) = rss_growth(tmp.path(), "small", N, 100).await;
    let (large_grown, large_replayed) = rss_growth(tmp.path(), "large", N, 10 * 1024).await;
    let margin = 16 << 20;
    let payload_bytes = (N * 10 * 1024) as u64;
    assert!(
        large_grown < small_grown + margin && large_grown < payload_bytes / 2,
        "RSS grew {large_grown} bytes for {N} 10 KiB payloads, {small_grown} for 100 B"
    );
    assert!(
        large_replayed < small_replayed + margin,
        "after a restart RSS is {large_replayed} bytes with 10 KiB payloads, \
         {small_replayed} with 100 B"
    );
}
