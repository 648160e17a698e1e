//! A real server on 127.0.0.1:0 in the test process: the engine in memory mode with a
//! manual clock (lock expiry is tested by moving the clock, not by sleeping), the full
//! filter chain of `server::start`, and a reqwest client with small helpers.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use qrusty::clock::ManualClock;
use qrusty::engine::{Engine, EngineOptions, StorageConfig};
use qrusty::logs::LogHub;
use qrusty::server::{self, RunningServer, ServerConfig, ServerLimits};
use qrusty::ws::WsOptions;
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::Method;
use serde_json::{json, Value};

/// A fixed, realistic start time (2023-11-14) so epoch-ms values look like real ones.
pub const START_MS: u64 = 1_700_000_000_000;

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub engine: Arc<Engine>,
    server: Option<RunningServer>,
}

/// A reply, read completely.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("status {} body is not JSON ({e}): {:?}", self.status, self.text())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a JSON error reply with the given status and stable code.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert_eq!(self.header("content-type"), Some("application/json"));
        let body = self.json();
        assert_eq!(body["code"], code, "body: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "body: {body}");
    }

    #[track_caller]
    pub fn assert_ok_empty(&self) {
        assert_eq!(self.status, 200, "body: {}", self.text());
        assert!(self.body.is_empty(), "expected an empty body, got {}", self.text());
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts with a config the caller may adjust (body limit, token).
    pub async fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
        Self::start_engine(|_| {}, adjust).await
    }

    /// Starts with engine options (limits, a simulated file system) and a server config
    /// the caller may adjust; the clock is always the manual one.
    pub async fn start_engine(
        engine_opts: impl FnOnce(&mut EngineOptions),
        adjust: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        let clock = Arc::new(ManualClock::new(START_MS));
        let mut opts = EngineOptions::new(StorageConfig::Memory);
        engine_opts(&mut opts);
        opts.clock = clock.clone();
        let engine = Engine::open(opts).expect("engine opens");

        let mut cfg = ServerConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            max_body_bytes: 2 * 1024 * 1024,
            api_token: None,
            webui_dir: None,
            ws: WsOptions::default(),
            cors_origins: None,
            limits: ServerLimits::default(),
        };
        adjust(&mut cfg);
        let server =
            server::start(cfg, engine.clone(), LogHub::detached()).await.expect("server binds");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client builds");
        TestServer {
            base: format!("http://{}", server.addr),
            client,
            clock,
            engine,
            server: Some(server),
        }
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        self.engine.shutdown().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends anything: raw bytes and explicit headers, for the bad-input tests.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut req = self.client.request(method, self.url(path));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("request to {path} failed: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("reply body").to_vec();
        Reply { status, headers, body }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, &[], None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        let bytes = serde_json::to_vec(&body).unwrap();
        self.send(Method::POST, path, &[(CONTENT_TYPE.as_str(), "application/json")], Some(bytes))
            .await
    }

    /// POST without a body (purge, delete-all, dlq purge).
    pub async fn post_empty(&self, path: &str) -> Reply {
        self.send(Method::POST, path, &[], None).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, &[], None).await
    }

    pub async fn health_is_ok(&self) -> bool {
        let reply = self.get("/health").await;
        reply.status == 200 && reply.body == b"OK"
    }

    // Scenario helpers: each asserts success, so a test reads as the steps it takes.

    pub async fn create_queue(&self, name: &str, config: Value) {
        let reply = self.post("/create-queue", json!({"name": name, "config": config})).await;
        reply.assert_ok_empty();
    }

    pub async fn publish(&self, queue: &str, priority: Value, payload: &str) -> String {
        let body = json!({"queue": queue, "priority": priority, "payload": payload});
        let reply = self.post("/publish", body).await;
        assert_eq!(reply.status, 200, "publish: {}", reply.text());
        reply.json()["id"].as_str().expect("publish answers an id").to_owned()
    }

    pub async fn publish_with_retries(&self, queue: &str, payload: &str, retries: u32) -> String {
        let body =
            json!({"queue": queue, "priority": 1, "payload": payload, "max_retries": retries});
        let reply = self.post("/publish", body).await;
        assert_eq!(reply.status, 200, "publish: {}", reply.text());
        reply.json()["id"].as_str().unwrap().to_owned()
    }

    /// Consumes one message; `None` when the queue answered `null`.
    pub async fn consume(&self, queue: &str, consumer: &str) -> Option<Value> {
        self.consume_for(queue, consumer, 30).await
    }

    pub async fn consume_for(&self, queue: &str, consumer: &str, secs: u64) -> Option<Value> {
        let path = format!("/consume/{}", enc(queue));
        let reply =
            self.post(&path, json!({"consumer_id": consumer, "timeout_seconds": secs})).await;
        assert_eq!(reply.status, 200, "consume: {}", reply.text());
        let body = reply.json();
        (!body.is_null()).then_some(body)
    }

    /// Payloads in the order a consumer gets them, acking each.
    pub async fn drain(&self, queue: &str) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(msg) = self.consume(queue, "drainer").await {
            let reply = self.ack(queue, msg["id"].as_str().unwrap(), "drainer").await;
            reply.assert_ok_empty();
            out.push(msg["payload"].as_str().unwrap().to_owned());
        }
        out
    }

    pub async fn ack(&self, queue: &str, id: &str, consumer: &str) -> Reply {
        let path = format!("/ack/{}/{}", enc(queue), enc(id));
        self.post(&path, json!({"consumer_id": consumer})).await
    }

    pub async fn nack(&self, queue: &str, id: &str, consumer: &str) -> Reply {
        let path = format!("/nack/{}/{}", enc(queue), enc(id));
        self.post(&path, json!({"consumer_id": consumer})).await
    }

    pub async fn queue_stats(&self, queue: &str) -> Value {
        let reply = self.get(&format!("/queue-stats/{}", enc(queue))).await;
        assert_eq!(reply.status, 200, "queue-stats: {}", reply.text());
        reply.json()
    }

    pub fn advance_secs(&self, secs: u64) {
        self.clock.advance_ms(secs * 1000);
    }
}

/// Percent-encodes one path segment.
pub fn enc(segment: &str) -> String {
    let mut out = String::new();
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
