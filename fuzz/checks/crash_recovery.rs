//! The `crash_recovery` check: a sequence of operations and crash points against the engine
//! on the simulated file system, compared with a plain model of the queue semantics.
//!
//! Shared by the fuzz target (fuzz/fuzz_targets/crash_recovery.rs) and the stable replay
//! test (tests/fuzz_corpus.rs).
//!
//! The model follows /work/shared/contract (semantics.md, changes.md): vectors and maps,
//! messages kept in delivery order by sorting, expiry exact (every operation on a queue
//! first settles the locks that expired by now). Every operation that succeeded must give
//! the reply the model predicts. At a crash the file system keeps only durable bytes
//! (optionally a torn part of the last unsynced write); the engine reopens in strict mode
//! and its whole state (queues, configs, messages in order with retry counts and locks,
//! dead letters) must equal the model fed with the acknowledged operations, plus the one
//! operation in flight at the crash, if any, wholly or not at all. Ids are not compared:
//! the model names messages by publish order and learns the engine's ids from its replies.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use qrusty::clock::{Clock, ManualClock};
use qrusty::engine::{
    Engine, EngineError, EngineOptions, Holder, NackOutcome, NewMessage, Ordering, Priority,
    PriorityKind, QueueConfig, QueueDump, StorageConfig,
};
use qrusty::wal::{CrashMode, Fault, FsyncPolicy, RecoveryMode, SimFs, WalOptions};

const QUEUES: [&str; 3] = ["a", "b", "c"];
const CONSUMERS: [&str; 2] = ["c0", "c1"];
const T0: u64 = 1_700_000_000_000;
/// A well-formed id that names no message.
const NO_SUCH_ID: &str = "00000000-0000-4000-8000-000000000000";

#[derive(Arbitrary, Debug, Clone)]
pub struct Scenario {
    /// Segment size in units of 128 bytes (plus one): small, so the log rolls often.
    pub segment_units: u8,
    pub ops: Vec<Op>,
}

#[derive(Arbitrary, Debug, Clone)]
pub enum Op {
    Create {
        q: u8,
        ordering: u8,
        dups: bool,
        text: bool,
    },
    Configure {
        q: u8,
        dups: bool,
    },
    Rename {
        q: u8,
        to: u8,
    },
    Publish {
        q: u8,
        prio: u8,
        payload: u8,
        retries: u8,
    },
    PublishBatch {
        q: u8,
        msgs: Vec<(u8, u8, u8)>,
    },
    Consume {
        q: u8,
        consumer: u8,
        max: u8,
        timeout: u8,
    },
    Ack {
        q: u8,
        pick: u8,
        consumer: u8,
    },
    Nack {
        q: u8,
        pick: u8,
        consumer: u8,
    },
    Renew {
        q: u8,
        pick: u8,
        consumer: u8,
        timeout: u8,
    },
    /// Moves the fake clock by this many milliseconds.
    Advance {
        ms: u16,
    },
    /// The 1 s background tick: settles expired locks in every queue.
    Tick,
    Redrive {
        q: u8,
        pick: Option<u8>,
    },
    DlqPurge {
        q: u8,
    },
    Purge {
        q: u8,
    },
    Delete {
        q: u8,
    },
    /// Compaction (a checkpoint plus deleting the segments it replaces), optionally with a
    /// publish in the window between its two steps.
    Compact {
        during: Option<(u8, u8, u8)>,
    },
    /// Freezes the file system after this many more mutations (mod 32).
    Halt {
        after: u8,
    },
    /// A power cut, then a restart: 0 durable only, 1 torn write, 2 zero-filled.
    Crash {
        mode: u8,
    },
    /// Makes the `nth` (mod 8, plus one) next call of a kind fail: a write (EIO), a write
    /// that fills the disk half-way, a file sync, a directory sync, a file creation.
    Fault {
        kind: u8,
        nth: u8,
    },
}

// ---------------------------------------------------------------------------------------
// The model.

#[derive(Clone, Debug, PartialEq)]
struct MMsg {
    seq: u64,
    prio: Priority,
    payload: String,
    max_retries: u32,
    retry: u32,
    lock: Option<(String, u64)>,
}

#[derive(Clone, Debug, PartialEq)]
struct MQueue {
    config: QueueConfig,
    /// Kept in delivery order.
    msgs: Vec<MMsg>,
    /// Oldest first, with the time each died.
    dead: Vec<(MMsg, u64)>,
}

fn cmp_key(config: &QueueConfig, a: &MMsg, b: &MMsg) -> std::cmp::Ordering {
    let by_prio = match (config.ordering, &a.prio, &b.prio) {
        (Ordering::Fifo, _, _) => std::cmp::Ordering::Equal,
        (Ordering::MaxFirst, Priority::Num(x), Priority::Num(y)) => y.cmp(x),
        (Ordering::MinFirst, Priority::Num(x), Priority::Num(y)) => x.cmp(y),
        (Ordering::MaxFirst, Priority::Text(x), Priority::Text(y)) => {
            y.as_bytes().cmp(x.as_bytes())
        }
        (Ordering::MinFirst, Priority::Text(x), Priority::Text(y)) => {
            x.as_bytes().cmp(y.as_bytes())
        }
        _ => std::cmp::Ordering::Equal,
    };
    by_prio.then(a.seq.cmp(&b.seq))
}

impl MQueue {
    fn new(config: QueueConfig) -> MQueue {
        MQueue { config, msgs: Vec::new(), dead: Vec::new() }
    }

    fn sort(&mut self) {
        let config = self.config.clone();
        self.msgs.sort_by(|a, b| cmp_key(&config, a, b));
    }

    /// Every lock that expired by `now`, earliest deadline first: back to its place, or to
    /// the dead letters (dated at the deadline) once its retries are used up.
    fn settle(&mut self, now: u64) {
        let mut due: Vec<(u64, u64)> = self
            .msgs
            .iter()
            .filter_map(|m| m.lock.as_ref().filter(|l| l.1 <= now).map(|l| (l.1, m.seq)))
            .collect();
        due.sort();
        for (deadline, seq) in due {
            let at = self.msgs.iter().position(|m| m.seq == seq).expect("due message");
            if self.msgs[at].retry >= self.msgs[at].max_retries {
                let m = self.msgs.remove(at);
                self.dead.push((m, deadline));
            } else {
                self.msgs[at].lock = None;
            }
        }
    }

    fn holds_payload(&self, payload: &str) -> bool {
        self.msgs.iter().any(|m| m.payload == payload)
    }

    fn held(&self, seq: Option<u64>, consumer: &str) -> Result<usize, Err> {
        let at = self.msgs.iter().position(|m| Some(m.seq) == seq).ok_or(Err::NotLocked)?;
        match &self.msgs[at].lock {
            Some((c, _)) if c == consumer => Ok(at),
            _ => Err(Err::NotLocked),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Model {
    queues: BTreeMap<String, MQueue>,
    seq: u64,
}

/// Error kinds the comparison cares about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Err {
    NotFound,
    Exists,
    Duplicate,
    NotLocked,
    Storage,
    Other,
}

fn kind(e: &EngineError) -> Err {
    match e {
        EngineError::QueueNotFound(_) => Err::NotFound,
        EngineError::QueueExists(_) => Err::Exists,
        EngineError::DuplicatePayload => Err::Duplicate,
        EngineError::NotLocked => Err::NotLocked,
        EngineError::StorageUnavailable(_) => Err::Storage,
        _ => Err::Other,
    }
}

/// A reply, as far as the model can predict it.
#[derive(Clone, Debug, PartialEq)]
enum Reply {
    Done,
    /// Publish: the sequence numbers of the new messages.
    Published(Vec<u64>),
    /// Consume: (seq, payload, retry count, deadline) of each delivery.
    Delivered(Vec<(u64, String, u32, u64)>),
    Nacked(NackOutcome),
    Count(u64),
    Deadline(u64),
    Failed(Err),
}

/// An operation with every choice made: names, payloads, target messages.
#[derive(Clone, Debug)]
enum Step {
    Create(String, QueueConfig),
    Configure(String, bool),
    Rename(String, String),
    Publish(String, Vec<(Priority, String, u32)>),
    Consume(String, String, usize, u64),
    Ack(String, Option<u64>, String),
    Nack(String, Option<u64>, String),
    Renew(String, Option<u64>, String, u64),
    Tick,
    Redrive(String, Option<Option<u64>>),
    DlqPurge(String),
    Purge(String),
    Delete(String),
}

impl Model {
    fn settle_all(&mut self, now: u64) {
        for q in self.queues.values_mut() {
            q.settle(now);
        }
    }

    /// Applies one step, as the contract says, and returns the reply.
    fn apply(&mut self, step: &Step, now: u64) -> Reply {
        match self.apply_inner(step, now) {
            Ok(r) => r,
            Err(e) => Reply::Failed(e),
        }
    }

    fn apply_inner(&mut self, step: &Step, now: u64) -> Result<Reply, Err> {
        if let Some(q) = step_queue(step).and_then(|n| self.queues.get_mut(n)) {
            q.settle(now);
        }
        Ok(match step {
            Step::Create(name, config) => {
                if self.queues.contains_key(name) {
                    return Err(Err::Exists);
                }
                self.queues.insert(name.clone(), MQueue::new(config.clone()));
                Reply::Done
            }
            Step::Configure(name, dups) => {
                let q = self.queues.get_mut(name).ok_or(Err::NotFound)?;
                if q.config.allow_duplicates != *dups {
                    q.config.allow_duplicates = *dups;
                    if !dups {
                        // Every locked copy stays; of the rest, the first in delivery order.
                        let mut seen: Vec<String> = q
                            .msgs
                            .iter()
                            .filter(|m| m.lock.is_some())
                            .map(|m| m.payload.clone())
                            .collect();
                        q.msgs.retain(|m| {
                            if m.lock.is_some() {
                                return true;
                            }
                            if seen.contains(&m.payload) {
                                return false;
                            }
                            seen.push(m.payload.clone());
                            true
                        });
                    }
                }
                Reply::Done
            }
            Step::Rename(name, to) => {
                if !self.queues.contains_key(name) {
                    return Err(Err::NotFound);
                }
                if to != name {
                    if self.queues.contains_key(to) {
                        return Err(Err::Exists);
                    }
                    let q = self.queues.remove(name).expect("present");
                    self.queues.insert(to.clone(), q);
                }
                Reply::Done
            }
            Step::Publish(name, msgs) => {
                // An empty batch publishes nothing, and so creates no queue either.
                if msgs.is_empty() {
                    return Ok(Reply::Published(Vec::new()));
                }
                if !self.queues.contains_key(name) {
                    self.queues.insert(name.clone(), MQueue::new(QueueConfig::default()));
                }
                let q = self.queues.get_mut(name).expect("present");
                if !q.config.allow_duplicates {
                    for (i, (_, p, _)) in msgs.iter().enumerate() {
                        if q.holds_payload(p) || msgs[..i].iter().any(|(_, o, _)| o == p) {
                            return Err(Err::Duplicate);
                        }
                    }
                }
                let mut seqs = Vec::new();
                for (prio, payload, max_retries) in msgs {
                    self.seq += 1;
                    seqs.push(self.seq);
                    q.msgs.push(MMsg {
                        seq: self.seq,
                        prio: prio.clone(),
                        payload: payload.clone(),
                        max_retries: *max_retries,
                        retry: 0,
                        lock: None,
                    });
                }
                q.sort();
                Reply::Published(seqs)
            }
            Step::Consume(name, consumer, max, timeout) => {
                let Some(q) = self.queues.get_mut(name) else {
                    return Ok(Reply::Delivered(Vec::new()));
                };
                let deadline = now + timeout * 1000;
                let mut got = Vec::new();
                for m in q.msgs.iter_mut().filter(|m| m.lock.is_none()).take(*max) {
                    m.retry += 1;
                    m.lock = Some((consumer.clone(), deadline));
                    got.push((m.seq, m.payload.clone(), m.retry, deadline));
                }
                Reply::Delivered(got)
            }
            Step::Ack(name, seq, consumer) => {
                let q = self.queues.get_mut(name).ok_or(Err::NotLocked)?;
                let at = q.held(*seq, consumer)?;
                q.msgs.remove(at);
                Reply::Done
            }
            Step::Nack(name, seq, consumer) => {
                let q = self.queues.get_mut(name).ok_or(Err::NotLocked)?;
                let at = q.held(*seq, consumer)?;
                if q.msgs[at].retry >= q.msgs[at].max_retries {
                    let m = q.msgs.remove(at);
                    q.dead.push((m, now));
                    Reply::Nacked(NackOutcome::DeadLettered)
                } else {
                    q.msgs[at].lock = None;
                    Reply::Nacked(NackOutcome::Requeued)
                }
            }
            Step::Renew(name, seq, consumer, timeout) => {
                let q = self.queues.get_mut(name).ok_or(Err::NotLocked)?;
                let at = q.held(*seq, consumer)?;
                let deadline = now + timeout * 1000;
                q.msgs[at].lock.as_mut().expect("held").1 = deadline;
                Reply::Deadline(deadline)
            }
            Step::Tick => {
                self.settle_all(now);
                Reply::Done
            }
            Step::Redrive(name, which) => {
                let Some(q) = self.queues.get_mut(name) else { return Ok(Reply::Count(0)) };
                let wanted: Vec<u64> = match which {
                    None => q.dead.iter().map(|(m, _)| m.seq).collect(),
                    Some(seq) => seq.iter().copied().collect(),
                };
                let mut taken: Vec<String> = Vec::new();
                let mut moving = Vec::new();
                for seq in wanted {
                    let Some(at) = q.dead.iter().position(|(m, _)| m.seq == seq) else {
                        continue;
                    };
                    let payload = &q.dead[at].0.payload;
                    if !q.config.allow_duplicates {
                        if q.holds_payload(payload) || taken.contains(payload) {
                            continue;
                        }
                        taken.push(payload.clone());
                    }
                    moving.push(seq);
                }
                for seq in &moving {
                    let at = q.dead.iter().position(|(m, _)| m.seq == *seq).expect("dead");
                    let (mut m, _) = q.dead.remove(at);
                    m.retry = 0;
                    m.lock = None;
                    q.msgs.push(m);
                }
                q.sort();
                Reply::Count(moving.len() as u64)
            }
            Step::DlqPurge(name) => {
                let Some(q) = self.queues.get_mut(name) else { return Ok(Reply::Count(0)) };
                let n = q.dead.len() as u64;
                q.dead.clear();
                Reply::Count(n)
            }
            Step::Purge(name) => {
                let Some(q) = self.queues.get_mut(name) else { return Ok(Reply::Count(0)) };
                let n = q.msgs.len() as u64;
                q.msgs.clear();
                Reply::Count(n)
            }
            Step::Delete(name) => match self.queues.remove(name) {
                Some(q) => Reply::Count(q.msgs.len() as u64),
                None => Reply::Count(0),
            },
        })
    }
}

fn step_queue(step: &Step) -> Option<&str> {
    match step {
        Step::Configure(n, _)
        | Step::Publish(n, _)
        | Step::Consume(n, ..)
        | Step::Ack(n, ..)
        | Step::Nack(n, ..)
        | Step::Renew(n, ..)
        | Step::Redrive(n, _)
        | Step::DlqPurge(n)
        | Step::Purge(n)
        | Step::Rename(n, _)
        | Step::Delete(n) => Some(n),
        Step::Create(..) | Step::Tick => None,
    }
}

/// What the comparison sees of a queue: everything but ids and sequence numbers, after
/// settling expired locks (a crash may have kept or lost records that only settled them).
type Canon = Vec<(String, QueueConfig, Vec<String>, Vec<String>)>;

fn canon(queues: &BTreeMap<String, MQueue>, now: u64) -> Canon {
    queues
        .iter()
        .map(|(name, q)| {
            let mut q = q.clone();
            q.settle(now);
            q.sort();
            let msgs = q
                .msgs
                .iter()
                .map(|m| {
                    format!(
                        "{} {:?} r{}/{} {:?}",
                        m.payload, m.prio, m.retry, m.max_retries, m.lock
                    )
                })
                .collect();
            let dead = q
                .dead
                .iter()
                .map(|(m, at)| {
                    format!("{} {:?} r{}/{} at {at}", m.payload, m.prio, m.retry, m.max_retries)
                })
                .collect();
            (name.clone(), q.config.clone(), msgs, dead)
        })
        .collect()
}

fn from_dump(dump: &[QueueDump]) -> BTreeMap<String, MQueue> {
    let msg = |m: &qrusty::engine::MessageDump| MMsg {
        seq: m.seq,
        prio: m.priority.clone(),
        payload: m.payload.clone(),
        max_retries: m.max_retries,
        retry: m.retry_count,
        lock: m.lock.clone(),
    };
    dump.iter()
        .map(|q| {
            let mq = MQueue {
                config: q.config.clone(),
                msgs: q.messages.iter().map(msg).collect(),
                dead: q.dead.iter().map(|d| (msg(&d.msg), d.at_ms)).collect(),
            };
            (q.name.clone(), mq)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The driver.

fn wal_dir() -> PathBuf {
    PathBuf::from("/fuzz/data")
}

struct Harness {
    fs: SimFs,
    clock: Arc<ManualClock>,
    rt: tokio::runtime::Runtime,
    segment_bytes: u64,
    engine: Arc<Engine>,
    model: Model,
    /// The engine's id of each message, by model sequence number.
    ids: HashMap<u64, String>,
    /// A write failed: the log is read-only until the next crash, replies are not compared.
    failed: bool,
    /// The model as it would be had the operation that failed been applied; and, for an
    /// implicit create, as it would be had only the queue been created.
    in_flight: Vec<Model>,
}

fn open_engine(fs: &SimFs, clock: &Arc<ManualClock>, segment_bytes: u64) -> Arc<Engine> {
    let wal = WalOptions {
        dir: wal_dir(),
        segment_bytes,
        // Limitation: `always` only. Under `interval` and `never` an acknowledged operation
        // may be lost in a power cut, which this model (acknowledged means durable) forbids.
        fsync: FsyncPolicy::Always,
        recovery: RecoveryMode::Strict,
        max_record_bytes: 1 << 20,
    };
    let mut opts = EngineOptions::new(StorageConfig::Wal(wal));
    opts.clock = clock.clone();
    opts.fs = Some(Arc::new(fs.clone()));
    // Compaction only when the input asks for it.
    opts.compaction_ratio = 2.0;
    // Every payload here is two bytes: a threshold of 1 leaves each one in the log, so
    // crashes, compactions and restarts are checked with payloads read back from disk.
    opts.spill_payload_bytes = 1;
    Engine::open(opts).unwrap_or_else(|e| panic!("open after a crash failed: {e}"))
}

fn holder(c: &str) -> Holder {
    Holder { consumer_id: c.to_string(), lock_token: None }
}

impl Harness {
    fn new(segment_units: u8) -> Harness {
        let fs = SimFs::new(u64::from(segment_units));
        let clock = Arc::new(ManualClock::new(T0));
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let segment_bytes = (u64::from(segment_units) + 1) * 128;
        let engine = open_engine(&fs, &clock, segment_bytes);
        Harness {
            fs,
            clock,
            rt,
            segment_bytes,
            engine,
            model: Model::default(),
            ids: HashMap::new(),
            failed: false,
            in_flight: Vec::new(),
        }
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    fn queue(&self, q: u8) -> String {
        QUEUES[usize::from(q) % QUEUES.len()].to_string()
    }

    fn priority(&self, queue: &str, p: u8) -> Priority {
        let text = self
            .model
            .queues
            .get(queue)
            .is_some_and(|q| q.config.priority_kind == PriorityKind::Text);
        if text {
            Priority::Text(format!("t{}", p % 4).into())
        } else {
            Priority::Num(u64::from(p % 4))
        }
    }

    /// The model's message `pick` of a queue (in delivery order), after settling.
    fn pick(&self, queue: &str, pick: u8) -> Option<u64> {
        let mut q = self.model.queues.get(queue)?.clone();
        q.settle(self.now());
        let n = q.msgs.len();
        (n > 0).then(|| q.msgs[usize::from(pick) % n].seq)
    }

    fn pick_dead(&self, queue: &str, pick: u8) -> Option<u64> {
        let mut q = self.model.queues.get(queue)?.clone();
        q.settle(self.now());
        let n = q.dead.len();
        (n > 0).then(|| q.dead[usize::from(pick) % n].0.seq)
    }

    fn id(&self, seq: Option<u64>) -> String {
        seq.and_then(|s| self.ids.get(&s).cloned()).unwrap_or_else(|| NO_SUCH_ID.to_string())
    }

    fn step(&self, op: &Op) -> Option<Step> {
        Some(match op {
            Op::Create { q, ordering, dups, text } => {
                let ordering = [Ordering::MaxFirst, Ordering::MinFirst, Ordering::Fifo]
                    [usize::from(*ordering) % 3];
                let priority_kind = if *text { PriorityKind::Text } else { PriorityKind::Numeric };
                let config = QueueConfig { ordering, allow_duplicates: *dups, priority_kind };
                Step::Create(self.queue(*q), config)
            }
            Op::Configure { q, dups } => Step::Configure(self.queue(*q), *dups),
            Op::Rename { q, to } => Step::Rename(self.queue(*q), self.queue(*to)),
            Op::Publish { q, prio, payload, retries } => {
                let name = self.queue(*q);
                let m = (
                    self.priority(&name, *prio),
                    format!("p{}", payload % 6),
                    u32::from(retries % 3),
                );
                Step::Publish(name, vec![m])
            }
            Op::PublishBatch { q, msgs } => {
                let name = self.queue(*q);
                let msgs = msgs
                    .iter()
                    .take(4)
                    .map(|(p, l, r)| {
                        (self.priority(&name, *p), format!("p{}", l % 6), u32::from(r % 3))
                    })
                    .collect();
                Step::Publish(name, msgs)
            }
            Op::Consume { q, consumer, max, timeout } => Step::Consume(
                self.queue(*q),
                CONSUMERS[usize::from(*consumer) % 2].to_string(),
                usize::from(max % 3) + 1,
                u64::from(timeout % 4),
            ),
            Op::Ack { q, pick, consumer } => {
                let name = self.queue(*q);
                let seq = self.pick(&name, *pick);
                Step::Ack(name, seq, CONSUMERS[usize::from(*consumer) % 2].to_string())
            }
            Op::Nack { q, pick, consumer } => {
                let name = self.queue(*q);
                let seq = self.pick(&name, *pick);
                Step::Nack(name, seq, CONSUMERS[usize::from(*consumer) % 2].to_string())
            }
            Op::Renew { q, pick, consumer, timeout } => {
                let name = self.queue(*q);
                let seq = self.pick(&name, *pick);
                let c = CONSUMERS[usize::from(*consumer) % 2].to_string();
                Step::Renew(name, seq, c, u64::from(timeout % 4))
            }
            Op::Tick => Step::Tick,
            Op::Redrive { q, pick } => {
                let name = self.queue(*q);
                let which = pick.map(|p| self.pick_dead(&name, p));
                Step::Redrive(name, which)
            }
            Op::DlqPurge { q } => Step::DlqPurge(self.queue(*q)),
            Op::Purge { q } => Step::Purge(self.queue(*q)),
            Op::Delete { q } => Step::Delete(self.queue(*q)),
            Op::Advance { .. }
            | Op::Compact { .. }
            | Op::Halt { .. }
            | Op::Crash { .. }
            | Op::Fault { .. } => return None,
        })
    }

    /// Runs one step on the engine; the reply in the model's terms.
    fn run(&mut self, step: &Step) -> Reply {
        let e = self.engine.clone();
        let fail = |err: EngineError| Reply::Failed(kind(&err));
        let r = match step {
            Step::Create(n, c) => {
                self.rt.block_on(e.create_queue(n, c.clone())).map(|()| Reply::Done)
            }
            Step::Configure(n, d) => {
                self.rt.block_on(e.update_queue(n, None, Some(*d))).map(|()| Reply::Done)
            }
            Step::Rename(n, to) => {
                self.rt.block_on(e.update_queue(n, Some(to), None)).map(|()| Reply::Done)
            }
            Step::Publish(n, msgs) => {
                let new: Vec<NewMessage> = msgs
                    .iter()
                    .map(|(priority, payload, max_retries)| NewMessage {
                        priority: priority.clone(),
                        payload: payload.clone(),
                        max_retries: *max_retries,
                    })
                    .collect();
                // The reply carries ids; `record` maps them to the model's numbers.
                return match self.rt.block_on(e.publish_batch(n, new)) {
                    Ok(ids) => Reply::Published(self.learn_ids(ids)),
                    Err(err) => fail(err),
                };
            }
            Step::Consume(n, c, max, timeout) => {
                let got = self.rt.block_on(e.consume(n, c, *timeout, *max, Duration::ZERO));
                return match got {
                    Ok(ds) => {
                        let by_id: HashMap<&String, u64> =
                            self.ids.iter().map(|(s, id)| (id, *s)).collect();
                        let seqs = ds
                            .iter()
                            .map(|d| {
                                let seq = by_id.get(&d.id).copied().unwrap_or(u64::MAX);
                                (seq, d.payload.clone(), d.retry_count, d.locked_until_ms)
                            })
                            .collect();
                        Reply::Delivered(seqs)
                    }
                    Err(err) => fail(err),
                };
            }
            Step::Ack(n, s, c) => {
                self.rt.block_on(e.ack(n, &self.id(*s), &holder(c))).map(|()| Reply::Done)
            }
            Step::Nack(n, s, c) => {
                self.rt.block_on(e.nack(n, &self.id(*s), &holder(c))).map(Reply::Nacked)
            }
            Step::Renew(n, s, c, t) => {
                self.rt.block_on(e.renew(n, &self.id(*s), &holder(c), *t)).map(Reply::Deadline)
            }
            Step::Tick => {
                e.sample_metrics();
                Ok(Reply::Done)
            }
            Step::Redrive(n, which) => {
                let ids = which.map(|s| vec![self.id(s)]);
                self.rt.block_on(e.dlq_redrive(n, ids.as_deref())).map(Reply::Count)
            }
            Step::DlqPurge(n) => self.rt.block_on(e.dlq_purge(n)).map(Reply::Count),
            Step::Purge(n) => self.rt.block_on(e.purge_queue(n)).map(Reply::Count),
            Step::Delete(n) => self.rt.block_on(e.delete_queue(n)).map(Reply::Count),
        };
        r.unwrap_or_else(fail)
    }

    /// Ids of a publish reply, in order; they go to the model's next sequence numbers.
    fn learn_ids(&mut self, ids: Vec<String>) -> Vec<u64> {
        let first = self.model.seq + 1;
        ids.into_iter()
            .enumerate()
            .map(|(i, id)| {
                let seq = first + i as u64;
                self.ids.insert(seq, id);
                seq
            })
            .collect()
    }

    /// One operation: on the engine and on the model, replies compared.
    fn op(&mut self, op: &Op, index: usize) {
        match op {
            Op::Advance { ms } => return self.clock.advance_ms(u64::from(*ms)),
            Op::Halt { after } => return self.fs.halt_after(u64::from(after % 32)),
            Op::Crash { mode } => return self.crash(*mode),
            Op::Fault { kind, nth } => {
                let kind =
                    [Fault::Write, Fault::NoSpace, Fault::Sync, Fault::SyncDir, Fault::Create]
                        [usize::from(*kind) % 5];
                return self.fs.inject(kind, u64::from(nth % 8) + 1);
            }
            _ => {}
        }
        if self.failed {
            return;
        }
        if let Op::Compact { during } = op {
            return self.compact(*during, index);
        }
        let step = self.step(op).expect("a queue operation");
        self.checked(&step, index);
    }

    fn checked(&mut self, step: &Step, index: usize) {
        let now = self.now();
        let mut after = self.model.clone();
        let want = after.apply(step, now);
        let got = self.run(step);
        match got {
            Reply::Failed(Err::Storage) => {
                self.failed = true;
                self.in_flight.push(after);
                if let Step::Publish(name, _) = step {
                    if !self.model.queues.contains_key(name) {
                        let mut created = self.model.clone();
                        created.queues.insert(name.clone(), MQueue::new(QueueConfig::default()));
                        self.in_flight.push(created);
                    }
                }
            }
            got => {
                assert_eq!(got, want, "op {index} {step:?}: the engine's reply differs");
                self.model = after;
            }
        }
    }

    fn compact(&mut self, during: Option<(u8, u8, u8)>, index: usize) {
        let engine = self.engine.clone();
        let result = match during {
            None => engine.compact(),
            Some((q, p, l)) => {
                let op = Op::Publish { q, prio: p, payload: l, retries: 2 };
                let step = self.step(&op).expect("publish");
                engine.compact_pausing(&mut || self.checked(&step, index))
            }
        };
        if result.is_err() {
            // The log may be read-only now; the state is what it was either way.
            self.failed = true;
        }
    }

    /// A power cut and a restart; the recovered state must be one the model allows.
    fn crash(&mut self, mode: u8) {
        let mode = [CrashMode::Durable, CrashMode::TornWrite, CrashMode::ZeroFilled]
            [usize::from(mode) % 3];
        // Frozen first, so that the old engine, shut down before the restart, can make
        // nothing more durable; then the power cut, then the restart.
        self.fs.halt_after(0);
        self.rt.block_on(self.engine.shutdown());
        self.fs.crash(mode);
        self.engine = open_engine(&self.fs, &self.clock, self.segment_bytes);
        self.recovered();
    }

    fn recovered(&mut self) {
        let now = self.now();
        let dump = self.engine.inspect();
        let seen = canon(&from_dump(&dump), now);
        let mut candidates = vec![self.model.clone()];
        candidates.append(&mut self.in_flight);
        let Some(found) = candidates.iter().find(|m| canon(&m.queues, now) == seen) else {
            let wanted: Vec<Canon> = candidates.iter().map(|m| canon(&m.queues, now)).collect();
            panic!("recovered state {seen:#?}\nis none of the allowed {wanted:#?}");
        };
        self.model = found.clone();
        self.failed = false;
        // Both settle now, so that later operations start from the same state.
        self.engine.sample_metrics();
        self.model.settle_all(now);
        self.ids.clear();
        for q in self.engine.inspect() {
            let m = &self.model.queues[&q.name];
            let mut sorted = m.clone();
            sorted.sort();
            for (mine, theirs) in sorted.msgs.iter().zip(&q.messages) {
                self.ids.insert(mine.seq, theirs.id.clone());
            }
            for ((mine, _), theirs) in m.dead.iter().zip(&q.dead) {
                self.ids.insert(mine.seq, theirs.msg.id.clone());
            }
        }
    }

    /// The end: the live state must match (when nothing failed), then so must the state
    /// after a last crash.
    fn finish(&mut self) {
        if !self.failed {
            let now = self.now();
            let seen = canon(&from_dump(&self.engine.inspect()), now);
            assert_eq!(seen, canon(&self.model.queues, now), "the live state differs");
        }
        self.crash(0);
    }
}

/// Decodes a scenario: the segment size byte, then operations until the bytes run out.
pub fn parse(data: &[u8]) -> Scenario {
    let mut u = Unstructured::new(data);
    let segment_units = u8::arbitrary(&mut u).unwrap_or(0);
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < 200 {
        match Op::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    Scenario { segment_units, ops }
}

/// The check. Panics on any disagreement.
// Verifies: PER-0009, PER-0012, PER-0013, PER-0024, PER-0028, PER-0029, DLV-0007
pub fn check(data: &[u8]) {
    let scenario = parse(data);
    let mut h = Harness::new(scenario.segment_units);
    for (index, op) in scenario.ops.iter().enumerate() {
        h.op(op, index);
    }
    h.finish();
}

/// The bytes that [`parse`] reads as `op` (the layout of `arbitrary`'s derive: a u32
/// picks the variant, then the fields in order; an `Option` or each `Vec` element is
/// preceded by a bool byte).
pub fn encode_op(op: &Op) -> Vec<u8> {
    const VARIANTS: u64 = 19;
    let (index, fields): (u64, Vec<u8>) = match op {
        Op::Create { q, ordering, dups, text } => {
            (0, vec![*q, *ordering, u8::from(*dups), u8::from(*text)])
        }
        Op::Configure { q, dups } => (1, vec![*q, u8::from(*dups)]),
        Op::Rename { q, to } => (2, vec![*q, *to]),
        Op::Publish { q, prio, payload, retries } => (3, vec![*q, *prio, *payload, *retries]),
        Op::PublishBatch { q, msgs } => {
            let mut f = vec![*q];
            for (a, b, c) in msgs {
                f.extend_from_slice(&[1, *a, *b, *c]);
            }
            f.push(0);
            (4, f)
        }
        Op::Consume { q, consumer, max, timeout } => (5, vec![*q, *consumer, *max, *timeout]),
        Op::Ack { q, pick, consumer } => (6, vec![*q, *pick, *consumer]),
        Op::Nack { q, pick, consumer } => (7, vec![*q, *pick, *consumer]),
        Op::Renew { q, pick, consumer, timeout } => (8, vec![*q, *pick, *consumer, *timeout]),
        Op::Advance { ms } => (9, ms.to_le_bytes().to_vec()),
        Op::Tick => (10, vec![]),
        Op::Redrive { q, pick } => (
            11,
            match pick {
                Some(p) => vec![*q, 1, *p],
                None => vec![*q, 0],
            },
        ),
        Op::DlqPurge { q } => (12, vec![*q]),
        Op::Purge { q } => (13, vec![*q]),
        Op::Delete { q } => (14, vec![*q]),
        Op::Compact { during } => (
            15,
            match during {
                Some((a, b, c)) => vec![1, *a, *b, *c],
                None => vec![0],
            },
        ),
        Op::Halt { after } => (16, vec![*after]),
        Op::Crash { mode } => (17, vec![*mode]),
        Op::Fault { kind, nth } => (18, vec![*kind, *nth]),
    };
    let tag = ((index << 32).div_ceil(VARIANTS)) as u32;
    let mut out = tag.to_le_bytes().to_vec();
    out.extend(fields);
    out
}

pub fn encode(segment_units: u8, ops: &[Op]) -> Vec<u8> {
    let mut out = vec![segment_units];
    for op in ops {
        out.extend(encode_op(op));
    }
    out
}

/// Seed inputs: hand-written scenarios that touch every operation and crash kind.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    use Op::*;
    let publish = |q, payload| Publish { q, prio: payload, payload, retries: 1 };
    let consume = |q, timeout| Consume { q, consumer: 0, max: 1, timeout };
    let basic = vec![
        Create { q: 0, ordering: 0, dups: true, text: false },
        publish(0, 1),
        publish(0, 2),
        publish(0, 3),
        consume(0, 3),
        Ack { q: 0, pick: 0, consumer: 0 },
        Crash { mode: 0 },
        consume(0, 3),
        Nack { q: 0, pick: 0, consumer: 0 },
    ];
    let text = vec![
        Create { q: 1, ordering: 1, dups: false, text: true },
        PublishBatch { q: 1, msgs: vec![(1, 1, 0), (2, 2, 0), (3, 3, 0)] },
        publish(1, 1),
        Configure { q: 1, dups: true },
        publish(1, 1),
        Configure { q: 1, dups: false },
        Rename { q: 1, to: 2 },
        Crash { mode: 1 },
        Rename { q: 2, to: 1 },
    ];
    let expiry = vec![
        PublishBatch { q: 0, msgs: vec![(0, 0, 0), (1, 1, 1), (2, 2, 2)] },
        Consume { q: 0, consumer: 0, max: 2, timeout: 1 },
        Renew { q: 0, pick: 0, consumer: 0, timeout: 3 },
        Advance { ms: 1500 },
        Tick,
        Consume { q: 0, consumer: 1, max: 2, timeout: 0 },
        Advance { ms: 3000 },
        Redrive { q: 0, pick: None },
        consume(0, 2),
        Nack { q: 0, pick: 0, consumer: 0 },
        Redrive { q: 0, pick: Some(0) },
        DlqPurge { q: 0 },
        Crash { mode: 2 },
        Purge { q: 0 },
        Delete { q: 0 },
    ];
    let compaction = vec![
        PublishBatch { q: 0, msgs: vec![(0, 0, 0), (1, 1, 1), (2, 2, 2), (3, 3, 0)] },
        consume(0, 2),
        Ack { q: 0, pick: 0, consumer: 0 },
        Compact { during: Some((1, 2, 3)) },
        Crash { mode: 0 },
        publish(2, 4),
        Halt { after: 3 },
        Compact { during: None },
        Crash { mode: 1 },
        Compact { during: None },
    ];
    let mut out = vec![
        ("basic".to_string(), encode(0, &basic)),
        ("text-dups-rename".to_string(), encode(3, &text)),
        ("expiry-dlq".to_string(), encode(1, &expiry)),
        ("compaction".to_string(), encode(0, &compaction)),
    ];
    // A crash at every early step of a publish and an ack, each crash kind.
    for after in [0u8, 1, 2, 3, 5, 8] {
        let ops = vec![
            publish(0, 1),
            consume(0, 2),
            Halt { after },
            publish(0, 2),
            Ack { q: 0, pick: 0, consumer: 0 },
            publish(1, 3),
            Crash { mode: after % 3 },
            consume(0, 2),
        ];
        out.push((format!("halt-after-{after}"), encode(0, &ops)));
    }
    // A lock that runs out with its retries used up is a dead letter at once, for every
    // operation: a publish of its payload is no duplicate, a purge keeps it, turning
    // duplicates off keeps the other copy.
    let expired = |then: Op| {
        vec![
            Create { q: 0, ordering: 0, dups: false, text: false },
            Publish { q: 0, prio: 1, payload: 1, retries: 0 },
            Publish { q: 0, prio: 1, payload: 2, retries: 0 },
            consume(0, 1),
            Advance { ms: 2000 },
            then,
            Crash { mode: 0 },
            Redrive { q: 0, pick: None },
        ]
    };
    out.push(("expired-then-publish".into(), encode(0, &expired(publish(0, 1)))));
    out.push(("expired-then-purge".into(), encode(0, &expired(Purge { q: 0 }))));
    let dedupe = vec![
        Create { q: 0, ordering: 2, dups: true, text: false },
        Publish { q: 0, prio: 1, payload: 1, retries: 0 },
        Publish { q: 0, prio: 1, payload: 1, retries: 0 },
        Consume { q: 0, consumer: 0, max: 0, timeout: 1 },
        Advance { ms: 2000 },
        Configure { q: 0, dups: false },
        Crash { mode: 0 },
        consume(0, 1),
    ];
    out.push(("expired-then-dedupe".into(), encode(0, &dedupe)));
    // Each kind of failed call in the middle of traffic, then a restart.
    for kind in 0..5u8 {
        for nth in [0u8, 2] {
            let ops = vec![
                publish(0, 1),
                Fault { kind, nth },
                publish(0, 2),
                consume(0, 2),
                Compact { during: None },
                publish(1, 3),
                Crash { mode: kind % 3 },
                consume(0, 2),
            ];
            out.push((format!("fault-{kind}-{nth}"), encode(0, &ops)));
        }
    }
    // What the fuzzer found: an empty batch creates no queue; locks that expire together
    // (the lock-table walk that leaked).
    let found = vec![
        PublishBatch { q: 1, msgs: vec![] },
        Create { q: 1, ordering: 2, dups: false, text: false },
        PublishBatch { q: 0, msgs: vec![(0, 0, 0), (1, 1, 1), (2, 2, 2)] },
        Consume { q: 0, consumer: 0, max: 2, timeout: 0 },
        Tick,
        Consume { q: 0, consumer: 1, max: 2, timeout: 1 },
        Advance { ms: 1000 },
        Tick,
        Crash { mode: 0 },
    ];
    out.push(("found-empty-batch-and-expiry-walk".into(), encode(0, &found)));
    // Many small records: the log rolls over many tiny segments.
    let rolls: Vec<Op> = (0..40u8).map(|i| publish(i % 3, i)).chain([Crash { mode: 1 }]).collect();
    out.push(("segment-rolls".to_string(), encode(0, &rolls)));
    out
}

/// The seed encoder must produce what the parser reads, or the seeds are not what they say.
pub fn check_seed_encoding() {
    for (name, bytes) in seeds() {
        let ops = parse(&bytes).ops;
        let names: Vec<String> = ops.iter().map(|o| format!("{o:?}")).collect();
        assert!(ops.len() >= 8, "{name}: {names:?}");
    }
}

/// The scenario an input stands for, one operation a line: for reading a crash.
pub fn describe(data: &[u8]) -> String {
    let s = parse(data);
    let mut out = format!("segment bytes {}\n", (u64::from(s.segment_units) + 1) * 128);
    for (i, op) in s.ops.iter().enumerate() {
        out.push_str(&format!("{i:3} {op:?}\n"));
    }
    out
}
