//! Wires the engine, HTTP, WebSocket and UI routes into one listener. (Stub: owned by
//! the HTTP work.)
//!
//! Planned interface, which tests of every layer use:
//! `pub async fn start(cfg: ServerConfig, engine: Arc<Engine>, logs: Arc<LogHub>)
//!     -> std::io::Result<RunningServer>` with `RunningServer { pub addr: SocketAddr, .. }`
//! and `RunningServer::shutdown(self)`.
