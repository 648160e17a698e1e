//! The single writer thread and the state it shares with appenders and waiters.
//!
//! Appenders only copy their record into `pending` under a short lock. The writer swaps the
//! whole pending buffer out, writes it with one append per segment it touches, and covers it
//! with one `fdatasync`: records that arrive during that fsync pile up and go together next
//! time (group commit). Durability is published as a watermark, the sequence number of the
//! last acknowledged record, so a ticket is just a number to compare against.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

use super::frame;
use super::fs::FileSystem;
use super::locate::Locator;
use super::segment::ActiveSegment;
use super::{FsyncPolicy, WalError, WalOptions, WalStats, FSYNC_BUCKETS_SECONDS};

/// Longest wait for more records before an fsync (see `Writer::next_work`).
const MAX_GATHER: Duration = Duration::from_micros(500);

/// Zeros written ahead of the records in the active segment. A crash leaves them as the
/// segment's tail, which recovery cuts like any torn tail.
// Limitation: so a restart after any crash warns about a cut tail, even when every record
// was synced: zeros written ahead look the same as unsynced records lost as zeros.
const PREALLOCATE_BYTES: u64 = 1 << 20;

/// State behind the lock appenders take.
pub struct Queue {
    /// Frames waiting for the writer, CRCs not yet filled in.
    pub pending: Vec<u8>,
    /// LSN of the last appended record (LSNs start at 1 and continue across restarts).
    pub appended: u64,
    /// LSN of the last acknowledged record.
    pub durable: u64,
    /// Roll and sync requests, each at the byte offset of `pending` where it was made.
    pub marks: Vec<Mark>,
    /// Why the log turned read-only, once it has.
    pub failure: Option<String>,
    pub closing: bool,
    /// The writer is gathering a batch and wants a wake-up once `appended` reaches this
    /// (0: only when `pending` stops being empty).
    pub wake_at: u64,
}

/// What a mark asks the writer to do once every record appended before it is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkKind {
    /// Seal the active segment and start a new one; replies with the new segment's id.
    Roll,
    /// fdatasync whatever the policy; replies with the LSN now durable.
    Sync,
}

/// A request ordered with the appends around it. Dropping the sender unanswered (the log
/// failed) tells the requester that it failed.
pub struct Mark {
    pub at: usize,
    pub kind: MarkKind,
    pub reply: mpsc::SyncSender<u64>,
}

/// The durability watermark as async waiters see it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    pub durable: u64,
    pub failed: bool,
}

/// Everything the `Wal` handle, its tickets and the writer thread share.
pub struct Shared {
    pub queue: Mutex<Queue>,
    /// Wakes the writer when `pending` stops being empty or on close.
    pub work: Condvar,
    /// Wakes blocking ticket waiters when the watermark moves or the log fails.
    pub acked: Condvar,
    pub progress: watch::Sender<Progress>,
    pub max_record_bytes: u32,
    pub stats: StatCells,
    /// Where each written body is, for reads (`Wal::read`).
    pub locator: Locator,
}

/// Counters behind [`WalStats`], updated without the queue lock.
#[derive(Default)]
pub struct StatCells {
    pub bytes_on_disk: AtomicU64,
    pub segments: AtomicUsize,
    pub fsyncs: AtomicU64,
    pub fsync_micros_sum: AtomicU64,
    pub fsync_buckets: [AtomicU64; FSYNC_BUCKETS_SECONDS.len() + 1],
    pub records_written: AtomicU64,
    pub read_only: AtomicBool,
    /// Sealed segments still on disk: id -> bytes.
    pub sealed: parking_lot::Mutex<BTreeMap<u64, u64>>,
    /// Bytes of the current checkpoint file (0 when there is none).
    pub checkpoint_bytes: AtomicU64,
    pub compactions: AtomicU64,
    pub compaction_micros_sum: AtomicU64,
    pub compaction_reclaimed: AtomicU64,
}

impl StatCells {
    fn record_fsync(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = FSYNC_BUCKETS_SECONDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(FSYNC_BUCKETS_SECONDS.len());
        self.fsync_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.fsync_micros_sum.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> WalStats {
        WalStats {
            bytes_on_disk: self.bytes_on_disk.load(Ordering::Relaxed),
            segments: self.segments.load(Ordering::Relaxed),
            fsyncs: self.fsyncs.load(Ordering::Relaxed),
            fsync_seconds_sum: self.fsync_micros_sum.load(Ordering::Relaxed) as f64 / 1e6,
            fsync_buckets: std::array::from_fn(|i| self.fsync_buckets[i].load(Ordering::Relaxed)),
            records_written: self.records_written.load(Ordering::Relaxed),
            read_only: self.read_only.load(Ordering::Relaxed),
            sealed_bytes: self.sealed.lock().values().sum(),
            checkpoint_bytes: self.checkpoint_bytes.load(Ordering::Relaxed),
            compactions: self.compactions.load(Ordering::Relaxed),
            compaction_seconds_sum: self.compaction_micros_sum.load(Ordering::Relaxed) as f64 / 1e6,
            compaction_reclaimed_bytes: self.compaction_reclaimed.load(Ordering::Relaxed),
        }
    }
}

impl Shared {
    /// `last_lsn` is the LSN of the last record recovered: appends continue above it.
    pub fn new(max_record_bytes: u32, last_lsn: u64, locator: Locator) -> Shared {
        let queue = Queue {
            pending: Vec::new(),
            appended: last_lsn,
            durable: last_lsn,
            marks: Vec::new(),
            failure: None,
            closing: false,
            wake_at: 0,
        };
        Shared {
            queue: Mutex::new(queue),
            work: Condvar::new(),
            acked: Condvar::new(),
            progress: watch::Sender::new(Progress { durable: last_lsn, failed: false }),
            max_record_bytes,
            stats: StatCells::default(),
            locator,
        }
    }

    /// Acknowledges every record up to `seq`.
    fn ack(&self, seq: u64) {
        {
            let mut queue = self.queue.lock();
            if seq <= queue.durable {
                return;
            }
            queue.durable = seq;
        }
        self.acked.notify_all();
        self.progress.send_modify(|p| p.durable = seq);
    }

    /// Turns the log read-only: the pending records are dropped unacknowledged, and every
    /// waiting and later ticket fails with `reason`.
    /// Requirements: PER-0009
    pub fn fail(&self, reason: String) {
        {
            let mut queue = self.queue.lock();
            if queue.failure.is_some() {
                return;
            }
            queue.pending = Vec::new();
            // Dropping the reply senders fails every waiting roll or sync.
            queue.marks.clear();
            queue.failure = Some(reason);
        }
        self.stats.read_only.store(true, Ordering::Relaxed);
        self.acked.notify_all();
        self.progress.send_modify(|p| p.failed = true);
    }
}

/// The writer's own state; only the writer thread touches it.
pub struct Writer {
    pub shared: Arc<Shared>,
    pub fs: Arc<dyn FileSystem>,
    pub opts: WalOptions,
    pub segment: ActiveSegment,
    /// LSN of the last record handed to the OS.
    written: u64,
    /// When the last fsync finished, and whether bytes were written since.
    last_sync: Instant,
    dirty: bool,
    /// Records of the last batch, and how long its fdatasync took: what group commit
    /// gathering expects to come back, and how long it may wait for them.
    last_batch: u64,
    last_fsync: Duration,
}

/// Marks the log failed if the writer thread unwinds, so no ticket waits forever.
struct PanicGuard(Arc<Shared>);

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail("the log writer thread panicked".to_string());
        }
    }
}

/// What one wait for work produced.
enum Work {
    Batch(Vec<u8>, Vec<Mark>),
    /// The interval elapsed with written, unsynced bytes and nothing new.
    IntervalDue,
    /// Close was asked and nothing is pending.
    Close,
}

impl Writer {
    pub fn new(
        shared: Arc<Shared>,
        fs: Arc<dyn FileSystem>,
        opts: WalOptions,
        segment: ActiveSegment,
        last_lsn: u64,
    ) -> Writer {
        let last_sync = Instant::now();
        Writer {
            shared,
            fs,
            opts,
            segment,
            written: last_lsn,
            last_sync,
            dirty: false,
            last_batch: 0,
            last_fsync: Duration::ZERO,
        }
    }

    /// Requirements: PER-0007
    pub fn run(mut self) {
        let _guard = PanicGuard(self.shared.clone());
        let mut spare = Vec::new();

        loop {
            let work = self.next_work(std::mem::take(&mut spare));
            let result = match work {
                Work::Batch(mut batch, marks) => {
                    let result = self.write_batch(&mut batch, marks);
                    batch.clear();
                    spare = batch;
                    result
                }
                Work::IntervalDue => self.sync(),
                Work::Close => {
                    if let Err(err) = self.trim().and_then(|()| self.sync()) {
                        self.give_up(err);
                    }
                    return;
                }
            };
            if let Err(err) = result {
                self.give_up(err);
                return;
            }
        }
    }

    /// Waits for pending records (swapping in `spare`, so buffers are reused, not
    /// reallocated), for a due interval fsync, or for close.
    ///
    /// Under fsync always it gathers first: the appenders of the last batch were just
    /// acknowledged and most come back at once, so taking only the records that arrived
    /// during the fsync would split them over two fsyncs and make each wait for both. The
    /// writer waits until as many records as were pending now plus the last batch have
    /// arrived, at most half the last fsync's time (and `MAX_GATHER`): never longer than
    /// the fsync it can save. A lone appender is never delayed: its next record is all the
    /// writer expects.
    /// Requirements: PER-0007
    fn next_work(&self, mut spare: Vec<u8>) -> Work {
        let mut queue = self.shared.queue.lock();
        let expect = queue.appended + self.last_batch;
        let gather_until = Instant::now() + (self.last_fsync / 2).min(MAX_GATHER);
        loop {
            if queue.failure.is_some() {
                return Work::Close;
            }
            if !queue.pending.is_empty() || !queue.marks.is_empty() {
                let gather = self.opts.fsync == FsyncPolicy::Always
                    && queue.marks.is_empty()
                    && !queue.closing
                    && queue.appended < expect;
                if gather && Instant::now() < gather_until {
                    queue.wake_at = expect;
                    self.shared.work.wait_until(&mut queue, gather_until);
                    continue;
                }
                queue.wake_at = 0;
                std::mem::swap(&mut queue.pending, &mut spare);
                let marks = std::mem::take(&mut queue.marks);
                return Work::Batch(spare, marks);
            }
            if queue.closing {
                return Work::Close;
            }
            match self.opts.fsync {
                FsyncPolicy::Interval(every) if self.dirty => {
                    let due = self.last_sync + every;
                    // `pending` is empty here, so a due interval is all there is to do.
                    if Instant::now() >= due {
                        return Work::IntervalDue;
                    }
                    self.shared.work.wait_until(&mut queue, due);
                }
                _ => self.shared.work.wait(&mut queue),
            }
        }
    }

    /// Writes a batch of frames, rolling segments as needed and serving each mark once the
    /// frames before it are written, and acknowledges it as the fsync policy says.
    /// Requirements: PER-0007
    fn write_batch(&mut self, batch: &mut [u8], marks: Vec<Mark>) -> Result<(), WalError> {
        let before = self.written;
        let result = self.write_marked(batch, marks);
        self.last_batch = self.written - before;
        result
    }

    fn write_marked(&mut self, batch: &mut [u8], marks: Vec<Mark>) -> Result<(), WalError> {
        let mut start = 0;
        for mark in marks {
            self.write_frames(&mut batch[start..mark.at])?;
            start = mark.at;
            let answer = match mark.kind {
                MarkKind::Roll => {
                    // An empty active segment already has every earlier record before it.
                    if self.segment.written > frame::HEADER_LEN as u64 {
                        self.roll()?;
                    }
                    self.segment.id
                }
                MarkKind::Sync => {
                    self.sync()?;
                    self.written
                }
            };
            // The requester may have given up waiting; nothing to do then.
            let _ = mark.reply.send(answer);
        }
        self.write_frames(&mut batch[start..])?;

        match self.opts.fsync {
            FsyncPolicy::Always => self.sync(),
            FsyncPolicy::Interval(every) if self.last_sync.elapsed() >= every => self.sync(),
            FsyncPolicy::Interval(_) | FsyncPolicy::Never => Ok(()),
        }
    }

    /// Writes whole frames, rolling to a new segment whenever the active one is full.
    fn write_frames(&mut self, batch: &mut [u8]) -> Result<(), WalError> {
        let mut start = 0;
        while start < batch.len() {
            let (end, records) = self.seal_chunk(batch, start);
            if end > start {
                self.preallocate(end - start)?;
                self.segment.file.append(&batch[start..end])?;
                // Indexed before the records are acknowledged: a reader waits for that.
                self.index_bodies(&batch[start..end]);
                let bytes = (end - start) as u64;
                self.segment.written += bytes;
                self.written += records;
                self.dirty = true;
                self.shared.stats.bytes_on_disk.fetch_add(bytes, Ordering::Relaxed);
                self.shared.stats.records_written.fetch_add(records, Ordering::Relaxed);
                if self.opts.fsync != FsyncPolicy::Always {
                    self.acknowledge_written();
                }
            }
            start = end;
            if start < batch.len() {
                self.roll()?;
            }
        }
        Ok(())
    }

    /// Notes where the body of each frame of `frames`, just appended at the end of the
    /// active segment, starts in the file.
    /// Requirements: SYS-0034
    fn index_bodies(&self, frames: &[u8]) {
        let base = self.segment.written;
        let mut at = 0;
        let offsets = std::iter::from_fn(|| {
            (at < frames.len()).then(|| {
                let body = base + (at + frame::FRAME_HEADER_LEN) as u64;
                at += frame::frame_len(&frames[at..]);
                body
            })
        });
        self.shared.locator.push_bodies(self.segment.id, offsets);
    }

    /// Fills in the CRCs of the frames from `start` on that fit in the active segment.
    /// Returns where they end and how many there are. A frame larger than a whole segment
    /// still goes into an empty one, alone.
    fn seal_chunk(&self, batch: &mut [u8], start: usize) -> (usize, u64) {
        let limit = self.opts.segment_bytes;
        let segment_empty = self.segment.written == frame::HEADER_LEN as u64;
        let mut end = start;
        let mut records = 0;
        while end < batch.len() {
            let len = frame::frame_len(&batch[end..]);
            let size_after = self.segment.written + (end + len - start) as u64;
            if size_after > limit && !(segment_empty && records == 0) {
                break;
            }
            frame::seal_frame(&mut batch[end..end + len], self.segment.id);
            end += len;
            records += 1;
        }
        (end, records)
    }

    /// Makes sure `bytes` more fit in zeros already in the active segment, adding a chunk of
    /// zeros if not (never past the segment size, unless one record is larger). The first
    /// fdatasync after that commits the new length once; the ones after it only data.
    /// Requirements: PER-0007
    fn preallocate(&mut self, bytes: usize) -> Result<(), WalError> {
        let needed = self.segment.written + bytes as u64;
        if needed <= self.segment.allocated {
            return Ok(());
        }
        let target = (needed + PREALLOCATE_BYTES).min(self.opts.segment_bytes).max(needed);
        self.segment.file.preallocate(target)?;
        self.segment.allocated = target;
        Ok(())
    }

    /// Cuts the preallocated zeros off the active segment, so a sealed segment (or the
    /// newest, after a clean close) ends with its last record.
    fn trim(&mut self) -> Result<(), WalError> {
        if self.segment.allocated > self.segment.written {
            self.segment.file.set_len(self.segment.written)?;
            self.segment.allocated = self.segment.written;
            self.dirty = true;
        }
        Ok(())
    }

    /// Seals the active segment and starts the next. The old one is synced whatever the
    /// policy: a newer segment must never sit after an older one's lost tail, since
    /// recovery would read that as mid-log damage.
    /// Requirements: PER-0010
    fn roll(&mut self) -> Result<(), WalError> {
        self.trim()?;
        self.sync()?;
        let (id, first_lsn) = (self.segment.id + 1, self.written + 1);
        let next = ActiveSegment::create(&*self.fs, &self.opts.dir, id, first_lsn)?;
        let reader = super::fs::open_read_or_warn(&*self.fs, &next.path);
        self.shared.locator.add_segment(id, first_lsn, reader);
        tracing::debug!(segment = next.id, first_lsn, "log rolled to a new segment");
        let sealed = std::mem::replace(&mut self.segment, next);
        self.shared.stats.sealed.lock().insert(sealed.id, sealed.written);
        self.shared.stats.segments.fetch_add(1, Ordering::Relaxed);
        self.shared.stats.bytes_on_disk.fetch_add(frame::HEADER_LEN as u64, Ordering::Relaxed);
        Ok(())
    }

    /// fdatasync of the active segment; acknowledges everything written so far.
    fn sync(&mut self) -> Result<(), WalError> {
        if self.dirty {
            let started = Instant::now();
            self.segment.file.sync_data()?;
            self.last_fsync = started.elapsed();
            self.shared.stats.record_fsync(self.last_fsync);
            self.dirty = false;
        }
        self.last_sync = Instant::now();
        self.acknowledge_written();
        Ok(())
    }

    fn acknowledge_written(&mut self) {
        self.segment.acked = self.segment.written;
        self.shared.ack(self.written);
    }

    /// A write or fsync failed. It is never retried: after a failed fsync the kernel may
    /// already have dropped the dirty pages, so a retry that succeeds would prove nothing.
    /// The unacknowledged bytes are cut off (best effort) so that a restart without a
    /// crash does not resurrect records whose writers were told they failed.
    /// Requirements: PER-0009, PER-0028
    fn give_up(&mut self, err: WalError) {
        let reason = err.to_string();
        tracing::error!(
            segment = %self.segment.path.display(),
            error = %reason,
            "write-ahead log failed; it is read-only from now on"
        );

        // A short write (a full disk) leaves bytes that `written` does not count, so the cut
        // happens whatever the counters say.
        let acked = self.segment.acked;
        let file = &mut self.segment.file;
        match file.set_len(acked).and_then(|()| file.sync_data()) {
            Ok(()) => {
                let cut = self.segment.written - acked;
                self.shared.stats.bytes_on_disk.fetch_sub(cut, Ordering::Relaxed);
                self.segment.written = acked;
                self.segment.allocated = acked;
            }
            // Limitation: if the cut fails too, the unacknowledged records may still be on
            // disk, and a restart without a crash would replay them.
            Err(cut_err) => tracing::error!(
                segment = %self.segment.path.display(),
                error = %cut_err,
                "could not cut unacknowledged records off the log"
            ),
        }
        self.shared.fail(reason);
    }
}
