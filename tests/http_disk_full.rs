//! A full disk under the HTTP server: the write that hits ENOSPC (injected through the
//! simulated file system) answers 503 `storage_unavailable`, every later write does too
//! while reads keep working, and after a restart every acknowledged message is there and
//! nothing of the failed writes is.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::{enc, TestServer};
use qrusty::engine::{Engine, EngineOptions, StorageConfig};
use qrusty::wal::{CrashMode, Fault, SimFs, WalOptions};
use serde_json::json;

fn on_sim(fs: &SimFs) -> impl FnOnce(&mut EngineOptions) + '_ {
    move |opts| {
        opts.storage = StorageConfig::Wal(WalOptions::new("/sim"));
        opts.fs = Some(Arc::new(fs.clone()));
    }
}

// Verifies: PER-0028, PER-0009
#[tokio::test]
async fn enospc_answers_503_and_the_log_is_intact_after_a_restart() {
    let fs = SimFs::new(29);
    let s = TestServer::start_engine(on_sim(&fs), |_| {}).await;
    let mut kept = BTreeSet::new();
    for i in 0..10 {
        kept.insert(s.publish("q", json!(i), &format!("m{i}")).await);
    }
    // Three confirmed acks: those messages must stay gone.
    for _ in 0..3 {
        let got = s.consume("q", "c").await.expect("a message");
        let id = got["id"].as_str().unwrap().to_owned();
        let path = format!("/ack/q/{}", enc(&id));
        s.post(&path, json!({"consumer_id": "c"})).await.assert_ok_empty();
        kept.remove(&id);
    }

    fs.inject(Fault::NoSpace, 1);
    let full = json!({"queue": "q", "priority": 1, "payload": "disk full"});
    s.post("/publish", full.clone()).await.assert_error(503, "storage_unavailable");
    // The log is read-only now: writes keep failing, reads keep answering.
    s.post("/publish", full).await.assert_error(503, "storage_unavailable");
    let consume = s.post("/consume/q", json!({"consumer_id": "c"})).await;
    consume.assert_error(503, "storage_unavailable");
    assert_eq!(s.get("/stats").await.status, 200);
    assert!(s.health_is_ok().await);
    s.stop().await;

    // The restart an operator does once space is back: a power cut's worth of loss at most.
    fs.crash(CrashMode::Durable);
    let mut opts = EngineOptions::new(StorageConfig::Memory);
    on_sim(&fs)(&mut opts);
    let engine = Engine::open(opts).expect("the log opens after ENOSPC");
    let got = engine.consume("q", "after", 30, 1000, Duration::ZERO).await.unwrap();
    let ids: BTreeSet<String> = got.iter().map(|d| d.id.clone()).collect();
    assert_eq!(ids, kept, "exactly the acknowledged, unacked messages");
    assert!(got.iter().all(|d| d.payload != "disk full"));
    // And it takes writes again.
    let msg = qrusty::engine::NewMessage {
        priority: qrusty::engine::Priority::Num(1),
        payload: "space is back".into(),
        max_retries: 3,
    };
    engine.publish("q", msg).await.unwrap();
    engine.shutdown().await;
}
