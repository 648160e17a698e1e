//! The write-ahead log: segment files of length- and CRC-framed records under one
//! directory. It knows bytes, segments and files; nothing of queues.
//!
//! (Interface stub: the implementation lands with the write-ahead-log issue.)

use std::path::PathBuf;
use std::time::Duration;

/// When a write counts as durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Acknowledge after the fdatasync that covers the record (group commit).
    Always,
    /// fdatasync at most this often; acknowledge once the bytes reached the OS.
    Interval(Duration),
    /// Never fdatasync; acknowledge once the bytes reached the OS.
    Never,
}

/// What recovery does with a bad record that valid records follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Stop startup with an error naming the file and offset.
    Strict,
    /// Keep the valid prefix and cut everything after it.
    Truncate,
}

#[derive(Clone, Debug)]
pub struct WalOptions {
    pub dir: PathBuf,
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
    pub recovery: RecoveryMode,
    pub max_record_bytes: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt log in {file} at offset {offset}: {reason}")]
    Corrupt { file: PathBuf, offset: u64, reason: String },
    #[error("log is read-only after an earlier failure: {0}")]
    ReadOnly(String),
}

// --- Temporary interface stubs, replaced by the write-ahead-log implementation. ---

use std::sync::Arc;

/// The file layer under the log.
pub trait FileSystem: Send + Sync {}

pub fn real_fs() -> Arc<dyn FileSystem> {
    todo!()
}

#[derive(Debug, Default, Clone)]
pub struct RecoverySummary {
    pub segments: usize,
    pub records: u64,
    pub bytes: u64,
    pub truncated_bytes: u64,
    pub millis: u64,
}

#[derive(Debug, Default, Clone)]
pub struct WalStats {}

pub struct Ticket;

impl Ticket {
    pub async fn wait(self) -> Result<(), WalError> {
        todo!()
    }
}

pub struct Wal;

impl Wal {
    #[allow(clippy::type_complexity)]
    pub fn open(
        _opts: WalOptions,
        _fs: Arc<dyn FileSystem>,
        _visit: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(Wal, RecoverySummary), WalError> {
        todo!()
    }

    pub fn append(&self, _body: &[u8]) -> Result<Ticket, WalError> {
        todo!()
    }

    pub fn close(&self) -> Result<(), WalError> {
        todo!()
    }

    pub fn stats(&self) -> WalStats {
        todo!()
    }
}
