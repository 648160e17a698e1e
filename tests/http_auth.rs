//! QRUSTY_API_TOKEN: with a token set, every route but `/health` and the web UI's static
//! files needs the bearer token, and CORS is closed.

mod common;

use common::TestServer;
use reqwest::Method;
use serde_json::Value;

const TOKEN: &str = "s3cret-token";

async fn start() -> TestServer {
    TestServer::start_with(|cfg| cfg.api_token = Some(TOKEN.to_owned())).await
}

// Verifies: API-0026, SYS-0014
#[tokio::test]
async fn health_stays_open_without_the_token() {
    let s = start().await;
    assert!(s.health_is_ok().await);
    s.stop().await;
}

// Verifies: API-0026, SYS-0014, API-0030
#[tokio::test]
async fn every_documented_route_needs_the_token() {
    let s = start().await;
    let bearer = format!("Bearer {TOKEN}");
    let doc = s.send(Method::GET, "/openapi.json", &[("authorization", &bearer)], None).await;
    assert_eq!(doc.status, 200);
    let doc: Value = doc.json();

    for (path, item) in doc["paths"].as_object().unwrap() {
        let static_ui = path == "/ui"
            || path.starts_with("/ui/")
            || path.starts_with("/assets/")
            || path == "/favicon.ico";
        if path == "/health" || static_ui {
            continue;
        }
        let url = path.replace("{queue}", "q").replace("{id}", "i").replace("{path}", "p");
        for method in item.as_object().unwrap().keys() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let none = s.send(m.clone(), &url, &[], None).await;
            none.assert_error(401, "unauthorized");
            assert_eq!(none.header("www-authenticate"), Some("Bearer"));
            let wrong = s.send(m, &url, &[("authorization", "Bearer s3cret-tokem")], None).await;
            wrong.assert_error(401, "unauthorized");
        }
    }
    // Unknown routes do not tell an outsider what exists.
    s.get("/no-such-route").await.assert_error(401, "unauthorized");
    s.stop().await;
}

// Verifies: API-0026
#[tokio::test]
async fn the_web_ui_loads_without_the_token_so_it_can_ask_for_one() {
    let s = start().await;
    for path in ["/ui", "/ui/queues/orders", "/assets/app.js"] {
        let reply = s.get(path).await;
        assert_ne!(reply.status, 401, "{path} must not ask for the token");
    }
    // The UI's data still needs the token.
    s.get("/queues").await.assert_error(401, "unauthorized");
    s.stop().await;
}

// Verifies: API-0026, API-0001, API-0030
#[tokio::test]
async fn the_right_token_is_let_through_and_no_cors_headers_are_sent() {
    let s = start().await;
    let bearer = format!("Bearer {TOKEN}");
    let reply = s.send(Method::GET, "/stats", &[("authorization", &bearer)], None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("access-control-allow-origin"), None);
    s.stop().await;
}

// Verifies: WS-0025, API-0030
#[tokio::test]
async fn only_ws_takes_the_token_in_the_query() {
    let s = start().await;
    s.get(&format!("/stats?token={TOKEN}")).await.assert_error(401, "unauthorized");
    let ws = s.get(&format!("/ws?token={TOKEN}")).await;
    assert_ne!(ws.status, 401, "the query token opens /ws");
    s.get("/ws?token=wrong").await.assert_error(401, "unauthorized");
    s.stop().await;
}

async fn preflight_from(s: &TestServer, origin: &str) -> common::Reply {
    let headers = [
        ("origin", origin),
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "authorization,content-type"),
    ];
    s.send(Method::OPTIONS, "/publish", &headers, None).await
}

async fn stats_from(s: &TestServer, origin: &str, token: Option<&str>) -> common::Reply {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("origin", origin)];
    if let Some(b) = bearer.as_deref() {
        headers.push(("authorization", b));
    }
    s.send(Method::GET, "/stats", &headers, None).await
}

// Verifies: API-0032, API-0026
#[tokio::test]
async fn configured_cors_origins_open_cors_to_those_origins_only_with_a_token() {
    let allowed = "https://console.example";
    let evil = "https://evil.example";
    let s = TestServer::start_with(|cfg| {
        cfg.api_token = Some(TOKEN.to_owned());
        // As QRUSTY_CORS_ORIGINS="https://other.example, https://console.example" splits.
        cfg.cors_origins = Some(vec!["https://other.example".into(), format!(" {allowed}")]);
    })
    .await;

    // Browsers send preflights without credentials: an allowed origin's is answered, and
    // lets the token through (a `*` for headers never covers `Authorization`).
    let ok = preflight_from(&s, allowed).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("access-control-allow-origin"), Some(allowed));
    assert_eq!(ok.header("access-control-allow-methods"), Some("*"));
    let allowed_headers = ok.header("access-control-allow-headers").unwrap().to_lowercase();
    let listed: Vec<&str> = allowed_headers.split(',').map(str::trim).collect();
    assert!(listed.contains(&"authorization") && listed.contains(&"content-type"), "{listed:?}");
    let other = preflight_from(&s, evil).await;
    other.assert_error(401, "unauthorized");
    assert_eq!(other.header("access-control-allow-origin"), None);
    assert!(other.header("vary").unwrap_or("").to_lowercase().contains("origin"));

    let reply = stats_from(&s, allowed, Some(TOKEN)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("access-control-allow-origin"), Some(allowed));
    let reply = stats_from(&s, evil, Some(TOKEN)).await;
    assert_eq!((reply.status, reply.header("access-control-allow-origin")), (200, None));
    // The answer depends on the origin, so caches must key on it.
    assert!(reply.header("vary").unwrap_or("").to_lowercase().contains("origin"));
    // The token is still required.
    stats_from(&s, allowed, None).await.assert_error(401, "unauthorized");
    s.stop().await;
}
