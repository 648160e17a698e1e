//! The WebSocket API at `/ws`.
//!
//! - `protocol`: request frames in, `ok` / `error` / `deliver` / `log` frames out.
//! - `errors`: engine errors to error-frame codes, in one place.
//! - `session`: one connection's life: read, answer in order, keep alive, clean up.
//! - `ops`: what each request type does to the connection and the engine.
//! - `subscription`: push delivery with credits for one subscribed queue.
//! - `logstream`: `subscribe-logs`.
//! - `outbound`: the writer task, and the budgets that keep a slow reader from
//!   locking messages it cannot receive yet.
//! - `stop`: how background tasks are told to stop.

mod errors;
mod logstream;
mod ops;
mod outbound;
mod protocol;
mod session;
mod stop;
mod subscription;

use std::sync::Arc;
use std::time::Duration;

use warp::filters::BoxedFilter;
use warp::Filter;

use crate::engine::Engine;
use crate::http::error::ApiError;
use crate::logs::LogHub;
use crate::slots::Slots;

pub use errors::WsError;

/// Largest message a client may send (0.15.0's limit).
/// Requirements: WS-0023, SYS-0024
const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// Largest single frame a client may send (0.15.0's limit).
const MAX_FRAME_BYTES: usize = 16 << 20;

/// Keep-alive settings, read once per connection at connect time.
#[derive(Clone, Copy, Debug)]
pub struct WsOptions {
    /// Time between server pings; the first goes out one interval after connect.
    pub ping_interval: Duration,
    /// Grace beyond one interval for the client's pong before the close with 1001.
    pub ping_timeout: Duration,
}

impl Default for WsOptions {
    fn default() -> Self {
        WsOptions { ping_interval: Duration::from_secs(30), ping_timeout: Duration::from_secs(10) }
    }
}

/// The `/ws` route. `slots` bounds the sessions open at once: an upgrade beyond it is
/// answered 503 `too_many_sessions` with a JSON body instead.
/// Requirements: SYS-0004, WS-0001, SYS-0027
pub fn filter(
    engine: Arc<Engine>,
    logs: Arc<LogHub>,
    opts: WsOptions,
    slots: Arc<Slots>,
) -> BoxedFilter<(Box<dyn warp::Reply>,)> {
    warp::path("ws")
        .and(warp::path::end())
        .and(warp::ws())
        .map(move |ws: warp::ws::Ws| {
            let Some(slot) = slots.take() else {
                // DEBUG: one line per refused upgrade would flood the log; /metrics
                // counts them.
                tracing::debug!(limit = slots.limit(), "WebSocket upgrade refused: no slot");
                let refusal = ApiError::too_many_sessions(slots.limit()).into_response();
                return Box::new(refusal) as Box<dyn warp::Reply>;
            };
            let engine = Arc::clone(&engine);
            let logs = Arc::clone(&logs);
            let reply = ws
                .max_message_size(MAX_MESSAGE_BYTES)
                .max_frame_size(MAX_FRAME_BYTES)
                .on_upgrade(move |socket| async move {
                    // The slot is given back when the session ends.
                    let _slot = slot;
                    session::run(socket, engine, logs, opts).await
                });
            Box::new(reply) as Box<dyn warp::Reply>
        })
        .boxed()
}
