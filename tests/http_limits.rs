//! Resource limits over HTTP and WebSocket: each is hit, answered with its status and
//! stable code, and gives room again once what held it is gone.

mod common;

use std::time::Duration;

use common::{enc, TestServer};
use qrusty::engine::limits::MESSAGE_OVERHEAD_BYTES;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Upper bound for anything that should happen "soon" on a loaded CI machine.
const PATIENCE: Duration = Duration::from_secs(10);

/// Retries `probe` every 10 ms until it returns true, failing after `PATIENCE`.
async fn eventually<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + PATIENCE;
    while !probe().await {
        assert!(tokio::time::Instant::now() < end, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The value of a metric without labels in the /metrics text.
async fn metric(s: &TestServer, name: &str) -> u64 {
    let text = s.get("/metrics").await.text();
    let line = text.lines().find_map(|l| l.strip_prefix(&format!("{name} ")));
    line.unwrap_or_else(|| panic!("no {name} in {text}")).parse().unwrap()
}

fn publish_body(queue: &str, payload: &str) -> Value {
    json!({"queue": queue, "priority": 1, "payload": payload})
}

// Verifies: API-0031, SYS-0024
#[tokio::test]
async fn a_payload_above_the_limit_is_refused_alone_and_in_a_batch() {
    let s = TestServer::start_engine(|o| o.max_payload_bytes = 1000, |_| {}).await;
    s.publish("q", json!(1), &"a".repeat(1000)).await;

    let reply = s.post("/publish", publish_body("q", &"b".repeat(1001))).await;
    reply.assert_error(413, "message_too_large");

    // One oversized message sinks the whole batch: nothing of it is published.
    let batch = json!({"queue": "q", "messages": [
        {"priority": 1, "payload": "small"},
        {"priority": 1, "payload": "c".repeat(1001)},
    ]});
    s.post("/publish-batch", batch).await.assert_error(413, "message_too_large");
    assert_eq!(s.engine.queue_stats("q").unwrap().available, 1);
    s.stop().await;
}

// Verifies: SYS-0026, SYS-0024, SYS-0033
#[tokio::test]
async fn publishes_past_the_memory_limit_get_503_until_an_ack_frees_room() {
    let payload = "m".repeat(100);
    let cost = 100 + MESSAGE_OVERHEAD_BYTES;
    let s = TestServer::start_engine(|o| o.max_memory_bytes = 3 * cost, |_| {}).await;
    for i in 0..3 {
        s.publish("q", json!(i), &format!("{}{i}", &payload[1..])).await;
    }
    assert_eq!(s.engine.memory_held(), 3 * cost);
    let metrics = s.get("/metrics").await.text();
    assert!(metrics.contains(&format!("qrusty_memory_held_bytes {}\n", 3 * cost)), "{metrics}");
    assert!(metrics.contains(&format!("qrusty_memory_limit_bytes {}\n", 3 * cost)));
    let refused = s.post("/publish", publish_body("q", &payload)).await;
    refused.assert_error(503, "memory_limit");
    assert_eq!(refused.header("retry-after"), Some("1"), "acks free memory: worth a retry");
    let batch = json!({"queue": "other", "messages": [{"priority": 1, "payload": "x"}]});
    s.post("/publish-batch", batch).await.assert_error(503, "memory_limit");
    assert_eq!(metric(&s, "qrusty_refused_memory_limit_total").await, 2);

    // An ack gives its message's bytes back; the publish that was refused now passes.
    let got = s.consume("q", "c").await.expect("a message");
    let id = got["id"].as_str().unwrap();
    let ack = s.post(&format!("/ack/q/{}", enc(id)), json!({"consumer_id": "c"})).await;
    ack.assert_ok_empty();
    assert_eq!(s.engine.memory_held(), 2 * cost);
    s.publish("q", json!(9), &payload).await;

    // Purging and deleting give back everything.
    assert_eq!(s.post_empty("/purge-queue/q").await.status, 200);
    assert_eq!(s.engine.memory_held(), 0);
    s.publish("q2", json!(1), &payload).await;
    assert_eq!(s.engine.memory_held(), cost);
    assert_eq!(s.delete("/delete-queue/q2").await.status, 200);
    assert_eq!(s.engine.memory_held(), 0);
    s.stop().await;
}

async fn long_poll(s: &TestServer, queue: &str, wait: u64) -> common::Reply {
    let body = json!({"consumer_id": "w", "wait_seconds": wait});
    s.post(&format!("/consume/{queue}"), body).await
}

// Verifies: API-0031, SYS-0024, SYS-0033
#[tokio::test]
async fn a_long_poll_beyond_the_waiter_limit_is_answered_429_at_once() {
    let s = TestServer::start_with(|c| c.limits.max_waiting_consumers = 1).await;
    s.create_queue("idle", json!({"ordering": "Fifo"})).await;
    s.create_queue("busy", json!({"ordering": "Fifo"})).await;

    // Three long polls at once: whichever comes first takes the only slot and waits, the
    // other two are refused at once.
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    for n in 0..3 {
        let (client, url, done_tx) = (s.client.clone(), s.url("/consume/idle"), done_tx.clone());
        tokio::spawn(async move {
            let body = json!({"consumer_id": format!("c{n}"), "wait_seconds": 20});
            let resp = client.post(url).json(&body).send().await.unwrap();
            let status = resp.status().as_u16();
            if status == 429 {
                assert_eq!(resp.headers()["retry-after"], "1");
            }
            let _ = done_tx.send((status, resp.json::<Value>().await.unwrap()));
        });
    }
    for _ in 0..2 {
        let (status, body) = tokio::time::timeout(PATIENCE, done.recv()).await.unwrap().unwrap();
        assert_eq!((status, body["code"].as_str()), (429, Some("too_many_waiters")), "{body}");
    }
    assert_eq!(metric(&s, "qrusty_refused_long_polls_total").await, 2);

    // A long poll that finds a message takes no slot.
    s.publish("busy", json!(1), "ready").await;
    let got = long_poll(&s, "busy", 5).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["payload"], "ready");

    // The waiter gets its message, and its slot is free again.
    s.publish("idle", json!(1), "for the waiter").await;
    let (status, first) = tokio::time::timeout(PATIENCE, done.recv()).await.unwrap().unwrap();
    assert_eq!((status, &first["payload"]), (200, &json!("for the waiter")));
    let after = long_poll(&s, "idle", 1).await;
    assert_eq!((after.status, after.json()), (200, Value::Null));
    s.stop().await;
}

/// Reads one reply with a body of `content-length` bytes; returns the body's length.
async fn read_one_reply(conn: &mut TcpStream) -> usize {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before a whole reply: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let length = head.lines().find_map(|l| l.strip_prefix("content-length: "));
        let length: usize = length.expect("a content-length").parse().unwrap();
        if body.len() >= length {
            return length;
        }
    }
}

/// A connection with a small receive window (so the server's writes wait soon) that has
/// read one reply whole, and the pipelined requests whose replies add up to far more than
/// the socket buffers hold. The server reads requests as it answers them: the caller
/// writes them from a task of its own.
async fn flood_of_replies(s: &TestServer) -> (TcpStream, Vec<u8>) {
    let addr = s.base.trim_start_matches("http://").trim_end_matches('/').parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut conn = socket.connect(addr).await.unwrap();
    let request = b"GET /openapi.json HTTP/1.1\r\nhost: x\r\n\r\n";
    conn.write_all(request).await.unwrap();
    let reply_len = read_one_reply(&mut conn).await;
    (conn, request.repeat((32 << 20) / reply_len + 1))
}

// Verifies: SYS-0031
#[tokio::test]
async fn a_client_that_stops_reading_its_replies_gives_its_slot_up() {
    let idle = Duration::from_millis(500);
    let s = TestServer::start_with(|cfg| {
        cfg.limits.idle_timeout = Some(idle);
        cfg.limits.max_connections = 1;
    })
    .await;
    // One reply read whole: this connection holds the only slot. None of the others is
    // read.
    let (mut stalled, requests) = flood_of_replies(&s).await;
    let sending = tokio::spawn(async move {
        let _ = stalled.write_all(&requests).await;
        stalled
    });

    // Every byte the server has to send waits, and the idle timeout counts that: the
    // connection is closed and its slot serves another client.
    let fresh = || reqwest::Client::builder().timeout(PATIENCE).build().unwrap();
    eventually("the stalled connection's slot frees up", || {
        let (client, url) = (fresh(), s.url("/health"));
        async move { client.get(url).send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    sending.abort();
    s.stop().await;
}

// Verifies: SYS-0031
#[tokio::test]
async fn a_client_that_reads_its_replies_slowly_keeps_its_connection() {
    use tokio::io::AsyncReadExt;
    let idle = Duration::from_millis(500);
    let s = TestServer::start_with(|cfg| cfg.limits.idle_timeout = Some(idle)).await;
    // The replies are read at a steady trickle for six idle timeouts: the server's writes
    // wait most of that time, yet bytes keep moving.
    let (slow, requests) = flood_of_replies(&s).await;
    let (mut reader, mut writer) = slow.into_split();
    let sending = tokio::spawn(async move {
        let _ = writer.write_all(&requests).await;
        writer
    });
    let started = tokio::time::Instant::now();
    let mut got = 0;
    let mut buf = [0u8; 4096];
    while started.elapsed() < idle * 6 {
        match reader.read(&mut buf).await {
            Ok(n) if n > 0 => got += n,
            other => panic!("the connection ended after {got} bytes: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(got > 0);
    sending.abort();
    s.stop().await;
}

// Verifies: SYS-0027, SYS-0024, SYS-0033
#[tokio::test]
async fn a_connection_over_the_cap_gets_503_and_a_freed_slot_serves_again() {
    let s = TestServer::start_with(|c| c.limits.max_connections = 2).await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    // A fresh client, so no pooled connection hides the cap.
    let fresh = || reqwest::Client::builder().timeout(PATIENCE).build().unwrap();
    let end = tokio::time::Instant::now() + PATIENCE;
    let refused = loop {
        assert!(tokio::time::Instant::now() < end, "the third connection is never refused");
        if let Ok(resp) = fresh().get(s.url("/health")).send().await {
            if resp.status() == 503 {
                assert_eq!(resp.headers()["content-type"], "application/json");
                break resp.json::<Value>().await.unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(refused["code"], "too_many_connections");

    let mut gone = held.pop().unwrap();
    gone.shutdown().await.unwrap();
    drop(gone);
    eventually("a slot frees up", || {
        let client = fresh();
        let url = s.url("/health");
        async move { client.get(url).send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    drop(held);
    eventually("the refusals are counted", || {
        let (client, url) = (fresh(), s.url("/metrics"));
        async move {
            let Ok(reply) = client.get(url).send().await else { return false };
            let text = reply.text().await.unwrap_or_default();
            text.lines().any(|l| {
                l.strip_prefix("qrusty_refused_connections_total ")
                    .is_some_and(|n| n.parse::<u64>().is_ok_and(|n| n >= 1))
            })
        }
    })
    .await;
    s.stop().await;
}

// Verifies: SYS-0027, SYS-0024, SYS-0033
#[tokio::test]
async fn a_websocket_session_over_the_cap_is_refused_at_upgrade() {
    use tokio_tungstenite::tungstenite::Error as WsError;

    let s = TestServer::start_with(|c| c.limits.max_ws_sessions = 1).await;
    let url = format!("{}/ws", s.base.replace("http://", "ws://"));
    let (mut first, _) = tokio_tungstenite::connect_async(&url).await.expect("first upgrade");

    match tokio_tungstenite::connect_async(&url).await {
        Err(WsError::Http(resp)) => {
            assert_eq!(resp.status(), 503);
            assert_eq!(resp.headers()["retry-after"], "1");
            let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["code"], "too_many_sessions");
        }
        other => panic!("second upgrade must be refused, got {other:?}"),
    }
    // HTTP routes are not sessions: they keep working.
    assert!(s.health_is_ok().await);
    assert_eq!(metric(&s, "qrusty_refused_ws_sessions_total").await, 1);

    first.close(None).await.unwrap();
    drop(first);
    eventually("the session slot frees up", || {
        let url = url.clone();
        async move { tokio_tungstenite::connect_async(url).await.is_ok() }
    })
    .await;
    s.stop().await;
}

// Verifies: SYS-0029
#[tokio::test]
async fn a_consumer_id_above_255_bytes_locks_nothing() {
    let s = TestServer::start().await;
    let id = s.publish("q", json!(1), "job").await;
    let long = "c".repeat(256);
    let body = json!({"consumer_id": long, "timeout_seconds": 600});
    s.post("/consume/q", body.clone()).await.assert_error(422, "invalid_request");
    let batch = json!({"consumer_id": long, "timeout_seconds": 600, "max_messages": 50});
    s.post("/consume-batch/q", batch).await.assert_error(422, "invalid_request");
    assert_eq!(s.engine.queue_stats("q").unwrap().available, 1, "nothing was locked");

    // Such an id can hold no lock, so the calls that need one answer not_locked.
    let holder = json!({"consumer_id": long});
    s.post(&format!("/ack/q/{}", enc(&id)), holder.clone()).await.assert_error(404, "not_locked");
    s.post(&format!("/nack/q/{}", enc(&id)), holder.clone()).await.assert_error(404, "not_locked");
    let renew = s.post(&format!("/renew/q/{}", enc(&id)), holder).await;
    renew.assert_error(404, "not_locked");

    // 255 bytes, and the empty id 0.15.0 clients may send, still consume.
    let max = "c".repeat(255);
    let got = s.consume("q", &max).await.expect("a message");
    s.ack("q", got["id"].as_str().unwrap(), &max).await.assert_ok_empty();
    s.publish("q", json!(1), "job2").await;
    let got = s.consume("q", "").await.expect("a message");
    s.ack("q", got["id"].as_str().unwrap(), "").await.assert_ok_empty();
    s.stop().await;
}

// Verifies: SYS-0030
#[tokio::test]
async fn a_batch_too_big_for_one_log_record_is_413_and_the_log_stays_writable() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = qrusty::wal::WalOptions {
        max_record_bytes: 4096,
        ..qrusty::wal::WalOptions::new(tmp.path())
    };
    let s =
        TestServer::start_engine(|o| o.storage = qrusty::engine::StorageConfig::Wal(wal), |_| {})
            .await;
    // Well within the 2 MiB body limit, but its record is above the log's 4096 bytes.
    let messages: Vec<Value> =
        (0..200).map(|i| json!({"priority": 1, "payload": format!("m{i}")})).collect();
    let batch = json!({"queue": "q", "messages": messages});
    s.post("/publish-batch", batch).await.assert_error(413, "payload_too_large");

    // A refused record is the request's fault, not the disk's: the log takes the next one.
    s.publish("q", json!(1), "fits").await;
    assert_eq!(s.engine.queue_stats("q").unwrap().available, 1);
    s.stop().await;
}

/// Reads until the server closes the connection; the bytes it sent before.
async fn read_until_closed(conn: &mut TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = conn.read(&mut buf).await {
            got.extend_from_slice(&buf[..n]);
        }
    });
    read.await.expect("the server closed the connection");
    got
}

// Verifies: SYS-0031
#[tokio::test]
async fn silent_and_half_sent_connections_are_closed_but_talking_ones_are_not() {
    use tokio::io::AsyncReadExt;
    let idle = Duration::from_millis(500);
    let s = TestServer::start_with(|cfg| cfg.limits.idle_timeout = Some(idle)).await;
    let addr = s.url("").trim_start_matches("http://").trim_end_matches('/').to_owned();

    let mut silent = TcpStream::connect(&addr).await.unwrap();
    assert!(read_until_closed(&mut silent).await.is_empty());

    let mut half = TcpStream::connect(&addr).await.unwrap();
    half.write_all(b"POST /publish HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"q")
        .await
        .unwrap();
    read_until_closed(&mut half).await;

    // Every request pushes the deadline back: this connection outlives the timeout.
    let mut talking = TcpStream::connect(&addr).await.unwrap();
    let started = tokio::time::Instant::now();
    while started.elapsed() < idle * 3 {
        talking.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 4096];
        let n = talking.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
        tokio::time::sleep(idle / 5).await;
    }
    read_until_closed(&mut talking).await;
    s.stop().await;
}
