//! Latency from a WebSocket publish to the `deliver` frame on an idle subscriber, on one
//! server in this process: the push path (engine wake-up, consume, lock, deliver) without the
//! load generator's closed-loop noise. Prints p50 / p99 / max per storage mode.
//!
//! `cargo bench --bench ws_push` (release, 2,000 samples per mode); `cargo test` runs it in
//! test mode with a few samples, as a check that the path works.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use qrusty::engine::{Engine, EngineOptions, StorageConfig};
use qrusty::logs::LogHub;
use qrusty::slots::Slots;
use qrusty::wal::{FsyncPolicy, WalOptions};
use qrusty::ws::WsOptions;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Gives up on a frame after this long, so a broken push path fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(10);

async fn next_of_type(ws: &mut Socket, wanted: &str) -> Value {
    loop {
        let frame = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a frame in time")
            .expect("connection open")
            .expect("a frame");
        if let Message::Text(text) = frame {
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["type"] == wanted {
                return v;
            }
        }
    }
}

async fn send(ws: &mut Socket, v: Value) {
    ws.send(Message::Text(v.to_string())).await.unwrap();
}

/// Publish-to-deliver latencies of `samples` messages, each published only once the one
/// before it was delivered and acked, so the subscriber is idle every time.
async fn measure(engine: Arc<Engine>, samples: usize) -> Vec<Duration> {
    let route = qrusty::ws::filter(engine, LogHub::detached(), WsOptions::default(), Slots::new(0));
    let (addr, serving) = warp::serve(route).bind_ephemeral(([127, 0, 0, 1], 0));
    tokio::spawn(serving);
    let url = format!("ws://{addr}/ws");
    let (mut publisher, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (mut subscriber, _) = tokio_tungstenite::connect_async(&url).await.unwrap();

    send(&mut publisher, json!({"type":"publish","queue":"lat","payload":"warm-up"})).await;
    next_of_type(&mut publisher, "ok").await;
    send(&mut subscriber, json!({"type":"subscribe","queue":"lat"})).await;

    let mut lat = Vec::with_capacity(samples);
    for n in 0..=samples {
        let started = Instant::now();
        if n > 0 {
            let payload = support::payload(n as u64);
            send(&mut publisher, json!({"type":"publish","queue":"lat","payload":payload})).await;
        }
        let d = next_of_type(&mut subscriber, "deliver").await;
        if n > 0 {
            lat.push(started.elapsed());
        }
        send(&mut subscriber, json!({"type":"ack","queue":"lat","id":d["id"],"req_id":"a"})).await;
        next_of_type(&mut subscriber, "ok").await;
        if n > 0 {
            next_of_type(&mut publisher, "ok").await.get("id").expect("publish reply");
        }
    }
    lat
}

fn report(mode: &str, mut lat: Vec<Duration>) {
    lat.sort();
    let at = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "ws publish -> deliver, {mode}: {} samples, p50 {:?}, p99 {:?}, max {:?}",
        lat.len(),
        at(0.5),
        at(0.99),
        lat.last().unwrap()
    );
}

fn main() {
    let samples = support::scaled(2000, 20);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let memory = Engine::open(EngineOptions::new(StorageConfig::Memory)).unwrap();
        report("memory", measure(memory, samples).await);

        let dir = tempfile::tempdir().unwrap();
        let wal = WalOptions { fsync: FsyncPolicy::Always, ..WalOptions::new(dir.path()) };
        let durable = Engine::open(EngineOptions::new(StorageConfig::Wal(wal))).unwrap();
        report("wal, fsync always", measure(durable, samples).await);
    });
}
