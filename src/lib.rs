//! Qrusty: a durable priority-queue server.
//!
//! (The tour of the layout is written once the modules have settled.)

pub mod clock;
pub mod config;
pub mod engine;
pub mod http;
pub mod logs;
pub mod server;
pub mod ui;
pub mod wal;
pub mod ws;
