//! The queue engine: every queue's state, the record type that changes it, and the one
//! function that applies a record. Live traffic and log replay go through that same
//! function, so what a restart rebuilds is what clients saw.

mod catalog;
mod compaction;
mod dlq;
pub mod error;
mod index;
mod inspect;
pub mod limits;
mod messages;
mod names;
mod payload;
mod queue;
mod rates;
pub mod record;
mod table;
mod txn;
pub mod types;

use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Instant;

pub use compaction::{CompactionReport, DEFAULT_COMPACTION_NICE, DEFAULT_COMPACTION_RATIO};
pub use error::EngineError;
pub use inspect::{DeadLetterDump, MessageDump, QueueDump};
pub use types::*;

use parking_lot::RwLock;

use self::catalog::{Catalog, Queue};
use self::compaction::{Compactor, ReplayFilter};
use self::limits::{Limits, MemoryGauge};
use self::payload::Spill;
use self::queue::QueueState;
use self::rates::Rates;
use self::record::Record;
use self::txn::{Pending, Txn};
use crate::clock::Clock;
use crate::wal::{self, FileSystem, Ticket, Wal, WalOptions};

pub use self::names::validate_queue_name;
pub use self::txn::Applied;

/// Where the engine keeps its records.
/// Requirements: PER-0027
#[derive(Clone, Debug)]
pub enum StorageConfig {
    /// No log at all: volatile.
    Memory,
    /// The write-ahead log.
    Wal(WalOptions),
}

/// Engine settings. Limits of 0 mean "no limit".
#[derive(Clone)]
pub struct EngineOptions {
    pub storage: StorageConfig,
    pub clock: Arc<dyn Clock>,
    pub max_queues: usize,
    pub max_messages_per_queue: usize,
    /// Largest payload of one message, in bytes.
    pub max_payload_bytes: usize,
    /// Most bytes queued messages may hold (payload plus an overhead estimate each).
    pub max_memory_bytes: u64,
    /// The file layer under the log; `None` means the real file system.
    pub fs: Option<Arc<dyn FileSystem>>,
    /// Compaction runs (from `sample_metrics`) once more than this share of the log's bytes
    /// is dead and a sealed segment exists. Default 0.5; 1.0 or more never compacts.
    pub compaction_ratio: f64,
    /// With a log, payloads longer than this are not kept in RAM but read back from the
    /// log on delivery. Default [`DEFAULT_SPILL_PAYLOAD_BYTES`]; 0 keeps every payload in
    /// RAM.
    pub spill_payload_bytes: usize,
    /// Nice value (0 to 19) of the compaction thread: 0 competes with requests on equal
    /// terms. Default [`DEFAULT_COMPACTION_NICE`].
    pub compaction_nice: i32,
}

/// Default for `EngineOptions::spill_payload_bytes`.
pub const DEFAULT_SPILL_PAYLOAD_BYTES: usize = 64;

impl EngineOptions {
    /// Defaults: the real clock, no limits, the real file system.
    pub fn new(storage: StorageConfig) -> EngineOptions {
        EngineOptions {
            storage,
            clock: Arc::new(crate::clock::SystemClock),
            max_queues: 0,
            max_messages_per_queue: 0,
            max_payload_bytes: 0,
            max_memory_bytes: 0,
            fs: None,
            compaction_ratio: DEFAULT_COMPACTION_RATIO,
            spill_payload_bytes: DEFAULT_SPILL_PAYLOAD_BYTES,
            compaction_nice: DEFAULT_COMPACTION_NICE,
        }
    }
}

/// Longest lock a consume or renew may ask for: 12 hours.
pub const MAX_TIMEOUT_SECS: u64 = 43_200;
/// Longest long-poll wait.
pub const MAX_WAIT_SECS: u64 = 20;
/// Most messages one consume-batch may take.
pub const MAX_CONSUME_BATCH: usize = 1000;
/// Default `max_retries` of a message.
pub const DEFAULT_MAX_RETRIES: u32 = 3;

pub type Result<T> = std::result::Result<T, EngineError>;

#[derive(Default)]
struct GlobalCounters {
    published: AtomicU64,
    acked: AtomicU64,
    nacked: AtomicU64,
    expired: AtomicU64,
    dead_lettered: AtomicU64,
}

/// The queue engine. Shared behind an `Arc` by every connection.
///
/// Locking: the catalog `RwLock` is read-held for the whole of every queue operation and
/// write-held by operations that add, remove or rename queues; each queue has its own
/// mutex. Records are logged while those locks are held, so the log order is the order in
/// which changes took effect; waiting for durability happens after every lock is released.
/// Requirements: SYS-0001, SYS-0002
pub struct Engine {
    catalog: RwLock<Catalog>,
    log: Option<Wal>,
    clock: Arc<dyn Clock>,
    /// Message sequence numbers and lock tokens come from this one counter.
    seq: AtomicU64,
    rates: Rates,
    totals: GlobalCounters,
    limits: Limits,
    /// The catalog's memory gauge, read without the catalog lock.
    memory: Arc<MemoryGauge>,
    compactor: Compactor,
    /// Payloads above this many bytes stay in the log (0: none; always 0 without a log).
    spill_above: usize,
}

/// Requirements: SYS-0030
fn storage_err(e: wal::WalError) -> EngineError {
    match e {
        wal::WalError::RecordTooLarge { .. } => EngineError::RecordTooLarge(e.to_string()),
        _ => EngineError::StorageUnavailable(e.to_string()),
    }
}

impl Engine {
    /// Opens the engine: with a log, replays it first.
    pub fn open(opts: EngineOptions) -> std::result::Result<Arc<Engine>, String> {
        let memory = Arc::new(MemoryGauge::default());
        let catalog = Catalog { gauge: memory.clone(), ..Catalog::default() };
        let mut engine = Engine {
            catalog: RwLock::new(catalog),
            log: None,
            clock: opts.clock.clone(),
            seq: AtomicU64::new(1),
            rates: Rates::default(),
            totals: GlobalCounters::default(),
            limits: Limits {
                max_queues: opts.max_queues,
                max_messages_per_queue: opts.max_messages_per_queue,
                max_payload_bytes: opts.max_payload_bytes,
                max_memory_bytes: opts.max_memory_bytes,
            },
            memory,
            spill_above: 0,
            compactor: Compactor::new(opts.compaction_ratio, opts.compaction_nice),
        };
        if let StorageConfig::Wal(wal_opts) = opts.storage {
            engine.spill_above = opts.spill_payload_bytes;
            engine.replay(wal_opts, opts.fs.unwrap_or_else(wal::real_fs))?;
        }
        // The compaction trigger hands the engine itself to a background thread.
        Ok(Arc::new_cyclic(|me| {
            engine.compactor.me = me.clone();
            engine
        }))
    }

    /// Rebuilds every queue from the log through `Catalog::apply`, the same function live
    /// traffic goes through: the checkpoint first, then the log records it does not hold.
    /// Requirements: PER-0012, PER-0013, PER-0017
    fn replay(
        &mut self,
        opts: WalOptions,
        fs: Arc<dyn FileSystem>,
    ) -> std::result::Result<(), String> {
        let started = Instant::now();
        let dir = opts.dir.clone();
        let now = self.clock.now_ms();
        let rates = &self.rates;
        let counters = |name: &str| rates.counters(name, now);
        let catalog = self.catalog.get_mut();
        let mut filter = ReplayFilter::default();
        catalog.replaying = true;
        let spill_above = self.spill_above;
        let mut visit = |at: wal::BodyAt, body: &[u8], log: &wal::Locator| {
            let rec = Record::decode(body).map_err(|e| format!("undecodable record: {e}"))?;
            // Payload offsets are taken before the filter drops the parts already applied.
            let spill = Spill::new(spill_above, at, &rec, body);
            if let Some(rec) = filter.admit(at.lsn(), rec) {
                payload::materialize_before(catalog, &rec, &mut |loc| {
                    payload::text(log.read(loc).map_err(|e| e.to_string())?)
                })?;
                catalog.apply_from(&rec, &counters, Some(&spill));
            }
            Ok(())
        };
        let (log, summary) = Wal::open_addressed(opts, fs, &mut visit)
            .map_err(|e| format!("cannot open the log in {}: {e}", dir.display()))?;
        catalog.finish_replay();
        self.seq.store(catalog.max_seq + 1, AtomicOrdering::SeqCst);
        let messages: u64 = catalog.queues.values().map(|q| q.state.lock().len()).sum();
        tracing::info!(
            dir = %dir.display(),
            segments = summary.segments,
            records = summary.records,
            checkpoint_records = summary.checkpoint_records,
            bytes = summary.bytes,
            queues = catalog.queues.len(),
            messages,
            millis = started.elapsed().as_millis() as u64,
            "recovered the log"
        );
        self.log = Some(log);
        Ok(())
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// True when the engine runs with no log.
    pub fn is_volatile(&self) -> bool {
        self.log.is_none()
    }

    /// Statistics of the log, when there is one.
    pub fn wal_stats(&self) -> Option<wal::WalStats> {
        self.log.as_ref().map(Wal::stats)
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, AtomicOrdering::Relaxed)
    }

    /// Hands a record to the log (memory mode: nothing to do).
    fn log_append(&self, rec: &Record) -> Result<Option<Ticket>> {
        Ok(self.log_append_body(rec)?.map(|(ticket, _)| ticket))
    }

    /// [`Engine::log_append`], also returning the encoded body.
    fn log_append_body(&self, rec: &Record) -> Result<Option<(Ticket, Vec<u8>)>> {
        match &self.log {
            Some(log) => {
                let body = rec.encode();
                let ticket = log.append(&body).map_err(storage_err)?;
                Ok(Some((ticket, body)))
            }
            None => Ok(None),
        }
    }

    /// Logs and applies a catalog-level record; the caller holds the catalog write lock.
    fn emit_catalog(&self, cat: &mut Catalog, rec: Record) -> Result<Pending> {
        let ticket = self.log_append(&rec)?;
        let now = self.clock.now_ms();
        cat.apply(&rec, &|name| self.rates.counters(name, now));
        Ok(match ticket {
            Some(t) => Pending::from_ticket(t),
            None => Pending::none(),
        })
    }

    fn count_expiry(&self, expired: u64, dead: u64) {
        self.totals.expired.fetch_add(expired, AtomicOrdering::Relaxed);
        self.totals.dead_lettered.fetch_add(dead, AtomicOrdering::Relaxed);
    }

    /// Creates a queue. `QueueExists` if it exists already (config untouched).
    /// Requirements: API-0008, SCH-0001
    pub async fn create_queue(&self, name: &str, config: QueueConfig) -> Result<()> {
        validate_queue_name(name)?;
        let pending = {
            let mut cat = self.catalog.write();
            if cat.get(name).is_some() {
                return Err(EngineError::QueueExists(name.to_string()));
            }
            self.check_queue_limit(&cat)?;
            let qid = cat.max_qid + 1;
            self.emit_catalog(&mut cat, Record::QueueCreated { qid, name: name.into(), config })?
        };
        pending.wait().await
    }

    fn check_queue_limit(&self, cat: &Catalog) -> Result<()> {
        self.limits.check_queue_count(cat.queues.len())
    }

    /// Bytes held by queued messages and dead letters, as the memory limit counts them.
    /// Requirements: SYS-0026
    pub fn memory_held(&self) -> u64 {
        self.memory.held()
    }

    /// Publishes the memory limit refused since start.
    pub fn memory_refusals(&self) -> u64 {
        self.memory.refusals()
    }

    /// The limit `memory_held` is checked against; 0 means none.
    pub fn memory_limit(&self) -> u64 {
        self.limits.max_memory_bytes
    }

    /// Makes sure `name` exists, creating it with the default config (a publish to an
    /// unknown queue).
    /// Requirements: API-0014, SCH-0001
    // Limitation: the implicit creation is its own log record, ahead of the publish. A
    // publish that fails with 503 (or a crash before its reply) can leave the new, empty
    // queue behind after a restart; the crash fuzzer's model allows exactly that.
    fn ensure_queue(&self, name: &str) -> Result<Pending> {
        if self.catalog.read().get(name).is_some() {
            return Ok(Pending::none());
        }
        let mut cat = self.catalog.write();
        if cat.get(name).is_some() {
            return Ok(Pending::none());
        }
        self.check_queue_limit(&cat)?;
        let qid = cat.max_qid + 1;
        let config = QueueConfig::default();
        self.emit_catalog(&mut cat, Record::QueueCreated { qid, name: name.into(), config })
    }

    /// Renames and/or changes `allow_duplicates`. Ordering and priority kind are fixed.
    /// Requirements: API-0009, API-0010
    pub async fn update_queue(
        &self,
        name: &str,
        new_name: Option<&str>,
        allow_duplicates: Option<bool>,
    ) -> Result<()> {
        if name.trim().is_empty() {
            return Err(EngineError::InvalidQueueName("name is empty or blank".into()));
        }
        let pending = {
            let mut cat = self.catalog.write();
            let Some(q) = cat.get(name).cloned() else {
                return Err(EngineError::QueueNotFound(name.to_string()));
            };
            // Turning duplicates off keeps every locked copy: settle the expired locks first,
            // so that one whose retries ran out counts as the dead letter it is.
            let expiry = match allow_duplicates {
                Some(false) => self.settle_expired(&q)?,
                _ => Pending::none(),
            };
            let (qid, current_dups) = {
                let st = q.state.lock();
                (st.qid, st.config.allow_duplicates)
            };
            let mut recs = Vec::new();
            if let Some(to) = new_name {
                validate_queue_name(to)?;
                if to != name {
                    if cat.get(to).is_some() {
                        return Err(EngineError::QueueExists(to.to_string()));
                    }
                    recs.push(Record::QueueRenamed { qid, name: to.to_string() });
                }
            }
            if let Some(allow) = allow_duplicates.filter(|a| *a != current_dups) {
                if !allow {
                    self.materialize(&q)?;
                }
                recs.push(Record::DuplicatesChanged { qid, allow_duplicates: allow });
            }
            let renamed_to = recs.iter().find_map(|r| match r {
                Record::QueueRenamed { name, .. } => Some(name.clone()),
                _ => None,
            });
            if let Some(to) = &renamed_to {
                self.rates.rename(name, to, self.clock.now_ms());
            }
            let removed = match recs.len() {
                0 => return Ok(()),
                1 => {
                    let rec = recs.pop().unwrap();
                    self.emit_catalog_counted(&mut cat, rec)?
                }
                _ => self.emit_catalog_counted(&mut cat, Record::Group(recs))?,
            };
            if removed.1 > 0 {
                tracing::info!(
                    queue = renamed_to.as_deref().unwrap_or(name),
                    removed = removed.1,
                    "removed duplicate payloads"
                );
            }
            expiry.then(removed.0)
        };
        pending.wait().await
    }

    /// Settles the queue's expired locks, for operations that do not go through a `Txn`.
    /// Expiry is exact: whatever an operation sees, a lock past its deadline is already
    /// back in the queue or a dead letter (the crash fuzzer found purge, delete, turning
    /// duplicates off and publish's duplicate check seeing it still locked).
    /// Requirements: DLV-0007
    fn settle_expired(&self, q: &Queue) -> Result<Pending> {
        let mut txn = Txn::begin(self, q);
        txn.expire_due(self.clock.now_ms())?;
        Ok(txn.finish())
    }

    fn emit_catalog_counted(&self, cat: &mut Catalog, rec: Record) -> Result<(Pending, u64)> {
        let ticket = self.log_append(&rec)?;
        let now = self.clock.now_ms();
        let fx = cat.apply(&rec, &|n| self.rates.counters(n, now));
        let pending = ticket.map_or_else(Pending::none, Pending::from_ticket);
        Ok((pending, fx.removed))
    }

    /// Deletes a queue with its messages and dead letters. Unknown queue: Ok(0).
    /// Requirements: API-0011
    pub async fn delete_queue(&self, name: &str) -> Result<u64> {
        validate_queue_name(name)?;
        let (pending, removed) = {
            let mut cat = self.catalog.write();
            let Some(q) = cat.get(name).cloned() else { return Ok(0) };
            // The count leaves out a lock that ran out of retries: it is a dead letter.
            let expiry = self.settle_expired(&q)?;
            let qid = q.state.lock().qid;
            let (pending, removed) =
                self.emit_catalog_counted(&mut cat, Record::QueueDeleted { qid })?;
            (expiry.then(pending), removed)
        };
        pending.wait().await?;
        tracing::info!(queue = name, messages = removed, "deleted queue");
        Ok(removed)
    }

    /// Removes every message (locked ones too); keeps config and dead letters.
    /// Requirements: API-0012
    pub async fn purge_queue(&self, name: &str) -> Result<u64> {
        validate_queue_name(name)?;
        let (pending, removed) = {
            let cat = self.catalog.read();
            let Some(q) = cat.get(name) else { return Ok(0) };
            let mut txn = Txn::begin(self, q);
            // Expiry is exact: a lock that ran out with its retries used up made a dead
            // letter, which a purge keeps (found by the crash fuzzer).
            txn.expire_due(self.clock.now_ms())?;
            let qid = txn.qid();
            let fx = txn.emit(Record::QueuePurged { qid })?;
            (txn.finish(), fx.removed)
        };
        pending.wait().await?;
        tracing::info!(queue = name, messages = removed, "purged queue");
        Ok(removed)
    }

    /// Purges every queue: (queues, messages).
    pub async fn purge_all(&self) -> Result<(u64, u64)> {
        let (mut queues, mut messages) = (0, 0);
        for name in self.queue_names() {
            match self.purge_queue(&name).await {
                Ok(n) => {
                    queues += 1;
                    messages += n;
                }
                Err(e) => tracing::error!(queue = %name, error = %e, "purge failed"),
            }
        }
        tracing::info!(queues, messages, "purged all queues");
        Ok((queues, messages))
    }

    /// Deletes every queue: (queues, messages).
    pub async fn delete_all(&self) -> Result<(u64, u64)> {
        let (mut queues, mut messages) = (0, 0);
        for name in self.queue_names() {
            match self.delete_queue(&name).await {
                Ok(n) => {
                    queues += 1;
                    messages += n;
                }
                Err(e) => tracing::error!(queue = %name, error = %e, "delete failed"),
            }
        }
        tracing::info!(queues, messages, "deleted all queues");
        Ok((queues, messages))
    }

    pub fn queue_exists(&self, name: &str) -> bool {
        self.catalog.read().get(name).is_some()
    }

    /// Requirements: DLV-0014
    fn stats_of(&self, st: &QueueState, now_ms: u64) -> QueueStats {
        // Locks that expired but were not settled yet count as what they will become.
        let (requeue, dead) = st.due_lock_split(now_ms);
        let rates = self.rates.current(&st.name);
        QueueStats {
            name: st.name.clone(),
            available: st.ready_len() + requeue,
            locked: st.locked_len() - requeue - dead,
            dead_lettered: st.dead_len() + dead,
            config: st.config.clone(),
            publish_rate_per_sec: rates[0],
            ack_rate_per_sec: rates[1],
            nack_rate_per_sec: rates[2],
        }
    }

    /// Every existing queue, sorted by name (byte order).
    /// Requirements: API-0018
    pub fn stats(&self) -> Vec<QueueStats> {
        let now = self.clock.now_ms();
        let cat = self.catalog.read();
        cat.by_name
            .values()
            .filter_map(|qid| cat.queues.get(qid))
            .map(|q| self.stats_of(&q.state.lock(), now))
            .collect()
    }

    /// One queue's stats; unknown queue: zeros with the default config.
    /// Requirements: API-0019
    pub fn queue_stats(&self, name: &str) -> Result<QueueStats> {
        validate_queue_name(name)?;
        let now = self.clock.now_ms();
        let cat = self.catalog.read();
        Ok(match cat.get(name) {
            Some(q) => self.stats_of(&q.state.lock(), now),
            None => {
                let rates = self.rates.current(name);
                QueueStats {
                    name: name.to_string(),
                    available: 0,
                    locked: 0,
                    dead_lettered: 0,
                    config: QueueConfig::default(),
                    publish_rate_per_sec: rates[0],
                    ack_rate_per_sec: rates[1],
                    nack_rate_per_sec: rates[2],
                }
            }
        })
    }

    /// Sorted names of every existing queue.
    /// Requirements: API-0020
    pub fn queue_names(&self) -> Vec<String> {
        self.catalog.read().by_name.keys().cloned().collect()
    }

    /// The 1 s metrics series of a queue, oldest first (at most 61 points).
    /// An unknown queue's series is empty; a name no queue could have is refused, as
    /// every other route refuses it.
    pub fn metrics_series(&self, name: &str) -> Result<Vec<MetricPoint>> {
        validate_queue_name(name)?;
        Ok(self.rates.series(name))
    }

    /// Engine-wide event counters for `/metrics`.
    pub fn counters(&self) -> EngineCounters {
        let t = &self.totals;
        let get = |c: &AtomicU64| c.load(AtomicOrdering::Relaxed);
        EngineCounters {
            published: get(&t.published),
            acked: get(&t.acked),
            nacked: get(&t.nacked),
            expired: get(&t.expired),
            dead_lettered: get(&t.dead_lettered),
        }
    }

    /// One tick of the 1 s background work: settles expired locks in every queue (so stale
    /// holders are cleared and waiters woken), takes one metrics sample, and starts a
    /// compaction in the background when one is due.
    pub fn sample_metrics(&self) {
        let now = self.clock.now_ms();
        let queues: Vec<Arc<Queue>> = self.catalog.read().queues.values().cloned().collect();
        for q in &queues {
            let cat = self.catalog.read();
            let mut txn = Txn::begin(self, q);
            if let Err(e) = txn.expire_due(now) {
                let queue = &txn.state.name;
                tracing::error!(queue = %queue, error = %e, "settling expired locks failed");
            }
            // Durability of expiry records is not awaited: nobody was promised anything.
            let _ = txn.finish();
            drop(cat);
        }
        // Counted before sampling: the sampler holds the rates lock, which stats also take.
        let counts: std::collections::HashMap<String, (u64, u64)> =
            self.stats().into_iter().map(|s| (s.name.clone(), (s.total(), s.locked))).collect();
        self.rates.sample(now, |name| counts.get(name).copied());
        self.maybe_compact();
    }

    /// Resolves when a message may have become available in `queue` (publish, nack,
    /// expiry, redrive) or when `deadline` passes. Used by long polls and WebSocket
    /// subscriptions; callers re-check and call again.
    /// Requirements: DLV-0027, WS-0014
    pub async fn wait_available(&self, queue: &str, deadline: tokio::time::Instant) {
        let q = self.catalog.read().get(queue).cloned();
        let Some(q) = q else {
            // Limitation: nothing notifies a wait on a queue that does not exist yet; it
            // polls every 50 ms until the queue appears.
            let step = tokio::time::Instant::now() + std::time::Duration::from_millis(50);
            tokio::time::sleep_until(deadline.min(step)).await;
            return;
        };
        let notified = q.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now_ms = self.clock.now_ms();
        let (ready, next_lock) = {
            let st = q.state.lock();
            (st.ready_len() > 0 || !st.due_locks(now_ms).is_empty(), st.next_deadline())
        };
        if ready {
            return;
        }
        // A lock that expires makes its message available without any notification.
        let mut wake = deadline;
        if let Some(d) = next_lock {
            let in_ms = d.saturating_sub(now_ms).max(1);
            wake = wake.min(tokio::time::Instant::now() + std::time::Duration::from_millis(in_ms));
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(wake) => {}
        }
    }

    /// Makes every acknowledged write durable and stops the log writer.
    pub async fn shutdown(&self) {
        // A compaction in flight finishes first: it runs on a thread of its own that the
        // process exit would otherwise cut short, leaving a half-written checkpoint (safe,
        // but an ERROR line and wasted work).
        if let Some(engine) = self.compactor.me.upgrade() {
            let _ =
                tokio::task::spawn_blocking(move || drop(engine.compactor.running.lock())).await;
        }
        if let Some(log) = &self.log {
            if let Err(e) = log.close() {
                tracing::error!(error = %e, "closing the log failed");
            }
        }
    }
}
