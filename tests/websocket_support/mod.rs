//! A `/ws` route on its own listener, and a small client that tells replies from pushed
//! frames. Shared by the `websocket*` test files.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use qrusty::engine::{Engine, EngineOptions, StorageConfig};
use qrusty::logs::LogHub;
use qrusty::ws::WsOptions;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Longest any single expected frame may take; generous for a loaded CI machine.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub struct Server {
    pub addr: SocketAddr,
    pub engine: Arc<Engine>,
}

pub async fn server() -> Server {
    server_with(WsOptions::default(), LogHub::detached()).await
}

pub async fn server_with(opts: WsOptions, logs: Arc<LogHub>) -> Server {
    let engine = Engine::open(EngineOptions::new(StorageConfig::Memory)).unwrap();
    server_on(engine, opts, logs).await
}

/// A `/ws` server in front of an engine the test opened itself (a log on `SimFs`, say).
pub async fn server_on(engine: Arc<Engine>, opts: WsOptions, logs: Arc<LogHub>) -> Server {
    let route = qrusty::ws::filter(Arc::clone(&engine), logs, opts, qrusty::slots::Slots::new(0));
    let (addr, serving) = warp::serve(route).bind_ephemeral(([127, 0, 0, 1], 0));
    tokio::spawn(serving);
    Server { addr, engine }
}

impl Server {
    pub async fn connect(&self) -> Client {
        let url = format!("ws://{}/ws", self.addr);
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("upgrade");
        Client { ws, pushed: VecDeque::new() }
    }

    /// (available, locked) of a queue.
    pub fn counts(&self, queue: &str) -> (u64, u64) {
        let stats = self.engine.queue_stats(queue).unwrap();
        (stats.available, stats.locked)
    }

    /// Waits until the queue's counts are `want`, or fails after `PATIENCE`.
    pub async fn wait_counts(&self, queue: &str, want: (u64, u64)) {
        let end = tokio::time::Instant::now() + PATIENCE;
        while self.counts(queue) != want {
            assert!(tokio::time::Instant::now() < end, "{queue}: {:?}", self.counts(queue));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// `deliver` and `log` frames read while looking for a reply.
    pushed: VecDeque<Value>,
}

/// What ended a connection, as the client saw it.
#[derive(Debug, PartialEq)]
pub enum Ending {
    Close(u16, String),
    Gone,
}

impl Client {
    pub async fn send(&mut self, frame: Value) {
        self.ws.send(Message::Text(frame.to_string())).await.unwrap();
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.unwrap();
    }

    /// The next text frame, as JSON; pings are answered by the library on the way.
    pub async fn next_frame(&mut self) -> Value {
        self.try_next_frame(PATIENCE).await.expect("a frame in time")
    }

    pub async fn try_next_frame(&mut self, wait: Duration) -> Option<Value> {
        let end = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(end, self.ws.next()).await.ok()?;
            match next.expect("connection open").expect("frame") {
                Message::Text(text) => return Some(serde_json::from_str(&text).unwrap()),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// Sends a request and returns its reply (`ok` or `error`).
    pub async fn call(&mut self, frame: Value) -> Value {
        self.send(frame).await;
        self.reply().await
    }

    pub async fn reply(&mut self) -> Value {
        loop {
            let frame = self.next_frame().await;
            match frame["type"].as_str() {
                Some("ok") | Some("error") => return frame,
                _ => self.pushed.push_back(frame),
            }
        }
    }

    /// The next pushed frame (`deliver` or `log`); fails on a reply.
    pub async fn pushed(&mut self) -> Value {
        if let Some(frame) = self.pushed.pop_front() {
            return frame;
        }
        let frame = self.next_frame().await;
        assert!(!matches!(frame["type"].as_str(), Some("ok" | "error")), "{frame}");
        frame
    }

    /// Asserts that nothing arrives for `wait`.
    pub async fn expect_quiet(&mut self, wait: Duration) {
        assert!(self.pushed.is_empty(), "{:?}", self.pushed);
        if let Some(frame) = self.try_next_frame(wait).await {
            panic!("expected silence, got {frame}");
        }
    }

    /// Reads until the connection ends, ignoring text frames; returns how it ended.
    pub async fn ending(&mut self) -> Ending {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.ws.next()).await.expect("end");
            match next {
                Some(Ok(Message::Close(Some(CloseFrame { code, reason })))) => {
                    return Ending::Close(code.into(), reason.into_owned())
                }
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return Ending::Gone,
                Some(Ok(_)) => continue,
            }
        }
    }
}

pub fn ok_fields(reply: &Value) -> &serde_json::Map<String, Value> {
    assert_eq!(reply["type"], "ok", "{reply}");
    reply.as_object().unwrap()
}

pub fn error_code(reply: &Value) -> &str {
    assert_eq!(reply["type"], "error", "{reply}");
    reply["code"].as_str().unwrap()
}
