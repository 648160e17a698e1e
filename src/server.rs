//! Wires the engine, HTTP, WebSocket and UI routes into one listener, and runs the 1 s
//! metrics sampler beside it.
//!
//! Filter order: the token check first (it answers 401 or passes the request on), then
//! CORS preflights, the WebSocket and UI routes, and last the API router, which answers
//! everything that is left, unknown paths included. CORS headers are added on the way
//! out when no token is set.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use warp::reply::{Reply, Response};
use warp::Filter;

use crate::engine::Engine;
use crate::http::{self, guard, ApiState};
use crate::logs::LogHub;
use crate::ws::WsOptions;

/// How the listener is set up.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port (see `RunningServer::addr`).
    pub bind: SocketAddr,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// When set, every route but `/health` needs `Authorization: Bearer <token>`.
    pub api_token: Option<String>,
    /// Serve the web UI from this directory instead of the embedded files.
    pub webui_dir: Option<PathBuf>,
    pub ws: WsOptions,
}

/// A server that is accepting connections.
pub struct RunningServer {
    /// The address actually bound.
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    serving: JoinHandle<()>,
    sampler: JoinHandle<()>,
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish, then stops the sampler. The
    /// engine is left running: its owner shuts it down after this.
    /// Requirements: SYS-0011
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        if let Err(err) = self.serving.await {
            tracing::error!(cause = %err, "server task ended abnormally");
        }
        self.sampler.abort();
        let _ = self.sampler.await;
        tracing::info!(addr = %self.addr, "server stopped");
    }
}

/// Binds the listener and starts serving.
/// Requirements: SYS-0006, SYS-0025
pub async fn start(
    cfg: ServerConfig,
    engine: Arc<Engine>,
    logs: Arc<LogHub>,
) -> std::io::Result<RunningServer> {
    let cors = cfg.api_token.is_none();
    let token: Option<Arc<str>> = cfg.api_token.as_deref().map(Arc::from);
    let state = Arc::new(ApiState { engine: engine.clone(), max_body_bytes: cfg.max_body_bytes });

    let ws = crate::ws::filter(engine.clone(), logs, cfg.ws).map(into_response);
    let ui = crate::ui::filter(cfg.webui_dir.clone()).map(into_response);
    let routes = guard::auth(token)
        .or(guard::preflight(cors))
        .unify()
        .or(ws)
        .unify()
        .or(ui)
        .unify()
        .or(http::filter(state))
        .unify()
        .map(move |resp: Response| if cors { guard::add_cors(resp) } else { resp })
        .with(warp::log::custom(|info| {
            tracing::debug!(
                method = %info.method(),
                path = info.path(),
                status = info.status().as_u16(),
                micros = info.elapsed().as_micros() as u64,
                "request"
            );
        }));

    let (stop, stopped) = oneshot::channel::<()>();
    let (addr, serve) = warp::serve(routes)
        .try_bind_with_graceful_shutdown(cfg.bind, async {
            let _ = stopped.await;
        })
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, e))?;
    let serving = tokio::spawn(serve);
    let sampler = tokio::spawn(sample_every_second(engine));
    tracing::info!(%addr, "server listening");
    Ok(RunningServer { addr, stop, serving, sampler })
}

fn into_response(reply: Box<dyn Reply>) -> Response {
    reply.into_response()
}

/// Feeds the rates and the 60-point series (semantics §9–10): first tick one second
/// after start, then every second; a late tick is not made up for.
/// Requirements: API-0021, API-0022
async fn sample_every_second(engine: Arc<Engine>) {
    let period = Duration::from_secs(1);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        engine.sample_metrics();
    }
}
