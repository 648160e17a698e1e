//! `GET /metrics`: the engine's counts in the Prometheus text format, encoded by
//! prometheus-client. The engine keeps the numbers; a fresh registry is filled per scrape,
//! so nothing here can drift from what `/stats` reports.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::error::ApiError;
use super::{text_reply, HandlerResult};
use crate::engine::Engine;

const MEDIA_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type QueueLabels = Vec<(&'static str, String)>;

// Limitation: the log's byte and segment counts, the fsync latency histogram and the
// compaction runs of changes.md §3 are not exported yet: the engine has no accessor for
// them.
/// Requirements: API-0023, SYS-0015
pub fn render(engine: &Engine) -> HandlerResult {
    let mut registry = Registry::with_prefix("qrusty");

    let available = Family::<QueueLabels, Gauge>::default();
    let locked = Family::<QueueLabels, Gauge>::default();
    let dead = Family::<QueueLabels, Gauge>::default();
    for s in engine.stats() {
        let labels = vec![("queue", s.name.clone())];
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

    let mut text = String::new();
    encode(&mut text, &registry)
        .map_err(|e| ApiError::internal(format!("metrics encoding failed: {e}")))?;
    Ok(text_reply(MEDIA_TYPE, text))
}

fn gauge_value(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}
