//! What wraps every route, API or not: the bearer-token check and CORS.
//!
//! With no token configured the server is open and CORS is fully permissive, as 0.15.0
//! is. With a token, every route but `/health` and the web UI's static files needs `Authorization: Bearer <token>`
//! (`/ws` may pass `?token=` instead, since browsers cannot set headers on a WebSocket)
//! and no CORS headers are sent.

use std::sync::Arc;

use warp::filters::BoxedFilter;
use warp::http::header::{
    HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, AUTHORIZATION, VARY,
    WWW_AUTHENTICATE,
};
use warp::http::HeaderMap;
use warp::path::FullPath;
use warp::reply::Response;
use warp::Filter;

use super::error::ApiError;
use super::{empty_reply, form_value};

/// Answers 401 for a request without the right token; passes every other request on (by
/// rejecting, so the next filter of the chain takes it).
/// Requirements: API-0026, SYS-0014, API-0030
pub fn auth(token: Option<Arc<str>>) -> BoxedFilter<(Response,)> {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::path::full()
        .and(warp::header::headers_cloned())
        .and(query)
        .and_then(move |path: FullPath, headers: HeaderMap, query: String| {
            let token = token.clone();
            async move {
                match token {
                    Some(token) if !authorized(&token, path.as_str(), &headers, &query) => {
                        let mut resp = ApiError::unauthorized().into_response();
                        resp.headers_mut()
                            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                        Ok(resp)
                    }
                    _ => Err(warp::reject::not_found()),
                }
            }
        })
        .boxed()
}

/// Requirements: WS-0025, API-0026, API-0030
fn authorized(token: &str, path: &str, headers: &HeaderMap, query: &str) -> bool {
    if path == "/health" || is_static_ui(path) {
        return true;
    }
    let from_header = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, given)| given.trim().to_owned());
    if from_header.is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes())) {
        return true;
    }
    path == "/ws"
        && form_value(query, "token")
            .is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes()))
}

/// The web UI's own files hold no queue data, and a browser loading `/ui` cannot attach a
/// bearer header to a page load: the app must load before it can ask for the token, which
/// it then sends on every API call and on `/ws`.
fn is_static_ui(path: &str) -> bool {
    path == "/ui"
        || path.starts_with("/ui/")
        || path.starts_with("/assets/")
        || path == "/favicon.ico"
}

/// Compares without stopping at the first differing byte, so the reply time does not
/// tell an attacker how much of a guess was right. The length is not hidden.
/// Requirements: API-0026
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Answers a CORS preflight (`OPTIONS` with `Access-Control-Request-Method`) with 200
/// while CORS is open; otherwise passes it on to the router (405).
/// Requirements: API-0001
pub fn preflight(open: bool) -> BoxedFilter<(Response,)> {
    warp::options()
        .and(warp::header::<String>("access-control-request-method"))
        .and_then(move |_: String| async move {
            if open {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
        .map(|| {
            let mut resp = empty_reply();
            let headers = resp.headers_mut();
            headers.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("*"));
            headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("*"));
            resp
        })
        .boxed()
}

/// The headers every reply carries while CORS is open.
/// Requirements: API-0001
pub fn add_cors(mut resp: Response) -> Response {
    let headers = resp.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("*"));
    headers.insert(
        VARY,
        HeaderValue::from_static(
            "origin, access-control-request-method, access-control-request-headers",
        ),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    // Verifies: API-0026
    #[test]
    fn bearer_token_must_match_exactly() {
        assert!(authorized("s3cret", "/stats", &with_auth("Bearer s3cret"), ""));
        assert!(authorized("s3cret", "/stats", &with_auth("bearer s3cret"), ""));
        assert!(!authorized("s3cret", "/stats", &with_auth("Bearer s3cre"), ""));
        assert!(!authorized("s3cret", "/stats", &with_auth("Basic s3cret"), ""));
        assert!(!authorized("s3cret", "/stats", &HeaderMap::new(), ""));
    }

    // Verifies: API-0026, WS-0025, API-0030
    #[test]
    fn health_is_open_and_only_ws_takes_a_query_token() {
        assert!(authorized("t", "/health", &HeaderMap::new(), ""));
        assert!(authorized("t", "/ui/queues/q", &HeaderMap::new(), ""));
        assert!(authorized("t", "/assets/app.js", &HeaderMap::new(), ""));
        assert!(!authorized("t", "/uix", &HeaderMap::new(), ""));
        assert!(!authorized("t", "/queues", &HeaderMap::new(), ""));
        assert!(authorized("t", "/ws", &HeaderMap::new(), "token=t"));
        assert!(!authorized("t", "/stats", &HeaderMap::new(), "token=t"));
    }
}
