//! The WebSocket API at `/ws`. (Stub: owned by the WebSocket work.)

use std::sync::Arc;
use std::time::Duration;

use warp::filters::BoxedFilter;
use warp::Filter;

use crate::engine::Engine;
use crate::logs::LogHub;

#[derive(Clone, Copy, Debug)]
pub struct WsOptions {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
}

impl Default for WsOptions {
    fn default() -> Self {
        WsOptions { ping_interval: Duration::from_secs(30), ping_timeout: Duration::from_secs(10) }
    }
}

/// The `/ws` route.
pub fn filter(
    _engine: Arc<Engine>,
    _logs: Arc<LogHub>,
    _opts: WsOptions,
) -> BoxedFilter<(Box<dyn warp::Reply>,)> {
    warp::path("ws")
        .and(warp::path::end())
        .map(|| Box::new(warp::http::StatusCode::NOT_IMPLEMENTED) as Box<dyn warp::Reply>)
        .boxed()
}
