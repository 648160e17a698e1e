//! The `http_body` check: arbitrary bytes as the body of a request to one route of the API,
//! through the real filter (`qrusty::http::filter`) on a memory-mode engine.
//!
//! Shared by the fuzz target (fuzz/fuzz_targets/http_body.rs) and the stable replay test
//! (tests/fuzz_corpus.rs).
//!
//! Input: byte 0 picks the route (of the API's own routes), byte 1 the path parameters
//! (bits 0-2 the queue, bits 3-4 the message id) and whether the content type is left
//! out (bit 5), byte 2 the query string; the rest is the body. The reply must not be a
//! 5xx, an error reply must be JSON with a `code`, and the server must still answer
//! `/stats` with 200 afterwards. Time runs paused, so a long poll costs no real time.
#![allow(dead_code)]

use std::sync::Arc;

use qrusty::clock::ManualClock;
use qrusty::engine::{Engine, EngineOptions, Holder, NewMessage, Priority, StorageConfig};
use qrusty::http::routes::ROUTES;
use qrusty::http::{filter, ApiState};
use qrusty::slots::{ServerSlots, Slots};

const QUEUE_PARAMS: [&str; 8] = ["q", "other", "%FF", "a%2Fb", "_hidden", "%20", "q%00", "t"];
const QUERIES: [&str; 8] = [
    "",
    "limit=abc",
    "limit=5",
    "limit=99999999999999999999",
    "limit=-1",
    "limit",
    "limit=0",
    "x=1",
];

/// The routes the API filter itself serves.
pub fn routes() -> Vec<(&'static str, &'static str)> {
    ROUTES.iter().filter(|r| !r.foreign).map(|r| (r.method, r.path)).collect()
}

fn path(template: &str, queue: &str, id: &str) -> String {
    template.replace("{queue}", queue).replace("{id}", id)
}

/// The check. Panics on a 5xx, a non-JSON error reply or a server that stops answering.
// Verifies: API-0002, API-0003
pub fn check(data: &[u8]) {
    let routes = routes();
    let (route, sel, query, body) = match data {
        [r, s, q, body @ ..] => (*r, *s, *q, body),
        _ => return,
    };
    let (method, template) = routes[usize::from(route) % routes.len()];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut opts = EngineOptions::new(StorageConfig::Memory);
        opts.clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let engine = Engine::open(opts).expect("memory engine");
        // A queue with a ready message, a locked one and a dead letter, so that ids and
        // names in fuzzed bodies can hit real state.
        for (payload, retries) in [("locked", 3), ("dead", 0), ("ready", 3)] {
            let m = NewMessage {
                priority: Priority::Num(1),
                payload: payload.into(),
                max_retries: retries,
            };
            engine.publish("q", m).await.expect("publish");
        }
        let got =
            engine.consume("q", "w", 60, 2, std::time::Duration::ZERO).await.expect("consume");
        let holder = Holder { consumer_id: "w".into(), lock_token: None };
        let dead = got.iter().find(|d| d.payload == "dead").expect("consumed");
        engine.nack("q", &dead.id, &holder).await.expect("nack");
        let locked = got.iter().find(|d| d.payload == "locked").expect("consumed").id.clone();

        let slots = Arc::new(ServerSlots {
            connections: Slots::new(0),
            ws_sessions: Slots::new(0),
            long_polls: Slots::new(0),
        });
        let state = Arc::new(ApiState::new(engine.clone(), 64 * 1024, slots));
        let api = filter(state);
        let queue = QUEUE_PARAMS[usize::from(sel & 7)];
        let id = [locked.as_str(), "00000000-0000-4000-8000-000000000000", "not-a-uuid", "%FF"]
            [usize::from((sel >> 3) & 3)];
        let mut uri = path(template, queue, id);
        let q = QUERIES[usize::from(query) % QUERIES.len()];
        if !q.is_empty() {
            uri = format!("{uri}?{q}");
        }
        let mut req = warp::test::request().method(method).path(&uri).body(body);
        if sel & 32 == 0 {
            req = req.header("content-type", "application/json");
        }
        let resp = req.reply(&api).await;
        let status = resp.status();
        assert!(
            !status.is_server_error(),
            "{method} {uri} answered {status}: {}",
            String::from_utf8_lossy(resp.body())
        );
        if status.is_client_error() {
            let json: serde_json::Value = serde_json::from_slice(resp.body())
                .unwrap_or_else(|e| panic!("{method} {uri}: {status} without a JSON body: {e}"));
            assert!(json["code"].is_string(), "{method} {uri}: {status} without a code: {json}");
        }
        let after = warp::test::request().method("GET").path("/stats").reply(&api).await;
        assert_eq!(after.status(), 200, "/stats after {method} {uri}");
    });
}

/// Seed inputs: a well-formed body for each route, and a few broken ones.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let good = |path: &str| -> &'static str {
        match path {
            "/create-queue" => {
                concat!(
                    r#"{"name":"n","config":{"ordering":"MinFirst","#,
                    r#""allow_duplicates":false,"priority_kind":"Text"}}"#
                )
            }
            "/update-queue" => r#"{"name":"q","config":{"name":"r","allow_duplicates":false}}"#,
            "/publish" => r#"{"queue":"q","priority":7,"payload":"hello","max_retries":2}"#,
            "/publish-batch" => {
                concat!(
                    r#"{"queue":"q","messages":[{"priority":1,"payload":"a"},"#,
                    r#"{"priority":2,"payload":"b"}]}"#
                )
            }
            "/consume/{queue}" => r#"{"consumer_id":"w","timeout_seconds":30,"wait_seconds":2}"#,
            "/consume-batch/{queue}" => r#"{"consumer_id":"w","max_messages":5}"#,
            "/ack/{queue}/{id}" | "/nack/{queue}/{id}" => r#"{"consumer_id":"w"}"#,
            "/renew/{queue}/{id}" => r#"{"consumer_id":"w","timeout_seconds":5}"#,
            "/ack-batch/{queue}" | "/nack-batch/{queue}" => {
                r#"{"consumer_id":"w","message_ids":["x","00000000-0000-4000-8000-000000000000"]}"#
            }
            "/dlq/{queue}/redrive" => r#"{"ids":[]}"#,
            _ => "",
        }
    };
    let mut out = Vec::new();
    for (i, (_, path)) in routes().iter().enumerate() {
        let name = path.trim_start_matches('/').replace(['/', '{', '}'], "_");
        let mut good_input = vec![i as u8, 0, 0];
        good_input.extend_from_slice(good(path).as_bytes());
        out.push((format!("{i:02}-{name}-good"), good_input));
        let mut broken = vec![i as u8, 0b0000_1001, 1];
        broken
            .extend_from_slice(br#"{"queue":"q","priority":-1,"payload":{"a":1},"consumer_id":5"#);
        out.push((format!("{i:02}-{name}-broken"), broken));
    }
    out.push((
        "big-number".into(),
        [&[7u8, 0, 0][..], br#"{"queue":"q","priority":1e400,"payload":"x"}"#].concat(),
    ));
    out.push((
        "no-content-type".into(),
        [&[7u8, 32, 0][..], br#"{"queue":"q","priority":1,"payload":"x"}"#].concat(),
    ));
    out.push(("deep-nesting".into(), [&[7u8, 0, 0][..], "[".repeat(4000).as_bytes()].concat()));
    out
}
