//! Wires the engine, HTTP, WebSocket and UI routes into one listener, and runs the 1 s
//! metrics sampler beside it.
//!
//! Filter order: CORS preflights first (browsers send them without credentials), then
//! the token check (it answers 401 or passes the request on), the WebSocket and UI
//! routes, and last the API router, which answers everything that is left, unknown paths
//! included. CORS headers are added on the way out as the CORS policy says.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use warp::reply::{Reply, Response};
use warp::Filter;

use crate::engine::Engine;
use crate::http::guard::{self, CorsPolicy};
use crate::http::{self, ApiState};
use crate::logs::LogHub;
use crate::slots::{ServerSlots, Slots};
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
    /// Origins allowed by CORS; `None`: any without a token, none with one.
    pub cors_origins: Option<Vec<String>>,
    pub limits: ServerLimits,
}

/// Caps on what clients may hold open at once; 0 means no cap.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerLimits {
    /// Open TCP connections (HTTP and WebSocket alike).
    pub max_connections: usize,
    /// WebSocket sessions.
    pub max_ws_sessions: usize,
    /// `/consume` requests waiting in a long poll.
    pub max_waiting_consumers: usize,
    /// How long a connection may send nothing before it is closed; `None`: forever.
    pub idle_timeout: Option<Duration>,
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
    let cors = CorsPolicy::new(cfg.cors_origins.as_deref(), cfg.api_token.is_some());
    let token: Option<Arc<str>> = cfg.api_token.as_deref().map(Arc::from);
    let limits = cfg.limits;
    let slots = Arc::new(ServerSlots {
        connections: Slots::new(limits.max_connections),
        ws_sessions: Slots::new(limits.max_ws_sessions),
        long_polls: Slots::new(limits.max_waiting_consumers),
    });
    let state = Arc::new(ApiState::new(engine.clone(), cfg.max_body_bytes, slots.clone()));

    let ws = crate::ws::filter(engine.clone(), logs, cfg.ws, slots.ws_sessions.clone())
        .map(into_response);
    let ui = crate::ui::filter(cfg.webui_dir.clone()).map(into_response);
    let routes = guard::preflight(cors.clone())
        .or(guard::auth(token))
        .unify()
        .or(ws)
        .unify()
        .or(ui)
        .unify()
        .or(http::filter(state))
        .unify();
    let routes = warp::header::optional::<String>("origin")
        .and(routes)
        .map(move |origin: Option<String>, resp: Response| {
            guard::add_cors(&cors, origin.as_deref(), resp)
        })
        .with(warp::log::custom(|info| {
            tracing::debug!(
                method = %info.method(),
                path = info.path(),
                status = info.status().as_u16(),
                micros = info.elapsed().as_micros() as u64,
                "request"
            );
        }));

    let listener = tokio::net::TcpListener::bind(cfg.bind).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let incoming =
        crate::listener::incoming(listener, slots.connections.clone(), limits.idle_timeout);
    let serve = warp::serve(routes).serve_incoming_with_graceful_shutdown(incoming, async {
        let _ = stopped.await;
    });
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
