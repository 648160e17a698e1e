//! The set of queues, and `Catalog::apply`: the one function through which every record,
//! live or replayed, changes engine state.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::limits::MemoryGauge;
use super::payload::Spill;
use super::queue::{Effect, QueueState};
use super::rates::Counters;
use super::record::Record;

/// A queue as the engine holds it: state behind its own mutex, so queues do not block each
/// other, and a notifier that wakes long polls and subscriptions.
/// Requirements: SCH-0012
pub struct Queue {
    pub state: Mutex<QueueState>,
    pub notify: Notify,
    /// Event counters of the queue's current name (they follow a rename).
    pub counters: Mutex<Arc<Counters>>,
}

#[derive(Default)]
pub struct Catalog {
    /// Names in byte order, for sorted listings.
    pub by_name: BTreeMap<String, u64>,
    pub queues: HashMap<u64, Arc<Queue>>,
    /// Highest queue id and message/token sequence seen; new ones are allocated above.
    pub max_qid: u64,
    pub max_seq: u64,
    /// Shared with every queue's state, which keeps it current.
    pub gauge: Arc<MemoryGauge>,
    /// Set while the log is replayed: queues created then build their ready index once, at
    /// the end (`QueueState::defer_ready_index`).
    pub replaying: bool,
}

impl Catalog {
    pub fn get(&self, name: &str) -> Option<&Arc<Queue>> {
        self.by_name.get(name).and_then(|qid| self.queues.get(qid))
    }

    /// Applies a record. `counters` supplies the counters of a (new) queue name.
    /// Requirements: DLV-0018, PER-0004
    pub fn apply(&mut self, rec: &Record, counters: &dyn Fn(&str) -> Arc<Counters>) -> Effect {
        self.apply_from(rec, counters, None)
    }

    /// [`Catalog::apply`] of a record whose payloads may stay in the log (`spill`).
    pub fn apply_from(
        &mut self,
        rec: &Record,
        counters: &dyn Fn(&str) -> Arc<Counters>,
        spill: Option<&Spill<'_>>,
    ) -> Effect {
        match rec {
            Record::QueueCreated { qid, name, config }
            | Record::QueueSnapshot { qid, name, config, .. } => {
                self.max_qid = self.max_qid.max(*qid);
                let mut state =
                    QueueState::new(*qid, name.clone(), config.clone(), self.gauge.clone());
                if self.replaying {
                    state.defer_ready_index();
                }
                let q = Queue {
                    state: Mutex::new(state),
                    notify: Notify::new(),
                    counters: Mutex::new(counters(name)),
                };
                if let Some(old) = self.by_name.insert(name.clone(), *qid) {
                    self.queues.remove(&old);
                }
                self.queues.insert(*qid, Arc::new(q));
                Effect::default()
            }
            Record::QueueRenamed { qid, name } => {
                if let Some(q) = self.queues.get(qid) {
                    let mut st = q.state.lock();
                    self.by_name.remove(&st.name);
                    st.name = name.clone();
                    self.by_name.insert(name.clone(), *qid);
                    *q.counters.lock() = counters(name);
                }
                Effect::default()
            }
            Record::QueueDeleted { qid } => match self.queues.remove(qid) {
                Some(q) => {
                    let mut st = q.state.lock();
                    self.by_name.remove(&st.name);
                    // Freed now, not when the last waiter lets go of the queue.
                    st.release_memory();
                    // Wake waiters so they notice the queue is gone.
                    q.notify.notify_waiters();
                    Effect { became_ready: 0, removed: st.len() }
                }
                None => Effect::default(),
            },
            Record::Checkpoint { max_qid, max_seq, .. } => {
                self.max_qid = self.max_qid.max(*max_qid);
                self.max_seq = self.max_seq.max(*max_seq);
                Effect::default()
            }
            Record::Group(recs) => {
                let mut fx = Effect::default();
                for r in recs {
                    let f = self.apply_from(r, counters, spill);
                    fx.became_ready += f.became_ready;
                    fx.removed += f.removed;
                }
                fx
            }
            other => {
                self.note_seq(other);
                let Some(qid) = queue_of(other) else { return Effect::default() };
                match self.queues.get(&qid) {
                    Some(q) => q.state.lock().apply_from(other, spill),
                    None => Effect::default(),
                }
            }
        }
    }

    /// Ends a replay: every queue builds the ready index it deferred.
    /// Requirements: PER-0031
    pub fn finish_replay(&mut self) {
        self.replaying = false;
        for q in self.queues.values() {
            q.state.lock().finish_replay();
        }
    }

    fn note_seq(&mut self, rec: &Record) {
        match rec {
            Record::Published { msg, .. } => self.max_seq = self.max_seq.max(msg.seq),
            Record::Locked { token, .. } => self.max_seq = self.max_seq.max(*token),
            _ => {}
        }
    }
}

/// The queue a queue-level record belongs to.
pub fn queue_of(rec: &Record) -> Option<u64> {
    match rec {
        Record::QueueCreated { qid, .. }
        | Record::DuplicatesChanged { qid, .. }
        | Record::QueueRenamed { qid, .. }
        | Record::QueueDeleted { qid }
        | Record::QueuePurged { qid }
        | Record::Published { qid, .. }
        | Record::Locked { qid, .. }
        | Record::Renewed { qid, .. }
        | Record::Acked { qid, .. }
        | Record::Nacked { qid, .. }
        | Record::Expired { qid, .. }
        | Record::Released { qid, .. }
        | Record::DeadLettered { qid, .. }
        | Record::Redriven { qid, .. }
        | Record::DeadLettersPurged { qid }
        | Record::QueueSnapshot { qid, .. }
        | Record::MessagesSnapshot { qid, .. }
        | Record::DeadLettersSnapshot { qid, .. } => Some(*qid),
        Record::Group(_) | Record::Checkpoint { .. } => None,
    }
}
