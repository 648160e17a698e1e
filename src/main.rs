//! The `qrusty` binary: reads the configuration, opens the engine, serves until SIGTERM
//! or SIGINT, then shuts down in order: stop accepting, finish in-flight requests, make
//! the log durable, exit 0.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use qrusty::config::{Config, LogFormat, StorageMode};
use qrusty::engine::{Engine, EngineOptions, StorageConfig};
use qrusty::server::{self, ServerConfig, ServerLimits};
use qrusty::wal::WalOptions;
use qrusty::ws::WsOptions;

/// Room for a record's framing and bookkeeping on top of the largest body.
const RECORD_OVERHEAD_BYTES: usize = 64 * 1024;

fn main() -> ExitCode {
    let cfg = Config::parse();
    let logs = qrusty::logs::init(&cfg.rust_log, cfg.log_format == LogFormat::Json);

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => return fail(&format!("cannot start the async runtime: {err}")),
    };
    match runtime.block_on(run(cfg, logs)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => fail(&msg),
    }
}

fn fail(msg: &str) -> ExitCode {
    tracing::error!(cause = msg, "qrusty cannot start");
    eprintln!("qrusty: {msg}");
    ExitCode::FAILURE
}

/// Requirements: SYS-0008, SYS-0011, PER-0027
async fn run(cfg: Config, logs: Arc<qrusty::logs::LogHub>) -> Result<(), String> {
    cfg.validate()?;
    let engine = Engine::open(engine_options(&cfg))
        .map_err(|e| format!("cannot open storage under {}: {e}", cfg.data_path.display()))?;
    if engine.is_volatile() {
        tracing::warn!("STORAGE_MODE=memory: data is not persisted and is lost on restart");
    }

    let server_cfg = ServerConfig {
        bind: cfg.bind_addr,
        max_body_bytes: cfg.max_body_bytes,
        api_token: cfg.api_token.clone(),
        webui_dir: cfg.webui_dir.clone(),
        ws: WsOptions {
            ping_interval: cfg.ws_ping_interval(),
            ping_timeout: cfg.ws_ping_timeout(),
        },
        cors_origins: cfg.cors_origins.clone(),
        limits: ServerLimits {
            max_connections: qrusty::fdlimit::fit_connection_cap(cfg.max_connections),
            max_ws_sessions: cfg.max_ws_sessions,
            max_waiting_consumers: cfg.max_waiting_consumers,
            idle_timeout: cfg.idle_timeout(),
        },
    };
    let server = match server::start(server_cfg, engine.clone(), logs).await {
        Ok(server) => server,
        Err(err) => {
            engine.shutdown().await;
            return Err(format!("cannot listen on {}: {err}", cfg.bind_addr));
        }
    };

    let signal = wait_for_signal().await?;
    tracing::info!(signal, "shutting down");
    server.shutdown().await;
    engine.shutdown().await;
    tracing::info!("shutdown complete");
    Ok(())
}

fn engine_options(cfg: &Config) -> EngineOptions {
    let storage = match cfg.storage_mode {
        StorageMode::Memory => StorageConfig::Memory,
        StorageMode::Wal | StorageMode::RocksdbAlias => {
            if cfg.storage_mode == StorageMode::RocksdbAlias {
                tracing::info!("STORAGE_MODE=rocksdb is read as wal: the write-ahead log");
            }
            let max_record = cfg.max_body_bytes.saturating_add(RECORD_OVERHEAD_BYTES);
            StorageConfig::Wal(WalOptions {
                dir: cfg.data_path.clone(),
                segment_bytes: cfg.segment_bytes,
                fsync: cfg.fsync,
                recovery: cfg.recovery.into(),
                max_record_bytes: u32::try_from(max_record).unwrap_or(u32::MAX),
            })
        }
    };
    tracing::info!(
        storage = ?cfg.storage_mode,
        data_path = %cfg.data_path.display(),
        bind = %cfg.bind_addr,
        "starting qrusty {}",
        env!("CARGO_PKG_VERSION")
    );
    let mut opts = EngineOptions::new(storage);
    opts.max_queues = cfg.max_queues;
    opts.max_messages_per_queue = cfg.max_messages_per_queue;
    opts.max_payload_bytes = cfg.max_payload_bytes;
    opts.max_memory_bytes = cfg.max_memory_bytes;
    opts.spill_payload_bytes = cfg.spill_payload_bytes;
    opts.compaction_ratio = cfg.compaction_ratio;
    opts.compaction_nice = cfg.compaction_nice;
    opts
}

/// Resolves with the name of the first SIGTERM or SIGINT.
async fn wait_for_signal() -> Result<&'static str, String> {
    use tokio::signal::unix::{signal, SignalKind};

    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot listen for SIGTERM: {e}"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot listen for SIGINT: {e}"))?;
    tokio::select! {
        _ = term.recv() => Ok("SIGTERM"),
        _ = int.recv() => Ok("SIGINT"),
    }
}
