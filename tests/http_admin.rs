//! Queue administration over HTTP: create, update (rename, duplicate policy), delete,
//! purge, the listings, and queues staying sealed from each other.

mod common;

use common::TestServer;
use reqwest::Method;
use serde_json::json;

// Verifies: API-0007
#[tokio::test]
async fn health_answers_plain_ok() {
    let s = TestServer::start().await;
    let reply = s.get("/health").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"OK");
    assert_eq!(reply.header("content-type"), Some("text/plain; charset=utf-8"));
    s.stop().await;
}

// Verifies: API-0005
#[tokio::test]
async fn get_routes_answer_head_without_a_body() {
    let s = TestServer::start().await;
    let reply = s.send(Method::HEAD, "/stats", &[], None).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.is_empty());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    s.stop().await;
}

// Verifies: API-0008, SCH-0009
#[tokio::test]
async fn create_queue_then_create_again_conflicts_and_keeps_config() {
    let s = TestServer::start().await;
    s.create_queue("orders", json!({"ordering": "MinFirst", "allow_duplicates": false})).await;

    let again =
        s.post("/create-queue", json!({"name": "orders", "config": {"ordering": "Fifo"}})).await;
    again.assert_error(409, "queue_exists");

    let stats = s.queue_stats("orders").await;
    assert_eq!(
        stats["config"],
        json!({"ordering": "MinFirst", "allow_duplicates": false, "priority_kind": "Numeric"})
    );
    s.stop().await;
}

// Verifies: API-0008, SCH-0007
#[tokio::test]
async fn create_queue_defaults_allow_duplicates_and_numeric_priorities() {
    let s = TestServer::start().await;
    s.create_queue("q", json!({"ordering": "Fifo"})).await;
    let config = &s.queue_stats("q").await["config"];
    assert_eq!(config["allow_duplicates"], true);
    assert_eq!(config["priority_kind"], "Numeric");
    s.stop().await;
}

// Verifies: API-0002
#[tokio::test]
async fn unknown_ordering_is_a_shape_error() {
    let s = TestServer::start().await;
    let reply =
        s.post("/create-queue", json!({"name": "q", "config": {"ordering": "maxfirst"}})).await;
    reply.assert_error(422, "invalid_request");
    assert!(!s.engine.queue_exists("q"));
    s.stop().await;
}

// Verifies: API-0020
#[tokio::test]
async fn queues_lists_every_queue_sorted_including_empty_ones() {
    let s = TestServer::start().await;
    s.create_queue("zeta", json!({"ordering": "Fifo"})).await;
    s.publish("alpha", json!(1), "implicit").await;
    s.create_queue("mid", json!({"ordering": "MaxFirst"})).await;

    let reply = s.get("/queues").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!(["alpha", "mid", "zeta"]));
    s.stop().await;
}

// Verifies: API-0014, SCH-0001
#[tokio::test]
async fn publishing_to_an_unknown_queue_creates_it_with_defaults() {
    let s = TestServer::start().await;
    s.publish("implicit", json!(5), "x").await;
    let stats = s.queue_stats("implicit").await;
    assert_eq!(stats["config"]["ordering"], "MaxFirst");
    assert_eq!(stats["total"], 1);

    // It stays after being drained (changes.md §2), so creating it again conflicts.
    assert_eq!(s.drain("implicit").await, ["x"]);
    let reply =
        s.post("/create-queue", json!({"name": "implicit", "config": {"ordering": "Fifo"}})).await;
    reply.assert_error(409, "queue_exists");
    s.stop().await;
}

// Verifies: API-0009, API-0010
#[tokio::test]
async fn rename_moves_messages_and_locks_to_the_new_name() {
    let s = TestServer::start().await;
    s.create_queue("old", json!({"ordering": "Fifo"})).await;
    s.publish("old", json!(1), "first").await;
    s.publish("old", json!(1), "second").await;
    let held = s.consume("old", "w").await.unwrap();

    let reply = s.post("/update-queue", json!({"name": "old", "config": {"name": "new"}})).await;
    reply.assert_ok_empty();

    assert_eq!(s.get("/queues").await.json(), json!(["new"]));
    // The holder acks under the new name; the old name no longer has the message.
    let id = held["id"].as_str().unwrap();
    assert_eq!(s.ack("old", id, "w").await.status, 404);
    s.ack("new", id, "w").await.assert_ok_empty();
    assert_eq!(s.drain("new").await, ["second"]);
    s.stop().await;
}

// Verifies: API-0009
#[tokio::test]
async fn rename_onto_an_existing_queue_conflicts() {
    let s = TestServer::start().await;
    s.create_queue("a", json!({"ordering": "Fifo"})).await;
    s.create_queue("b", json!({"ordering": "Fifo"})).await;
    let reply = s.post("/update-queue", json!({"name": "a", "config": {"name": "b"}})).await;
    reply.assert_error(409, "queue_exists");
    s.stop().await;
}

// Verifies: API-0009
#[tokio::test]
async fn update_of_a_missing_queue_is_404_and_blank_names_are_400() {
    let s = TestServer::start().await;
    let missing =
        s.post("/update-queue", json!({"name": "ghost", "config": {"allow_duplicates": true}}));
    missing.await.assert_error(404, "queue_not_found");

    let blank = s.post("/update-queue", json!({"name": "  ", "config": {}})).await;
    blank.assert_error(400, "invalid_queue_name");

    s.create_queue("real", json!({"ordering": "Fifo"})).await;
    let blank_target =
        s.post("/update-queue", json!({"name": "real", "config": {"name": " "}})).await;
    blank_target.assert_error(400, "invalid_queue_name");

    let noop = s.post("/update-queue", json!({"name": "real", "config": {}})).await;
    noop.assert_ok_empty();
    s.stop().await;
}

// Verifies: DLV-0021
#[tokio::test]
async fn turning_duplicates_off_removes_available_duplicates_once() {
    let s = TestServer::start().await;
    s.create_queue("d", json!({"ordering": "Fifo"})).await;
    for payload in ["same", "other", "same", "same"] {
        s.publish("d", json!(1), payload).await;
    }
    let reply =
        s.post("/update-queue", json!({"name": "d", "config": {"allow_duplicates": false}})).await;
    reply.assert_ok_empty();

    assert_eq!(s.queue_stats("d").await["config"]["allow_duplicates"], false);
    assert_eq!(s.drain("d").await, ["same", "other"]);
    s.stop().await;
}

// Verifies: DLV-0022
#[tokio::test]
async fn turning_duplicates_on_leaves_every_message_in_place() {
    let s = TestServer::start().await;
    s.create_queue("d", json!({"ordering": "Fifo", "allow_duplicates": false})).await;
    for payload in ["a", "b", "c"] {
        s.publish("d", json!(1), payload).await;
    }
    let held = s.consume("d", "w").await.unwrap();
    let reply =
        s.post("/update-queue", json!({"name": "d", "config": {"allow_duplicates": true}})).await;
    reply.assert_ok_empty();

    let stats = s.queue_stats("d").await;
    assert_eq!((stats["available"].as_u64(), stats["locked"].as_u64()), (Some(2), Some(1)));
    // Duplicates are now accepted, and the held message is still the holder's.
    s.publish("d", json!(1), "b").await;
    s.ack("d", held["id"].as_str().unwrap(), "w").await.assert_ok_empty();
    assert_eq!(s.drain("d").await, ["b", "c", "b"]);
    s.stop().await;
}

// Verifies: API-0012
#[tokio::test]
async fn purge_empties_a_queue_but_keeps_its_config() {
    let s = TestServer::start().await;
    s.create_queue("p", json!({"ordering": "MinFirst"})).await;
    s.publish("p", json!(1), "a").await;
    s.publish("p", json!(2), "b").await;
    let held = s.consume("p", "w").await.unwrap();

    let reply = s.post_empty("/purge-queue/p").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"queue": "p", "purged_messages": 2}));

    let stats = s.queue_stats("p").await;
    assert_eq!(
        (stats["total"].as_u64(), stats["config"]["ordering"].as_str()),
        (Some(0), Some("MinFirst"))
    );
    // The former holder's lock went with the message.
    assert_eq!(s.ack("p", held["id"].as_str().unwrap(), "w").await.status, 404);
    s.stop().await;
}

// Verifies: API-0011, API-0012
#[tokio::test]
async fn purge_and_delete_of_unknown_queues_answer_zero() {
    let s = TestServer::start().await;
    let purge = s.post_empty("/purge-queue/nothing").await;
    assert_eq!(purge.json(), json!({"queue": "nothing", "purged_messages": 0}));
    let delete = s.delete("/delete-queue/nothing").await;
    assert_eq!(delete.json(), json!({"queue": "nothing", "deleted_messages": 0}));
    s.stop().await;
}

// Verifies: API-0011
#[tokio::test]
async fn delete_removes_the_queue_and_its_messages() {
    let s = TestServer::start().await;
    s.create_queue("gone", json!({"ordering": "Fifo"})).await;
    s.publish("gone", json!(1), "a").await;
    let reply = s.delete("/delete-queue/gone").await;
    assert_eq!(reply.json(), json!({"queue": "gone", "deleted_messages": 1}));
    assert_eq!(s.get("/queues").await.json(), json!([]));
    // Gone means gone: it can be created again, with another config.
    s.create_queue("gone", json!({"ordering": "MinFirst"})).await;
    assert_eq!(s.queue_stats("gone").await["total"], 0);
    s.stop().await;
}

// Verifies: API-0013
#[tokio::test]
async fn purge_all_and_delete_all_report_what_they_did() {
    let s = TestServer::start().await;
    s.create_queue("empty", json!({"ordering": "Fifo"})).await;
    s.publish("one", json!(1), "a").await;
    s.publish("two", json!(1), "b").await;
    s.publish("two", json!(1), "c").await;

    let purged = s.post_empty("/purge-all").await;
    assert_eq!(purged.json(), json!({"purged_queues": 3, "purged_messages": 3}));
    assert_eq!(s.get("/queues").await.json(), json!(["empty", "one", "two"]));

    s.publish("one", json!(1), "again").await;
    let deleted = s.post_empty("/delete-all").await;
    assert_eq!(deleted.json(), json!({"deleted_queues": 3, "deleted_messages": 1}));
    assert_eq!(s.get("/queues").await.json(), json!([]));
    s.stop().await;
}

// Verifies: DLV-0013
#[tokio::test]
async fn queues_are_sealed_from_each_other() {
    let s = TestServer::start().await;
    let a_id = s.publish("a", json!(1), "in a").await;
    s.publish("b", json!(1), "in b").await;
    let got = s.consume("a", "w").await.unwrap();
    assert_eq!(got["id"], a_id.as_str());

    // An id of queue a is unknown in queue b, for every holder operation.
    s.ack("b", &a_id, "w").await.assert_error(404, "not_locked");
    s.nack("b", &a_id, "w").await.assert_error(404, "not_locked");
    let batch =
        s.post("/ack-batch/b", json!({"consumer_id": "w", "message_ids": [a_id.clone()]})).await;
    assert_eq!(batch.json(), json!({"acked": [], "not_found": [a_id.clone()]}));

    // Purging b leaves a alone.
    s.post_empty("/purge-queue/b").await;
    assert_eq!(s.queue_stats("a").await["locked"], 1);
    s.ack("a", &a_id, "w").await.assert_ok_empty();
    s.stop().await;
}

// Verifies: API-0006
#[tokio::test]
async fn a_percent_encoded_slash_in_a_queue_name_is_refused() {
    let s = TestServer::start().await;
    let reply = s.post_empty("/purge-queue/a%2Fb").await;
    reply.assert_error(400, "invalid_queue_name");
    s.stop().await;
}

// Verifies: API-0006
#[tokio::test]
async fn names_with_spaces_and_unicode_round_trip_through_paths() {
    let s = TestServer::start().await;
    let name = "orders été 2";
    s.create_queue(name, json!({"ordering": "Fifo"})).await;
    s.publish(name, json!(1), "x").await;
    let stats = s.queue_stats(name).await;
    assert_eq!((stats["name"].as_str(), stats["total"].as_u64()), (Some(name), Some(1)));
    assert_eq!(s.drain(name).await, ["x"]);
    s.stop().await;
}
