//! Message operations: publish, consume, ack, nack, renew and their batch forms.

use std::sync::atomic::Ordering as AtomicOrdering;
use std::sync::Arc;
use std::time::Duration;

use super::catalog::Queue;
use super::payload::Payload;
use super::queue::Message;
use super::rates::Counters;
use super::record::{MsgId, PublishedMessage, Record};
use super::txn::{Applied, Pending, Txn};
use super::types::*;
use super::{
    validate_queue_name, Engine, EngineError, Result, MAX_CONSUME_BATCH, MAX_TIMEOUT_SECS,
    MAX_WAIT_SECS,
};
use crate::wal::LogLoc;

/// Longest text priority, in bytes.
pub const MAX_TEXT_PRIORITY_BYTES: usize = 255;

/// Formats a message id the way clients see it: lowercase hyphenated UUID.
/// Requirements: API-0014
pub fn format_id(id: &MsgId) -> String {
    uuid::Uuid::from_bytes(*id).hyphenated().to_string()
}

/// Parses a client-supplied id; anything that is not a UUID names no message.
pub fn parse_id(id: &str) -> Option<MsgId> {
    uuid::Uuid::parse_str(id).ok().map(|u| *u.as_bytes())
}

/// Requirements: DLV-0004
fn format_token(token: u64) -> String {
    format!("{token:016x}")
}

/// Requirements: DLV-0002
fn check_timeout(secs: u64) -> Result<()> {
    if secs > MAX_TIMEOUT_SECS {
        return Err(EngineError::InvalidTimeout(format!(
            "timeout_seconds {secs} is above the maximum of {MAX_TIMEOUT_SECS}"
        )));
    }
    Ok(())
}

/// The 0.15.0 holder rule (same consumer id), tightened by the lock token when one is given.
/// Requirements: DLV-0005, DLV-0006
fn check_holder(m: &Message, holder: &Holder) -> Result<()> {
    let Some(lock) = &m.lock else { return Err(EngineError::NotLocked) };
    if *lock.consumer != *holder.consumer_id {
        return Err(EngineError::NotLocked);
    }
    match &holder.lock_token {
        Some(t) if *t != format_token(lock.token) => Err(EngineError::StaleLock),
        _ => Ok(()),
    }
}

/// A delivery of `m`; a payload in the log is left empty, for `Taken::resolve` to fill.
fn delivery(queue: &str, m: &Message, deadline_ms: u64) -> Delivery {
    Delivery {
        queue: queue.to_string(),
        id: format_id(&m.id),
        payload: m.payload.as_inline().map(|p| p.to_string()).unwrap_or_default(),
        priority: m.priority.clone(),
        retry_count: m.retry_count,
        lock_token: m.lock.as_ref().map(|l| format_token(l.token)).unwrap_or_default(),
        created_at_ns: m.created_at_ns,
        locked_until_ms: deadline_ms,
    }
}

/// Messages a consume took: their deliveries, and the payloads still to read from the log.
#[derive(Default)]
struct Taken {
    got: Vec<Delivery>,
    /// Index into `got`, message id, where the payload is.
    logged: Vec<(usize, MsgId, LogLoc)>,
    /// Every message taken, with the token of the lock the consume gave it.
    locks: Vec<(MsgId, u64)>,
    queue: Option<Arc<Queue>>,
}

impl Taken {
    /// Reads the payloads left in the log. Only once the consume's own records are
    /// durable: those come after the Published records in the log, so the bytes are in
    /// a file by then, whichever buffer they were in when the lock was taken.
    /// Requirements: SYS-0034
    fn resolve(&mut self, engine: &Engine) -> Result<()> {
        if let Some(q) = &self.queue {
            for (i, id, loc) in &self.logged {
                self.got[*i].payload = engine.read_delivered(q, id, *loc)?;
            }
        }
        Ok(())
    }
}

impl Engine {
    /// Requirements: SCH-0007, SCH-0008
    fn check_priority(&self, kind: PriorityKind, p: &Priority) -> Result<()> {
        match (kind, p) {
            (PriorityKind::Numeric, Priority::Num(_)) => Ok(()),
            (PriorityKind::Text, Priority::Text(t)) => {
                if t.is_empty() || t.len() > MAX_TEXT_PRIORITY_BYTES {
                    return Err(EngineError::InvalidPriority(format!(
                        "a text priority is 1 to {MAX_TEXT_PRIORITY_BYTES} bytes long"
                    )));
                }
                Ok(())
            }
            (PriorityKind::Numeric, Priority::Text(_)) => Err(EngineError::InvalidPriority(
                "this queue takes numeric priorities (a u64)".into(),
            )),
            (PriorityKind::Text, Priority::Num(_)) => Err(EngineError::InvalidPriority(
                "this queue takes text priorities (a string)".into(),
            )),
        }
    }

    /// Publishes one message; an unknown queue is created with the default config.
    /// Returns the message id.
    pub async fn publish(&self, queue: &str, msg: NewMessage) -> Result<String> {
        self.apply_publish(queue, msg)?.durable().await
    }

    /// [`Engine::publish`] up to the wait for durability.
    pub fn apply_publish(&self, queue: &str, msg: NewMessage) -> Result<Applied<String>> {
        let applied = self.apply_publish_batch(queue, vec![msg])?;
        Ok(applied.map(|mut ids| ids.pop().unwrap_or_default()))
    }

    /// Publishes several messages as one all-or-nothing durable write.
    /// Requirements: API-0029, DLV-0019, DLV-0025
    pub async fn publish_batch(&self, queue: &str, msgs: Vec<NewMessage>) -> Result<Vec<String>> {
        self.apply_publish_batch(queue, msgs)?.durable().await
    }

    /// [`Engine::publish_batch`] up to the wait for durability.
    pub fn apply_publish_batch(
        &self,
        queue: &str,
        msgs: Vec<NewMessage>,
    ) -> Result<Applied<Vec<String>>> {
        validate_queue_name(queue)?;
        if msgs.is_empty() {
            return Ok(Applied::new(Pending::none(), Vec::new()));
        }
        let created = self.ensure_queue(queue)?;
        let (pending, ids) = {
            let cat = self.catalog.read();
            let Some(q) = cat.get(queue) else {
                // Deleted between creation and now: as if it never existed.
                return Err(EngineError::QueueNotFound(queue.to_string()));
            };
            let mut txn = Txn::begin(self, q);
            // A payload held only by a lock that ran out with its retries used up belongs to
            // a dead letter now: not a duplicate (found by the crash fuzzer).
            txn.expire_due(self.clock.now_ms())?;
            let qid = txn.qid();
            let kind = txn.state.config.priority_kind;
            for m in &msgs {
                self.check_priority(kind, &m.priority)?;
            }
            if !txn.state.config.allow_duplicates {
                let mut seen = std::collections::HashSet::new();
                for m in &msgs {
                    if txn.state.is_duplicate(&m.payload) || !seen.insert(m.payload.as_str()) {
                        return Err(EngineError::DuplicatePayload);
                    }
                }
            }
            let spill_above = self.spill_threshold(&txn.state);
            self.limits.check_publish(&txn.state, &msgs, &self.memory, spill_above)?;
            let now_ns = self.clock.now_ns();
            let n = msgs.len() as u64;
            let mut ids = Vec::with_capacity(msgs.len());
            let recs: Vec<Record> = msgs
                .into_iter()
                .map(|m| {
                    let id = *uuid::Uuid::new_v4().as_bytes();
                    ids.push(format_id(&id));
                    let msg = PublishedMessage {
                        id,
                        seq: self.next_seq(),
                        priority: m.priority,
                        payload: m.payload,
                        max_retries: m.max_retries,
                        created_at_ns: now_ns,
                    };
                    Record::Published { qid, msg }
                })
                .collect();
            txn.emit(Record::one_or_group(recs))?;
            Counters::add(&txn.counters().publish, n);
            self.totals.published.fetch_add(n, AtomicOrdering::Relaxed);
            (created.then(txn.finish()), ids)
        };
        Ok(Applied::new(pending, ids))
    }

    /// Takes up to `max` messages, locking each to `consumer_id` for `timeout_secs`.
    /// When none is available and `wait` is non-zero, waits up to that long for one.
    /// Requirements: DLV-0026, DLV-0027
    pub async fn consume(
        &self,
        queue: &str,
        consumer_id: &str,
        timeout_secs: u64,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        validate_queue_name(queue)?;
        check_timeout(timeout_secs)?;
        super::limits::check_consumer_id(consumer_id)?;
        if !(1..=MAX_CONSUME_BATCH).contains(&max) {
            return Err(EngineError::InvalidRequest(format!(
                "max_messages must be 1 to {MAX_CONSUME_BATCH}"
            )));
        }
        if wait > Duration::from_secs(MAX_WAIT_SECS) {
            return Err(EngineError::InvalidTimeout(format!(
                "wait_seconds is at most {MAX_WAIT_SECS}"
            )));
        }
        let end = tokio::time::Instant::now() + wait;
        loop {
            let (pending, mut taken) = self.try_consume(queue, consumer_id, timeout_secs, max)?;
            if !taken.got.is_empty() || tokio::time::Instant::now() >= end {
                pending.wait().await?;
                // Limitation: the payloads are copied out of the log's memory maps on the
                // runtime thread; a page not in the page cache blocks it for a disk read.
                if let Err(e) = taken.resolve(self) {
                    // The locks are durable already; left in place they would hide the
                    // messages from every consumer until they expire.
                    self.release_undelivered(&taken).await;
                    return Err(e);
                }
                return Ok(taken.got);
            }
            pending.wait().await?;
            self.wait_available(queue, end).await;
        }
    }

    /// Requirements: DLV-0001, DLV-0003
    fn try_consume(
        &self,
        queue: &str,
        consumer_id: &str,
        timeout_secs: u64,
        max: usize,
    ) -> Result<(Pending, Taken)> {
        let cat = self.catalog.read();
        let Some(q) = cat.get(queue) else { return Ok((Pending::none(), Taken::default())) };
        let mut txn = Txn::begin(self, q);
        let now = self.clock.now_ms();
        txn.expire_due(now)?;
        let ids = txn.state.peek_ready(max);
        if ids.is_empty() {
            return Ok((txn.finish(), Taken::default()));
        }
        let qid = txn.qid();
        let deadline_ms = now.saturating_add(timeout_secs * 1000);
        let recs: Vec<Record> = ids
            .iter()
            .map(|id| Record::Locked {
                qid,
                id: *id,
                consumer: consumer_id.to_string(),
                token: self.next_seq(),
                deadline_ms,
            })
            .collect();
        txn.emit(Record::one_or_group(recs))?;
        let name = txn.state.name.clone();
        let mut taken = Taken { queue: Some(q.clone()), ..Taken::default() };
        for m in ids.iter().filter_map(|id| txn.state.get(id)) {
            if let Payload::Logged(loc) = m.payload {
                taken.logged.push((taken.got.len(), m.id, loc));
            }
            if let Some(lock) = &m.lock {
                taken.locks.push((m.id, lock.token));
            }
            taken.got.push(delivery(&name, m, deadline_ms));
        }
        Ok((txn.finish(), taken))
    }

    /// Puts the messages of a consume whose payloads could not be read back in the queue
    /// at once (the client gets 503 and nothing else), as a disconnect does: each one that
    /// still holds the lock this consume gave it. Best effort: a failure is logged, and
    /// the locks then run out as usual.
    /// Requirements: SYS-0034
    // Limitation: `Released` keeps the retry count, so the failed delivery still counts
    // as one of the message's retries; undoing that would take a new kind of record.
    async fn release_undelivered(&self, taken: &Taken) {
        let Some(q) = &taken.queue else { return };
        let pending = {
            let cat = self.catalog.read();
            let qid = q.state.lock().qid;
            // Deleted (and maybe created again) since: nothing of it to give back.
            if !cat.queues.get(&qid).is_some_and(|live| Arc::ptr_eq(live, q)) {
                return;
            }
            let mut txn = Txn::begin(self, q);
            let still_ours = |id: &MsgId, token: u64| {
                let lock = txn.state.get(id).and_then(|m| m.lock.as_ref());
                lock.is_some_and(|l| l.token == token)
            };
            let recs: Vec<Record> = taken
                .locks
                .iter()
                .filter(|(id, token)| still_ours(id, *token))
                .map(|(id, _)| Record::Released { qid, id: *id })
                .collect();
            if recs.is_empty() {
                return;
            }
            if let Err(e) = txn.emit(Record::one_or_group(recs)) {
                tracing::warn!(queue = %txn.state.name, error = %e, "could not release locks");
            }
            txn.finish()
        };
        if let Err(e) = pending.wait().await {
            tracing::warn!(error = %e, "releasing the locks of a failed delivery failed");
        }
    }

    /// Runs `f` on the queue's state under its lock, after settling expired locks.
    pub(super) fn with_queue<R>(
        &self,
        queue: &str,
        missing: impl FnOnce() -> Result<R>,
        f: impl FnOnce(&mut Txn<'_>) -> Result<R>,
    ) -> Result<(Pending, R)> {
        validate_queue_name(queue)?;
        let cat = self.catalog.read();
        let Some(q) = cat.get(queue) else { return missing().map(|r| (Pending::none(), r)) };
        let mut txn = Txn::begin(self, q);
        txn.expire_due(self.clock.now_ms())?;
        let r = f(&mut txn)?;
        Ok((txn.finish(), r))
    }

    /// Requirements: DLV-0008
    pub async fn ack(&self, queue: &str, id: &str, holder: &Holder) -> Result<()> {
        self.apply_ack(queue, id, holder)?.durable().await
    }

    /// [`Engine::ack`] up to the wait for durability.
    pub fn apply_ack(&self, queue: &str, id: &str, holder: &Holder) -> Result<Applied<()>> {
        let id = parse_id(id);
        let (pending, ()) = self.with_queue(
            queue,
            || Err(EngineError::NotLocked),
            |txn| {
                let id = id.ok_or(EngineError::NotLocked)?;
                let m = txn.state.get(&id).ok_or(EngineError::NotLocked)?;
                check_holder(m, holder)?;
                let qid = txn.qid();
                txn.emit(Record::Acked { qid, id })?;
                Counters::add(&txn.counters().ack, 1);
                self.totals.acked.fetch_add(1, AtomicOrdering::Relaxed);
                Ok(())
            },
        )?;
        Ok(Applied::new(pending, ()))
    }

    pub async fn nack(&self, queue: &str, id: &str, holder: &Holder) -> Result<NackOutcome> {
        self.apply_nack(queue, id, holder)?.durable().await
    }

    /// [`Engine::nack`] up to the wait for durability.
    pub fn apply_nack(
        &self,
        queue: &str,
        id: &str,
        holder: &Holder,
    ) -> Result<Applied<NackOutcome>> {
        let id = parse_id(id);
        let (pending, outcome) = self.with_queue(
            queue,
            || Err(EngineError::NotLocked),
            |txn| {
                let id = id.ok_or(EngineError::NotLocked)?;
                let m = txn.state.get(&id).ok_or(EngineError::NotLocked)?;
                check_holder(m, holder)?;
                let (rec, outcome) = self.nack_record(txn.qid(), m);
                txn.emit(rec)?;
                self.count_nacks(&txn.counters(), &[outcome]);
                Ok(outcome)
            },
        )?;
        Ok(Applied::new(pending, outcome))
    }

    /// Requirements: DLV-0009, DLV-0010
    fn nack_record(&self, qid: u64, m: &Message) -> (Record, NackOutcome) {
        if m.retries_used_up() {
            let at_ms = self.clock.now_ms();
            (Record::DeadLettered { qid, id: m.id, at_ms }, NackOutcome::DeadLettered)
        } else {
            (Record::Nacked { qid, id: m.id }, NackOutcome::Requeued)
        }
    }

    fn count_nacks(&self, counters: &Counters, outcomes: &[NackOutcome]) {
        let n = outcomes.len() as u64;
        let dead = outcomes.iter().filter(|o| **o == NackOutcome::DeadLettered).count() as u64;
        Counters::add(&counters.nack, n);
        self.totals.nacked.fetch_add(n, AtomicOrdering::Relaxed);
        self.totals.dead_lettered.fetch_add(dead, AtomicOrdering::Relaxed);
    }

    /// The distinct ids of `ids` that `consumer_id` holds, in request order, and the
    /// not-found list (every other entry, repeats included).
    /// Requirements: DLV-0013
    fn held_ids(txn: &Txn<'_>, consumer_id: &str, ids: &[String]) -> (Vec<MsgId>, Vec<String>) {
        let holder = Holder { consumer_id: consumer_id.to_string(), lock_token: None };
        let mut held = Vec::new();
        let mut not_found = Vec::new();
        for raw in ids {
            let ok = parse_id(raw).filter(|id| {
                !held.contains(id)
                    && txn.state.get(id).is_some_and(|m| check_holder(m, &holder).is_ok())
            });
            match ok {
                Some(id) => held.push(id),
                None => not_found.push(raw.clone()),
            }
        }
        (held, not_found)
    }

    /// Requirements: DLV-0023
    pub async fn ack_batch(
        &self,
        queue: &str,
        consumer_id: &str,
        ids: &[String],
    ) -> Result<AckBatchOutcome> {
        self.apply_ack_batch(queue, consumer_id, ids)?.durable().await
    }

    /// [`Engine::ack_batch`] up to the wait for durability.
    pub fn apply_ack_batch(
        &self,
        queue: &str,
        consumer_id: &str,
        ids: &[String],
    ) -> Result<Applied<AckBatchOutcome>> {
        let all_missing = || Ok(AckBatchOutcome { acked: vec![], not_found: ids.to_vec() });
        let (pending, out) = self.with_queue(queue, all_missing, |txn| {
            let (mut held, not_found) = Self::held_ids(txn, consumer_id, ids);
            if held.is_empty() {
                return Ok(AckBatchOutcome { acked: vec![], not_found });
            }
            // Reported in the queue's consumption order.
            let ordering = txn.state.config.ordering;
            held.sort_by_cached_key(|id| txn.state.get(id).map(|m| m.key(ordering)));
            let qid = txn.qid();
            let recs = held.iter().map(|id| Record::Acked { qid, id: *id }).collect();
            txn.emit(Record::Group(recs))?;
            let n = held.len() as u64;
            Counters::add(&txn.counters().ack, n);
            self.totals.acked.fetch_add(n, AtomicOrdering::Relaxed);
            Ok(AckBatchOutcome { acked: held.iter().map(format_id).collect(), not_found })
        })?;
        Ok(Applied::new(pending, out))
    }

    /// Requirements: DLV-0024
    pub async fn nack_batch(
        &self,
        queue: &str,
        consumer_id: &str,
        ids: &[String],
    ) -> Result<NackBatchOutcome> {
        self.apply_nack_batch(queue, consumer_id, ids)?.durable().await
    }

    /// [`Engine::nack_batch`] up to the wait for durability.
    pub fn apply_nack_batch(
        &self,
        queue: &str,
        consumer_id: &str,
        ids: &[String],
    ) -> Result<Applied<NackBatchOutcome>> {
        let all_missing = || Ok(NackBatchOutcome { not_found: ids.to_vec(), ..Default::default() });
        let (pending, out) = self.with_queue(queue, all_missing, |txn| {
            let (held, not_found) = Self::held_ids(txn, consumer_id, ids);
            let mut out = NackBatchOutcome { not_found, ..Default::default() };
            if held.is_empty() {
                return Ok(out);
            }
            let qid = txn.qid();
            let mut recs = Vec::with_capacity(held.len());
            let mut outcomes = Vec::with_capacity(held.len());
            for id in &held {
                let m = txn.state.get(id).expect("held ids are in the queue");
                let (rec, outcome) = self.nack_record(qid, m);
                recs.push(rec);
                outcomes.push(outcome);
                match outcome {
                    NackOutcome::Requeued => out.unlocked.push(format_id(id)),
                    NackOutcome::DeadLettered => out.dead_lettered.push(format_id(id)),
                }
            }
            txn.emit(Record::Group(recs))?;
            self.count_nacks(&txn.counters(), &outcomes);
            Ok(out)
        })?;
        Ok(Applied::new(pending, out))
    }

    /// Extends a held lock to now + `timeout_secs`; returns the new deadline (epoch ms).
    /// Requirements: DLV-0012
    pub async fn renew(
        &self,
        queue: &str,
        id: &str,
        holder: &Holder,
        timeout_secs: u64,
    ) -> Result<u64> {
        self.apply_renew(queue, id, holder, timeout_secs)?.durable().await
    }

    /// [`Engine::renew`] up to the wait for durability.
    pub fn apply_renew(
        &self,
        queue: &str,
        id: &str,
        holder: &Holder,
        timeout_secs: u64,
    ) -> Result<Applied<u64>> {
        check_timeout(timeout_secs)?;
        let id = parse_id(id);
        let (pending, deadline_ms) = self.with_queue(
            queue,
            || Err(EngineError::NotLocked),
            |txn| {
                let id = id.ok_or(EngineError::NotLocked)?;
                let m = txn.state.get(&id).ok_or(EngineError::NotLocked)?;
                check_holder(m, holder)?;
                let deadline_ms = self.clock.now_ms().saturating_add(timeout_secs * 1000);
                let qid = txn.qid();
                txn.emit(Record::Renewed { qid, id, deadline_ms })?;
                Ok(deadline_ms)
            },
        )?;
        Ok(Applied::new(pending, deadline_ms))
    }

    /// Puts every message locked by `consumer_id` back in its queue at once,
    /// `retry_count` kept (a WebSocket connection that went away).
    /// Requirements: WS-0021
    pub async fn release_consumer(&self, consumer_id: &str) -> Result<u64> {
        let mut pending = Pending::none();
        let mut released = 0;
        {
            let cat = self.catalog.read();
            let queues: Vec<Arc<super::catalog::Queue>> = cat.queues.values().cloned().collect();
            for q in &queues {
                let mut txn = Txn::begin(self, q);
                let ids = txn.state.locked_by(consumer_id);
                if ids.is_empty() {
                    let _ = txn.finish();
                    continue;
                }
                let qid = txn.qid();
                released += ids.len() as u64;
                let recs = ids.iter().map(|id| Record::Released { qid, id: *id }).collect();
                txn.emit(Record::Group(recs))?;
                pending = pending.then(txn.finish());
            }
        }
        pending.wait().await?;
        Ok(released)
    }
}
