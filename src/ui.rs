//! The web UI at `/ui`: a single-page app whose files are compiled into the binary, so a
//! plain `cargo run` serves it. An operator can point `WEBUI_DIR` at a directory to serve
//! other files instead (read once, when the routes are built).
//!
//! Routes: `/ui` and `/ui/` answer `index.html`; `/ui/<path>` answers that file, or, when
//! there is none, `index.html` with status 200 so that a deep link such as
//! `/ui/queues/orders` opens the app on that page (0.15.0 answered 404 there, which broke
//! bookmarks in some proxies). `/assets/<path>` and `/favicon.ico` answer their file or 404.
//! Every one of them takes GET and HEAD; other methods get 405.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, Method, Response, StatusCode};
use warp::hyper::Body;
use warp::path::Tail;
use warp::Filter;

use crate::http::error::ApiError;

/// One embedded file: its path under `webui/` and its bytes.
macro_rules! embed {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/webui/", $path)))),*]
    };
}

/// Every file under `webui/`; a unit test fails when one on disk is missing here.
/// Requirements: API-0028
static EMBEDDED: &[(&str, &[u8])] = embed![
    "index.html",
    "favicon.ico",
    "assets/admin.js",
    "assets/api.js",
    "assets/app.js",
    "assets/chart.js",
    "assets/dom.js",
    "assets/logs.js",
    "assets/overview.js",
    "assets/queue.js",
    "assets/style.css",
];

/// Deeper directory trees under `WEBUI_DIR` are ignored; this also stops symlink loops.
const MAX_DEPTH: usize = 8;

/// The files the routes answer from, keyed by their `/`-separated path below the root.
struct Assets {
    files: HashMap<String, Bytes>,
}

impl Assets {
    fn embedded() -> Assets {
        let files = EMBEDDED
            .iter()
            .map(|(path, bytes)| (path.to_string(), Bytes::from_static(bytes)))
            .collect();
        Assets { files }
    }

    fn from_dir(root: &Path) -> Assets {
        let mut files = HashMap::new();
        if let Err(err) = read_tree(root, "", 0, &mut files) {
            // The server still starts without its UI, as 0.15.0 did: the routes answer 404.
            tracing::warn!(dir = %root.display(), cause = %err, "web UI directory unreadable");
        }
        tracing::info!(dir = %root.display(), files = files.len(), "web UI served from disk");
        Assets { files }
    }

    /// The content type and bytes of the file at `path`, or of the `index.html` of the
    /// directory at `path`.
    fn find(&self, path: &str) -> Option<(&'static str, Bytes)> {
        let path = path.trim_end_matches('/');
        if let Some(bytes) = self.files.get(path) {
            return Some((content_type(path), bytes.clone()));
        }
        let index =
            if path.is_empty() { "index.html".to_string() } else { format!("{path}/index.html") };
        self.files.get(&index).map(|bytes| (content_type(&index), bytes.clone()))
    }
}

fn read_tree(
    dir: &Path,
    prefix: &str,
    depth: usize,
    files: &mut HashMap<String, Bytes>,
) -> std::io::Result<()> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let key = format!("{prefix}{name}");
        let path = entry.path();
        if path.is_dir() {
            read_tree(&path, &format!("{key}/"), depth + 1, files)?;
        } else {
            files.insert(key, Bytes::from(std::fs::read(&path)?));
        }
    }
    Ok(())
}

/// Which route a request came in on decides what a missing file means.
#[derive(Clone, Copy)]
enum Route {
    /// `/ui/...`: a missing file is a deep link into the app.
    App,
    /// `/assets/...`: a missing file is 404.
    Assets,
    /// `/favicon.ico`.
    Favicon,
}

/// Routes `/ui`, `/ui/...`, `/assets/...`, `/favicon.ico`. `webui_dir` overrides the
/// embedded assets with files on disk.
/// Requirements: API-0027, SYS-0023
pub fn filter(webui_dir: Option<PathBuf>) -> BoxedFilter<(Box<dyn warp::Reply>,)> {
    let assets = Arc::new(match webui_dir {
        Some(dir) => Assets::from_dir(&dir),
        None => Assets::embedded(),
    });
    let with_assets = warp::any().map(move || assets.clone());

    let app = warp::path("ui").and(warp::path::tail()).map(|tail: Tail| (Route::App, tail));
    let files = warp::path("assets").and(warp::path::tail()).map(|tail| (Route::Assets, tail));
    let favicon = warp::path("favicon.ico").and(warp::path::tail()).and_then(only_end);

    app.or(files)
        .unify()
        .or(favicon)
        .unify()
        .and(warp::method())
        .and(with_assets)
        .map(|(route, tail): (Route, Tail), method: Method, assets: Arc<Assets>| {
            Box::new(answer(route, tail.as_str(), &method, &assets)) as Box<dyn warp::Reply>
        })
        .boxed()
}

/// `/favicon.ico` and nothing below it; the tail is kept so the three routes unify.
async fn only_end(tail: Tail) -> Result<(Route, Tail), warp::Rejection> {
    if tail.as_str().is_empty() {
        Ok((Route::Favicon, tail))
    } else {
        Err(warp::reject::not_found())
    }
}

fn answer(route: Route, tail: &str, method: &Method, assets: &Assets) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return ApiError::method_not_allowed("GET, HEAD".to_string()).into_response();
    }

    let wanted = match route {
        Route::App => percent_decode(tail),
        Route::Assets if tail.is_empty() => None,
        Route::Assets => percent_decode(tail).map(|path| format!("assets/{path}")),
        Route::Favicon => Some("favicon.ico".to_string()),
    };
    let found = wanted.as_deref().and_then(|path| assets.find(path));
    match (found, route) {
        (Some((kind, bytes)), _) => file(kind, bytes),
        (None, Route::App) => match assets.find("index.html") {
            Some((kind, bytes)) => file(kind, bytes),
            None => not_found(),
        },
        (None, _) => not_found(),
    }
}

fn file(content_type: &'static str, bytes: Bytes) -> Response<Body> {
    let mut reply = Response::new(Body::from(bytes));
    let headers = reply.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The files change with the binary, under stable names: revalidate on every load so an
    // upgraded server never runs a cached script against its new API.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    reply
}

/// A missing file gets the same JSON error as a missing API route.
/// Requirements: API-0003
fn not_found() -> Response<Body> {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such file").into_response()
}

fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// Decodes `%XX` escapes of a path tail; `None` when they do not form UTF-8 or are cut off.
fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(filter: &BoxedFilter<(Box<dyn warp::Reply>,)>, path: &str) -> Response<Bytes> {
        warp::test::request().method("GET").path(path).reply(filter).await
    }

    fn header_of(reply: &Response<Bytes>, name: header::HeaderName) -> &str {
        reply.headers().get(name).and_then(|value| value.to_str().ok()).unwrap_or("")
    }

    fn index_html() -> &'static [u8] {
        EMBEDDED.iter().find(|(path, _)| *path == "index.html").unwrap().1
    }

    // Verifies: API-0027
    #[tokio::test]
    async fn ui_root_with_and_without_slash_serves_the_app() {
        let routes = filter(None);

        for path in ["/ui", "/ui/"] {
            let reply = get(&routes, path).await;

            assert_eq!(reply.status(), StatusCode::OK, "{path}");
            assert_eq!(header_of(&reply, header::CONTENT_TYPE), "text/html; charset=utf-8");
            assert_eq!(reply.body().as_ref(), index_html(), "{path}");
        }
    }

    // Verifies: API-0027
    #[tokio::test]
    async fn deep_links_get_the_app_with_status_200() {
        let routes = filter(None);

        let reply = get(&routes, "/ui/queues/orders%20eu").await;

        assert_eq!(reply.status(), StatusCode::OK);
        assert_eq!(reply.body().as_ref(), index_html());
    }

    // Verifies: API-0027
    #[tokio::test]
    async fn assets_are_served_with_their_content_type() {
        let routes = filter(None);

        let script = get(&routes, "/assets/app.js").await;
        let style = get(&routes, "/assets/style.css").await;
        let icon = get(&routes, "/favicon.ico").await;
        let via_ui = get(&routes, "/ui/assets/app.js").await;

        assert_eq!(script.status(), StatusCode::OK);
        assert_eq!(header_of(&script, header::CONTENT_TYPE), "text/javascript; charset=utf-8");
        assert!(!script.body().is_empty());
        assert_eq!(header_of(&style, header::CONTENT_TYPE), "text/css; charset=utf-8");
        assert_eq!(icon.status(), StatusCode::OK);
        assert_eq!(header_of(&icon, header::CONTENT_TYPE), "image/x-icon");
        assert_eq!(via_ui.body(), script.body());
    }

    // Verifies: API-0027
    #[tokio::test]
    async fn missing_assets_are_404_not_the_app() {
        let routes = filter(None);

        assert_eq!(get(&routes, "/assets/nope.js").await.status(), StatusCode::NOT_FOUND);
        assert_eq!(get(&routes, "/assets/").await.status(), StatusCode::NOT_FOUND);
        assert_eq!(get(&routes, "/assets/%FF").await.status(), StatusCode::NOT_FOUND);
    }

    // Verifies: API-0027
    #[tokio::test]
    async fn head_is_allowed_and_other_methods_are_405() {
        let routes = filter(None);

        let head = warp::test::request().method("HEAD").path("/ui").reply(&routes).await;
        let post = warp::test::request().method("POST").path("/ui/x").reply(&routes).await;
        let delete = warp::test::request().method("DELETE").path("/assets/app.js");
        let delete = delete.reply(&routes).await;

        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(header_of(&post, header::ALLOW), "GET, HEAD");
        assert_eq!(delete.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn other_paths_are_left_to_other_routes() {
        let routes = filter(None);

        for path in ["/", "/uix", "/stats", "/favicon.ico/x"] {
            let matched = warp::test::request().path(path).matches(&routes).await;

            assert!(!matched, "{path}");
        }
    }

    // Verifies: API-0028
    #[tokio::test]
    async fn webui_dir_replaces_the_embedded_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<p>custom</p>").unwrap();
        std::fs::create_dir_all(dir.path().join("assets/img")).unwrap();
        std::fs::write(dir.path().join("assets/img/logo.svg"), "<svg/>").unwrap();
        std::fs::create_dir(dir.path().join("docs")).unwrap();
        std::fs::write(dir.path().join("docs/index.html"), "docs").unwrap();
        let routes = filter(Some(dir.path().to_path_buf()));

        let index = get(&routes, "/ui/").await;
        let logo = get(&routes, "/assets/img/logo.svg").await;
        let docs = get(&routes, "/ui/docs/").await;
        let embedded_only = get(&routes, "/assets/app.js").await;
        let favicon = get(&routes, "/favicon.ico").await;

        assert_eq!(index.body().as_ref(), b"<p>custom</p>");
        assert_eq!(header_of(&logo, header::CONTENT_TYPE), "image/svg+xml");
        assert_eq!(logo.body().as_ref(), b"<svg/>");
        assert_eq!(docs.body().as_ref(), b"docs");
        assert_eq!(embedded_only.status(), StatusCode::NOT_FOUND);
        assert_eq!(favicon.status(), StatusCode::NOT_FOUND);
    }

    // Verifies: API-0028
    #[tokio::test]
    async fn a_missing_webui_dir_makes_the_routes_404() {
        let dir = tempfile::tempdir().unwrap();
        let routes = filter(Some(dir.path().join("absent")));

        assert_eq!(get(&routes, "/ui").await.status(), StatusCode::NOT_FOUND);
        assert_eq!(get(&routes, "/ui/queues/q").await.status(), StatusCode::NOT_FOUND);
    }

    // Verifies: API-0028
    #[test]
    fn every_file_under_webui_is_embedded() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("webui");
        let mut on_disk = HashMap::new();
        read_tree(&root, "", 0, &mut on_disk).unwrap();

        let mut missing: Vec<_> =
            on_disk.keys().filter(|path| !EMBEDDED.iter().any(|(e, _)| e == path)).collect();
        missing.sort();

        assert!(missing.is_empty(), "add these to EMBEDDED in src/ui.rs: {missing:?}");
    }

    #[test]
    fn percent_decoding_rejects_broken_escapes() {
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("a%2"), None);
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("%FF"), None);
    }
}
