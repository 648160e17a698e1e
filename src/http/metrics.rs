//! `GET /metrics`: the engine's counts in the Prometheus text format, encoded by
//! prometheus-client. The engine keeps the numbers; a fresh registry is filled per scrape,
//! so nothing here can drift from what `/stats` reports.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::error::ApiError;
use super::{text_reply, HandlerResult};
use crate::engine::Engine;
use crate::slots::ServerSlots;
use crate::wal::{WalStats, FSYNC_BUCKETS_SECONDS};

const MEDIA_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type QueueLabels = Vec<(&'static str, String)>;

/// Requirements: API-0023, SYS-0015, PER-0026, SYS-0033
pub fn render(engine: &Engine, slots: &ServerSlots) -> HandlerResult {
    let mut registry = Registry::with_prefix("qrusty");

    let available = Family::<QueueLabels, Gauge>::default();
    let locked = Family::<QueueLabels, Gauge>::default();
    let dead = Family::<QueueLabels, Gauge>::default();
    for s in engine.stats() {
        let labels = vec![("queue", label_value(&s.name))];
        available.get_or_create(&labels).set(gauge_value(s.available));
        locked.get_or_create(&labels).set(gauge_value(s.locked));
        dead.get_or_create(&labels).set(gauge_value(s.dead_lettered));
    }
    registry.register("queue_available", "Messages ready to be consumed", available);
    registry.register("queue_locked", "Messages locked by a consumer", locked);
    registry.register("queue_dead_lettered", "Messages in the dead-letter store", dead);

    let c = engine.counters();
    let counters = [
        ("published", "Messages published", c.published),
        ("acked", "Messages acknowledged", c.acked),
        ("nacked", "Messages negatively acknowledged", c.nacked),
        ("expired", "Locks that expired", c.expired),
        ("dead_lettered", "Messages moved to the dead-letter store", c.dead_lettered),
    ];
    for (name, help, value) in counters {
        registry.register(format!("messages_{name}"), help, ConstCounter::new(value));
    }

    registry.register(
        "memory_held_bytes",
        "Bytes queued messages and dead letters are charged against QRUSTY_MAX_MEMORY_BYTES",
        ConstGauge::new(gauge_value(engine.memory_held())),
    );
    registry.register(
        "memory_limit_bytes",
        "QRUSTY_MAX_MEMORY_BYTES; 0 means no limit",
        ConstGauge::new(gauge_value(engine.memory_limit())),
    );

    let refusals = [
        (
            "connections",
            "Connections refused at QRUSTY_MAX_CONNECTIONS",
            slots.connections.refused(),
        ),
        (
            "ws_sessions",
            "WebSocket upgrades refused at QRUSTY_MAX_WS_SESSIONS",
            slots.ws_sessions.refused(),
        ),
        (
            "long_polls",
            "Long polls refused at QRUSTY_MAX_WAITING_CONSUMERS",
            slots.long_polls.refused(),
        ),
        ("memory_limit", "Publishes refused at QRUSTY_MAX_MEMORY_BYTES", engine.memory_refusals()),
    ];
    for (name, help, value) in refusals {
        registry.register(format!("refused_{name}"), help, ConstCounter::new(value));
    }

    if let Some(wal) = engine.wal_stats() {
        register_wal(&mut registry, &wal);
    }

    let mut text = String::new();
    encode(&mut text, &registry)
        .map_err(|e| ApiError::internal(format!("metrics encoding failed: {e}")))?;
    Ok(text_reply(MEDIA_TYPE, text))
}

/// The log's size, its fsync latencies and the compactions it ran. Memory mode has no log
/// and exports none of these.
fn register_wal(registry: &mut Registry, wal: &WalStats) {
    registry.register(
        "wal_bytes",
        "Bytes of the log on disk: segments and checkpoint",
        ConstGauge::new(gauge_value(wal.bytes_on_disk)),
    );
    registry.register(
        "wal_segments",
        "Segment files of the log",
        ConstGauge::new(gauge_value(wal.segments as u64)),
    );
    registry.register(
        "wal_read_only",
        "1 when a failed write or fsync has turned the log read-only",
        ConstGauge::new(i64::from(wal.read_only)),
    );
    registry.register(
        "wal_records_written",
        "Records written to the log since start",
        ConstCounter::new(wal.records_written),
    );
    registry.register(
        "wal_fsync_seconds",
        "Time each fdatasync of a segment took",
        FsyncHistogram::from(wal),
    );
    registry.register(
        "compaction_runs",
        "Compactions (checkpoints) committed since start",
        ConstCounter::new(wal.compactions),
    );
    registry.register(
        "compaction_seconds",
        "Total time spent in committed compactions",
        ConstCounter::new(wal.compaction_seconds_sum),
    );
    registry.register(
        "compaction_reclaimed_bytes",
        "Log bytes freed by compactions since start",
        ConstCounter::new(wal.compaction_reclaimed_bytes),
    );
}

/// The log counts fsyncs per latency bucket itself; this hands those counts to the encoder
/// as a histogram, since prometheus-client's own histogram can only be fed observations.
#[derive(Debug)]
struct FsyncHistogram {
    sum: f64,
    count: u64,
    /// Upper bound and the count of that bucket alone (the encoder accumulates them).
    buckets: Vec<(f64, u64)>,
}

impl From<&WalStats> for FsyncHistogram {
    fn from(wal: &WalStats) -> FsyncHistogram {
        // `f64::MAX` is the encoder's marker for the `+Inf` bucket.
        let bounds = FSYNC_BUCKETS_SECONDS.iter().copied().chain([f64::MAX]);
        FsyncHistogram {
            sum: wal.fsync_seconds_sum,
            count: wal.fsyncs,
            buckets: bounds.zip(wal.fsync_buckets.iter().copied()).collect(),
        }
    }
}

impl EncodeMetric for FsyncHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<()>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// `text` as a label value of the text format: prometheus-client writes label values as
/// given, and a queue name may hold `"` or `\`, which would end the value early and make
/// the whole scrape unreadable.
/// Requirements: API-0023
fn label_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn gauge_value(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}
