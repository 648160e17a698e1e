//! One connection from upgrade to close: reading frames, answering requests in order,
//! keep-alive pings, and the cleanup that releases what the connection held.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use warp::ws::WebSocket;

use super::ops::Connection;
use super::outbound::{spawn_writer, Control, Frame, FLUSH_GRACE};
use super::protocol::{error_frame, ok_frame, parse, InvalidJson};
use super::stop::{stop_pair, StopHandle};
use super::WsOptions;
use crate::engine::Engine;
use crate::logs::LogHub;

/// Close codes the server sends (RFC 6455 section 7.4.1).
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_UNSUPPORTED_DATA: u16 = 1003;
const CLOSE_INVALID_PAYLOAD: u16 = 1007;

/// Shortest ping interval honoured, so a zero in the config cannot spin the timer.
const MIN_PING_INTERVAL: Duration = Duration::from_millis(10);

/// Requirements: WS-0002, WS-0004, WS-0006, WS-0027
pub async fn run(socket: WebSocket, engine: Arc<Engine>, logs: Arc<LogHub>, opts: WsOptions) {
    let conn_id: Arc<str> = uuid::Uuid::new_v4().to_string().into();
    let (sink, mut incoming) = socket.split();
    let (out, control, mut writer) = spawn_writer(sink);
    let (closing_handle, mut closing) = stop_pair();
    let last_pong = Arc::new(Mutex::new(Instant::now()));
    let keepalive =
        tokio::spawn(keepalive(opts, Arc::clone(&last_pong), control.clone(), closing_handle));
    let mut conn =
        Connection { engine, logs, conn_id, out, subscriptions: HashMap::new(), log_stream: None };
    tracing::debug!(conn = %conn.conn_id, "websocket connected");

    // Requests run one at a time, so replies leave in request order.
    while let Some(Some(Ok(message))) = closing.until(incoming.next()).await {
        let reply = if message.is_text() {
            let text = message.to_str().unwrap_or_default();
            let Ok((envelope, request)) = parse(text).map_err(|InvalidJson| ()) else {
                queue_close(&conn, CLOSE_INVALID_PAYLOAD, "invalid JSON").await;
                break;
            };
            let result = match request {
                Ok(request) => conn.handle(request).await,
                Err(err) => Err(err),
            };
            if envelope.no_reply {
                continue;
            }
            match result {
                Ok(fields) => ok_frame(fields, envelope.req_id.as_deref()),
                Err(err) => error_frame(&err, envelope.req_id.as_deref()),
            }
        } else if message.is_binary() {
            queue_close(&conn, CLOSE_UNSUPPORTED_DATA, "binary frames not supported").await;
            break;
        } else if message.is_pong() {
            *last_pong.lock() = Instant::now();
            continue;
        } else if message.is_close() {
            break;
        } else {
            // Pings: the protocol layer answers them with a pong by itself.
            continue;
        };

        // Waits for room rather than dropping the reply; a client that never reads
        // stops being read from, and the ping timeout ends it.
        let sent = closing.until(conn.out.frames.send(Frame::text(reply, None))).await;
        if !matches!(sent, Some(Ok(()))) {
            break;
        }
    }

    keepalive.abort();
    conn.close().await;
    tracing::debug!(conn = %conn.conn_id, "websocket disconnected");
    drop(conn);
    drop(control);
    if tokio::time::timeout(FLUSH_GRACE, &mut writer).await.is_err() {
        writer.abort();
    }
}

/// Queues a close behind every reply sent so far; the writer stops after it.
async fn queue_close(conn: &Connection, code: u16, reason: &'static str) {
    let close = conn.out.frames.send(Frame::close(code, reason));
    // A client that reads nothing would hold the close back for ever.
    let _ = tokio::time::timeout(FLUSH_GRACE, close).await;
}

/// Pings every interval; closes with 1001 when no pong came for interval + timeout.
/// Requirements: WS-0019
async fn keepalive(
    opts: WsOptions,
    last_pong: Arc<Mutex<Instant>>,
    control: mpsc::Sender<Control>,
    closing: StopHandle,
) {
    let interval = opts.ping_interval.max(MIN_PING_INTERVAL);
    let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if last_pong.lock().elapsed() > interval + opts.ping_timeout {
            let close = Control::Close { code: CLOSE_GOING_AWAY, reason: "ping timeout" };
            let _ = control.try_send(close);
            closing.stop();
            return;
        }
        // A full control queue means pings are already waiting: skipping one is fine.
        let _ = control.try_send(Control::Ping);
    }
}
