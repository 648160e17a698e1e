//! One connection from upgrade to close: reading frames, answering requests in order,
//! keep-alive pings, and the cleanup that releases what the connection held.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use warp::ws::WebSocket;

use super::errors::WsError;
use super::ops::Connection;
use super::outbound::{spawn_writer, Control, Frame, FLUSH_GRACE};
use super::protocol::{error_frame, ok_frame, parse, Envelope, InvalidJson, Request};
use super::stop::{stop_pair, Stop, StopHandle};
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

    // Requests take effect one at a time, in arrival order; the replies of writes wait
    // for their fsync side by side, so one fsync covers every write the client has sent
    // so far, and still leave in request order.
    let mut in_flight: InFlight = FuturesOrdered::new();
    loop {
        let message = tokio::select! {
            biased;
            Some(reply) = in_flight.next() => {
                if !send_reply(&conn, &mut closing, reply).await {
                    break;
                }
                continue;
            }
            message = closing.until(incoming.next()), if in_flight.len() < MAX_IN_FLIGHT => {
                match message {
                    Some(Some(Ok(message))) => message,
                    _ => break,
                }
            }
        };

        if message.is_text() {
            let text = message.to_str().unwrap_or_default();
            let Ok((envelope, request)) = parse(text).map_err(|InvalidJson| ()) else {
                flush(&conn, &mut closing, &mut in_flight).await;
                queue_close(&conn, CLOSE_INVALID_PAYLOAD, "invalid JSON").await;
                break;
            };
            let reply = start(&mut conn, request, envelope).await;
            in_flight.push_back(reply);
        } else if message.is_binary() {
            flush(&conn, &mut closing, &mut in_flight).await;
            queue_close(&conn, CLOSE_UNSUPPORTED_DATA, "binary frames not supported").await;
            break;
        } else if message.is_pong() {
            *last_pong.lock() = Instant::now();
        } else if message.is_close() {
            // Limitation: once the client's Close is read the socket takes no more data
            // frames, so replies to writes still waiting for their fsync are not sent. The
            // writes themselves have taken effect and are made durable all the same.
            break;
        } else {
            // Pings: the protocol layer answers them with a pong by itself.
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

/// Replies not sent yet, in request order; `None` for a `no_reply` request.
type InFlight = FuturesOrdered<BoxFuture<'static, Option<String>>>;

/// Requests of one connection whose replies may wait at once; past this the session stops
/// reading until the oldest is answered.
const MAX_IN_FLIGHT: usize = 256;

/// Makes the request take effect now and returns its reply, ready or still waiting for
/// the fsync. A write is applied before `start_write` returns; a connection-local request
/// runs to its end before the next request is read.
async fn start(
    conn: &mut Connection,
    request: Result<Request, WsError>,
    envelope: Envelope,
) -> BoxFuture<'static, Option<String>> {
    let result = match request {
        Ok(Request::Write(write)) => {
            let reply = conn.start_write(write);
            return Box::pin(async move { render(reply.await, envelope) });
        }
        Ok(Request::Local(local)) => conn.handle_local(local).await,
        Err(err) => Err(err),
    };
    Box::pin(std::future::ready(render(result, envelope)))
}

fn render(result: Result<Map<String, Value>, WsError>, envelope: Envelope) -> Option<String> {
    if envelope.no_reply {
        return None;
    }
    Some(match result {
        Ok(fields) => ok_frame(fields, envelope.req_id.as_deref()),
        Err(err) => error_frame(&err, envelope.req_id.as_deref()),
    })
}

/// Sends a reply, waiting for room rather than dropping it: a client that never reads
/// stops being read from, and the ping timeout ends it. False once the connection is done.
async fn send_reply(conn: &Connection, closing: &mut Stop, reply: Option<String>) -> bool {
    let Some(text) = reply else { return true };
    let sent = closing.until(conn.out.frames.send(Frame::text(text, None))).await;
    matches!(sent, Some(Ok(())))
}

/// Sends every reply still waiting, so that a close follows them.
async fn flush(conn: &Connection, closing: &mut Stop, in_flight: &mut InFlight) {
    while let Some(reply) = in_flight.next().await {
        if !send_reply(conn, closing, reply).await {
            return;
        }
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
