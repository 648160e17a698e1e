//! Which message a consume gets: the three orderings with the u64 extremes and equal
//! priorities, text priorities, and retried messages keeping their place.

mod common;

use common::TestServer;
use serde_json::{json, Value};

async fn publish_all(s: &TestServer, queue: &str, items: &[(Value, &str)]) {
    for (priority, payload) in items {
        s.publish(queue, priority.clone(), payload).await;
    }
}

fn extremes() -> Vec<(Value, &'static str)> {
    vec![
        (json!(5), "five-a"),
        (json!(18446744073709551615u64), "max"),
        (json!(0), "zero"),
        (json!(5), "five-b"),
        (json!(5), "five-c"),
    ]
}

// Verifies: SCH-0002, SCH-0005, SCH-0006
#[tokio::test]
async fn max_first_serves_highest_priority_then_publish_order() {
    let s = TestServer::start().await;
    s.create_queue("q", json!({"ordering": "MaxFirst"})).await;
    publish_all(&s, "q", &extremes()).await;
    assert_eq!(s.drain("q").await, ["max", "five-a", "five-b", "five-c", "zero"]);
    s.stop().await;
}

// Verifies: SCH-0003, SCH-0005, SCH-0006
#[tokio::test]
async fn min_first_serves_lowest_priority_then_publish_order() {
    let s = TestServer::start().await;
    s.create_queue("q", json!({"ordering": "MinFirst"})).await;
    publish_all(&s, "q", &extremes()).await;
    assert_eq!(s.drain("q").await, ["zero", "five-a", "five-b", "five-c", "max"]);
    s.stop().await;
}

// Verifies: SCH-0004
#[tokio::test]
async fn fifo_ignores_priority() {
    let s = TestServer::start().await;
    s.create_queue("q", json!({"ordering": "Fifo"})).await;
    publish_all(&s, "q", &extremes()).await;
    assert_eq!(s.drain("q").await, ["five-a", "max", "zero", "five-b", "five-c"]);
    s.stop().await;
}

// Verifies: SCH-0005
#[tokio::test]
async fn many_equal_priorities_come_out_in_publish_order() {
    let s = TestServer::start().await;
    s.create_queue("q", json!({"ordering": "MaxFirst"})).await;
    let payloads: Vec<String> = (0..50).map(|i| format!("m{i:02}")).collect();
    for p in &payloads {
        s.publish("q", json!(7), p).await;
    }
    assert_eq!(s.drain("q").await, payloads);
    s.stop().await;
}

// Verifies: SCH-0007
#[tokio::test]
async fn text_priorities_compare_byte_by_byte() {
    let s = TestServer::start().await;
    s.create_queue("t", json!({"ordering": "MinFirst", "priority_kind": "Text"})).await;
    publish_all(
        &s,
        "t",
        &[(json!("b"), "b"), (json!("a-2"), "a2"), (json!("B"), "upper"), (json!("a-10"), "a10")],
    )
    .await;
    // Byte order: "B" < "a-10" < "a-2" < "b".
    assert_eq!(s.drain("t").await, ["upper", "a10", "a2", "b"]);

    s.create_queue("tmax", json!({"ordering": "MaxFirst", "priority_kind": "Text"})).await;
    publish_all(&s, "tmax", &[(json!("apple"), "apple"), (json!("pear"), "pear")]).await;
    assert_eq!(s.drain("tmax").await, ["pear", "apple"]);
    s.stop().await;
}

// Verifies: SCH-0008, SCH-0009
#[tokio::test]
async fn priority_of_the_wrong_kind_is_refused() {
    let s = TestServer::start().await;
    s.create_queue("num", json!({"ordering": "MaxFirst"})).await;
    s.create_queue("txt", json!({"ordering": "MaxFirst", "priority_kind": "Text"})).await;

    let text_on_numeric =
        s.post("/publish", json!({"queue": "num", "priority": "10", "payload": "x"})).await;
    text_on_numeric.assert_error(400, "invalid_priority");
    let number_on_text =
        s.post("/publish", json!({"queue": "txt", "priority": 10, "payload": "x"})).await;
    number_on_text.assert_error(400, "invalid_priority");

    assert_eq!(s.queue_stats("txt").await["config"]["priority_kind"], "Text");
    assert_eq!(s.queue_stats("num").await["total"], 0);
    s.stop().await;
}

// Verifies: SCH-0010, DLV-0009
#[tokio::test]
async fn a_nacked_message_goes_back_ahead_of_newer_ones() {
    let s = TestServer::start().await;
    s.create_queue("q", json!({"ordering": "Fifo"})).await;
    s.publish("q", json!(1), "old").await;
    s.publish("q", json!(1), "new").await;
    let old = s.consume("q", "w").await.unwrap();
    s.nack("q", old["id"].as_str().unwrap(), "w").await.assert_ok_empty();
    assert_eq!(s.drain("q").await, ["old", "new"]);
    s.stop().await;
}

// Verifies: SCH-0011
#[tokio::test]
async fn locked_messages_are_skipped_not_blocking() {
    let s = TestServer::start().await;
    s.create_queue("q", json!({"ordering": "MaxFirst"})).await;
    s.publish("q", json!(9), "high").await;
    s.publish("q", json!(1), "low").await;
    let first = s.consume("q", "a").await.unwrap();
    let second = s.consume("q", "b").await.unwrap();
    assert_eq!(
        (first["payload"].as_str(), second["payload"].as_str()),
        (Some("high"), Some("low"))
    );
    assert!(s.consume("q", "c").await.is_none());
    s.stop().await;
}
