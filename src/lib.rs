//! Qrusty: a durable priority-queue server, wire-compatible with the qrusty 0.15.0 API.
//!
//! # A tour
//!
//! The layers, bottom up; none imports a layer above it.
//!
//! - [`wal`]: the write-ahead log. Segment files of length- and CRC-framed byte records,
//!   one writer thread with group commit, recovery that cuts a torn tail and refuses
//!   mid-log damage. It knows bytes, segments and files, nothing of queues.
//! - [`engine`]: all queue state. [`engine::record::Record`] is every state change;
//!   `Catalog::apply` (and the per-queue `QueueState::apply` it forwards to) is the only
//!   code that changes state, for live traffic and for replay alike.
//! - [`http`] and [`ws`]: translate the wire into engine calls; each maps engine errors to
//!   status codes or error frames in one place. [`ui`] serves the embedded web UI.
//! - [`server`] binds one listener for all of them ([`listener`] caps its connections,
//!   [`slots`] is the cap type shared with sessions and long polls);
//!   [`fdlimit`] fits that cap to the open-file limit; [`config`] reads flags and
//!   environment; [`logs`] installs tracing and keeps the history that `subscribe-logs`
//!   streams.
//!
//! # How a publish travels
//!
//! 1. warp parses `POST /publish`; `http` checks the body and calls `Engine::publish`.
//! 2. The engine takes the catalog read lock and the queue's mutex, checks the priority
//!    kind and duplicates, builds a `Record::Published`, hands its bincode bytes to
//!    `Wal::append` (which only queues them) and applies the record to the queue's skip
//!    list. Both happen under the queue's mutex, so the log order is the apply order.
//! 3. The locks are released and the request waits on its ticket. The writer thread has
//!    meanwhile written every queued record, framed with length and CRC32, and one
//!    `fdatasync` covers them all (group commit).
//! 4. The ticket resolves; the client gets `{"id": ...}`. A consumer may have seen the
//!    message already, but its own lock record sits later in the log, so its reply waits
//!    for a sync that covers the publish too.

pub mod clock;
pub mod config;
pub mod engine;
pub mod fdlimit;
pub mod http;
pub mod listener;
pub mod logs;
pub mod server;
pub mod slots;
pub mod ui;
pub mod wal;
pub mod ws;
