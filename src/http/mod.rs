//! The HTTP API: one warp filter that takes every request the WebSocket and UI filters
//! leave over, matches it against the route table (`routes`), reads and checks the body
//! (`body`), calls the engine, and renders the reply. Every failure goes through
//! `error::ApiError`, the one place that picks status codes and `code` strings.
//!
//! Routing is done here rather than with one warp filter per route: warp folds the
//! rejections of unrelated routes together, which makes 404 versus 405 depend on route
//! order. One table gives exact answers and feeds `/openapi.json` too.

pub mod body;
pub mod error;
pub mod guard;
pub mod openapi;
pub mod routes;

mod consume;
mod dlq;
mod metrics;
mod publish;
mod queues;
mod stats;
mod waiters;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures_util::{FutureExt, StreamExt};
use serde::Serialize;
use warp::filters::BoxedFilter;
use warp::http::header::{HeaderValue, CONTENT_TYPE};
use warp::http::{HeaderMap, Method, StatusCode};
use warp::path::FullPath;
use warp::reply::Response;
use warp::Filter;

use crate::engine::Engine;
use crate::slots::ServerSlots;
use body::{ApiRequest, BodyStream};
use error::ApiError;
use routes::{Match, RouteId, RouteSpec};

/// What every handler shares.
pub struct ApiState {
    pub engine: Arc<Engine>,
    pub max_body_bytes: usize,
    /// Slots for long polls (`wait_seconds`) that found nothing and wait.
    waiters: waiters::Waiters,
    slots: Arc<ServerSlots>,
}

impl ApiState {
    pub fn new(engine: Arc<Engine>, max_body_bytes: usize, slots: Arc<ServerSlots>) -> ApiState {
        let waiters = waiters::Waiters::new(slots.long_polls.clone());
        ApiState { engine, max_body_bytes, waiters, slots }
    }
}

type HandlerResult = Result<Response, ApiError>;

/// The API routes. Never rejects: unknown paths get a JSON 404 here, so this filter goes
/// last in the server's chain.
pub fn filter(state: Arc<ApiState>) -> BoxedFilter<(Response,)> {
    let query = warp::query::raw().map(Some).or(warp::any().map(|| None)).unify();
    warp::method()
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(move |method: Method, path: FullPath, query, headers: HeaderMap, stream| {
            let body: BodyStream = StreamExt::map(stream, chunk_bytes).boxed();
            handle(state.clone(), method, path, query, headers, body)
        })
        .boxed()
}

fn chunk_bytes<B: Buf>(chunk: Result<B, warp::Error>) -> Result<Bytes, warp::Error> {
    chunk.map(|mut buf| buf.copy_to_bytes(buf.remaining()))
}

async fn handle(
    state: Arc<ApiState>,
    method: Method,
    path: FullPath,
    query: Option<String>,
    headers: HeaderMap,
    body: BodyStream,
) -> Response {
    let Some(segments) = decode_segments(path.as_str()) else {
        return ApiError::not_found().into_response();
    };
    let (spec, params) = match routes::find(&method, &segments) {
        Match::Found { spec, params } => (spec, params),
        Match::WrongMethod(allow) => return ApiError::method_not_allowed(allow).into_response(),
        Match::NotFound => return ApiError::not_found().into_response(),
    };
    let req =
        ApiRequest { method, params, query, headers, body, max_body_bytes: state.max_body_bytes };

    // A panic in a handler is a bug; catching it keeps the connection and the server
    // answering instead of resetting the socket.
    match AssertUnwindSafe(dispatch(&state, spec, req)).catch_unwind().await {
        Ok(Ok(resp)) => resp,
        Ok(Err(err)) => err.into_response(),
        Err(_) => {
            tracing::error!(route = spec.path, "request handler panicked");
            ApiError::internal("internal error").into_response()
        }
    }
}

/// Requirements: API-0007, API-0020
async fn dispatch(state: &ApiState, spec: &RouteSpec, req: ApiRequest) -> HandlerResult {
    let engine = &state.engine;
    match spec.id {
        RouteId::Health => Ok(text_reply("text/plain; charset=utf-8", "OK")),
        RouteId::CreateQueue => queues::create(engine, req).await,
        RouteId::UpdateQueue => queues::update(engine, req).await,
        RouteId::DeleteQueue => queues::delete(engine, req).await,
        RouteId::PurgeQueue => queues::purge(engine, req).await,
        RouteId::PurgeAll => queues::purge_all(engine).await,
        RouteId::DeleteAll => queues::delete_all(engine).await,
        RouteId::Queues => Ok(json_reply(&engine.queue_names())),
        RouteId::Publish => publish::publish(engine, req).await,
        RouteId::PublishBatch => publish::publish_batch(engine, req).await,
        RouteId::Consume => consume::consume(state, req).await,
        RouteId::ConsumeBatch => consume::consume_batch(state, req).await,
        RouteId::Ack => consume::ack(engine, req).await,
        RouteId::Nack => consume::nack(engine, req).await,
        RouteId::Renew => consume::renew(engine, req).await,
        RouteId::AckBatch => consume::ack_batch(engine, req).await,
        RouteId::NackBatch => consume::nack_batch(engine, req).await,
        RouteId::Stats => Ok(stats::all(engine)),
        RouteId::QueueStats => stats::one(engine, req.param(0)),
        RouteId::QueueMetrics => stats::series(engine, req.param(0)),
        RouteId::DlqList => dlq::list(engine, req),
        RouteId::DlqRedrive => dlq::redrive(engine, req).await,
        RouteId::DlqPurge => dlq::purge(engine, req).await,
        RouteId::Metrics => metrics::render(engine, &state.slots),
        RouteId::OpenApi => Ok(json_reply(openapi::document())),
        // The WebSocket filter declined: not an upgrade request.
        RouteId::WebSocket => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "GET /ws must be a WebSocket upgrade",
        )),
        // The UI filter declined: no such file.
        RouteId::UiIndex | RouteId::UiFile | RouteId::UiAssets | RouteId::Favicon => {
            Err(ApiError::not_found())
        }
    }
}

/// Splits a path into percent-decoded segments; None when one is not UTF-8 after decoding.
/// Requirements: API-0006
// Limitation: such a path gets 404 not_found, even where the segment is in a queue name's
// place, which would otherwise get 400 invalid_queue_name.
fn decode_segments(path: &str) -> Option<Vec<String>> {
    path.trim_start_matches('/')
        .split('/')
        .map(|seg| percent_encoding::percent_decode_str(seg).decode_utf8().ok())
        .map(|seg| seg.map(|s| s.into_owned()))
        .collect()
}

/// The percent-decoded value of `key` in a query string (`key` alone gives "").
pub(crate) fn form_value(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned())
}

/// `200` with a JSON body.
pub(crate) fn json_reply<T: Serialize + ?Sized>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => bytes_reply("application/json", bytes.into()),
        Err(err) => ApiError::internal(format!("reply not serialisable: {err}")).into_response(),
    }
}

/// `200`, no body and no content type.
pub(crate) fn empty_reply() -> Response {
    Response::new(Bytes::new().into())
}

pub(crate) fn text_reply(media_type: &'static str, text: impl Into<Bytes>) -> Response {
    bytes_reply(media_type, text.into())
}

fn bytes_reply(media_type: &'static str, bytes: Bytes) -> Response {
    let mut resp = Response::new(bytes.into());
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(media_type));
    resp
}

/// Rates are floats on the wire; a NaN or infinity would not be valid JSON.
pub(crate) fn finite(rate: f64) -> f64 {
    if rate.is_finite() {
        rate
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Verifies: API-0006
    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(decode_segments("/ack/a%2Fb/x%20y").unwrap(), ["ack", "a/b", "x y"]);
        assert_eq!(decode_segments("/bad/%FF"), None);
    }
}
