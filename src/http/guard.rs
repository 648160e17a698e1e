//! What wraps every route, API or not: the bearer-token check and CORS.
//!
//! With no token configured the server is open and CORS is fully permissive, as 0.15.0
//! is. With a token, every route but `/health` and the web UI's static files needs
//! `Authorization: Bearer <token>` (`/ws` may pass `?token=` instead, since browsers cannot
//! set headers on a WebSocket) and no CORS headers are sent, unless QRUSTY_CORS_ORIGINS
//! names the origins that may call (see [`CorsPolicy`]).

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

/// Which browser origins get CORS headers.
/// Requirements: API-0001, API-0032
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsPolicy {
    /// `Access-Control-Allow-Origin: *` on every reply.
    Any,
    /// The request's `Origin` is echoed when it is one of these, exactly.
    Origins(Arc<[String]>),
    /// No CORS headers; preflights are not answered.
    Closed,
}

impl CorsPolicy {
    /// `configured` is QRUSTY_CORS_ORIGINS split at commas; unset, the rule is: any
    /// origin without a token, none with one. `*` among the origins means any. Spaces
    /// around an origin are dropped (`a, b` is a natural way to write the list), and so
    /// are empty entries.
    pub fn new(configured: Option<&[String]>, token_set: bool) -> CorsPolicy {
        let trimmed: Option<Vec<String>> = configured.map(|list| {
            list.iter().map(|o| o.trim()).filter(|o| !o.is_empty()).map(String::from).collect()
        });
        match trimmed.as_deref() {
            None if token_set => CorsPolicy::Closed,
            None => CorsPolicy::Any,
            Some(list) if list.iter().any(|o| o == "*") => CorsPolicy::Any,
            Some([]) => CorsPolicy::Closed,
            Some(list) => CorsPolicy::Origins(list.iter().cloned().collect()),
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if any.
    fn allow_origin(&self, origin: Option<&str>) -> Option<HeaderValue> {
        match self {
            CorsPolicy::Any => Some(HeaderValue::from_static("*")),
            CorsPolicy::Origins(list) => origin
                .filter(|o| list.iter().any(|allowed| allowed == o))
                .and_then(|o| HeaderValue::from_str(o).ok()),
            CorsPolicy::Closed => None,
        }
    }
}

/// Answers a CORS preflight (`OPTIONS` with `Access-Control-Request-Method`) with 200
/// when the policy lets its origin in; otherwise passes it on (to the token check, then
/// the router's 405). It runs before the token check: browsers send preflights without
/// credentials.
/// Requirements: API-0001, API-0032
pub fn preflight(policy: CorsPolicy) -> BoxedFilter<(Response,)> {
    warp::options()
        .and(warp::header::<String>("access-control-request-method"))
        .and(warp::header::optional::<String>("origin"))
        .and(warp::header::optional::<HeaderValue>("access-control-request-headers"))
        .and_then(move |_: String, origin: Option<String>, asked: Option<HeaderValue>| {
            let allowed = policy.allow_origin(origin.as_deref()).is_some();
            async move {
                if allowed {
                    Ok(asked)
                } else {
                    Err(warp::reject::not_found())
                }
            }
        })
        .map(|asked: Option<HeaderValue>| {
            let mut resp = empty_reply();
            let headers = resp.headers_mut();
            headers.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("*"));
            // The headers asked for are echoed: the Fetch standard never lets `*` cover
            // `Authorization`, so a browser sending the token would be refused. `*` (as
            // 0.15.0 answers) only when none are asked for.
            let allow = asked.unwrap_or_else(|| HeaderValue::from_static("*"));
            headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, allow);
            resp
        })
        .boxed()
}

/// Adds the CORS headers the policy gives a request from `origin`.
/// Requirements: API-0001, API-0032
pub fn add_cors(policy: &CorsPolicy, origin: Option<&str>, mut resp: Response) -> Response {
    let allow = policy.allow_origin(origin);
    // With a list, a reply to an origin left out differs from one to a listed origin, so
    // it needs `Vary` too, or a shared cache could serve one to the other.
    if allow.is_none() && !matches!(policy, CorsPolicy::Origins(_)) {
        return resp;
    }
    let headers = resp.headers_mut();
    if let Some(allow) = allow {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("*"));
    }
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

    // Verifies: API-0032
    #[test]
    fn cors_defaults_follow_the_token_and_configured_origins_win() {
        let origins = ["https://a.example".to_owned()];
        assert_eq!(CorsPolicy::new(None, false), CorsPolicy::Any);
        assert_eq!(CorsPolicy::new(None, true), CorsPolicy::Closed);
        assert_eq!(CorsPolicy::new(Some(&["*".to_owned()]), true), CorsPolicy::Any);
        assert_eq!(CorsPolicy::new(Some(&[]), false), CorsPolicy::Closed);
        let listed = CorsPolicy::new(Some(&origins), true);
        assert_eq!(listed.allow_origin(Some("https://a.example")).unwrap(), "https://a.example");
        assert_eq!(listed.allow_origin(Some("https://b.example")), None);
        assert_eq!(listed.allow_origin(None), None);
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
