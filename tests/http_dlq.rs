//! The dead-letter routes: listing, redrive back to the original place, purge.

mod common;

use common::TestServer;
use serde_json::{json, Value};

/// Publishes `payloads` with max_retries 0 and nacks each once, dead-lettering it.
async fn dead_letter(s: &TestServer, queue: &str, payloads: &[&str]) -> Vec<String> {
    let mut ids = Vec::new();
    for p in payloads {
        let id = s.publish_with_retries(queue, p, 0).await;
        let msg = s.consume(queue, "w").await.unwrap();
        assert_eq!(msg["id"], id.as_str());
        s.nack(queue, &id, "w").await.assert_ok_empty();
        s.clock.advance_ms(1);
        ids.push(id);
    }
    ids
}

fn ids_of(list: &Value) -> Vec<&str> {
    list.as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect()
}

// Verifies: DLV-0015, DLV-0010, DLV-0028
#[tokio::test]
async fn dead_letters_are_listed_oldest_first_with_their_fields() {
    let s = TestServer::start().await;
    s.create_queue("q", json!({"ordering": "MaxFirst"})).await;
    let ids = dead_letter(&s, "q", &["a", "b", "c"]).await;

    let reply = s.get("/dlq/q").await;
    assert_eq!(reply.status, 200);
    let list = reply.json();
    assert_eq!(ids_of(&list), ids);
    let first = &list[0];
    assert_eq!(first["payload"], "a");
    assert_eq!(first["priority"], 1);
    assert_eq!(first["retry_count"], 1);
    assert!(first["dead_lettered_at_ms"].as_u64().unwrap() >= common::START_MS);

    let limited = s.get("/dlq/q?limit=2").await.json();
    assert_eq!(ids_of(&limited), ids[..2]);
    s.get("/dlq/q?limit=lots").await.assert_error(422, "invalid_request");
    assert_eq!(s.get("/dlq/unknown").await.json(), json!([]));
    s.stop().await;
}

// Verifies: DLV-0016, SCH-0010
#[tokio::test]
async fn redrive_of_named_ids_puts_them_back_with_retry_count_zero() {
    let s = TestServer::start().await;
    s.create_queue("q", json!({"ordering": "Fifo"})).await;
    let ids = dead_letter(&s, "q", &["a", "b"]).await;
    s.publish("q", json!(1), "newer").await;

    let reply = s.post("/dlq/q/redrive", json!({"ids": [ids[0], "unknown"]})).await;
    assert_eq!(reply.json(), json!({"redriven": 1}));
    assert_eq!(ids_of(&s.get("/dlq/q").await.json()), [ids[1].as_str()]);

    // Back at its original place, ahead of the newer message, counted afresh.
    let msg = s.consume("q", "w").await.unwrap();
    assert_eq!((msg["payload"].as_str(), msg["retry_count"].as_u64()), (Some("a"), Some(1)));
    s.stop().await;
}

// Verifies: DLV-0016
#[tokio::test]
async fn redrive_without_a_body_moves_every_dead_letter() {
    let s = TestServer::start().await;
    dead_letter(&s, "q", &["a", "b", "c"]).await;
    let reply = s.post_empty("/dlq/q/redrive").await;
    assert_eq!(reply.json(), json!({"redriven": 3}));
    assert_eq!(s.queue_stats("q").await["available"], 3);
    assert_eq!(s.queue_stats("q").await["dead_lettered"], 0);
    s.stop().await;
}

// Verifies: DLV-0016
#[tokio::test]
async fn redrive_honours_allow_duplicates() {
    let s = TestServer::start().await;
    s.create_queue("q", json!({"ordering": "Fifo", "allow_duplicates": false})).await;
    dead_letter(&s, "q", &["same"]).await;
    s.publish("q", json!(1), "same").await;

    let reply = s.post("/dlq/q/redrive", json!({})).await;
    assert_eq!(reply.json(), json!({"redriven": 0}));
    assert_eq!(s.queue_stats("q").await["dead_lettered"], 1);
    s.stop().await;
}

// Verifies: DLV-0017
#[tokio::test]
async fn purge_drops_dead_letters_only() {
    let s = TestServer::start().await;
    dead_letter(&s, "q", &["a", "b"]).await;
    s.publish("q", json!(1), "live").await;

    let reply = s.post_empty("/dlq/q/purge").await;
    assert_eq!(reply.json(), json!({"purged": 2}));
    assert_eq!(s.get("/dlq/q").await.json(), json!([]));
    assert_eq!(s.drain("q").await, ["live"]);
    s.stop().await;
}

// Verifies: DLV-0018
#[tokio::test]
async fn deleting_a_queue_removes_its_dead_letters() {
    let s = TestServer::start().await;
    dead_letter(&s, "q", &["a"]).await;
    s.delete("/delete-queue/q").await;
    assert_eq!(s.get("/dlq/q").await.json(), json!([]));
    s.stop().await;
}
