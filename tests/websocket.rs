//! The `/ws` request frames, their replies, and how the connection treats bad input.

mod websocket_support;

use std::time::Duration;

use qrusty::engine::{NewMessage, Priority, QueueConfig};
use qrusty::logs::{self, LogEntry, LogHub};
use qrusty::ws::WsOptions;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use websocket_support::*;

// Verifies: WS-0002, WS-0005, WS-0008
#[tokio::test]
async fn publish_replies_with_the_id_and_creates_the_queue() {
    let server = server().await;
    let mut c = server.connect().await;

    let reply = c
        .call(json!({"type":"publish","queue":"orders","payload":"p1","priority":7,"req_id":"r1"}))
        .await;

    let fields = ok_fields(&reply);
    assert_eq!(fields["req_id"], "r1");
    assert!(!fields["id"].as_str().unwrap().is_empty());
    assert!(server.engine.queue_exists("orders"));
    assert_eq!(server.counts("orders"), (1, 0));
}

// Verifies: WS-0010, WS-0013, SYS-0004
#[tokio::test]
async fn deliver_frames_carry_the_message_and_its_lock_token() {
    let server = server().await;
    let mut c = server.connect().await;
    let published =
        c.call(json!({"type":"publish","queue":"q","payload":"{\"n\":1}","priority":7})).await;

    let reply = c.call(json!({"type":"subscribe","queue":"q","req_id":"s1"})).await;
    assert_eq!(ok_fields(&reply)["req_id"], "s1");
    let d = c.pushed().await;

    assert_eq!(d["type"], "deliver");
    assert_eq!(d["queue"], "q");
    assert_eq!(d["id"], published["id"]);
    assert_eq!(d["payload"], "{\"n\":1}");
    assert_eq!(d["priority"], 7);
    assert!(d["lock_token"].as_str().is_some_and(|t| !t.is_empty()), "{d}");
    assert!(d.get("req_id").is_none());
    let created = d["created_at"].as_str().unwrap();
    assert!(created.ends_with("+00:00") && created.contains('T'), "{created}");
    assert_eq!(server.counts("q"), (0, 1));
}

// Verifies: WS-0010, WS-0015, WS-0017, SYS-0004
#[tokio::test]
async fn ack_nack_and_renew_act_on_this_connections_deliveries() {
    let server = server().await;
    let mut c = server.connect().await;
    for p in ["a", "b"] {
        c.call(json!({"type":"publish","queue":"q","payload":p,"max_retries":5})).await;
    }
    c.call(json!({"type":"subscribe","queue":"q","credits":2})).await;
    let first = c.pushed().await;
    let second = c.pushed().await;

    let renewed =
        c.call(json!({"type":"renew","queue":"q","id":first["id"],"timeout_seconds":120})).await;
    let until = ok_fields(&renewed)["locked_until_ms"].as_u64().unwrap();
    let now_ms = qrusty::clock::Clock::now_ms(&qrusty::clock::SystemClock);
    assert!(until > now_ms + 100_000, "renewed for 120 s, got {until} at {now_ms}");

    let acked = c.call(json!({"type":"ack","queue":"q","id":first["id"],"req_id":"a1"})).await;
    assert_eq!(ok_fields(&acked)["req_id"], "a1");
    assert_eq!(server.counts("q"), (0, 1));

    let nacked = c.call(json!({"type":"nack","queue":"q","id":second["id"]})).await;
    ok_fields(&nacked);
    // Back in the queue for a retry; this subscription has spent its credit.
    assert_eq!(server.counts("q"), (1, 0));
}

// Verifies: WS-0016, WS-0026
#[tokio::test]
async fn batch_ack_and_batch_nack_report_counts() {
    let server = server().await;
    let q = "batches";
    let mut c = server.connect().await;
    for (p, retries) in [("a", 3), ("b", 3), ("c", 3), ("d", 0)] {
        c.call(json!({"type":"publish","queue":q,"payload":p,"max_retries":retries})).await;
    }
    c.call(json!({"type":"subscribe","queue":q})).await;
    let mut ids = std::collections::HashMap::new();
    for _ in 0..4 {
        let d = c.pushed().await;
        ids.insert(d["payload"].as_str().unwrap().to_owned(), d["id"].clone());
    }
    c.call(json!({"type":"unsubscribe","queue":q})).await;

    let acked =
        c.call(json!({"type":"batch-ack","queue":q,"ids":[ids["a"], ids["b"], 42, "nope"]})).await;
    assert_eq!(ok_fields(&acked)["acked"], 2);

    let nacked = c.call(json!({"type":"batch-nack","queue":q,"ids":[ids["c"], ids["d"]]})).await;
    let fields = ok_fields(&nacked);
    assert_eq!((fields["unlocked"].clone(), fields["dropped"].clone()), (json!(1), json!(1)));
    assert_eq!(server.counts(q), (1, 0));

    let empty = c.call(json!({"type":"batch-ack","queue":q,"ids":[]})).await;
    assert_eq!(ok_fields(&empty)["acked"], 0);
}

// Verifies: WS-0007, WS-0015, WS-0022
#[tokio::test]
async fn ack_of_a_message_not_held_is_ok_but_a_stale_token_is_refused() {
    let server = server().await;
    let mut holder = server.connect().await;
    let mut other = server.connect().await;
    holder.call(json!({"type":"publish","queue":"q","payload":"x"})).await;
    holder.call(json!({"type":"subscribe","queue":"q"})).await;
    let d = holder.pushed().await;

    // Another connection cannot ack it, and is told nothing (0.15.0).
    ok_fields(&other.call(json!({"type":"ack","queue":"q","id":d["id"]})).await);
    ok_fields(&holder.call(json!({"type":"ack","queue":"q","id":"unknown"})).await);
    assert_eq!(server.counts("q"), (0, 1));

    let stale = json!({"type":"ack","queue":"q","id":d["id"],"lock_token":"0","req_id":"t"});
    let reply = holder.call(stale).await;
    assert_eq!(error_code(&reply), "stale_lock");
    assert_eq!(reply["req_id"], "t");
    assert_eq!(server.counts("q"), (0, 1));

    let good = json!({"type":"ack","queue":"q","id":d["id"],"lock_token":d["lock_token"]});
    ok_fields(&holder.call(good).await);
    assert_eq!(server.counts("q"), (0, 0));
}

// Verifies: WS-0017
#[tokio::test]
async fn renew_of_a_message_not_held_is_not_locked() {
    let server = server().await;
    let mut c = server.connect().await;
    c.call(json!({"type":"publish","queue":"q","payload":"x"})).await;

    let reply = c.call(json!({"type":"renew","queue":"q","id":"nope"})).await;
    assert_eq!(error_code(&reply), "not_locked");
    let reply = c.call(json!({"type":"renew","queue":"elsewhere","id":"nope"})).await;
    assert_eq!(error_code(&reply), "not_locked");
    let reply = c.call(json!({"type":"renew","queue":"q","id":"x","timeout_seconds":-1})).await;
    assert_eq!(error_code(&reply), "invalid_timeout");
}

// Verifies: WS-0010, WS-0011, WS-0012
#[tokio::test]
async fn subscribe_needs_an_existing_queue_and_credit_needs_a_subscription() {
    let server = server().await;
    let mut c = server.connect().await;

    let reply = c.call(json!({"type":"subscribe","queue":"missing","req_id":"s"})).await;
    assert_eq!(error_code(&reply), "queue_not_found");
    assert_eq!(reply["req_id"], "s");
    let reply = c.call(json!({"type":"credit","queue":"missing","credits":3})).await;
    assert_eq!(error_code(&reply), "not_subscribed");
    let reply = c.call(json!({"type":"credit","queue":"missing","credits":0})).await;
    assert_eq!(error_code(&reply), "invalid_request");
    ok_fields(&c.call(json!({"type":"unsubscribe","queue":"missing"})).await);
}

// Verifies: WS-0003, WS-0005
#[tokio::test]
async fn unknown_and_malformed_requests_get_error_frames() {
    let server = server().await;
    let mut c = server.connect().await;

    let reply = c.call(json!({"type":"shout","req_id":"u"})).await;
    assert_eq!((error_code(&reply), &reply["req_id"]), ("unknown_type", &json!("u")));
    for frame in [json!([]), json!(1), json!(null), json!("x"), json!({"queue":"q"})] {
        let reply = c.call(frame.clone()).await;
        assert_eq!(error_code(&reply), "invalid_request", "{frame}");
    }
    // A req_id that is not a string is not echoed.
    let reply = c.call(json!({"type":"shout","req_id":5})).await;
    assert!(reply.get("req_id").is_none(), "{reply}");
}

// Verifies: WS-0009, WS-0022
#[tokio::test]
async fn bad_fields_get_error_frames_and_the_connection_stays_usable() {
    let server = server().await;
    let mut c = server.connect().await;
    let cases = [
        (json!({"type":"publish","queue":"q","payload":"p","priority":-1}), "invalid_priority"),
        (json!({"type":"publish","queue":"q","payload":"p","priority":1.5}), "invalid_priority"),
        (json!({"type":"publish","queue":"q","payload":"p","priority":"high"}), "invalid_priority"),
        (json!({"type":"publish","queue":"q","payload":"p","max_retries":"3"}), "invalid_request"),
        (json!({"type":"publish","queue":"q","payload":"p","max_retries":-1}), "invalid_request"),
        (json!({"type":"publish","queue":"q","payload":{"n":1}}), "invalid_request"),
        (json!({"type":"publish","queue":"_hidden","payload":"p"}), "invalid_queue_name"),
        (json!({"type":"publish","queue":"a/b","payload":"p"}), "invalid_queue_name"),
        (json!({"type":"ack","queue":"q"}), "invalid_request"),
        (json!({"type":"ack","queue":"q","id":"i","lock_token":7}), "invalid_request"),
        (json!({"type":"batch-ack","queue":"q","ids":"i"}), "invalid_request"),
        (json!({"type":"subscribe"}), "invalid_request"),
    ];
    for (frame, code) in cases {
        let reply = c.call(frame.clone()).await;
        assert_eq!(error_code(&reply), code, "{frame}");
    }
    // Nothing half-done: no message was stored by any refused publish.
    assert_eq!(server.engine.queue_stats("q").map(|s| s.total()).unwrap_or(0), 0);

    let reply = c.call(json!({"type":"publish","queue":"q","payload":"p","priority":3})).await;
    ok_fields(&reply);
    assert_eq!(server.counts("q"), (1, 0));
}

// Verifies: WS-0008
#[tokio::test]
async fn duplicate_payload_on_a_no_dup_queue_is_its_own_code() {
    let server = server().await;
    let config = QueueConfig { allow_duplicates: false, ..Default::default() };
    server.engine.create_queue("unique", config).await.unwrap();
    let mut c = server.connect().await;

    ok_fields(&c.call(json!({"type":"publish","queue":"unique","payload":"same"})).await);
    let reply = c.call(json!({"type":"publish","queue":"unique","payload":"same"})).await;
    assert_eq!(error_code(&reply), "duplicate_payload");
}

// Verifies: WS-0005
#[tokio::test]
async fn no_reply_runs_the_request_silently_even_when_it_fails() {
    let server = server().await;
    let mut c = server.connect().await;

    c.send(json!({"type":"publish","queue":"q","payload":"p","no_reply":true})).await;
    c.send(json!({"type":"shout","no_reply":true})).await;
    let reply = c.call(json!({"type":"unsubscribe","queue":"q","req_id":"after"})).await;

    assert_eq!(ok_fields(&reply)["req_id"], "after");
    assert_eq!(server.counts("q"), (1, 0));
}

// Verifies: WS-0006
#[tokio::test]
async fn replies_come_back_in_request_order() {
    let server = server().await;
    let mut c = server.connect().await;
    for n in 0..50 {
        c.send(
            json!({"type":"publish","queue":"q","payload":format!("{n}"),"req_id":n.to_string()}),
        )
        .await;
    }
    for n in 0..50 {
        assert_eq!(c.reply().await["req_id"], n.to_string());
    }
}

// Verifies: WS-0004
#[tokio::test]
async fn binary_frames_close_with_1003() {
    let server = server().await;
    let mut c = server.connect().await;
    c.send_raw(Message::Binary(vec![1, 2, 3])).await;
    assert_eq!(c.ending().await, Ending::Close(1003, "binary frames not supported".into()));
}

// Verifies: WS-0004
#[tokio::test]
async fn text_that_is_not_json_closes_with_1007_after_earlier_replies() {
    for bad in ["{not json", ""] {
        let server = server().await;
        let mut c = server.connect().await;
        c.send(json!({"type":"publish","queue":"q","payload":"p","req_id":"before"})).await;
        c.send_raw(Message::Text(bad.into())).await;

        assert_eq!(c.reply().await["req_id"], "before");
        assert_eq!(c.ending().await, Ending::Close(1007, "invalid JSON".into()), "{bad:?}");
    }
}

// Verifies: WS-0027
#[tokio::test]
async fn client_pings_get_pongs_with_the_same_payload() {
    let server = server().await;
    let mut c = server.connect().await;
    c.send_raw(Message::Ping(b"hello".to_vec())).await;
    let pong = tokio::time::timeout(PATIENCE, futures_util::StreamExt::next(&mut c.ws)).await;
    assert_eq!(pong.unwrap().unwrap().unwrap(), Message::Pong(b"hello".to_vec()));
}

fn quick_pings() -> WsOptions {
    WsOptions { ping_interval: Duration::from_millis(50), ping_timeout: Duration::from_millis(50) }
}

// Verifies: WS-0019
#[tokio::test]
async fn a_client_that_never_pongs_is_closed_with_1001() {
    let server = server_with(quick_pings(), LogHub::detached()).await;
    let mut c = server.connect().await;

    // Not reading means the client library never answers the server's pings.
    tokio::time::sleep(Duration::from_millis(400)).await;

    let mut pings = 0;
    let ending = loop {
        match futures_util::StreamExt::next(&mut c.ws).await {
            Some(Ok(Message::Ping(_))) => pings += 1,
            Some(Ok(Message::Close(Some(frame)))) => break (u16::from(frame.code), frame.reason),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(pings >= 1);
    assert_eq!(ending, (1001, "ping timeout".into()));
}

// Verifies: WS-0019
#[tokio::test]
async fn a_client_that_answers_pings_stays_connected() {
    let server = server_with(quick_pings(), LogHub::detached()).await;
    let mut c = server.connect().await;

    // Reading lets the client library answer each ping.
    c.expect_quiet(Duration::from_millis(400)).await;

    ok_fields(&c.call(json!({"type":"unsubscribe","queue":"q"})).await);
}

// Verifies: WS-0018, WS-0028
#[tokio::test]
async fn subscribe_logs_needs_log_capture() {
    let server = server().await;
    let mut c = server.connect().await;
    let reply = c.call(json!({"type":"subscribe-logs"})).await;
    assert_eq!(error_code(&reply), "not_available");
    ok_fields(&c.call(json!({"type":"unsubscribe-logs"})).await);
}

fn entry(message: String) -> LogEntry {
    LogEntry { timestamp: logs::rfc3339_utc(0), level: "INFO", message }
}

// Verifies: WS-0018, SYS-0004
#[tokio::test]
async fn subscribe_logs_streams_history_then_live_lines() {
    let hub = LogHub::new();
    for n in 0..1500 {
        hub.record(entry(format!("old {n}")));
    }
    let server = server_with(WsOptions::default(), hub.clone()).await;
    let mut c = server.connect().await;

    ok_fields(&c.call(json!({"type":"subscribe-logs"})).await);
    // Requests keep being answered while the history streams.
    ok_fields(&c.call(json!({"type":"unsubscribe","queue":"q"})).await);
    for n in 500..1500 {
        let frame = c.pushed().await;
        assert_eq!((frame["type"].as_str(), frame["level"].as_str()), (Some("log"), Some("INFO")));
        assert_eq!(frame["message"], format!("old {n}"));
        assert!(frame["timestamp"].as_str().unwrap().ends_with("+00:00"));
    }
    hub.record(entry("live one".into()));
    assert_eq!(c.pushed().await["message"], "live one");

    ok_fields(&c.call(json!({"type":"unsubscribe-logs"})).await);
    hub.record(entry("unheard".into()));
    c.expect_quiet(Duration::from_millis(200)).await;
}

// Verifies: WS-0018
#[tokio::test]
async fn subscribe_logs_again_replays_the_history() {
    let hub = LogHub::new();
    hub.record(entry("first".into()));
    let server = server_with(WsOptions::default(), hub.clone()).await;
    let mut c = server.connect().await;

    ok_fields(&c.call(json!({"type":"subscribe-logs"})).await);
    assert_eq!(c.pushed().await["message"], "first");
    ok_fields(&c.call(json!({"type":"subscribe-logs"})).await);
    assert_eq!(c.pushed().await["message"], "first");
}

// Verifies: WS-0018
#[tokio::test]
async fn the_installed_subscriber_feeds_subscribe_logs() {
    let hub = logs::init("info", false);
    let server = server_with(WsOptions::default(), hub).await;
    let mut c = server.connect().await;
    ok_fields(&c.call(json!({"type":"subscribe-logs"})).await);

    tracing::warn!(queue = "orders", "websocket log capture probe");

    loop {
        let frame = c.pushed().await;
        if frame["message"].as_str().unwrap().contains("websocket log capture probe") {
            assert_eq!(frame["level"], "WARN");
            assert!(frame["message"].as_str().unwrap().contains("queue=orders"));
            break;
        }
    }
}

// Verifies: WS-0008, SCH-0007
#[tokio::test]
async fn text_priorities_pass_through_to_text_queues() {
    let server = server().await;
    let config =
        QueueConfig { priority_kind: qrusty::engine::PriorityKind::Text, ..Default::default() };
    server.engine.create_queue("t", config).await.unwrap();
    let mut c = server.connect().await;

    ok_fields(&c.call(json!({"type":"publish","queue":"t","payload":"p","priority":"b"})).await);
    let reply = c.call(json!({"type":"publish","queue":"t","payload":"p","priority":4})).await;
    assert_eq!(error_code(&reply), "invalid_priority");

    c.call(json!({"type":"subscribe","queue":"t"})).await;
    assert_eq!(c.pushed().await["priority"], "b");
    let msg =
        NewMessage { priority: Priority::Text("a".into()), payload: "q".into(), max_retries: 3 };
    server.engine.publish("t", msg).await.unwrap();
    assert_eq!(c.pushed().await["priority"], "a");
}

// Verifies: WS-0001
#[tokio::test]
async fn requests_that_are_not_upgrades_are_refused() {
    let server = server().await;
    let url = format!("http://{}/ws", server.addr);
    let client = reqwest::Client::new();

    let plain_get = client.get(&url).send().await.unwrap();
    assert_eq!(plain_get.status(), 400);
    let post = client
        .post(&url)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
}

// Verifies: WS-0024, SYS-0004
#[tokio::test]
async fn socket_publishes_acks_and_nacks_feed_the_shared_counters_and_rates() {
    let server = server().await;
    let mut c = server.connect().await;
    for p in ["a", "b", "c"] {
        ok_fields(&c.call(json!({"type":"publish","queue":"counted","payload":p})).await);
    }
    c.call(json!({"type":"subscribe","queue":"counted","credits":2})).await;
    let first = c.pushed().await;
    let second = c.pushed().await;
    ok_fields(&c.call(json!({"type":"ack","queue":"counted","id":first["id"]})).await);
    ok_fields(&c.call(json!({"type":"nack","queue":"counted","id":second["id"]})).await);

    let totals = server.engine.counters();
    assert_eq!((totals.published, totals.acked, totals.nacked), (3, 1, 1));
    tokio::time::sleep(Duration::from_millis(20)).await;
    server.engine.sample_metrics();
    let stats = server.engine.queue_stats("counted").unwrap();
    for (name, rate) in [
        ("publish", stats.publish_rate_per_sec),
        ("ack", stats.ack_rate_per_sec),
        ("nack", stats.nack_rate_per_sec),
    ] {
        assert!(rate > 0.0, "{name} rate {rate}");
    }
}

// Verifies: WS-0023, SYS-0024
#[tokio::test]
async fn a_frame_above_16_mib_ends_the_connection() {
    let server = server().await;
    let mut c = server.connect().await;
    let payload = "x".repeat(17 << 20);
    let frame = json!({"type":"publish","queue":"big","payload":payload}).to_string();
    // The server may close before the whole frame is written.
    let _ = futures_util::SinkExt::send(&mut c.ws, Message::Text(frame)).await;
    assert!(!matches!(c.ending().await, Ending::Close(1000, _)), "closed as if all was well");
    assert!(!server.engine.queue_exists("big"), "nothing of the frame was applied");

    // The server itself carries on.
    let mut other = server.connect().await;
    ok_fields(&other.call(json!({"type":"publish","queue":"small","payload":"p"})).await);
}

/// A `/ws` server whose log sits on a simulated disk where every fsync takes `sync`.
async fn server_with_slow_fsync(sync: Duration) -> (Server, qrusty::wal::SimFs) {
    use qrusty::engine::{Engine, EngineOptions, StorageConfig};
    use qrusty::wal::{SimFs, WalOptions};

    let fs = SimFs::new(7);
    fs.set_sync_delay(sync);
    let mut opts = EngineOptions::new(StorageConfig::Wal(WalOptions::new("/sim")));
    opts.fs = Some(std::sync::Arc::new(fs.clone()));
    let engine = Engine::open(opts).unwrap();
    (server_on(engine, WsOptions::default(), LogHub::detached()).await, fs)
}

// Verifies: WS-0029, WS-0006
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_sent_without_waiting_share_fsyncs_and_reply_in_order() {
    let (server, fs) = server_with_slow_fsync(Duration::from_millis(20)).await;
    let mut c = server.connect().await;
    let syncs_before = fs.counts().syncs;

    for n in 0..100 {
        let frame =
            json!({"type":"publish","queue":"q","payload":format!("m{n}"),"req_id":n.to_string()});
        c.send(frame).await;
    }
    for n in 0..100 {
        let reply = c.reply().await;
        assert_eq!(ok_fields(&reply)["req_id"], n.to_string(), "{reply}");
    }

    // One request at a time would take one fsync per publish; sharing them takes a few.
    let syncs = fs.counts().syncs - syncs_before;
    assert!(syncs < 50, "100 pipelined publishes took {syncs} fsyncs");
    assert_eq!(server.counts("q"), (100, 0));
    let first = server.engine.consume("q", "w", 30, 100, Duration::ZERO).await.unwrap();
    let payloads: Vec<&str> = first.iter().map(|d| d.payload.as_str()).collect();
    let expected: Vec<String> = (0..100).map(|n| format!("m{n}")).collect();
    assert_eq!(payloads, expected, "equal priorities come out in the order they were sent");
}

// Verifies: WS-0029
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_writes_take_effect_in_the_order_they_were_sent() {
    let (server, _fs) = server_with_slow_fsync(Duration::from_millis(20)).await;
    let mut c = server.connect().await;
    c.call(json!({"type":"publish","queue":"q","payload":"only"})).await;
    c.call(json!({"type":"subscribe","queue":"q","credits":1})).await;
    let d = c.pushed().await;

    // The ack is still waiting for its fsync when the nack arrives: the nack must see the
    // message acked (a silent success), not put it back in the queue.
    let id = d["id"].clone();
    c.send(json!({"type":"ack","queue":"q","id":id,"req_id":"ack"})).await;
    c.send(json!({"type":"nack","queue":"q","id":id,"req_id":"nack"})).await;

    assert_eq!(ok_fields(&c.reply().await)["req_id"], "ack");
    assert_eq!(ok_fields(&c.reply().await)["req_id"], "nack");
    assert_eq!(server.counts("q"), (0, 0));
    assert_eq!(server.engine.queue_stats("q").unwrap().total(), 0);
}
