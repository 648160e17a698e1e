//! The write-ahead log: segment files of length- and CRC-framed records under one
//! directory. It knows bytes, segments and files; nothing of queues. A record body is opaque.
//!
//! - [`frame`]: the byte layout of segment headers and record frames (`FORMAT.md`).
//! - [`segment`]: segment file names and the active segment.
//! - [`fs`]: the file layer ([`FileSystem`]) with the real disk; [`simfs`]: a simulated one
//!   with fault injection and power cuts, for tests.
//! - `writer`: the single writer thread, group commit, the durability watermark.
//! - `recovery`: replay at open (the newest checkpoint, then the segments it does not
//!   cover), torn-tail cutting, damage detection.
//! - [`checkpoint`]: checkpoint files, written beside the log so old segments can go.
//! - `locate`: where each record body of a live file is, and read handles, for
//!   [`Wal::read`] of bytes inside a record ([`LogLoc`]).
//!
//! Every record gets a log sequence number (LSN): 1 for the first record ever, then one up
//! per record, across restarts. A segment header stores the LSN of its first record, so a
//! record's LSN is that plus its position in the segment.
//!
//! A record travels: [`Wal::append`] copies it into the pending buffer and returns a
//! [`Ticket`]; the writer writes every pending record in one go, fdatasyncs, and raises the
//! watermark; the ticket completes once the watermark covers it.

pub mod checkpoint;
pub mod frame;
pub mod fs;
mod locate;
mod recovery;
pub mod segment;
pub mod simfs;
mod writer;

use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

pub use checkpoint::{CheckpointReport, CheckpointWriter};
pub use fs::{real_fs, FileBytes, FileSystem, ReadAt, RealFs, WalFile};
pub use locate::{BodyAt, Locator, LogLoc};
pub use simfs::{CrashMode, Fault, SimCounts, SimFs};

use segment::ActiveSegment;
use writer::{Mark, MarkKind, Shared, Writer};

pub use recovery::{AddressedVisit, Visit};

/// The LSN that recovery passes with the bodies of a checkpoint: no log record has it, since
/// LSNs start at 1.
pub const CHECKPOINT_LSN: u64 = 0;

/// When a write counts as durable.
/// Requirements: PER-0008
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Acknowledge after the fdatasync that covers the record (group commit).
    Always,
    /// fdatasync at most this often; acknowledge once the bytes reached the OS.
    Interval(Duration),
    /// Never fdatasync (but on segment roll and close); acknowledge once the bytes reached
    /// the OS.
    Never,
}

/// What recovery does with a bad record that valid records follow.
/// Requirements: PER-0016
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Stop startup with an error naming the file and offset.
    Strict,
    /// Keep the valid prefix and cut everything after it.
    Truncate,
}

/// Default segment size at which the log rolls: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Largest segment size: body offsets inside a segment are indexed as u32.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 31;
/// Default largest record body: 16 MiB, well above the 2 MiB request body limit.
pub const DEFAULT_MAX_RECORD_BYTES: u32 = 16 << 20;

/// Log settings.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Directory of the segment files; created if missing.
    pub dir: PathBuf,
    /// Size at which the log rolls to a new segment. Default 64 MiB. A record larger than
    /// this still goes into a segment of its own.
    pub segment_bytes: u64,
    /// Default `Always`.
    pub fsync: FsyncPolicy,
    /// Default `Strict`.
    pub recovery: RecoveryMode,
    /// Largest record body accepted by append. Default 16 MiB; capped at
    /// `frame::MAX_RECORD_BYTES`, the size recovery reads up to whatever this says.
    pub max_record_bytes: u32,
}

impl WalOptions {
    /// The defaults, in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> WalOptions {
        WalOptions {
            dir: dir.into(),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            fsync: FsyncPolicy::Always,
            recovery: RecoveryMode::Strict,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

/// Errors of the log. Cloneable, since one failure is delivered to many waiting tickets.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WalError {
    /// The file system refused an operation during open.
    #[error("i/o error: {0}")]
    Io(Arc<io::Error>),
    /// Recovery found damage it may not repair, or replay rejected a record.
    #[error("corrupt log in {file} at offset {offset}: {reason}")]
    Corrupt { file: PathBuf, offset: u64, reason: String },
    /// An earlier write or fsync failed; nothing more is accepted.
    #[error("log is read-only after an earlier failure: {0}")]
    ReadOnly(String),
    /// The body is above `max_record_bytes`.
    #[error("record of {len} bytes is above the maximum of {max}")]
    RecordTooLarge { len: usize, max: u32 },
    /// Empty bodies are not records: a zero length marks a zero-filled tail.
    #[error("empty record")]
    EmptyRecord,
    /// `close` was called.
    #[error("log is closed")]
    Closed,
    /// Bytes asked for by [`Wal::read`] are in no live file (or were never written).
    #[error("log bytes unreadable: {0}")]
    Unreadable(String),
    /// A checkpoint of this id is live: another one may not be written under its id.
    #[error("checkpoint {0} is live already")]
    CheckpointExists(u64),
}

impl From<io::Error> for WalError {
    fn from(err: io::Error) -> Self {
        WalError::Io(Arc::new(err))
    }
}

/// Upper bounds, in seconds, of the fsync latency histogram buckets.
pub const FSYNC_BUCKETS_SECONDS: [f64; 12] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

/// A snapshot of the log's counters.
#[derive(Clone, Debug, PartialEq)]
pub struct WalStats {
    /// Bytes of all segment files and of the checkpoint.
    pub bytes_on_disk: u64,
    pub segments: usize,
    /// fdatasyncs of segment files since open.
    pub fsyncs: u64,
    pub fsync_seconds_sum: f64,
    /// `fsync_buckets[i]` counts fsyncs that took at most `FSYNC_BUCKETS_SECONDS[i]` and
    /// more than the bound before (not cumulative); the last entry counts the slower ones.
    pub fsync_buckets: [u64; FSYNC_BUCKETS_SECONDS.len() + 1],
    /// Records handed to the OS since open.
    pub records_written: u64,
    pub read_only: bool,
    /// Bytes of the sealed segments (every segment but the one appended to).
    pub sealed_bytes: u64,
    /// Bytes of the current checkpoint file (0 when there is none).
    pub checkpoint_bytes: u64,
    /// Checkpoints committed since open, the seconds they took from start to the last
    /// deletion, and the bytes they freed (deleted segments and checkpoints minus the new
    /// checkpoint).
    pub compactions: u64,
    pub compaction_seconds_sum: f64,
    pub compaction_reclaimed_bytes: u64,
}

/// What recovery found at open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoverySummary {
    /// Segments replayed (and kept).
    pub segments: usize,
    /// Records replayed.
    pub records: u64,
    /// Valid bytes kept, headers included.
    pub bytes: u64,
    /// Bytes cut off (torn tail, or the damaged rest in truncate mode).
    pub truncated_bytes: u64,
    /// Records and bytes of the checkpoint loaded before the segments (0 when none).
    pub checkpoint_records: u64,
    pub checkpoint_bytes: u64,
    pub millis: u64,
}

/// The log. `Send + Sync`; share it behind an `Arc`.
/// Requirements: PER-0001, SYS-0005
pub struct Wal {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
}

impl Wal {
    /// Opens (or creates) the log in `opts.dir` and replays, through `visit`, first the
    /// bodies of the newest checkpoint (with LSN [`CHECKPOINT_LSN`]), then every valid
    /// record of the segments it does not cover, in log order, with its LSN. An `Err` from
    /// `visit` aborts the open with [`WalError::Corrupt`] naming the file and offset of that
    /// record. A torn tail of the newest segment is cut (one WARN line); damage elsewhere is
    /// an error unless `opts.recovery` is `Truncate`. Then the writer thread starts.
    /// Requirements: SYS-0010
    pub fn open(
        opts: WalOptions,
        fs: Arc<dyn FileSystem>,
        visit: &mut Visit<'_>,
    ) -> Result<(Wal, RecoverySummary), WalError> {
        Wal::open_addressed(opts, fs, &mut |at, body, _| visit(at.lsn(), body))
    }

    /// [`Wal::open`] for a visitor that keeps addresses of bytes in the bodies it sees
    /// (see [`Wal::read`]): it learns where each body is, and may read bytes of bodies it
    /// saw before through the [`Locator`].
    /// Requirements: SYS-0034
    pub fn open_addressed(
        mut opts: WalOptions,
        fs: Arc<dyn FileSystem>,
        visit: &mut AddressedVisit<'_>,
    ) -> Result<(Wal, RecoverySummary), WalError> {
        // Limitation: body offsets are indexed as u32, so segments are capped at 2 GiB
        // whatever `segment_bytes` asks for; every offset then fits.
        opts.segment_bytes = opts.segment_bytes.min(MAX_SEGMENT_BYTES);
        fs.create_dir_all(&opts.dir)?;
        let locator = Locator::default();
        let recovered = recovery::recover(&*fs, &opts, &locator, visit)?;

        let last_lsn = recovered.last_lsn;
        let max_record = opts.max_record_bytes.min(frame::MAX_RECORD_BYTES);
        let shared = Arc::new(Shared::new(max_record, last_lsn, locator));
        let mut segments = recovered.summary.segments;
        let mut bytes = recovered.summary.bytes + recovered.checkpoint_bytes;
        let mut sealed: std::collections::BTreeMap<u64, u64> =
            recovered.sealed.iter().copied().collect();
        // Only the newest segment of all is reopened: one whose successors were cut away in
        // recovery was sealed, and a new segment must get an id above every id ever used.
        // Nor is one whose next LSN a checkpoint already passed (a truncating recovery cut
        // records the checkpoint reflects): its records would reuse LSNs.
        let segment = match recovered.tail {
            Some(tail)
                if tail.len < opts.segment_bytes
                    && tail.id == recovered.max_id
                    && tail.next_lsn == last_lsn + 1 =>
            {
                ActiveSegment::reopen(&*fs, tail.id, tail.path, tail.first_lsn, tail.len)?
            }
            tail => {
                if let Some(tail) = tail {
                    sealed.insert(tail.id, tail.len);
                }
                let id = recovered.max_id + 1;
                let created = ActiveSegment::create(&*fs, &opts.dir, id, last_lsn + 1)?;
                let reader = fs::open_read_or_warn(&*fs, &created.path);
                shared.locator.add_segment(id, last_lsn + 1, reader);
                segments += 1;
                bytes += created.written;
                created
            }
        };
        shared.stats.segments.store(segments, Ordering::Relaxed);
        shared.stats.bytes_on_disk.store(bytes, Ordering::Relaxed);
        shared.stats.checkpoint_bytes.store(recovered.checkpoint_bytes, Ordering::Relaxed);
        *shared.stats.sealed.lock() = sealed;

        let dir = opts.dir.clone();
        let writer = Writer::new(shared.clone(), fs.clone(), opts, segment, last_lsn);
        let handle = std::thread::Builder::new()
            .name("wal-writer".to_string())
            .spawn(move || writer.run())?;
        let wal = Wal { shared, writer: Mutex::new(Some(handle)), fs, dir };
        Ok((wal, recovered.summary))
    }

    /// LSN of the last record appended (0 before the first record ever).
    pub fn last_lsn(&self) -> u64 {
        self.shared.queue.lock().appended
    }

    /// Asks the writer to seal the active segment and start a new one once every record
    /// appended before this call is written: those all end up in older segments, later ones
    /// in the new segment or after it. Does not block; [`RollTicket::wait`] does. An empty
    /// active segment is not rolled: it already follows every earlier record.
    pub fn roll(&self) -> Result<RollTicket, WalError> {
        let (reply, lsn) = self.mark(MarkKind::Roll)?;
        Ok(RollTicket { reply, lsn, shared: self.shared.clone() })
    }

    /// Makes every record appended before the call durable, whatever the fsync policy, and
    /// returns the LSN durable now. Blocks.
    pub fn sync(&self) -> Result<u64, WalError> {
        let (reply, _) = self.mark(MarkKind::Sync)?;
        reply.recv().map_err(|_| self.failure())
    }

    fn mark(&self, kind: MarkKind) -> Result<(mpsc::Receiver<u64>, u64), WalError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let mut queue = self.shared.queue.lock();
        if let Some(reason) = &queue.failure {
            return Err(WalError::ReadOnly(reason.clone()));
        }
        if queue.closing {
            return Err(WalError::Closed);
        }
        let at = queue.pending.len();
        queue.marks.push(Mark { at, kind, reply: tx });
        let lsn = queue.appended;
        drop(queue);
        self.shared.work.notify_one();
        Ok((rx, lsn))
    }

    fn failure(&self) -> WalError {
        let queue = self.shared.queue.lock();
        match &queue.failure {
            Some(reason) => WalError::ReadOnly(reason.clone()),
            None => WalError::Closed,
        }
    }

    /// Starts a checkpoint that replaces every segment below `covers_below` (the id a
    /// [`RollTicket`] returned) and every older checkpoint. `first_lsn` is the LSN of the
    /// first record of segment `covers_below`; it goes into the header for the record.
    pub fn begin_checkpoint(
        &self,
        covers_below: u64,
        first_lsn: u64,
    ) -> Result<CheckpointWriter, WalError> {
        CheckpointWriter::create(
            self.fs.clone(),
            self.shared.clone(),
            self.dir.clone(),
            covers_below,
            first_lsn,
        )
    }

    /// Enqueues one record body and returns the ticket that completes once it is durable.
    /// Never blocks on I/O: it copies the body into the pending buffer and wakes the
    /// writer. Records are written in the order of `append` calls.
    /// Requirements: PER-0005
    pub fn append(&self, body: &[u8]) -> Result<Ticket, WalError> {
        let max = self.shared.max_record_bytes;
        if body.is_empty() {
            return Err(WalError::EmptyRecord);
        }
        if body.len() > max as usize {
            return Err(WalError::RecordTooLarge { len: body.len(), max });
        }

        let mut queue = self.shared.queue.lock();
        if let Some(reason) = &queue.failure {
            return Err(WalError::ReadOnly(reason.clone()));
        }
        if queue.closing {
            return Err(WalError::Closed);
        }
        // Limitation: no back-pressure here; if the disk is slower than the appenders the
        // pending buffer grows without bound. Callers must not block, so bounding it is the
        // engine's (admission) call.
        let was_idle = queue.pending.is_empty();
        frame::push_unsealed(&mut queue.pending, body);
        queue.appended += 1;
        let lsn = queue.appended;

        // The writer sleeps while `pending` is empty, or while it gathers a batch up to
        // `wake_at`: only the first record of a batch, or the one it waits for, wakes it.
        let wake = was_idle || lsn == queue.wake_at;
        drop(queue);
        if wake {
            self.shared.work.notify_one();
        }
        Ok(Ticket { seq: lsn, shared: self.shared.clone() })
    }

    /// Writes and fsyncs everything appended so far, then stops the writer. Later appends
    /// fail with [`WalError::Closed`]. Calling it again is harmless.
    pub fn close(&self) -> Result<(), WalError> {
        self.shared.queue.lock().closing = true;
        self.shared.work.notify_one();
        if let Some(handle) = self.writer.lock().take() {
            // The writer's panic guard already marked the log failed if it panicked.
            let _ = handle.join();
        }

        match &self.shared.queue.lock().failure {
            Some(reason) => Err(WalError::ReadOnly(reason.clone())),
            None => Ok(()),
        }
    }

    pub fn stats(&self) -> WalStats {
        self.shared.stats.snapshot()
    }

    /// Copies the bytes at `loc`. A log record not yet durable is waited for first
    /// (blocking): its bytes may still sit in the pending buffer. Fails with
    /// [`WalError::Unreadable`] when no live file holds them, or with the I/O error.
    /// Requirements: SYS-0034
    pub fn read(&self, loc: LogLoc) -> Result<Vec<u8>, WalError> {
        if let Some(lsn) = loc.lsn() {
            let mut queue = self.shared.queue.lock();
            if lsn > queue.appended {
                return Err(WalError::Unreadable(format!("record {lsn} was never appended")));
            }
            while queue.durable < lsn && queue.failure.is_none() {
                self.shared.acked.wait(&mut queue);
            }
            if queue.durable < lsn {
                let reason = queue.failure.clone().unwrap_or_default();
                return Err(WalError::ReadOnly(reason));
            }
        }
        self.shared.locator.read(loc)
    }

    /// True while checkpoint `id` is the log's (or a replaced one still readable).
    /// Requirements: SYS-0034
    pub fn has_checkpoint(&self, id: u64) -> bool {
        self.shared.locator.has_checkpoint(id)
    }

    /// Drops the read handles of files below segment `id` (deleted by the checkpoint of
    /// that id) once nothing addresses bytes in them any more.
    /// Requirements: SYS-0034
    pub fn forget_below(&self, id: u64) {
        self.shared.locator.forget_below(id);
    }
}

/// A pending [`Wal::roll`].
pub struct RollTicket {
    reply: mpsc::Receiver<u64>,
    lsn: u64,
    shared: Arc<Shared>,
}

impl RollTicket {
    /// LSN of the last record appended before the roll: every record up to it is in a
    /// segment below the new one.
    pub fn lsn(&self) -> u64 {
        self.lsn
    }

    /// Blocks until the roll is done; returns the id of the segment appended to after it.
    pub fn wait(self) -> Result<u64, WalError> {
        self.reply.recv().map_err(|_| {
            let queue = self.shared.queue.lock();
            match &queue.failure {
                Some(reason) => WalError::ReadOnly(reason.clone()),
                None => WalError::Closed,
            }
        })
    }
}

#[allow(dead_code)]
fn assert_wal_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Wal>();
    check::<Ticket>();
}

impl Drop for Wal {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// A claim on one appended record: completes when the record is durable under the fsync
/// policy, or fails if the log failed first.
#[must_use = "a record is only durable once its ticket completes"]
pub struct Ticket {
    seq: u64,
    shared: Arc<Shared>,
}

impl Ticket {
    /// Waits from async code, without blocking the runtime thread.
    pub async fn wait(self) -> Result<(), WalError> {
        let mut progress = self.shared.progress.subscribe();
        let seq = self.seq;
        // `wait_for` looks at the current value first, so an already durable record costs
        // no wake-up. The sender lives in `self.shared`: the channel cannot close meanwhile.
        let durable = match progress.wait_for(|p| p.durable >= seq || p.failed).await {
            Ok(now) => now.durable >= seq,
            Err(_) => false,
        };
        if durable {
            return Ok(());
        }
        self.outcome()
    }

    /// Waits by blocking the current thread.
    pub fn wait_blocking(self) -> Result<(), WalError> {
        let mut queue = self.shared.queue.lock();
        while queue.durable < self.seq && queue.failure.is_none() {
            self.shared.acked.wait(&mut queue);
        }
        drop(queue);
        self.outcome()
    }

    /// The LSN of the record.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    fn outcome(&self) -> Result<(), WalError> {
        let queue = self.shared.queue.lock();
        if queue.durable >= self.seq {
            return Ok(());
        }
        let reason = queue.failure.clone().unwrap_or_else(|| "log stopped".to_string());
        Err(WalError::ReadOnly(reason))
    }
}
