//! A change to one queue in progress: records are logged and applied under the queue's
//! mutex, so the log holds them in the order they took effect.

use parking_lot::MutexGuard;

use super::catalog::Queue;
use super::error::EngineError;
use super::payload::Spill;
use super::queue::{Effect, QueueState};
use super::rates::Counters;
use super::record::Record;
use super::{Engine, Result};
use crate::wal::{BodyAt, Ticket};

pub struct Txn<'a> {
    engine: &'a Engine,
    queue: &'a Queue,
    pub state: MutexGuard<'a, QueueState>,
    ticket: Option<Ticket>,
    wake: bool,
}

/// What a caller waits on after releasing every lock: the durability of the last record it
/// logged (the log is written in order, so that covers every earlier record too).
/// Requirements: PER-0019
#[must_use]
pub struct Pending(Option<Ticket>);

impl Pending {
    pub fn none() -> Pending {
        Pending(None)
    }

    pub fn from_ticket(t: Ticket) -> Pending {
        Pending(Some(t))
    }

    pub async fn wait(self) -> Result<()> {
        match self.0 {
            Some(t) => t.wait().await.map_err(|e| EngineError::StorageUnavailable(e.to_string())),
            None => Ok(()),
        }
    }

    /// Keeps the later of two pendings.
    pub fn then(self, later: Pending) -> Pending {
        if later.0.is_some() {
            later
        } else {
            self
        }
    }
}

/// A change that has taken effect in memory and been handed to the log, with its result.
/// The result may go to the client once [`Applied::durable`] returns: everything that
/// decides the order of changes has happened by the time this value exists, so a caller
/// may start later changes before waiting on this one.
#[must_use]
pub struct Applied<T> {
    pending: Pending,
    value: T,
}

impl<T> Applied<T> {
    pub(super) fn new(pending: Pending, value: T) -> Applied<T> {
        Applied { pending, value }
    }

    /// Changes the result without touching what the client waits for.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Applied<U> {
        Applied { pending: self.pending, value: f(self.value) }
    }

    /// Waits until the change is durable (at once in memory mode), then yields the result.
    pub async fn durable(self) -> Result<T> {
        self.pending.wait().await?;
        Ok(self.value)
    }
}

impl<'a> Txn<'a> {
    pub fn begin(engine: &'a Engine, queue: &'a Queue) -> Txn<'a> {
        Txn { engine, queue, state: queue.state.lock(), ticket: None, wake: false }
    }

    pub fn qid(&self) -> u64 {
        self.state.qid
    }

    pub fn counters(&self) -> std::sync::Arc<Counters> {
        self.queue.counters.lock().clone()
    }

    /// Logs a record, then applies it. A record the log refuses is not applied: memory
    /// never runs ahead of what the log accepted.
    // Limitation: a record the log accepted but then failed to make durable (a failed
    // fsync) stays applied in memory until the next restart: its client got 503 and the
    // log turned read-only, so it can never be acknowledged, but reads may still show it.
    pub fn emit(&mut self, rec: Record) -> Result<Effect> {
        let fx = match self.engine.log_append_body(&rec)? {
            Some((ticket, body)) => {
                // Payloads above the threshold keep the address of their bytes in this
                // record instead of a copy.
                let at = BodyAt::Record(ticket.seq());
                // A queue that keeps its payloads in RAM needs no offsets worked out.
                let threshold = self.engine.spill_threshold(&self.state);
                let spill = Spill::new(threshold, at, &rec, &body);
                self.ticket = Some(ticket);
                self.state.apply_from(&rec, Some(&spill))
            }
            None => self.state.apply(&rec),
        };
        // A renew may move a deadline earlier: waiters sleeping until the old next deadline
        // must look again.
        if fx.became_ready > 0 || matches!(rec, Record::Renewed { .. }) {
            self.wake = true;
        }
        Ok(fx)
    }

    /// Settles every lock that has expired by now: back to the queue, or to the dead
    /// letters once its retries are used up. Done before any decision that depends on lock
    /// state, which is what makes expiry exact without a sweeper.
    /// Requirements: DLV-0007, DLV-0011
    pub fn expire_due(&mut self, now_ms: u64) -> Result<()> {
        let due = self.state.due_locks(now_ms);
        if due.is_empty() {
            return Ok(());
        }
        let qid = self.qid();
        let mut recs = Vec::with_capacity(due.len());
        let (mut expired, mut dead) = (0, 0);
        for id in due {
            let Some(m) = self.state.get(&id) else { continue };
            let deadline = m.lock.as_ref().map_or(now_ms, |l| l.deadline_ms);
            if m.retries_used_up() {
                dead += 1;
                recs.push(Record::DeadLettered { qid, id, at_ms: deadline });
            } else {
                expired += 1;
                recs.push(Record::Expired { qid, id });
            }
        }
        self.emit(Record::one_or_group(recs))?;
        self.engine.count_expiry(expired, dead);
        Ok(())
    }

    /// Releases the queue's mutex and wakes waiters if a message became consumable.
    pub fn finish(self) -> Pending {
        let Txn { queue, state, ticket, wake, .. } = self;
        drop(state);
        if wake {
            queue.notify.notify_waiters();
        }
        Pending(ticket)
    }
}
