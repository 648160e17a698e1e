//! Compaction: a checkpoint of the live state replaces the log written before it, so disk
//! use and startup time follow the live data, not the history.
//!
//! A checkpoint is consistent without stopping traffic:
//!
//! - Step A, under the catalog write lock (no I/O, O(queues)): ask the log to roll, note
//!   `catalog_lsn`, the last LSN before the roll, and copy the list of queues. Every record
//!   up to `catalog_lsn` lies in the segments the roll seals; the checkpoint replaces them.
//! - Step B, queue by queue, under the catalog read lock and that queue's mutex only: note
//!   the queue's LSN `L_q` (the last appended: records are applied under the same mutex, so
//!   every record of the queue up to `L_q` is applied and none after it), clone its
//!   messages and dead letters (payloads are shared, or addresses in the log), release,
//!   encode outside the locks, reading the payloads that are in the log.
//! - Step C, after the commit, queue by queue under its mutex: every message and dead
//!   letter whose payload was read from the log is pointed at its copy in the new
//!   checkpoint, if it still points where the snapshot found it; only then does the log
//!   drop its read handles of the deleted files. Messages published after `L_q` are in
//!   segments the checkpoint does not replace and keep their address.
//!
//! Replay loads the checkpoint, then skips each log record the checkpoint already holds:
//! a queue-level record of queue `q` up to `L_q`, a catalog-level record up to
//! `catalog_lsn`. Records after the roll but before `L_q` stay in the log (the segments
//! after the roll are kept) and are skipped by that rule.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::catalog::{queue_of, Queue};
use super::payload::{Payload, Spill};
use super::queue::{snapshot_dead_letter, snapshot_message, Message};
use super::record::{MsgId, PublishedMessage, Record};
use super::types::Priority;
use super::{storage_err, Engine, EngineError, Result};
use crate::wal::{BodyAt, CheckpointWriter, LogLoc, CHECKPOINT_LSN};

/// Default for `EngineOptions::compaction_ratio`.
pub const DEFAULT_COMPACTION_RATIO: f64 = 0.5;
/// Default for `EngineOptions::compaction_nice`.
pub const DEFAULT_COMPACTION_NICE: i32 = 19;

/// A snapshot record is cut once its messages reach about this many bytes.
/// Requirements: PER-0025
const CHUNK_BYTES: usize = 256 << 10;
/// Fixed bytes a snapshot message costs besides payload, priority and consumer, roughly.
const MESSAGE_OVERHEAD: usize = 48;

/// What one compaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactionReport {
    pub queues: u64,
    /// Messages (ready and locked) and dead letters written to the checkpoint.
    pub messages: u64,
    pub dead_letters: u64,
    /// Log bytes (segments and checkpoint) just before the commit and after the deletions.
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub checkpoint_bytes: u64,
    /// Segment and old checkpoint bytes deleted, minus the new checkpoint.
    pub reclaimed_bytes: u64,
    pub segments_deleted: usize,
    pub took: Duration,
}

/// The engine's compaction state.
pub(super) struct Compactor {
    /// Share of dead bytes in the log above which compaction runs.
    pub ratio: f64,
    /// The engine itself, to hand to a background thread.
    pub me: Weak<Engine>,
    /// Nice value (0 to 19) of the compaction thread.
    pub nice: i32,
    /// Held for the whole of a compaction: one at a time.
    pub running: Mutex<()>,
    /// True from the moment the trigger decides to run until the run ends.
    scheduled: AtomicBool,
}

impl Compactor {
    pub fn new(ratio: f64, nice: i32) -> Compactor {
        Compactor {
            ratio,
            nice: nice.clamp(0, 19),
            me: Weak::new(),
            running: Mutex::new(()),
            scheduled: AtomicBool::new(false),
        }
    }
}

/// Decides, record by record, what of the log a loaded checkpoint already holds.
#[derive(Default)]
pub(super) struct ReplayFilter {
    catalog_lsn: u64,
    queue_lsn: HashMap<u64, u64>,
    /// The highest of them all: records above it pass without a look inside.
    max_lsn: u64,
}

impl ReplayFilter {
    /// The part of `rec`, read at `lsn`, that replay must still apply.
    pub fn admit(&mut self, lsn: u64, rec: Record) -> Option<Record> {
        if lsn == CHECKPOINT_LSN {
            match &rec {
                Record::QueueSnapshot { qid, lsn, .. } => {
                    self.queue_lsn.insert(*qid, *lsn);
                    self.max_lsn = self.max_lsn.max(*lsn);
                }
                Record::Checkpoint { catalog_lsn, .. } => {
                    self.catalog_lsn = *catalog_lsn;
                    self.max_lsn = self.max_lsn.max(*catalog_lsn);
                }
                _ => {}
            }
            return Some(rec);
        }
        if lsn > self.max_lsn {
            return Some(rec);
        }
        self.keep(lsn, rec)
    }

    fn keep(&self, lsn: u64, rec: Record) -> Option<Record> {
        match rec {
            Record::Group(recs) => {
                let kept: Vec<Record> =
                    recs.into_iter().filter_map(|r| self.keep(lsn, r)).collect();
                (!kept.is_empty()).then_some(Record::Group(kept))
            }
            Record::QueueCreated { .. }
            | Record::QueueRenamed { .. }
            | Record::QueueDeleted { .. } => (lsn > self.catalog_lsn).then_some(rec),
            other => {
                let covered = queue_of(&other)
                    .and_then(|qid| self.queue_lsn.get(&qid))
                    .is_some_and(|l| lsn <= *l);
                (!covered).then_some(other)
            }
        }
    }
}

/// Accumulates snapshot messages into records of a bounded size, and notes where the
/// payloads that were in the log land in the checkpoint.
struct Chunker<'a> {
    out: &'a mut CheckpointWriter,
    bytes: usize,
    /// Messages of the chunk being filled whose payload is in the log, and where.
    logged: Vec<(MsgId, LogLoc)>,
    /// Of the queue's chunks written: message, where its payload was, where it is now.
    moved: Vec<(MsgId, LogLoc, LogLoc)>,
}

impl Chunker<'_> {
    fn full(&self) -> bool {
        self.bytes >= CHUNK_BYTES
    }

    /// Notes a message of the next chunk whose payload text reads from the log at `loc`.
    fn note(&mut self, m: &Message) {
        if let Payload::Logged(loc) = m.payload {
            self.logged.push((m.id, loc));
        }
    }

    /// Requirements: SYS-0034
    fn write(&mut self, rec: &Record) -> Result<()> {
        self.bytes = 0;
        let body = rec.encode();
        let offset = self.out.append(&body).map_err(storage_err)?;
        if self.logged.is_empty() {
            return Ok(());
        }
        let at = BodyAt::Checkpoint { id: self.out.id(), offset };
        let spill = Spill::for_addresses(at, rec, &body);
        let published: Vec<&PublishedMessage> = match rec {
            Record::MessagesSnapshot { msgs, .. } => msgs.iter().map(|s| &s.msg).collect(),
            Record::DeadLettersSnapshot { dead, .. } => dead.iter().map(|d| &d.msg).collect(),
            _ => Vec::new(),
        };
        let mut logged = std::mem::take(&mut self.logged).into_iter().peekable();
        for p in published {
            let Some((id, from)) = logged.next_if(|(id, _)| *id == p.id) else { continue };
            // Every payload that was in the log must be found in the checkpoint: the files
            // it was in are deleted after the commit.
            let Some(to) = spill.address(p) else {
                return Err(EngineError::StorageUnavailable(
                    "a payload is not where the checkpoint layout puts it".into(),
                ));
            };
            self.moved.push((id, from, to));
        }
        Ok(())
    }
}

impl Engine {
    /// Writes a checkpoint of the live state and deletes the log it replaces. Blocks (run
    /// it on a blocking thread); traffic continues meanwhile. Waits for a compaction
    /// already running to finish first. `StorageUnavailable` in memory mode or when the
    /// log fails; a failed compaction leaves the log as it was, or with the checkpoint
    /// in place, both complete. With nothing logged since the live checkpoint it does
    /// nothing (and counts no run): its report shows no messages and nothing deleted.
    pub fn compact(&self) -> Result<CompactionReport> {
        self.compact_pausing(&mut || {})
    }

    /// [`Engine::compact`], calling `between` after step A and before step B: tests use it
    /// to put traffic in the window that replay must not apply twice.
    /// Requirements: PER-0020, PER-0021, PER-0026
    #[doc(hidden)]
    pub fn compact_pausing(&self, between: &mut dyn FnMut()) -> Result<CompactionReport> {
        let Some(log) = &self.log else {
            return Err(EngineError::StorageUnavailable("no log to compact".into()));
        };
        let _running = self.compactor.running.lock();
        let started = Instant::now();

        // Step A.
        let (roll, queues) = {
            let cat = self.catalog.write();
            let roll = log.roll().map_err(storage_err)?;
            let queues: Vec<(u64, String, Arc<Queue>)> = cat
                .by_name
                .iter()
                .filter_map(|(name, qid)| Some((*qid, name.clone(), cat.queues.get(qid)?.clone())))
                .collect();
            (roll, queues)
        };
        let catalog_lsn = roll.lsn();
        let covers_below = roll.wait().map_err(storage_err)?;
        // The roll is skipped when nothing was logged since the last one. If that last roll
        // was a checkpoint's, the live checkpoint already holds the whole state, and a new
        // one would have to take its id, while addresses into the old file stay in use.
        if log.has_checkpoint(covers_below) {
            return Ok(Self::nothing_to_compact(log.stats(), started));
        }
        let mut out = log.begin_checkpoint(covers_below, catalog_lsn + 1).map_err(storage_err)?;
        between();

        // Step B.
        let (mut messages, mut dead_letters, mut written_queues) = (0, 0, 0);
        // Limitation: one entry (48 bytes) per payload moved into the checkpoint is
        // held until the commit, on top of each queue's copy while it is encoded.
        let mut moves = Vec::new();
        for (qid, name, q) in queues {
            let (lsn, config, msgs, dead) = {
                let cat = self.catalog.read();
                // Deleted since step A: its deletion is in the log after `catalog_lsn`.
                if !cat.queues.contains_key(&qid) {
                    continue;
                }
                let st = q.state.lock();
                // Limitation: the copy is O(messages of this queue) under its mutex (about
                // 50 ms per million messages in release builds), and the whole copy is held
                // in memory until encoded. Traffic to other queues is not held up.
                let (msgs, dead) = st.snapshot();
                (log.last_lsn(), st.config.clone(), msgs, dead)
            };
            written_queues += 1;
            messages += msgs.len() as u64;
            dead_letters += dead.len() as u64;

            let mut chunker =
                Chunker { out: &mut out, bytes: 0, logged: Vec::new(), moved: Vec::new() };
            chunker.write(&Record::QueueSnapshot { qid, name, config, lsn })?;
            let mut batch = Vec::new();
            for m in &msgs {
                // A payload in the log is read here, outside every lock (waiting for its
                // record to be durable if need be).
                chunker.note(m);
                let snap = snapshot_message(m, self.payload_text(&m.payload)?);
                chunker.bytes += MESSAGE_OVERHEAD + snap.msg.payload.len();
                chunker.bytes += text_len(&snap.msg.priority);
                batch.push(snap);
                if chunker.full() {
                    let msgs = std::mem::take(&mut batch);
                    chunker.write(&Record::MessagesSnapshot { qid, msgs })?;
                }
            }
            if !batch.is_empty() {
                chunker.write(&Record::MessagesSnapshot { qid, msgs: batch })?;
            }
            let mut batch = Vec::new();
            for dl in &dead {
                chunker.note(&dl.msg);
                let snap = snapshot_dead_letter(dl, self.payload_text(&dl.msg.payload)?);
                chunker.bytes += MESSAGE_OVERHEAD + snap.msg.payload.len();
                chunker.bytes += text_len(&snap.msg.priority);
                batch.push(snap);
                if chunker.full() {
                    let dead = std::mem::take(&mut batch);
                    chunker.write(&Record::DeadLettersSnapshot { qid, dead })?;
                }
            }
            if !batch.is_empty() {
                chunker.write(&Record::DeadLettersSnapshot { qid, dead: batch })?;
            }
            moves.push((q, chunker.moved));
        }

        // Every sequence number handed out so far is below the counter: tokens and
        // messages the snapshots hold, and those of records replay will skip.
        let max_seq = self.seq.load(AtomicOrdering::SeqCst).saturating_sub(1);
        let max_qid = self.catalog.read().max_qid;
        let end = Record::Checkpoint { catalog_lsn, max_qid, max_seq };
        out.append(&end.encode()).map_err(storage_err)?;

        // The snapshots reflect records up to the last LSN; those must be durable before
        // the checkpoint is, or a crash could lose them from the log while the checkpoint
        // says they are there (and the next records would reuse their LSNs).
        let durable = log.sync().map_err(storage_err)?;
        // Limitation: a commit that fails after its rename leaves the payloads pointing at
        // the replaced files, which stay open (and use disk) until a compaction succeeds.
        let done = out.commit(durable).map_err(storage_err)?;

        // Step C: payloads that were in the files just deleted now point into the
        // checkpoint, under each queue's mutex. The deleted files stay readable through
        // the log's open handles until the last line here, so a reader that took an old
        // address before it moved can still read it, or find the new one (see
        // `Engine::read_delivered`). Messages published after the snapshot are in segments
        // the checkpoint does not replace and keep their address.
        for (q, moved) in &moves {
            let mut st = q.state.lock();
            for (id, from, to) in moved {
                st.repoint(id, *from, *to);
            }
        }
        drop(moves);
        log.forget_below(covers_below);

        let report = CompactionReport {
            queues: written_queues,
            messages,
            dead_letters,
            bytes_before: done.bytes_before,
            bytes_after: done.bytes_after,
            checkpoint_bytes: done.checkpoint_bytes,
            reclaimed_bytes: done.deleted_bytes.saturating_sub(done.checkpoint_bytes),
            segments_deleted: done.segments_deleted,
            took: started.elapsed(),
        };
        tracing::info!(
            millis = report.took.as_millis() as u64,
            queues = report.queues,
            messages = report.messages,
            dead_letters = report.dead_letters,
            bytes_before = report.bytes_before,
            bytes_after = report.bytes_after,
            checkpoint_bytes = report.checkpoint_bytes,
            reclaimed_bytes = report.reclaimed_bytes,
            segments_deleted = report.segments_deleted,
            "compacted the log"
        );
        Ok(report)
    }

    /// The report of a compaction that found nothing logged since the live checkpoint.
    /// Requirements: PER-0026
    fn nothing_to_compact(stats: crate::wal::WalStats, started: Instant) -> CompactionReport {
        tracing::debug!("nothing logged since the last checkpoint; compaction skipped");
        CompactionReport {
            queues: 0,
            messages: 0,
            dead_letters: 0,
            bytes_before: stats.bytes_on_disk,
            bytes_after: stats.bytes_on_disk,
            checkpoint_bytes: stats.checkpoint_bytes,
            reclaimed_bytes: 0,
            segments_deleted: 0,
            took: started.elapsed(),
        }
    }

    /// An estimate of the bytes the live state takes in a checkpoint: messages and dead
    /// letters counted exactly, their size estimated from a sample of each queue.
    // Limitation: the sample is the first few ready messages of each queue; a queue whose
    // head differs in size from the rest skews the estimate (and so when compaction runs,
    // never whether what it writes is correct).
    pub fn live_bytes_estimate(&self) -> u64 {
        const SAMPLE: usize = 16;
        let cat = self.catalog.read();
        let mut total = 0u64;
        for q in cat.queues.values() {
            let st = q.state.lock();
            let items = st.len() + st.dead_len();
            if items == 0 {
                continue;
            }
            let sample = st.peek_ready(SAMPLE);
            let sizes: Vec<usize> = sample
                .iter()
                .filter_map(|id| st.get(id))
                .map(|m| m.payload.len() + text_len(&m.priority))
                .collect();
            let avg = match sizes.len() {
                0 => 64,
                n => sizes.iter().sum::<usize>() / n,
            };
            total += items * (avg + MESSAGE_OVERHEAD) as u64 + 64;
        }
        total
    }

    /// True when the sealed part of the log is worth compacting: there is a sealed segment,
    /// and more than `compaction_ratio` of the log is dead.
    /// Requirements: PER-0020, PER-0022
    pub fn compaction_due(&self) -> bool {
        let Some(log) = &self.log else { return false };
        let stats = log.stats();
        if stats.sealed_bytes == 0 || stats.read_only {
            return false;
        }
        let live = self.live_bytes_estimate();
        let dead = stats.bytes_on_disk.saturating_sub(live);
        dead as f64 > self.compactor.ratio * stats.bytes_on_disk as f64
    }

    /// Starts a compaction on a thread of its own when one is due and none is running. Returns
    /// whether it started one. Called from the 1 s background tick.
    /// Requirements: PER-0022
    pub fn maybe_compact(&self) -> bool {
        if self.compactor.scheduled.load(AtomicOrdering::SeqCst) || !self.compaction_due() {
            return false;
        }
        if self.compactor.scheduled.swap(true, AtomicOrdering::SeqCst) {
            return false;
        }
        let Some(engine) = self.compactor.me.upgrade() else {
            self.compactor.scheduled.store(false, AtomicOrdering::SeqCst);
            return false;
        };
        let run = move || {
            // Cleared on the way out, a panic included, or compaction would never run again.
            let _scheduled = ClearOnDrop(&engine.compactor.scheduled);
            if let Err(e) = engine.compact_at_low_priority() {
                tracing::error!(error = %e, "compaction failed");
            }
        };
        // Its own thread, never a pooled one: a lowered priority cannot be raised again
        // without privileges, so a pooled thread would keep it for unrelated work.
        if let Err(e) = std::thread::Builder::new().name("compaction".into()).spawn(run) {
            tracing::error!(error = %e, "could not start a compaction thread");
            self.compactor.scheduled.store(false, AtomicOrdering::SeqCst);
            return false;
        }
        true
    }

    /// [`Engine::compact`] on a thread of its own, whose CPU priority it first lowers, for
    /// good, to the `compaction_nice` option.
    /// Requirements: PER-0030
    pub fn compact_at_low_priority(&self) -> Result<CompactionReport> {
        lower_thread_priority(self.compactor.nice);
        self.compact()
    }

    /// True while a compaction started by [`Engine::maybe_compact`] runs.
    pub fn compaction_running(&self) -> bool {
        self.compactor.scheduled.load(AtomicOrdering::SeqCst)
    }
}

/// Lowers the calling thread's CPU priority to `nice`. On a machine with few cores the
/// checkpoint's encoding competes with request handling for the same CPUs; at a higher nice
/// value the scheduler serves requests first and compaction takes the time left over, so
/// it takes longer under load rather than delaying requests.
/// Requirements: PER-0030
fn lower_thread_priority(nice: i32) {
    if nice <= 0 {
        return;
    }
    // SAFETY: plain system calls with no pointers; on Linux PRIO_PROCESS with a thread id
    // sets the priority of that thread only.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
    };
    if rc != 0 {
        tracing::warn!(
            nice,
            error = %std::io::Error::last_os_error(),
            "could not lower the compaction thread's priority"
        );
    }
}

struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, AtomicOrdering::SeqCst);
    }
}

fn text_len(priority: &Priority) -> usize {
    match priority {
        Priority::Num(_) => 0,
        Priority::Text(t) => t.len(),
    }
}
