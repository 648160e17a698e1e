//! What operators and tools read: `/stats`, `/queue-stats`, the per-queue series,
//! `/metrics` in the Prometheus format, and `/openapi.json` kept true to the routes.

mod common;

use common::TestServer;
use reqwest::Method;
use serde_json::{json, Value};

// Verifies: API-0018, DLV-0014
#[tokio::test]
async fn stats_lists_queues_sorted_with_a_summary() {
    let s = TestServer::start().await;
    s.create_queue("b-empty", json!({"ordering": "Fifo", "allow_duplicates": false})).await;
    s.publish("a-busy", json!(1), "x").await;
    s.publish("a-busy", json!(2), "y").await;
    s.consume("a-busy", "w").await.unwrap();

    let reply = s.get("/stats").await;
    assert_eq!(reply.status, 200);
    let stats = reply.json();
    let names: Vec<&str> =
        stats["queues"].as_array().unwrap().iter().map(|q| q["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a-busy", "b-empty"]);

    let busy = &stats["queues"][0];
    assert_eq!(
        (&busy["available"], &busy["locked"], &busy["total"], &busy["dead_lettered"]),
        (&json!(1), &json!(1), &json!(2), &json!(0))
    );
    for rate in ["publish_rate_per_sec", "ack_rate_per_sec", "nack_rate_per_sec"] {
        assert!(busy[rate].is_f64(), "{rate} is a float: {}", busy[rate]);
    }
    assert_eq!(
        stats["queues"][1]["config"],
        json!({"ordering": "Fifo", "allow_duplicates": false, "priority_kind": "Numeric"})
    );
    assert_eq!(
        stats["summary"],
        json!({"total_queues": 2, "total_messages": 2, "total_available": 1, "total_locked": 1})
    );
    s.stop().await;
}

// Verifies: API-0018
#[tokio::test]
async fn stats_of_an_empty_server_are_zero() {
    let s = TestServer::start().await;
    assert_eq!(
        s.get("/stats").await.json(),
        json!({"queues": [], "summary": {"total_queues": 0, "total_messages": 0,
               "total_available": 0, "total_locked": 0}})
    );
    s.stop().await;
}

// Verifies: API-0019
#[tokio::test]
async fn queue_stats_of_an_unknown_queue_are_zeros_with_the_default_config() {
    let s = TestServer::start().await;
    let stats = s.queue_stats("nobody").await;
    assert_eq!(stats["name"], "nobody");
    assert_eq!((stats["total"].as_u64(), stats["available"].as_u64()), (Some(0), Some(0)));
    assert_eq!(stats["config"]["ordering"], "MaxFirst");
    assert_eq!(stats["publish_rate_per_sec"], 0.0);
    s.stop().await;
}

// Verifies: API-0022, API-0021
#[tokio::test]
async fn queue_metrics_series_reports_sampled_points() {
    let s = TestServer::start().await;
    let empty = s.get("/queues/never/metrics").await.json();
    assert_eq!(
        empty,
        json!({"queue": "never", "resolution_seconds": 1, "window_seconds": 60, "points": []})
    );

    s.publish("m", json!(1), "x").await;
    s.publish("m", json!(1), "y").await;
    s.consume("m", "w").await.unwrap();
    s.clock.advance_ms(1000);
    s.engine.sample_metrics();

    let series = s.get("/queues/m/metrics").await.json();
    let last = series["points"].as_array().unwrap().last().cloned().expect("a point");
    assert_eq!((last["total"].as_u64(), last["locked"].as_u64()), (Some(2), Some(1)));
    assert_eq!(last["t_ms"], common::START_MS + 1000);
    assert!(last["publish_rate_per_sec"].as_f64().unwrap() > 0.0);
    s.stop().await;
}

// Verifies: API-0023, SYS-0015
#[tokio::test]
async fn prometheus_metrics_report_gauges_and_counters() {
    let s = TestServer::start().await;
    for p in ["a", "b", "c"] {
        s.publish("q1", json!(1), p).await;
    }
    let msg = s.consume("q1", "w").await.unwrap();
    s.ack("q1", msg["id"].as_str().unwrap(), "w").await.assert_ok_empty();

    let reply = s.get("/metrics").await;
    assert_eq!(reply.status, 200);
    assert!(reply.header("content-type").unwrap().starts_with("application/openmetrics-text"));
    let text = reply.text();
    for line in [
        "qrusty_queue_available{queue=\"q1\"} 2",
        "qrusty_queue_locked{queue=\"q1\"} 0",
        "qrusty_queue_dead_lettered{queue=\"q1\"} 0",
        "qrusty_messages_published_total 3",
        "qrusty_messages_acked_total 1",
        "# TYPE qrusty_messages_nacked counter",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }
    assert!(text.trim_end().ends_with("# EOF"));
    s.stop().await;
}

// Verifies: API-0023
/// A queue name may hold a quote or a backslash: unescaped, it would end the label value
/// early, and a scraper refuses the whole page.
#[tokio::test]
async fn prometheus_label_values_escape_quotes_and_backslashes() {
    let s = TestServer::start().await;
    let name = r#"q"} 99\x"#;
    s.publish(name, json!(1), "p").await;
    let text = s.get("/metrics").await.text();
    let want = r#"qrusty_queue_available{queue="q\"} 99\\x"} 1"#;
    assert!(text.lines().any(|l| l == want), "missing {want:?} in:\n{text}");
    s.stop().await;
}

/// Every route the contract names (http-api.md §2 and changes.md §3).
const CONTRACT_ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("post", "/create-queue"),
    ("post", "/update-queue"),
    ("delete", "/delete-queue/{queue}"),
    ("post", "/purge-queue/{queue}"),
    ("post", "/purge-all"),
    ("post", "/delete-all"),
    ("post", "/publish"),
    ("post", "/consume/{queue}"),
    ("post", "/ack/{queue}/{id}"),
    ("post", "/nack/{queue}/{id}"),
    ("post", "/ack-batch/{queue}"),
    ("post", "/nack-batch/{queue}"),
    ("get", "/stats"),
    ("get", "/queue-stats/{queue}"),
    ("get", "/queues/{queue}/metrics"),
    ("get", "/queues"),
    ("get", "/ws"),
    ("get", "/ui"),
    ("get", "/favicon.ico"),
    ("post", "/publish-batch"),
    ("post", "/consume-batch/{queue}"),
    ("post", "/renew/{queue}/{id}"),
    ("get", "/dlq/{queue}"),
    ("post", "/dlq/{queue}/redrive"),
    ("post", "/dlq/{queue}/purge"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops.push((method.clone(), path.clone(), op.clone()));
        }
    }
    ops
}

fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "probe" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

// Verifies: API-0024, SYS-0003
#[tokio::test]
async fn openapi_documents_every_contract_route_with_a_description() {
    let s = TestServer::start().await;
    let reply = s.get("/openapi.json").await;
    assert_eq!(reply.status, 200);
    let doc = reply.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    for (method, path) in CONTRACT_ROUTES {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
    }
    for (method, path, op) in operations(&doc) {
        for field in ["summary", "description"] {
            let text = op[field].as_str().unwrap_or_default();
            assert!(!text.trim().is_empty(), "{method} {path} has no {field}");
        }
        assert!(op["responses"]["default"].is_object(), "{method} {path}: no error reply");
    }
    s.stop().await;
}

// Verifies: API-0024, API-0005
#[tokio::test]
async fn every_documented_route_is_served_and_nothing_else_on_its_path() {
    let s = TestServer::start().await;
    let doc = s.get("/openapi.json").await.json();
    let ops = operations(&doc);

    for (method, path, op) in &ops {
        let url = concrete(path);
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let reply = s.send(m, &url, &[], None).await;
        let code = serde_json::from_slice::<Value>(&reply.body).ok().map(|b| b["code"].clone());
        assert_ne!(reply.status, 405, "{method} {path} is documented but not allowed");
        if op.get("x-served-by").is_none() {
            assert_ne!(code, Some(json!("not_found")), "{method} {path} is documented, not served");
        }
    }

    // A method the document does not list for a path is not served there either.
    for (path, item) in doc["paths"].as_object().unwrap() {
        if item.as_object().unwrap().values().any(|op| op.get("x-served-by").is_some()) {
            continue;
        }
        for method in ["get", "post", "delete", "put", "patch"] {
            if item.get(method).is_some() {
                continue;
            }
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let reply = s.send(m, &concrete(path), &[], None).await;
            assert_eq!(reply.status, 405, "{method} {path} answers without being documented");
        }
    }
    s.stop().await;
}
