//! Delivery over HTTP: consume replies, holders and lock tokens, lock expiry moved by the
//! test clock, retries and dead letters, renew, batches, long polls, duplicate payloads,
//! and concurrent consumers each getting a message exactly once.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestServer, START_MS};
use serde_json::{json, Value};

fn id_of(msg: &Value) -> &str {
    msg["id"].as_str().expect("delivery has an id")
}

// Verifies: API-0016, DLV-0001, DLV-0004
#[tokio::test]
async fn consume_reply_has_the_contract_fields_and_a_lock_token() {
    let s = TestServer::start().await;
    let id = s.publish("q", json!(3), "{\"order\":1}").await;
    assert_eq!(id.len(), 36, "ids are hyphenated UUIDs: {id}");

    let msg = s.consume("q", "w").await.unwrap();
    let mut keys: Vec<&str> = msg.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["id", "lock_token", "payload", "retry_count"]);
    assert_eq!(msg["id"], id.as_str());
    assert_eq!(msg["payload"], "{\"order\":1}");
    assert_eq!(msg["retry_count"], 1);
    assert!(msg["lock_token"].as_str().is_some_and(|t| !t.is_empty()));
    s.stop().await;
}

// Verifies: API-0016
#[tokio::test]
async fn consume_of_an_empty_or_unknown_queue_answers_null() {
    let s = TestServer::start().await;
    let reply = s.post("/consume/never-seen", json!({"consumer_id": "w"})).await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "null"));
    s.stop().await;
}

// Verifies: DLV-0006, DLV-0008, API-0017
#[tokio::test]
async fn only_the_holder_may_ack_or_nack() {
    let s = TestServer::start().await;
    s.publish("q", json!(1), "x").await;
    let msg = s.consume("q", "owner").await.unwrap();

    s.ack("q", id_of(&msg), "intruder").await.assert_error(404, "not_locked");
    s.nack("q", id_of(&msg), "intruder").await.assert_error(404, "not_locked");
    assert_eq!(s.queue_stats("q").await["locked"], 1);

    s.ack("q", id_of(&msg), "owner").await.assert_ok_empty();
    // Acked means deleted: a second ack finds nothing.
    s.ack("q", id_of(&msg), "owner").await.assert_error(404, "not_locked");
    assert_eq!(s.queue_stats("q").await["total"], 0);
    s.stop().await;
}

// Verifies: DLV-0006, API-0003
#[tokio::test]
async fn ack_of_an_unknown_id_is_404_with_a_json_body() {
    let s = TestServer::start().await;
    s.publish("q", json!(1), "x").await;
    s.ack("q", "00000000-0000-4000-8000-000000000000", "w").await.assert_error(404, "not_locked");
    assert!(s.health_is_ok().await);
    s.stop().await;
}

// Verifies: DLV-0007, DLV-0003, DLV-0004
#[tokio::test]
async fn an_expired_lock_frees_the_message_at_its_deadline_exactly() {
    let s = TestServer::start().await;
    s.publish("q", json!(1), "x").await;
    let first = s.consume_for("q", "slow", 10).await.unwrap();

    s.clock.advance_ms(9_999);
    assert!(s.consume("q", "other").await.is_none(), "still locked 1 ms before the deadline");
    assert_eq!(s.queue_stats("q").await["locked"], 1);

    s.clock.advance_ms(1);
    let second = s.consume("q", "other").await.expect("consumable at the deadline");
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["retry_count"], 2);
    assert_ne!(second["lock_token"], first["lock_token"]);
    s.stop().await;
}

// Verifies: DLV-0007
#[tokio::test]
async fn the_old_holder_cannot_ack_after_its_lock_expired() {
    let s = TestServer::start().await;
    s.publish("q", json!(1), "x").await;
    let msg = s.consume_for("q", "slow", 5).await.unwrap();
    s.advance_secs(6);
    s.ack("q", id_of(&msg), "slow").await.assert_error(404, "not_locked");
    s.stop().await;
}

// Verifies: DLV-0005
#[tokio::test]
async fn a_stale_lock_token_is_told_apart_from_the_current_delivery() {
    let s = TestServer::start().await;
    s.publish("q", json!(1), "x").await;
    let first = s.consume_for("q", "w", 5).await.unwrap();
    s.advance_secs(5);
    // The same consumer takes the message again after its lock expired.
    let second = s.consume_for("q", "w", 30).await.unwrap();
    assert_eq!(second["id"], first["id"]);

    let path = format!("/ack/q/{}", id_of(&first));
    let stale = s.post(&path, json!({"consumer_id": "w", "lock_token": first["lock_token"]}));
    stale.await.assert_error(409, "stale_lock");

    let current = s.post(&path, json!({"consumer_id": "w", "lock_token": second["lock_token"]}));
    current.await.assert_ok_empty();
    s.stop().await;
}

// Verifies: DLV-0001, DLV-0009
#[tokio::test]
async fn retry_count_rises_with_each_delivery_and_nack_dead_letters_at_max_retries() {
    let s = TestServer::start().await;
    let id = s.publish_with_retries("q", "poison", 3).await;
    for expected in 1..=3u64 {
        let msg = s.consume("q", "w").await.unwrap();
        assert_eq!(msg["retry_count"], expected);
        s.nack("q", &id, "w").await.assert_ok_empty();
    }
    assert!(s.consume("q", "w").await.is_none());

    let stats = s.queue_stats("q").await;
    assert_eq!((stats["total"].as_u64(), stats["dead_lettered"].as_u64()), (Some(0), Some(1)));
    let dlq = s.get("/dlq/q").await.json();
    assert_eq!(dlq[0]["id"], id.as_str());
    assert_eq!(dlq[0]["retry_count"], 3);
    s.stop().await;
}

// Verifies: DLV-0011
#[tokio::test]
async fn lock_expiry_at_max_retries_dead_letters_the_message() {
    let s = TestServer::start().await;
    let id = s.publish_with_retries("q", "kills its worker", 1).await;
    let msg = s.consume_for("q", "w", 10).await.unwrap();
    assert_eq!(msg["retry_count"], 1);

    s.advance_secs(10);
    assert!(s.consume("q", "w").await.is_none(), "dead-lettered instead of redelivered");
    let stats = s.queue_stats("q").await;
    assert_eq!((stats["total"].as_u64(), stats["dead_lettered"].as_u64()), (Some(0), Some(1)));
    assert_eq!(s.get("/dlq/q").await.json()[0]["id"], id.as_str());
    s.stop().await;
}

// Verifies: DLV-0012
#[tokio::test]
async fn renew_moves_the_deadline_for_the_holder_only() {
    let s = TestServer::start().await;
    s.publish("q", json!(1), "x").await;
    let msg = s.consume_for("q", "w", 10).await.unwrap();
    s.advance_secs(8);

    let path = format!("/renew/q/{}", id_of(&msg));
    let reply = s.post(&path, json!({"consumer_id": "w", "timeout_seconds": 10})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!({"locked_until_ms": START_MS + 18_000}));

    s.post(&path, json!({"consumer_id": "other"})).await.assert_error(404, "not_locked");
    s.advance_secs(5);
    assert!(s.consume("q", "other").await.is_none(), "the renewed lock still holds");
    s.ack("q", id_of(&msg), "w").await.assert_ok_empty();
    s.stop().await;
}

// Verifies: DLV-0005, DLV-0012
#[tokio::test]
async fn renew_with_a_stale_token_conflicts() {
    let s = TestServer::start().await;
    s.publish("q", json!(1), "x").await;
    let msg = s.consume("q", "w").await.unwrap();
    let path = format!("/renew/q/{}", id_of(&msg));
    let reply = s.post(&path, json!({"consumer_id": "w", "lock_token": "not-the-token"})).await;
    reply.assert_error(409, "stale_lock");
    s.stop().await;
}

// Verifies: DLV-0023
#[tokio::test]
async fn ack_batch_splits_acked_from_not_found() {
    let s = TestServer::start().await;
    s.create_queue("q", json!({"ordering": "Fifo"})).await;
    for p in ["a", "b", "c"] {
        s.publish("q", json!(1), p).await;
    }
    let a = s.consume("q", "w").await.unwrap();
    let b = s.consume("q", "w").await.unwrap();
    let c = s.consume("q", "other").await.unwrap();

    let ids = json!([id_of(&b), "nope", id_of(&a), id_of(&c), id_of(&a)]);
    let reply = s.post("/ack-batch/q", json!({"consumer_id": "w", "message_ids": ids})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({"acked": [id_of(&a), id_of(&b)], "not_found": ["nope", id_of(&c)]})
    );

    let empty = s.post("/ack-batch/q", json!({"consumer_id": "w", "message_ids": []})).await;
    assert_eq!(empty.json(), json!({"acked": [], "not_found": []}));
    s.stop().await;
}

// Verifies: DLV-0024
#[tokio::test]
async fn nack_batch_tells_requeued_from_dead_lettered() {
    let s = TestServer::start().await;
    s.create_queue("q", json!({"ordering": "Fifo"})).await;
    let once = s.publish_with_retries("q", "once", 1).await;
    let thrice = s.publish_with_retries("q", "thrice", 3).await;
    s.consume("q", "w").await.unwrap();
    s.consume("q", "w").await.unwrap();

    let ids = json!([once, thrice, "nope", thrice]);
    let reply = s.post("/nack-batch/q", json!({"consumer_id": "w", "message_ids": ids})).await;
    assert_eq!(
        reply.json(),
        json!({"unlocked": [thrice], "dead_lettered": [once], "dropped": [], "not_found": ["nope"]})
    );
    assert_eq!(s.drain("q").await, ["thrice"]);
    s.stop().await;
}

// Verifies: DLV-0026
#[tokio::test]
async fn consume_batch_takes_up_to_max_messages_in_order() {
    let s = TestServer::start().await;
    s.create_queue("q", json!({"ordering": "MinFirst"})).await;
    for p in [5, 1, 4, 2, 3] {
        s.publish("q", json!(p), &p.to_string()).await;
    }
    let reply = s.post("/consume-batch/q", json!({"consumer_id": "w", "max_messages": 3})).await;
    let got = reply.json();
    let payloads: Vec<&str> =
        got.as_array().unwrap().iter().map(|m| m["payload"].as_str().unwrap()).collect();
    assert_eq!(payloads, ["1", "2", "3"]);
    assert!(got[0]["lock_token"].is_string());

    let rest = s.post("/consume-batch/q", json!({"consumer_id": "w", "max_messages": 10})).await;
    assert_eq!(rest.json().as_array().unwrap().len(), 2);
    let none = s.post("/consume-batch/q", json!({"consumer_id": "w", "max_messages": 10})).await;
    assert_eq!(none.json(), json!([]));

    for bad in [0, 1001] {
        let reply =
            s.post("/consume-batch/q", json!({"consumer_id": "w", "max_messages": bad})).await;
        reply.assert_error(422, "invalid_request");
    }
    s.stop().await;
}

// Verifies: DLV-0025
#[tokio::test]
async fn publish_batch_answers_ids_in_request_order() {
    let s = TestServer::start().await;
    s.create_queue("q", json!({"ordering": "Fifo"})).await;
    let messages = json!([
        {"priority": 1, "payload": "a"},
        {"priority": 2, "payload": "b", "max_retries": 0},
        {"priority": 3, "payload": "c", "max_retries": null},
    ]);
    let reply = s.post("/publish-batch", json!({"queue": "q", "messages": messages})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let ids = reply.json()["ids"].as_array().unwrap().clone();
    assert_eq!(ids.len(), 3);

    for (payload, id) in ["a", "b", "c"].iter().zip(&ids) {
        let msg = s.consume("q", "w").await.unwrap();
        assert_eq!((msg["payload"].as_str(), &msg["id"]), (Some(*payload), id));
    }
    s.stop().await;
}

// Verifies: DLV-0025
#[tokio::test]
async fn publish_batch_is_all_or_nothing() {
    let s = TestServer::start().await;
    s.create_queue("q", json!({"ordering": "Fifo"})).await;
    let messages = json!([{"priority": 1, "payload": "a"}, {"priority": "x", "payload": "b"}]);
    let reply = s.post("/publish-batch", json!({"queue": "q", "messages": messages})).await;
    reply.assert_error(400, "invalid_priority");
    assert_eq!(s.queue_stats("q").await["total"], 0);
    s.stop().await;
}

// Verifies: DLV-0019, DLV-0020
#[tokio::test]
async fn duplicate_payloads_are_refused_while_one_is_in_the_queue() {
    let s = TestServer::start().await;
    s.create_queue("d", json!({"ordering": "Fifo", "allow_duplicates": false})).await;
    s.publish("d", json!(1), "same").await;
    let dup = s.post("/publish", json!({"queue": "d", "priority": 1, "payload": "same"})).await;
    dup.assert_error(409, "duplicate_payload");

    // A locked copy still counts; once acked the payload is free again.
    let msg = s.consume("d", "w").await.unwrap();
    let locked_dup = s.post("/publish", json!({"queue": "d", "priority": 1, "payload": "same"}));
    locked_dup.await.assert_error(409, "duplicate_payload");
    s.ack("d", id_of(&msg), "w").await.assert_ok_empty();
    s.publish("d", json!(1), "same").await;
    s.stop().await;
}

// Verifies: DLV-0027
#[tokio::test]
async fn long_poll_returns_as_soon_as_a_message_arrives() {
    let s = Arc::new(TestServer::start().await);
    s.create_queue("lp", json!({"ordering": "Fifo"})).await;

    let waiter = {
        let s = s.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let reply =
                s.post("/consume/lp", json!({"consumer_id": "w", "wait_seconds": 10})).await;
            (reply.json(), started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.publish("lp", json!(1), "late").await;

    let (msg, waited) = waiter.await.unwrap();
    assert_eq!(msg["payload"], "late");
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    Arc::into_inner(s).unwrap().stop().await;
}

// Verifies: DLV-0027
#[tokio::test]
async fn long_poll_on_an_empty_queue_answers_null_after_the_wait() {
    let s = TestServer::start().await;
    let started = Instant::now();
    let reply = s.post("/consume/empty", json!({"consumer_id": "w", "wait_seconds": 1})).await;
    assert_eq!(reply.text(), "null");
    assert!(started.elapsed() >= Duration::from_millis(900));
    s.stop().await;
}

// Verifies: DLV-0003
#[tokio::test]
async fn eight_concurrent_consumers_get_2000_messages_exactly_once() {
    let s = Arc::new(TestServer::start().await);
    s.create_queue("load", json!({"ordering": "MaxFirst"})).await;
    let mut published = HashSet::new();
    for chunk in 0..4 {
        let messages: Vec<Value> = (0..500)
            .map(|i| json!({"priority": i % 7, "payload": format!("m{}", chunk * 500 + i)}))
            .collect();
        let reply = s.post("/publish-batch", json!({"queue": "load", "messages": messages})).await;
        for id in reply.json()["ids"].as_array().unwrap() {
            published.insert(id.as_str().unwrap().to_owned());
        }
    }
    assert_eq!(published.len(), 2000);

    let workers: Vec<_> = (0..8)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                let consumer = format!("worker-{w}");
                let mut got = Vec::new();
                while let Some(msg) = s.consume("load", &consumer).await {
                    s.ack("load", id_of(&msg), &consumer).await.assert_ok_empty();
                    got.push(id_of(&msg).to_owned());
                }
                got
            })
        })
        .collect();

    let mut seen = HashSet::new();
    let mut total = 0;
    for worker in workers {
        for id in worker.await.unwrap() {
            total += 1;
            assert!(seen.insert(id.clone()), "{id} delivered twice");
        }
    }
    assert_eq!(total, 2000);
    assert_eq!(seen, published);
    assert_eq!(s.queue_stats("load").await["total"], 0);
    Arc::into_inner(s).unwrap().stop().await;
}
