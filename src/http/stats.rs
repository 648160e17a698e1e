//! Read-only views: `/stats`, `/queue-stats/{queue}`, `/queues/{queue}/metrics`.

use serde::Serialize;
use warp::reply::Response;

use super::{finite, json_reply, HandlerResult};
use crate::engine::{Engine, MetricPoint, QueueConfig, QueueStats};

#[derive(Serialize)]
struct QueueStatsReply<'a> {
    name: &'a str,
    available: u64,
    locked: u64,
    total: u64,
    dead_lettered: u64,
    config: &'a QueueConfig,
    publish_rate_per_sec: f64,
    ack_rate_per_sec: f64,
    nack_rate_per_sec: f64,
}

impl<'a> From<&'a QueueStats> for QueueStatsReply<'a> {
    fn from(s: &'a QueueStats) -> Self {
        QueueStatsReply {
            name: &s.name,
            available: s.available,
            locked: s.locked,
            total: s.total(),
            dead_lettered: s.dead_lettered,
            config: &s.config,
            publish_rate_per_sec: finite(s.publish_rate_per_sec),
            ack_rate_per_sec: finite(s.ack_rate_per_sec),
            nack_rate_per_sec: finite(s.nack_rate_per_sec),
        }
    }
}

#[derive(Serialize, Default)]
struct Summary {
    total_queues: u64,
    total_messages: u64,
    total_available: u64,
    total_locked: u64,
}

#[derive(Serialize)]
struct StatsReply<'a> {
    queues: Vec<QueueStatsReply<'a>>,
    summary: Summary,
}

#[derive(Serialize)]
struct PointReply {
    t_ms: u64,
    total: u64,
    locked: u64,
    publish_rate_per_sec: f64,
    ack_rate_per_sec: f64,
    nack_rate_per_sec: f64,
}

impl From<MetricPoint> for PointReply {
    fn from(p: MetricPoint) -> Self {
        PointReply {
            t_ms: p.t_ms,
            total: p.total,
            locked: p.locked,
            publish_rate_per_sec: finite(p.publish_rate_per_sec),
            ack_rate_per_sec: finite(p.ack_rate_per_sec),
            nack_rate_per_sec: finite(p.nack_rate_per_sec),
        }
    }
}

#[derive(Serialize)]
struct SeriesReply<'a> {
    queue: &'a str,
    resolution_seconds: u64,
    window_seconds: u64,
    points: Vec<PointReply>,
}

/// Requirements: API-0018
pub fn all(engine: &Engine) -> Response {
    let stats = engine.stats();
    let mut summary = Summary::default();
    for s in &stats {
        summary.total_queues += 1;
        summary.total_messages += s.total();
        summary.total_available += s.available;
        summary.total_locked += s.locked;
    }
    let queues = stats.iter().map(QueueStatsReply::from).collect();
    json_reply(&StatsReply { queues, summary })
}

/// Requirements: API-0019
pub fn one(engine: &Engine, queue: &str) -> HandlerResult {
    let stats = engine.queue_stats(queue)?;
    Ok(json_reply(&QueueStatsReply::from(&stats)))
}

/// Requirements: API-0022
pub fn series(engine: &Engine, queue: &str) -> HandlerResult {
    let points = engine.metrics_series(queue)?.into_iter().map(PointReply::from).collect();
    Ok(json_reply(&SeriesReply { queue, resolution_seconds: 1, window_seconds: 60, points }))
}
