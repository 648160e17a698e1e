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
                let mut rest = &recs[..];
                while let Some(first) = rest.first() {
                    let queue = state_record_queue(first);
                    let run = match queue {
                        Some(qid) => {
                            rest.iter().take_while(|r| state_record_queue(r) == Some(qid)).count()
                        }
                        None => 1,
                    };
                    let (now, later) = rest.split_at(run);
                    let f = match queue {
                        Some(qid) => self.apply_to_queue(qid, now, spill),
                        None => self.apply_from(first, counters, spill),
                    };
                    fx.became_ready += f.became_ready;
                    fx.removed += f.removed;
                    rest = later;
                }
                fx
            }
            other => match state_record_queue(other) {
                Some(qid) => self.apply_to_queue(qid, std::slice::from_ref(other), spill),
                None => Effect::default(),
            },
        }
    }

    /// Applies records that change queue `qid`'s state alone, in order, under one lock of
    /// the queue: a replayed batch publish of a thousand messages then unlocks once, not a
    /// thousand times (each unlock's fence waits for the stores of the insert before it).
    /// Requirements: PER-0012
    fn apply_to_queue(&mut self, qid: u64, recs: &[Record], spill: Option<&Spill<'_>>) -> Effect {
        recs.iter().for_each(|r| self.note_seq(r));
        let Some(q) = self.queues.get(&qid) else { return Effect::default() };
        let mut st = q.state.lock();
        let mut fx = Effect::default();
        for r in recs {
            let f = st.apply_from(r, spill);
            fx.became_ready += f.became_ready;
            fx.removed += f.removed;
        }
        fx
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

/// The queue whose state alone `rec` changes: `None` for the records that change the
/// catalog (create, rename, delete, snapshot, checkpoint) and for a group.
fn state_record_queue(rec: &Record) -> Option<u64> {
    match rec {
        Record::QueueCreated { .. }
        | Record::QueueSnapshot { .. }
        | Record::QueueRenamed { .. }
        | Record::QueueDeleted { .. }
        | Record::Checkpoint { .. }
        | Record::Group(_) => None,
        other => queue_of(other),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::record::{MsgId, PublishedMessage};
    use crate::engine::types::{Priority, QueueConfig};

    fn id(n: u64) -> MsgId {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&n.to_be_bytes());
        id
    }

    fn publish(qid: u64, n: u64) -> Record {
        let msg = PublishedMessage {
            id: id(n),
            seq: n,
            priority: Priority::Num(n),
            payload: format!("m{n}"),
            max_retries: 3,
            created_at_ns: n,
        };
        Record::Published { qid, msg }
    }

    fn created(qid: u64, name: &str) -> Record {
        Record::QueueCreated { qid, name: name.into(), config: QueueConfig::default() }
    }

    /// Each queue by name: its message count and its ready messages in delivery order.
    fn contents(cat: &Catalog) -> Vec<(String, u64, Vec<MsgId>)> {
        let by_name = cat.by_name.iter().map(|(name, qid)| {
            let st = cat.queues[qid].state.lock();
            (name.clone(), st.len(), st.peek_ready(usize::MAX))
        });
        by_name.collect()
    }

    /// Applies `recs` one by one, or as one group, to a catalog replaying or not; returns
    /// the catalog (its ready indexes built) and the summed effect.
    fn applied(recs: &[Record], grouped: bool, replaying: bool) -> (Catalog, Effect) {
        let counters = |_: &str| Arc::new(Counters::default());
        let mut cat = Catalog { replaying, ..Catalog::default() };
        let group = [Record::Group(recs.to_vec())];
        let mut fx = Effect::default();
        for r in if grouped { &group[..] } else { recs } {
            let f = cat.apply(r, &counters);
            fx.became_ready += f.became_ready;
            fx.removed += f.removed;
        }
        cat.finish_replay();
        (cat, fx)
    }

    // Verifies: PER-0012
    #[test]
    fn a_group_changes_state_as_its_records_one_by_one() {
        let lock =
            Record::Locked { qid: 1, id: id(2), consumer: "c".into(), token: 20, deadline_ms: 100 };
        let snapshot = |qid, name: &str| Record::QueueSnapshot {
            qid,
            name: name.into(),
            config: QueueConfig::default(),
            lsn: 1,
        };
        // Runs of one queue's records, broken by other queues' and by catalog records.
        let recs = vec![
            created(1, "a"),
            publish(1, 1),
            publish(1, 2),
            created(2, "b"),
            publish(2, 3),
            publish(1, 4),
            lock,
            Record::Acked { qid: 1, id: id(1) },
            publish(2, 5),
            Record::QueueRenamed { qid: 2, name: "c".into() },
            publish(2, 6),
            Record::Group(vec![publish(1, 7), Record::Acked { qid: 2, id: id(3) }]),
            Record::QueuePurged { qid: 2 },
            publish(2, 8),
            // A queue deleted in the middle of a run: what follows for it is ignored.
            created(4, "d"),
            publish(4, 10),
            Record::QueueDeleted { qid: 4 },
            publish(4, 11),
            // A snapshot replaces a queue (as a checkpoint's does) between its records.
            created(5, "e"),
            publish(5, 12),
            snapshot(5, "e"),
            publish(5, 13),
            Record::Checkpoint { catalog_lsn: 1, max_qid: 5, max_seq: 14 },
            // A queue that does not exist: ignored, but its sequence is still the highest.
            publish(3, 30),
        ];
        for replaying in [false, true] {
            let (one_by_one, want) = applied(&recs, false, replaying);
            let (grouped, fx) = applied(&recs, true, replaying);
            assert_eq!(fx, want);
            assert_eq!(contents(&grouped), contents(&one_by_one));
            assert_eq!(
                (grouped.max_seq, grouped.max_qid),
                (one_by_one.max_seq, one_by_one.max_qid)
            );
            // And that state is the right one: in "a", 2 is locked and 1 acked; "c" was
            // purged before 8; "d" is gone; "e" kept only what came after its snapshot.
            let expected = vec![
                ("a".to_string(), 3, vec![id(7), id(4)]),
                ("c".to_string(), 1, vec![id(8)]),
                ("e".to_string(), 1, vec![id(13)]),
            ];
            assert_eq!(contents(&grouped), expected);
            assert_eq!((grouped.max_seq, grouped.max_qid), (30, 5));
        }
    }
}
