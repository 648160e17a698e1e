//! `kill -9` of a real server process under load: after a restart every publish that got a
//! 200 is there, and no acked message comes back.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start(data: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_qrusty"))
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("DATA_PATH", data)
        .env("STORAGE_MODE", "wal")
        .env("QRUSTY_FSYNC", "always")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the qrusty binary starts")
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        if let Ok(r) = client.get(format!("{base}/health")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("server at {base} did not become healthy");
}

// Verifies: PER-0019, SYS-0005
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_publish_and_resurrects_no_ack() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut server = start(dir.path(), port);
    wait_healthy(&client, &base).await;

    let published = Arc::new(Mutex::new(HashSet::<String>::new()));
    let acked = Arc::new(Mutex::new(HashSet::<String>::new()));
    // Acks sent whose reply never came: the kill may have struck after the ack was durable
    // and before its 200 left, so each of these may be gone or back, and both are right.
    let ack_unknown = Arc::new(Mutex::new(HashSet::<String>::new()));
    let stop_at = Instant::now() + Duration::from_millis(1500);
    let mut tasks = vec![];
    for w in 0..8 {
        let (client, base, published) = (client.clone(), base.clone(), published.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            // Bounded in time, and in count as a second guard.
            while Instant::now() < stop_at && i < 100_000 {
                let body = json!({"queue": "k", "priority": i % 10, "payload": format!("{w}-{i}")});
                let Ok(r) = client.post(format!("{base}/publish")).json(&body).send().await else {
                    break;
                };
                if r.status().is_success() {
                    let v: Value = r.json().await.unwrap();
                    published.lock().unwrap().insert(v["id"].as_str().unwrap().to_string());
                }
                i += 1;
            }
        }));
    }
    {
        let (client, base) = (client.clone(), base.clone());
        let (acked, ack_unknown) = (acked.clone(), ack_unknown.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < stop_at {
                let body = json!({"consumer_id": "c", "timeout_seconds": 1});
                let Ok(r) = client.post(format!("{base}/consume/k")).json(&body).send().await
                else {
                    break;
                };
                let v: Value = r.json().await.unwrap_or(Value::Null);
                let Some(id) = v["id"].as_str() else { continue };
                let url = format!("{base}/ack/k/{id}");
                match client.post(url).json(&json!({"consumer_id": "c"})).send().await {
                    Ok(r) if r.status().is_success() => {
                        acked.lock().unwrap().insert(id.to_string());
                    }
                    Ok(_) => {}
                    Err(_) => {
                        ack_unknown.lock().unwrap().insert(id.to_string());
                    }
                }
            }
        }));
    }
    // Kill while requests are in flight.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    server.kill().unwrap();
    server.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let published = published.lock().unwrap().clone();
    let acked = acked.lock().unwrap().clone();
    let ack_unknown = ack_unknown.lock().unwrap().clone();
    assert!(published.len() > 100, "the load published only {} messages", published.len());

    let mut server = start(dir.path(), port);
    wait_healthy(&client, &base).await;
    // Locks taken before the kill were 1 s long.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut seen = HashSet::new();
    for _ in 0..published.len() + 10 {
        let body = json!({"consumer_id": "check", "timeout_seconds": 600, "max_messages": 1000});
        let r = client.post(format!("{base}/consume-batch/k")).json(&body).send().await.unwrap();
        let v: Value = r.json().await.unwrap();
        let batch = v.as_array().unwrap();
        if batch.is_empty() {
            break;
        }
        for m in batch {
            seen.insert(m["id"].as_str().unwrap().to_string());
        }
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let resurrected: Vec<_> = acked.intersection(&seen).collect();
    assert!(resurrected.is_empty(), "acked messages came back: {resurrected:?}");
    let lost: Vec<_> = published
        .difference(&seen)
        .filter(|id| !acked.contains(*id) && !ack_unknown.contains(*id))
        .collect();
    assert!(lost.is_empty(), "{} acknowledged publishes were lost", lost.len());
}
