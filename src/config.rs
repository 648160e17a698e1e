//! Configuration: every setting is an environment variable and the matching command-line
//! flag (the flag wins). `qrusty --help` lists them with their defaults.
//! Requirements: SYS-0009, SYS-0010

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::wal::{FsyncPolicy, RecoveryMode};

/// Where the server keeps its data, as written in `STORAGE_MODE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageMode {
    /// The write-ahead log under `DATA_PATH`.
    Wal,
    /// Written `rocksdb` (the 0.15.0 name): the write-ahead log, announced at startup.
    RocksdbAlias,
    /// Nothing survives a restart.
    Memory,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Recovery {
    Strict,
    Truncate,
}

impl From<Recovery> for RecoveryMode {
    fn from(r: Recovery) -> Self {
        match r {
            Recovery::Strict => RecoveryMode::Strict,
            Recovery::Truncate => RecoveryMode::Truncate,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Qrusty: a durable priority-queue server.
#[derive(Parser, Debug, Clone)]
#[command(name = "qrusty", version, about, max_term_width = 100)]
pub struct Config {
    /// Address for HTTP, WebSocket and the web UI.
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:6784")]
    pub bind_addr: SocketAddr,

    /// Directory of the write-ahead log; created if missing.
    #[arg(long, env = "DATA_PATH", default_value = "./data")]
    pub data_path: PathBuf,

    /// wal | memory (rocksdb is accepted as another name for wal).
    #[arg(long, env = "STORAGE_MODE", default_value = "wal", value_parser = parse_storage_mode)]
    pub storage_mode: StorageMode,

    /// When a write counts as durable: always | `interval:<ms>` | never.
    #[arg(
        long = "fsync",
        env = "QRUSTY_FSYNC",
        default_value = "always",
        value_parser = parse_fsync
    )]
    pub fsync: FsyncPolicy,

    /// Log segment size at which a new segment starts, in bytes (at least 4096).
    #[arg(
        long,
        env = "QRUSTY_SEGMENT_BYTES",
        default_value_t = 64 * 1024 * 1024,
        value_parser = clap::value_parser!(u64).range(4096..)
    )]
    pub segment_bytes: u64,

    /// Share of the log's bytes that must be dead (superseded) before compaction runs,
    /// above 0; 1 or more never compacts.
    #[arg(
        long,
        env = "QRUSTY_COMPACTION_RATIO",
        default_value_t = crate::engine::DEFAULT_COMPACTION_RATIO,
        value_parser = parse_ratio
    )]
    pub compaction_ratio: f64,

    /// Nice value (0 to 19) of the compaction thread: higher leaves more CPU to requests
    /// while a checkpoint is written, at the cost of a longer compaction under load.
    #[arg(
        long,
        env = "QRUSTY_COMPACTION_NICE",
        default_value_t = crate::engine::DEFAULT_COMPACTION_NICE,
        value_parser = clap::value_parser!(i32).range(0..=19)
    )]
    pub compaction_nice: i32,

    /// What startup does with a damaged record that valid records follow.
    #[arg(long, env = "QRUSTY_RECOVERY", value_enum, default_value_t = Recovery::Strict)]
    pub recovery: Recovery,

    /// Largest request body accepted, in bytes; larger bodies get 413.
    #[arg(
        long,
        env = "QRUSTY_MAX_BODY_BYTES",
        default_value_t = 2 * 1024 * 1024,
        value_parser = parse_body_limit
    )]
    pub max_body_bytes: usize,

    /// When set, every route but /health needs `Authorization: Bearer <token>`.
    #[arg(long, env = "QRUSTY_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,

    /// Most queues that may exist at once; 0 means no limit.
    #[arg(long, env = "QRUSTY_MAX_QUEUES", default_value_t = 0)]
    pub max_queues: usize,

    /// Most messages one queue may hold; 0 means no limit. Publishing beyond it gets 507.
    #[arg(long, env = "QRUSTY_MAX_MESSAGES_PER_QUEUE", default_value_t = 0)]
    pub max_messages_per_queue: usize,

    /// Largest payload of one message, in bytes; 0 means no limit. Larger gets 413
    /// `message_too_large`.
    #[arg(long, env = "QRUSTY_MAX_PAYLOAD_BYTES", default_value_t = 1024 * 1024)]
    pub max_payload_bytes: usize,

    /// Most bytes queued messages may hold in RAM (payload when it is in RAM, text priority
    /// and 256 bytes each), dead letters included; 0 means no limit. Publishing beyond it gets 503
    /// `memory_limit`.
    #[arg(long, env = "QRUSTY_MAX_MEMORY_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub max_memory_bytes: u64,

    /// In wal mode, payloads longer than this many bytes are not kept in RAM: they stay in
    /// the log and are read back on delivery. 0 keeps every payload in RAM. Queues with
    /// `allow_duplicates` false keep theirs in RAM whatever this says.
    #[arg(
        long,
        env = "QRUSTY_SPILL_PAYLOAD_BYTES",
        default_value_t = crate::engine::DEFAULT_SPILL_PAYLOAD_BYTES
    )]
    pub spill_payload_bytes: usize,

    /// Most `/consume` long polls waiting at once; 0 means no limit. Beyond it a long poll
    /// that would wait gets 429 `too_many_waiters` at once.
    #[arg(long, env = "QRUSTY_MAX_WAITING_CONSUMERS", default_value_t = 1024)]
    pub max_waiting_consumers: usize,

    /// Most open TCP connections; 0 means no limit. Beyond it a new connection gets 503
    /// `too_many_connections` and is closed.
    #[arg(long, env = "QRUSTY_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Most WebSocket sessions at once; 0 means no limit. Beyond it an upgrade gets 503
    /// `too_many_sessions`.
    #[arg(long, env = "QRUSTY_MAX_WS_SESSIONS", default_value_t = 1024)]
    pub max_ws_sessions: usize,

    /// Comma-separated origins CORS lets in (`*`: any). Unset: any origin when no token is
    /// set, none when one is.
    #[arg(long, env = "QRUSTY_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Option<Vec<String>>,

    /// Log filter in tracing's syntax, e.g. `info` or `qrusty=debug,warp=info`.
    #[arg(long = "log", env = "RUST_LOG", default_value = "info")]
    pub rust_log: String,

    /// Log line format.
    #[arg(long, env = "QRUSTY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Serve the web UI from this directory instead of the files built into the binary.
    #[arg(long, env = "WEBUI_DIR")]
    pub webui_dir: Option<PathBuf>,

    /// Seconds between WebSocket pings.
    #[arg(long, env = "WS_PING_INTERVAL_SECS", default_value_t = 30)]
    pub ws_ping_interval_secs: u64,

    /// Extra seconds a silent WebSocket client gets before it is closed.
    #[arg(long, env = "WS_PING_TIMEOUT_SECS", default_value_t = 10)]
    pub ws_ping_timeout_secs: u64,

    /// Seconds a connection may go without a byte moving either way before it is closed,
    /// a half-sent request and a reply the client stopped reading included; 0 means never.
    /// Must be above the WebSocket ping interval plus its timeout and above the 20 s
    /// long-poll maximum, or live clients would be cut.
    #[arg(long, env = "QRUSTY_IDLE_TIMEOUT_SECS", default_value_t = 120)]
    pub idle_timeout_secs: u64,
}

impl Config {
    pub fn ws_ping_interval(&self) -> Duration {
        Duration::from_secs(self.ws_ping_interval_secs)
    }

    pub fn ws_ping_timeout(&self) -> Duration {
        Duration::from_secs(self.ws_ping_timeout_secs)
    }

    /// `None` when connections may idle forever.
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_secs > 0).then(|| Duration::from_secs(self.idle_timeout_secs))
    }

    /// Checks what one setting cannot check alone.
    /// Requirements: SYS-0031
    pub fn validate(&self) -> Result<(), String> {
        let ws_silence = self.ws_ping_interval_secs.saturating_add(self.ws_ping_timeout_secs);
        let floor = ws_silence.max(crate::engine::MAX_WAIT_SECS);
        if self.idle_timeout_secs > 0 && self.idle_timeout_secs <= floor {
            return Err(format!(
                "QRUSTY_IDLE_TIMEOUT_SECS={} must be above {floor} (the WebSocket ping \
                 interval plus timeout, and the {} s long-poll maximum), or 0",
                self.idle_timeout_secs,
                crate::engine::MAX_WAIT_SECS
            ));
        }
        Ok(())
    }
}

/// Requirements: SYS-0007
fn parse_storage_mode(value: &str) -> Result<StorageMode, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "wal" => Ok(StorageMode::Wal),
        "rocksdb" => Ok(StorageMode::RocksdbAlias),
        "memory" => Ok(StorageMode::Memory),
        _ => Err(format!("'{value}' is not a storage mode; use wal or memory")),
    }
}

/// Requirements: PER-0030
fn parse_ratio(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("'{value}' is not a ratio above 0, such as 0.5")),
    }
}

/// Requirements: PER-0008
fn parse_fsync(value: &str) -> Result<FsyncPolicy, String> {
    let value = value.trim();
    match value {
        "always" => return Ok(FsyncPolicy::Always),
        "never" => return Ok(FsyncPolicy::Never),
        _ => {}
    }
    let ms = value
        .strip_prefix("interval:")
        .and_then(|ms| ms.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .ok_or_else(|| {
            format!("'{value}' is not an fsync policy; use always, never or interval:<ms>")
        })?;
    Ok(FsyncPolicy::Interval(Duration::from_millis(ms)))
}

fn parse_body_limit(value: &str) -> Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(n) if n >= 1024 => Ok(n),
        _ => Err(format!("'{value}' is not a body limit; give a number of bytes, at least 1024")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("qrusty").chain(args.iter().copied()))
    }

    // Verifies: SYS-0009, PER-0008
    #[test]
    fn flags_override_defaults() {
        let cfg = parse(&["--storage-mode", "memory", "--fsync", "interval:250"]).unwrap();
        assert_eq!(cfg.storage_mode, StorageMode::Memory);
        assert_eq!(cfg.fsync, FsyncPolicy::Interval(Duration::from_millis(250)));
    }

    // Verifies: SYS-0007
    #[test]
    fn rocksdb_is_an_alias_and_unknown_modes_are_refused() {
        assert_eq!(parse_storage_mode("rocksdb"), Ok(StorageMode::RocksdbAlias));
        assert!(parse(&["--storage-mode", "sqlite"]).is_err());
    }

    // Verifies: PER-0008
    #[test]
    fn bad_fsync_policies_are_refused() {
        for bad in ["sometimes", "interval:", "interval:0", "interval:x"] {
            assert!(parse_fsync(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_fsync("never"), Ok(FsyncPolicy::Never));
    }

    // Verifies: SYS-0024, API-0032, SYS-0034
    #[test]
    fn limits_have_defaults_and_cors_origins_are_a_list() {
        let cfg = parse(&[]).unwrap();
        assert_eq!(cfg.max_payload_bytes, 1 << 20);
        assert_eq!(cfg.max_memory_bytes, 1 << 30);
        assert_eq!((cfg.max_waiting_consumers, cfg.max_ws_sessions), (1024, 1024));
        assert_eq!(cfg.max_connections, 4096);
        assert_eq!(cfg.cors_origins, None);
        assert_eq!(cfg.spill_payload_bytes, 64);
        let cfg = parse(&["--cors-origins", "https://a.example,https://b.example"]).unwrap();
        assert_eq!(cfg.cors_origins.unwrap(), ["https://a.example", "https://b.example"]);
    }

    // Verifies: PER-0030
    #[test]
    fn compaction_settings_have_defaults_and_bounds() {
        let cfg = parse(&[]).unwrap();
        assert_eq!((cfg.compaction_ratio, cfg.compaction_nice), (0.5, 19));
        let cfg = parse(&["--compaction-ratio", "0.75", "--compaction-nice", "0"]).unwrap();
        assert_eq!((cfg.compaction_ratio, cfg.compaction_nice), (0.75, 0));
        for bad in ["0", "-1", "NaN", "inf", "half"] {
            assert!(parse(&["--compaction-ratio", bad]).is_err(), "{bad}");
        }
        assert!(parse(&["--compaction-nice", "20"]).is_err());
        assert!(parse(&["--compaction-nice", "-5"]).is_err());
    }

    // Verifies: SYS-0031
    #[test]
    fn an_idle_timeout_that_would_cut_live_clients_is_refused() {
        assert_eq!(parse(&[]).unwrap().idle_timeout(), Some(Duration::from_secs(120)));
        assert!(parse(&[]).unwrap().validate().is_ok());
        assert!(parse(&["--idle-timeout-secs", "0"]).unwrap().validate().is_ok());
        // The default ping interval and timeout add up to 40 s.
        assert!(parse(&["--idle-timeout-secs", "40"]).unwrap().validate().is_err());
        assert!(parse(&["--idle-timeout-secs", "41"]).unwrap().validate().is_ok());
        let short_pings = ["--ws-ping-interval-secs", "5", "--ws-ping-timeout-secs", "5"];
        let args = [&short_pings[..], &["--idle-timeout-secs", "20"]].concat();
        assert!(parse(&args).unwrap().validate().is_err(), "not above the long poll");
    }

    #[test]
    fn tiny_segments_and_body_limits_are_refused() {
        assert!(parse(&["--segment-bytes", "100"]).is_err());
        assert!(parse(&["--max-body-bytes", "10"]).is_err());
    }
}
