//! `/metrics` on a server with a write-ahead log: the log's size, its fsync latencies and
//! the compactions it ran, which an operator watches to see that disk use follows the live
//! data.

use std::time::Duration;

use qrusty::engine::{Engine, EngineOptions, StorageConfig};
use qrusty::logs::LogHub;
use qrusty::server::{self, ServerConfig, ServerLimits};
use qrusty::wal::WalOptions;
use qrusty::ws::WsOptions;
use serde_json::{json, Value};

/// The value of the sample line `name` (no labels) in a Prometheus text exposition.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
        .parse()
        .expect("a number")
}

// Verifies: API-0023, PER-0026
#[tokio::test]
async fn metrics_report_log_size_fsyncs_and_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = WalOptions::new(dir.path());
    wal.segment_bytes = 16 << 10;
    let engine = Engine::open(EngineOptions::new(StorageConfig::Wal(wal))).unwrap();
    let cfg = ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        max_body_bytes: 1 << 20,
        api_token: None,
        webui_dir: None,
        ws: WsOptions::default(),
        cors_origins: None,
        limits: ServerLimits::default(),
    };
    let srv = server::start(cfg, engine.clone(), LogHub::detached()).await.unwrap();
    let base = format!("http://{}", srv.addr);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let metrics = || async {
        let reply = http.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(reply.status(), 200);
        reply.text().await.unwrap()
    };

    let before = metrics().await;
    assert_eq!(sample(&before, "qrusty_compaction_runs_total"), 0.0);
    assert_eq!(sample(&before, "qrusty_wal_records_written_total"), 0.0);

    // Enough acknowledged churn to fill several segments with records that are all dead.
    let payload = "x".repeat(200);
    for i in 0..200 {
        let body = json!({"queue": "churn", "priority": i, "payload": format!("{i}{payload}")});
        let reply = http.post(format!("{base}/publish")).json(&body).send().await.unwrap();
        assert_eq!(reply.status(), 200);
        let url = format!("{base}/consume/churn");
        let reply = http.post(url).json(&json!({"consumer_id": "w"})).send().await.unwrap();
        let msg: Value = reply.json().await.unwrap();
        let id = msg["id"].as_str().unwrap().to_owned();
        let url = format!("{base}/ack/churn/{id}");
        let reply = http.post(url).json(&json!({"consumer_id": "w"})).send().await.unwrap();
        assert_eq!(reply.status(), 200);
    }

    // The churn left the sealed segments dead: the background trigger compacts them.
    let mut busy = metrics().await;
    for _ in 0..100 {
        if sample(&busy, "qrusty_compaction_runs_total") >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        busy = metrics().await;
    }
    let runs = sample(&busy, "qrusty_compaction_runs_total");
    assert!(runs >= 1.0, "no compaction after 600 dead records:\n{busy}");
    assert!(sample(&busy, "qrusty_compaction_reclaimed_bytes_total") > 0.0, "{busy}");
    assert!(sample(&busy, "qrusty_compaction_seconds_total") > 0.0, "{busy}");
    assert!(sample(&busy, "qrusty_wal_segments") >= 1.0, "{busy}");
    assert_eq!(sample(&busy, "qrusty_wal_read_only"), 0.0);
    // The implicit creation of the queue, then a publish, a lock and an ack per message.
    assert_eq!(sample(&busy, "qrusty_wal_records_written_total"), 601.0, "{busy}");
    // 600 records of 200+ bytes were written; what stays on disk is far less.
    assert!(sample(&busy, "qrusty_wal_bytes") < 200.0 * 200.0, "{busy}");
    // Every acknowledged write was covered by an fsync, each one counted in the histogram.
    let fsyncs = sample(&busy, "qrusty_wal_fsync_seconds_count");
    assert!(fsyncs >= 1.0, "{busy}");
    assert_eq!(sample(&busy, "qrusty_wal_fsync_seconds_bucket{le=\"+Inf\"}"), fsyncs);

    // A compaction with nothing logged since the last one does nothing and counts no run:
    // log one record first.
    let body = json!({"queue": "churn", "priority": 1, "payload": "after"});
    let reply = http.post(format!("{base}/publish")).json(&body).send().await.unwrap();
    assert_eq!(reply.status(), 200);
    let engine2 = engine.clone();
    let report = tokio::task::spawn_blocking(move || engine2.compact()).await.unwrap().unwrap();
    let after = metrics().await;
    assert_eq!(sample(&after, "qrusty_compaction_runs_total"), runs + 1.0);
    assert!(
        sample(&after, "qrusty_compaction_reclaimed_bytes_total")
            >= sample(&busy, "qrusty_compaction_reclaimed_bytes_total"),
        "{report:?}"
    );

    srv.shutdown().await;
    engine.shutdown().await;
}
