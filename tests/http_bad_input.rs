//! Hostile and clumsy input: every case answers a 4xx with a JSON error body carrying a
//! stable code, and the server keeps serving afterwards.

mod common;

use common::{Reply, TestServer};
use reqwest::Method;
use serde_json::json;

const JSON: (&str, &str) = ("content-type", "application/json");

async fn post_raw(s: &TestServer, path: &str, body: &str) -> Reply {
    s.send(Method::POST, path, &[JSON], Some(body.as_bytes().to_vec())).await
}

/// Sends `body` with `Transfer-Encoding: chunked` over a raw socket (so no length is
/// announced) and answers the status line of the reply.
async fn post_chunked(s: &TestServer, path: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let addr = s.base.trim_start_matches("http://");
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.chunks(8 * 1024) {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        // The server may answer and stop reading before the whole body is sent.
        if sock.write_all(&framed).await.is_err() {
            break;
        }
    }
    let _ = sock.write_all(b"0\r\n\r\n").await;
    let mut status = String::new();
    BufReader::new(sock).read_line(&mut status).await.unwrap();
    status
}

/// Asserts the reply, then that the server still answers and changed nothing.
async fn refused(s: &TestServer, reply: Reply, status: u16, code: &str) {
    reply.assert_error(status, code);
    assert!(s.health_is_ok().await, "server unhealthy after a {status} {code}");
}

// Verifies: API-0002, API-0003
#[tokio::test]
async fn malformed_json_is_400_invalid_json() {
    let s = TestServer::start().await;
    for body in ["{", "{\"queue\": }", "not json", "", "{\"queue\":\"q\"}}"] {
        let reply = post_raw(&s, "/publish", body).await;
        refused(&s, reply, 400, "invalid_json").await;
    }
    assert_eq!(s.get("/queues").await.json(), json!([]));
    s.stop().await;
}

// Verifies: API-0002, API-0003, API-0015
#[tokio::test]
async fn wrong_field_types_and_missing_fields_are_422_invalid_request() {
    let s = TestServer::start().await;
    let cases = [
        ("/publish", json!({"queue": "q", "priority": 1, "payload": {"an": "object"}})),
        ("/publish", json!({"queue": 7, "priority": 1, "payload": "x"})),
        ("/publish", json!({"queue": "q", "priority": 1, "payload": "x", "max_retries": -1})),
        ("/publish", json!({"queue": "q", "payload": "x"})),
        ("/publish", json!({"priority": 1, "payload": "x"})),
        ("/publish", json!([1, 2])),
        ("/create-queue", json!({"name": "q"})),
        ("/create-queue", json!({"name": "q", "config": {"allow_duplicates": "yes"}})),
        // serde_json reports an enum given anything but a string as a syntax error.
        ("/create-queue", json!({"name": "q", "config": {"ordering": 1}})),
        ("/create-queue", json!({"name": "q", "config": {"priority_kind": null}})),
        ("/create-queue", json!({"name": "q", "config": {"ordering": {}}})),
        ("/update-queue", json!({"name": "q"})),
        ("/consume/q", json!({})),
        ("/consume/q", json!({"consumer_id": 5})),
        ("/consume/q", json!({"consumer_id": "w", "timeout_seconds": -1})),
        ("/ack/q/id", json!({})),
        ("/ack-batch/q", json!({"consumer_id": "w"})),
        ("/ack-batch/q", json!({"consumer_id": "w", "message_ids": "id"})),
        ("/publish-batch", json!({"queue": "q", "messages": [{"payload": "x"}]})),
        ("/consume-batch/q", json!({"consumer_id": "w"})),
        ("/dlq/q/redrive", json!({"ids": "all"})),
    ];
    for (path, body) in cases {
        let reply = s.post(path, body.clone()).await;
        assert_eq!(reply.status, 422, "{path} {body}: {}", reply.text());
        refused(&s, reply, 422, "invalid_request").await;
    }
    assert_eq!(s.get("/queues").await.json(), json!([]));
    s.stop().await;
}

// Verifies: API-0015, SCH-0006, SCH-0008
#[tokio::test]
async fn priorities_outside_u64_are_422_and_strings_on_numeric_queues_400() {
    let s = TestServer::start().await;
    for priority in ["-1", "1.5", "18446744073709551616", "null", "true"] {
        let body = format!("{{\"queue\":\"q\",\"priority\":{priority},\"payload\":\"x\"}}");
        let reply = post_raw(&s, "/publish", &body).await;
        refused(&s, reply, 422, "invalid_request").await;
    }
    let reply = s.post("/publish", json!({"queue": "q", "priority": "10", "payload": "x"})).await;
    refused(&s, reply, 400, "invalid_priority").await;

    // The extremes are fine.
    s.publish("q", json!(0), "lo").await;
    s.publish("q", json!(18446744073709551615u64), "hi").await;
    assert_eq!(s.drain("q").await, ["hi", "lo"]);
    s.stop().await;
}

// Verifies: API-0006
#[tokio::test]
async fn invalid_queue_names_are_400_everywhere() {
    let s = TestServer::start().await;
    let long = "x".repeat(300);
    for name in ["", long.as_str(), "a/b", "_internal", "tab\there"] {
        let create =
            s.post("/create-queue", json!({"name": name, "config": {"ordering": "Fifo"}})).await;
        refused(&s, create, 400, "invalid_queue_name").await;
        let publish = s.post("/publish", json!({"queue": name, "priority": 1, "payload": "x"}));
        refused(&s, publish.await, 400, "invalid_queue_name").await;
    }
    // In a path, the empty name and an encoded slash reach the same check.
    let consume = s.post("/consume/", json!({"consumer_id": "w"})).await;
    refused(&s, consume, 400, "invalid_queue_name").await;
    let purge = s.post_empty("/purge-queue/_x").await;
    refused(&s, purge, 400, "invalid_queue_name").await;
    for read in ["/queue-stats/_x", "/queues/_x/metrics"] {
        refused(&s, s.get(read).await, 400, "invalid_queue_name").await;
    }

    assert_eq!(s.get("/queues").await.json(), json!([]));
    s.stop().await;
}

// Verifies: API-0006
#[tokio::test]
async fn a_255_byte_name_is_accepted() {
    let s = TestServer::start().await;
    let name = "n".repeat(255);
    s.create_queue(&name, json!({"ordering": "Fifo"})).await;
    assert_eq!(s.get("/queues").await.json(), json!([name]));
    s.stop().await;
}

// Verifies: DLV-0002, DLV-0027
#[tokio::test]
async fn timeouts_beyond_twelve_hours_are_400_invalid_timeout() {
    let s = TestServer::start().await;
    s.publish("q", json!(1), "x").await;
    for timeout in [9_223_372_036_854_775_808u64, 43_201] {
        let reply = s.post("/consume/q", json!({"consumer_id": "w", "timeout_seconds": timeout}));
        refused(&s, reply.await, 400, "invalid_timeout").await;
    }
    let wait = s.post("/consume/q", json!({"consumer_id": "w", "wait_seconds": 21})).await;
    refused(&s, wait, 400, "invalid_timeout").await;

    // Nothing was locked by the refused calls; 43200 itself is allowed.
    assert_eq!(s.queue_stats("q").await["locked"], 0);
    assert!(s.consume_for("q", "w", 43_200).await.is_some());
    s.stop().await;
}

// Verifies: API-0004, SYS-0024
#[tokio::test]
async fn bodies_over_the_limit_are_413_with_or_without_a_length() {
    let s = TestServer::start_with(|cfg| cfg.max_body_bytes = 64 * 1024).await;
    let payload = "y".repeat(100 * 1024);
    let body = json!({"queue": "q", "priority": 1, "payload": payload});
    let reply = s.post("/publish", body.clone()).await;
    refused(&s, reply, 413, "payload_too_large").await;

    // Chunked: no Content-Length announces the size, so the read itself must stop.
    let status = post_chunked(&s, "/publish", &serde_json::to_vec(&body).unwrap()).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert!(s.health_is_ok().await);

    // Just under the limit is fine.
    s.publish("q", json!(1), &"z".repeat(60 * 1024)).await;
    assert_eq!(s.get("/queues").await.json(), json!(["q"]));
    s.stop().await;
}

// Verifies: API-0002
#[tokio::test]
async fn bodies_need_a_json_content_type() {
    let s = TestServer::start().await;
    let body = br#"{"queue":"q","priority":1,"payload":"x"}"#.to_vec();
    let none = s.send(Method::POST, "/publish", &[], Some(body.clone())).await;
    refused(&s, none, 415, "unsupported_media_type").await;
    let text_type = [("content-type", "text/plain")];
    let text = s.send(Method::POST, "/publish", &text_type, Some(body.clone())).await;
    refused(&s, text, 415, "unsupported_media_type").await;

    for ok_type in ["application/json; charset=utf-8", "application/vnd.qrusty+json"] {
        let headers = [("content-type", ok_type)];
        let reply = s.send(Method::POST, "/publish", &headers, Some(body.clone())).await;
        assert_eq!(reply.status, 200, "{ok_type}");
    }
    s.stop().await;
}

// Verifies: API-0002
#[tokio::test]
async fn consume_without_a_body_is_415_and_with_an_empty_json_body_400() {
    let s = TestServer::start().await;
    let bare = s.post_empty("/consume/q").await;
    refused(&s, bare, 415, "unsupported_media_type").await;
    let empty = post_raw(&s, "/consume/q", "").await;
    refused(&s, empty, 400, "invalid_json").await;
    s.stop().await;
}

// Verifies: API-0005, API-0003
#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let s = TestServer::start().await;
    let get_publish = s.get("/publish").await;
    assert_eq!(get_publish.header("allow"), Some("POST"));
    refused(&s, get_publish, 405, "method_not_allowed").await;

    let post_stats = s.post_empty("/stats").await;
    assert_eq!(post_stats.header("allow"), Some("GET, HEAD"));
    refused(&s, post_stats, 405, "method_not_allowed").await;

    let get_delete = s.get("/delete-queue/q").await;
    assert_eq!(get_delete.header("allow"), Some("DELETE"));
    refused(&s, get_delete, 405, "method_not_allowed").await;

    // The web UI's routes answer errors the same way.
    for path in ["/ui", "/favicon.ico", "/assets/app.js"] {
        let reply = s.post_empty(path).await;
        assert_eq!(reply.header("allow"), Some("GET, HEAD"), "{path}");
        refused(&s, reply, 405, "method_not_allowed").await;
    }
    refused(&s, s.get("/assets/missing.js").await, 404, "not_found").await;
    s.stop().await;
}

// Verifies: API-0005
#[tokio::test]
async fn unknown_routes_are_404_not_found() {
    let s = TestServer::start().await;
    for path in ["/nope", "/", "/stats/extra", "/consume/a/b", "/queues/q"] {
        let reply = s.get(path).await;
        refused(&s, reply, 404, "not_found").await;
    }
    let put = s.send(Method::PUT, "/nothing-here", &[], None).await;
    refused(&s, put, 404, "not_found").await;
    s.stop().await;
}

// Verifies: API-0001
#[tokio::test]
async fn every_reply_carries_cors_headers_and_preflights_succeed() {
    let s = TestServer::start().await;
    for reply in [s.get("/stats").await, s.get("/nope").await] {
        assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
        assert_eq!(reply.header("access-control-expose-headers"), Some("*"));
        assert_eq!(
            reply.header("vary"),
            Some("origin, access-control-request-method, access-control-request-headers")
        );
    }
    let preflight = s
        .send(
            Method::OPTIONS,
            "/publish",
            &[("origin", "http://example.test"), ("access-control-request-method", "POST")],
            None,
        )
        .await;
    assert_eq!(preflight.status, 200);
    assert_eq!(preflight.header("access-control-allow-methods"), Some("*"));
    assert_eq!(preflight.header("access-control-allow-headers"), Some("*"));
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    s.stop().await;
}

#[tokio::test]
async fn unknown_fields_are_ignored() {
    let s = TestServer::start().await;
    let body = json!({"queue": "q", "priority": 1, "payload": "x", "colour": "blue"});
    assert_eq!(s.post("/publish", body).await.status, 200);
    s.stop().await;
}

/// Sends `raw` as it is over a socket of its own and reads the reply to the end.
async fn raw_exchange(s: &TestServer, raw: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let addr = s.base.trim_start_matches("http://");
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before it has read everything.
    let _ = sock.write_all(raw).await;
    let mut reply = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = sock.read(&mut buf).await {
            reply.extend_from_slice(&buf[..n]);
        }
    });
    read.await.expect("the server closes the connection after its reply");
    String::from_utf8(reply).unwrap()
}

// Verifies: API-0003
#[tokio::test]
async fn requests_the_http_parser_refuses_get_json_errors_too() {
    let long_uri = format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(70_000));
    let huge_header =
        format!("GET /health HTTP/1.1\r\nhost: x\r\nx-a: {}\r\n\r\n", "b".repeat(600_000));
    let cases = [
        ("GARBAGE\r\n\r\n".to_string(), 400, "bad_request"),
        ("GET /health HTTP/1.1\r\nno colon here\r\n\r\n".to_string(), 400, "bad_request"),
        (long_uri, 414, "uri_too_long"),
        (huge_header, 431, "headers_too_large"),
    ];
    let s = TestServer::start().await;
    for (raw, status, code) in cases {
        let reply = raw_exchange(&s, raw.as_bytes()).await;
        let (head, body) = reply.split_once("\r\n\r\n").expect("a whole reply");
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
        assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
        let length = head.lines().find_map(|l| l.strip_prefix("content-length: "));
        assert_eq!(length.and_then(|n| n.parse().ok()), Some(body.len()), "{head}");
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["code"], code, "{body}");
        assert!(json["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
        assert!(s.health_is_ok().await, "server unhealthy after a {status} {code}");
    }
    s.stop().await;
}
