//! One queue's state: its messages, the ready index, the lock table, the dead letters and
//! the duplicate set; and `apply`, the only code that changes them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crossbeam_skiplist::SkipMap;

use super::index::{ReadyIndex, ReadyKey};
use super::limits::{message_cost, MemoryGauge};
use super::payload::{inline_payload, Payload, Spill};
use super::record::{MsgId, PublishedMessage, Record, SnapshotDeadLetter, SnapshotMessage};
use super::table::{MessageTable, Slot};
use super::types::{Ordering, Priority, QueueConfig};
use crate::wal::LogLoc;

/// A message held by a consumer.
#[derive(Clone, Debug)]
pub struct Lock {
    pub consumer: Arc<str>,
    pub token: u64,
    pub deadline_ms: u64,
}

impl Lock {
    /// Boxed, as a message holds it.
    fn boxed(consumer: &str, token: u64, deadline_ms: u64) -> Box<Lock> {
        Box::new(Lock { consumer: Arc::from(consumer), token, deadline_ms })
    }
}

#[derive(Clone, Debug)]
pub struct Message {
    pub id: MsgId,
    /// Publish sequence: with the priority and the queue's ordering, the ready index key
    /// (`Message::key`), which is not stored twice.
    pub seq: u64,
    pub priority: Priority,
    /// In RAM, or (above the spill threshold, in wal mode) an address in the log.
    pub payload: Payload,
    pub max_retries: u32,
    pub retry_count: u32,
    pub created_at_ns: u64,
    /// Boxed: most queued messages are not locked, and the box keeps them 24 bytes smaller.
    pub lock: Option<Box<Lock>>,
}

impl Message {
    /// What this message is charged against the memory limit (`limits::message_cost`):
    /// a payload left in the log costs nothing.
    pub fn cost(&self) -> u64 {
        message_cost(self.payload.ram_len(), &self.priority)
    }

    /// This message's place in the ready index of a queue of the given ordering (which a
    /// queue never changes).
    pub fn key(&self, ordering: Ordering) -> ReadyKey {
        ReadyKey::new(ordering, &self.priority, self.seq)
    }

    /// A nack or an expired lock now makes this message a dead letter, not ready again.
    /// Requirements: DLV-0009, DLV-0011
    pub fn retries_used_up(&self) -> bool {
        self.retry_count >= self.max_retries
    }
}

#[derive(Clone, Debug)]
pub struct DeadLetter {
    pub msg: Message,
    pub at_ms: u64,
}

/// What changed when a record was applied; the caller turns this into counters and wakeups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effect {
    /// Messages that became consumable.
    pub became_ready: u64,
    /// Messages that left the queue for good (acked, purged, de-duplicated, deleted).
    pub removed: u64,
}

/// Requirements: SCH-0013, SCH-0014
pub struct QueueState {
    pub qid: u64,
    pub name: String,
    pub config: QueueConfig,
    /// The messages, in slots of one array (the slab), by id. At a million queued, whose
    /// payloads are left in the log, a message costs about 140 bytes of RSS: its slot (88),
    /// its share of the id table (10.5: a 4-byte slot number and a control byte, in a table
    /// at most 7/8 full) and its ready-index entry (33 in a sorted run; a skip-list node,
    /// 40 bytes and 8 a tower level, for the fewer than 4,096 made ready since the skip
    /// list was last merged). A payload held in RAM adds its bytes, a 16-byte
    /// reference-count header and the allocator's rounding, and with duplicates off an
    /// entry in the duplicate set.
    /// Requirements: PER-0033
    msgs: MessageTable,
    /// Ready (unlocked) messages by delivery order, by slot in `msgs` (4 bytes where an id
    /// takes 16: a run entry is 32 bytes, not 40). Rebuilt when the slab moves its messages.
    ready: ReadyIndex<Slot>,
    /// While replay runs, `ready` is left empty and built once at the end
    /// (`finish_replay`), by one sort: an insert per message into a skip list, in the random
    /// order of the log, missed the cache on every level (half of a restart's time).
    ready_deferred: bool,
    /// Locked messages by (deadline, seq): the first entry is the next lock to expire.
    locks: SkipMap<(u64, u64), MsgId>,
    /// Dead letters in the order they died.
    dead: BTreeMap<u64, DeadLetter>,
    dead_index: HashMap<MsgId, u64>,
    next_dead: u64,
    /// Payload -> copies in the queue; kept only while `allow_duplicates` is false. Such a
    /// queue holds every payload in RAM (see `materialize`).
    // Limitation: the duplicate set needs the bytes, so a queue with `allow_duplicates`
    // false keeps its payloads in RAM whatever their size; only the others spill.
    dups: Option<HashMap<Arc<str>, u32>>,
    /// Bytes this queue's messages and dead letters are charged (`limits::message_cost`),
    /// also counted in the engine-wide `gauge`.
    held_bytes: u64,
    gauge: Arc<MemoryGauge>,
}

impl QueueState {
    pub fn new(qid: u64, name: String, config: QueueConfig, gauge: Arc<MemoryGauge>) -> QueueState {
        let dups = if config.allow_duplicates { None } else { Some(HashMap::new()) };
        QueueState {
            qid,
            name,
            config,
            msgs: MessageTable::default(),
            ready: ReadyIndex::default(),
            ready_deferred: false,
            locks: SkipMap::new(),
            dead: BTreeMap::new(),
            dead_index: HashMap::new(),
            next_dead: 0,
            dups,
            held_bytes: 0,
            gauge,
        }
    }

    /// Bytes this queue is charged for its messages and dead letters.
    pub fn held_bytes(&self) -> u64 {
        self.held_bytes
    }

    /// Requirements: SYS-0026
    fn charge(&mut self, m: &Message) {
        let cost = m.cost();
        self.held_bytes += cost;
        self.gauge.add(cost);
    }

    /// Requirements: SYS-0026
    fn credit(&mut self, bytes: u64) {
        let bytes = bytes.min(self.held_bytes);
        self.held_bytes -= bytes;
        self.gauge.sub(bytes);
    }

    fn credit_message(&mut self, m: &Message) {
        self.credit(m.cost());
    }

    /// Gives back everything the queue is charged: it is being deleted.
    pub fn release_memory(&mut self) {
        self.credit(self.held_bytes);
    }

    pub fn len(&self) -> u64 {
        self.msgs.len() as u64
    }

    pub fn ready_len(&self) -> u64 {
        self.ready.len() as u64
    }

    pub fn locked_len(&self) -> u64 {
        self.locks.len() as u64
    }

    pub fn dead_len(&self) -> u64 {
        self.dead.len() as u64
    }

    pub fn get(&self, id: &MsgId) -> Option<&Message> {
        self.msgs.get(id)
    }

    /// True when a publish of `payload` would duplicate a message in the queue.
    /// Requirements: DLV-0019
    pub fn is_duplicate(&self, payload: &str) -> bool {
        self.dups.as_ref().is_some_and(|d| d.contains_key(payload))
    }

    /// The next `max` ready messages in delivery order.
    /// Requirements: SCH-0011
    pub fn peek_ready(&self, max: usize) -> Vec<MsgId> {
        self.ready_ids().take(max).collect()
    }

    /// Ids of the ready messages, in delivery order.
    fn ready_ids(&self) -> impl Iterator<Item = MsgId> + '_ {
        self.ids_at(self.ready.iter())
    }

    /// Ids of the messages in `slots`, which must each hold one.
    fn ids_at<'a>(
        &'a self,
        slots: impl Iterator<Item = Slot> + 'a,
    ) -> impl Iterator<Item = MsgId> + 'a {
        let found = slots.filter_map(|i| {
            let m = self.msgs.at(i);
            debug_assert!(m.is_some(), "an indexed slot without its message");
            m
        });
        found.map(|m| m.id)
    }

    /// Locks whose deadline is at or before `now_ms`, earliest first.
    pub fn due_locks(&self, now_ms: u64) -> Vec<MsgId> {
        self.due_lock_entries(now_ms).map(|e| *e.value()).collect()
    }

    /// The lock table up to `now_ms`. Not `SkipMap::range`: in crossbeam-skiplist 0.1.3 a
    /// range iterator never releases the entries it steps over, so every lock it visited
    /// leaked once removed (found by the crash fuzzer under LeakSanitizer; upstream
    /// crossbeam#1178). `iter` releases them.
    /// Requirements: DLV-0029
    fn due_lock_entries(
        &self,
        now_ms: u64,
    ) -> impl Iterator<Item = crossbeam_skiplist::map::Entry<'_, (u64, u64), MsgId>> {
        self.locks.iter().take_while(move |e| e.key().0 <= now_ms)
    }

    /// How many locks have expired by `now_ms`, without changing anything: stats read this
    /// so that a read never has to write.
    pub fn due_lock_split(&self, now_ms: u64) -> (u64, u64) {
        let mut requeue = 0;
        let mut dead = 0;
        for e in self.due_lock_entries(now_ms) {
            match self.msgs.get(e.value()) {
                Some(m) if m.retries_used_up() => dead += 1,
                Some(_) => requeue += 1,
                None => {}
            }
        }
        (requeue, dead)
    }

    /// The locked messages whose lock expired by `now_ms` with their retries used up, with
    /// their deadlines: the dead letters they become once settled, in the order they are
    /// added then. A read lists them without writing, as stats count them.
    /// Requirements: DLV-0011
    pub fn due_dead_letters(&self, now_ms: u64) -> impl Iterator<Item = (&Message, u64)> {
        self.due_lock_entries(now_ms).filter_map(move |e| {
            let m = self.msgs.get(e.value())?;
            m.retries_used_up().then_some((m, e.key().0))
        })
    }

    /// Deadline of the lock that expires first.
    pub fn next_deadline(&self) -> Option<u64> {
        self.locks.front().map(|e| e.key().0)
    }

    /// Ids locked by `consumer`.
    pub fn locked_by(&self, consumer: &str) -> Vec<MsgId> {
        self.locks
            .iter()
            .filter(|e| {
                self.msgs
                    .get(e.value())
                    .and_then(|m| m.lock.as_ref())
                    .is_some_and(|l| &*l.consumer == consumer)
            })
            .map(|e| *e.value())
            .collect()
    }

    /// Dead letters, oldest first.
    pub fn dead_letters(&self) -> impl Iterator<Item = &DeadLetter> {
        self.dead.values()
    }

    pub fn dead_letter(&self, id: &MsgId) -> Option<&DeadLetter> {
        self.dead_index.get(id).and_then(|k| self.dead.get(k))
    }

    /// The payload of a message or dead letter.
    pub fn payload_of(&self, id: &MsgId) -> Option<&Payload> {
        match self.msgs.get(id) {
            Some(m) => Some(&m.payload),
            None => self.dead_letter(id).map(|d| &d.msg.payload),
        }
    }

    /// Points a message or dead letter whose payload is at `from` to `to` (a compaction
    /// moved it into its checkpoint). Returns false when it is gone or elsewhere.
    /// Requirements: SYS-0034
    pub fn repoint(&mut self, id: &MsgId, from: LogLoc, to: LogLoc) -> bool {
        let payload = match self.msgs.get_mut(id) {
            Some(m) => &mut m.payload,
            None => match self.dead_index.get(id).and_then(|k| self.dead.get_mut(k)) {
                Some(d) => &mut d.msg.payload,
                None => return false,
            },
        };
        if *payload != Payload::Logged(from) {
            return false;
        }
        *payload = Payload::Logged(to);
        true
    }

    /// Brings every payload of the queue that is in the log into RAM (charging it), with
    /// `read`: before duplicates are turned off, since the duplicate set needs the bytes.
    /// On an error nothing has changed but the payloads read so far.
    /// Requirements: SYS-0034, DLV-0021
    pub fn materialize(
        &mut self,
        read: &mut dyn FnMut(LogLoc) -> Result<String, String>,
    ) -> Result<(), String> {
        let mut changed = 0u64;
        let mut result = Ok(());
        for m in self.msgs.values_mut().chain(self.dead.values_mut().map(|d| &mut d.msg)) {
            let Payload::Logged(loc) = m.payload else { continue };
            match read(loc) {
                Ok(text) => {
                    changed += text.len() as u64;
                    m.payload = Payload::Inline(Arc::from(text));
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.held_bytes += changed;
        self.gauge.add(changed);
        result
    }

    /// Bytes of the queue's payloads (messages and dead letters) that are in the log: what
    /// [`QueueState::materialize`] would add to the memory charged. No I/O.
    /// Requirements: SYS-0026, SYS-0034
    pub fn logged_payload_bytes(&self) -> u64 {
        let all = self.msgs.values().chain(self.dead.values().map(|d| &d.msg));
        all.map(|m| (m.payload.len() - m.payload.ram_len()) as u64).sum()
    }

    /// Copies of every message (ready and locked, in no order) and every dead letter
    /// (oldest first), for a checkpoint. Payloads are shared, not copied.
    pub fn snapshot(&self) -> (Vec<Message>, Vec<DeadLetter>) {
        (self.msgs.values().cloned().collect(), self.dead.values().cloned().collect())
    }

    /// Whether this queue's payloads may stay in the log: not while it refuses duplicates,
    /// as the duplicate set compares the bytes.
    /// Requirements: SYS-0034
    pub fn spills_payloads(&self) -> bool {
        self.config.allow_duplicates
    }

    /// Leaves the ready index unbuilt until `finish_replay`: for a queue rebuilt from the
    /// log, which only applies records (they name their messages) and reads no order.
    /// Requirements: PER-0031
    pub fn defer_ready_index(&mut self) {
        self.ready_deferred = self.ready.is_empty();
        self.msgs.begin_replay();
    }

    /// Makes the message table find what a replay added to it unfound
    /// (`MessageTable::insert_deferred`); a crafted log's repeated ids are dropped, as
    /// `insert_new` drops them.
    fn catch_up(&mut self) {
        for m in self.msgs.catch_up() {
            self.credit_message(&m);
        }
    }

    /// Builds the ready index deferred by `defer_ready_index`: one sort.
    /// Requirements: PER-0031, PER-0032
    pub fn finish_replay(&mut self) {
        self.catch_up();
        self.msgs.end_replay();
        if std::mem::take(&mut self.ready_deferred) {
            self.ready = ReadyIndex::from_sorted(self.sorted_ready());
        }
    }

    /// The ready messages sorted by key, from the message table.
    fn sorted_ready(&self) -> Vec<(ReadyKey, Slot)> {
        // Owned keys: sorting through references would chase a pointer per comparison.
        let mut keys: Vec<(ReadyKey, Slot)> = self
            .msgs
            .slotted()
            .filter(|(_, m)| m.lock.is_none())
            .map(|(i, m)| (m.key(self.config.ordering), i))
            .collect();
        // Ties (only a crafted log repeats a key) go by slot: their order then does not
        // depend on where the sort happened to find them.
        keys.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        keys
    }

    /// Applies one queue-level record. Records that name no message of this queue (which a
    /// valid log never holds) are ignored rather than trusted.
    /// Requirements: PER-0013
    pub fn apply(&mut self, rec: &Record) -> Effect {
        self.apply_from(rec, None)
    }

    /// [`QueueState::apply`] of a record whose payloads may stay in the log (`spill`):
    /// only when duplicates are allowed, as the duplicate set needs the bytes.
    /// Requirements: PER-0013, SYS-0034
    pub fn apply_from(&mut self, rec: &Record, spill: Option<&Spill<'_>>) -> Effect {
        let spill = spill.filter(|_| self.spills_payloads());
        let mut fx = Effect::default();
        // Records that only add messages may leave them for the table to find later
        // (`insert`); every other one reads or changes what the table finds. A group
        // decides record by record.
        let adds_only = matches!(rec, Record::Published { .. } | Record::MessagesSnapshot { .. });
        if !adds_only && !matches!(rec, Record::Group(_)) {
            self.catch_up();
        }
        match rec {
            Record::Published { msg, .. } => {
                let m = new_message(msg, spill);
                self.charge(&m);
                fx.became_ready = u64::from(self.insert_new(m));
            }
            Record::Locked { id, consumer, token, deadline_ms, .. } => {
                if let Some(mut m) = self.take(id) {
                    m.retry_count = m.retry_count.saturating_add(1);
                    m.lock = Some(Lock::boxed(consumer, *token, *deadline_ms));
                    self.put_back(m);
                }
            }
            Record::Renewed { id, deadline_ms, .. } => {
                if let Some(mut m) = self.take(id) {
                    if let Some(l) = m.lock.as_mut() {
                        l.deadline_ms = *deadline_ms;
                    }
                    self.put_back(m);
                }
            }
            Record::Acked { id, .. } => {
                if let Some(m) = self.take(id) {
                    self.forget_payload(&m.payload);
                    self.credit_message(&m);
                    fx.removed = 1;
                }
            }
            Record::Nacked { id, .. }
            | Record::Expired { id, .. }
            | Record::Released { id, .. } => {
                if let Some(mut m) = self.take(id) {
                    m.lock = None;
                    self.put_back(m);
                    fx.became_ready = 1;
                }
            }
            Record::DeadLettered { id, at_ms, .. } => {
                if let Some(m) = self.take(id) {
                    self.forget_payload(&m.payload);
                    self.push_dead(DeadLetter { msg: m, at_ms: *at_ms });
                }
            }
            Record::Redriven { id, .. } => {
                if let Some(k) = self.dead_index.remove(id) {
                    if let Some(dl) = self.dead.remove(&k) {
                        let mut m = dl.msg;
                        m.lock = None;
                        m.retry_count = 0;
                        fx.became_ready = u64::from(self.insert_new(m));
                    }
                }
            }
            Record::MessagesSnapshot { msgs, .. } => {
                for snap in msgs {
                    let m = restored_message(snap, spill);
                    let ready = m.lock.is_none();
                    self.charge(&m);
                    // Locked copies count as duplicates too, as they do after a publish.
                    fx.became_ready += u64::from(self.insert_new(m) && ready);
                }
            }
            Record::DeadLettersSnapshot { dead, .. } => {
                for snap in dead {
                    let mut m = new_message(&snap.msg, spill);
                    m.retry_count = snap.retry_count;
                    self.charge(&m);
                    self.push_dead(DeadLetter { msg: m, at_ms: snap.at_ms });
                }
            }
            Record::DeadLettersPurged { .. } => {
                let freed: u64 = self.dead.values().map(|d| d.msg.cost()).sum();
                self.credit(freed);
                self.dead.clear();
                self.dead_index.clear();
            }
            Record::QueuePurged { .. } => {
                fx.removed = self.len();
                let freed: u64 = self.msgs.values().map(|m| m.cost()).sum();
                self.credit(freed);
                self.msgs.clear();
                self.ready = ReadyIndex::default();
                self.locks = SkipMap::new();
                if let Some(d) = self.dups.as_mut() {
                    d.clear();
                }
            }
            Record::DuplicatesChanged { allow_duplicates, .. } => {
                fx.removed = self.set_allow_duplicates(*allow_duplicates);
            }
            Record::Group(recs) => {
                for r in recs {
                    let f = self.apply_from(r, spill);
                    fx.became_ready += f.became_ready;
                    fx.removed += f.removed;
                }
            }
            // Catalog records are applied by the catalog.
            Record::QueueCreated { .. }
            | Record::QueueRenamed { .. }
            | Record::QueueDeleted { .. }
            | Record::QueueSnapshot { .. }
            | Record::Checkpoint { .. } => {}
        }
        fx
    }

    /// Turning duplicates off keeps, for each payload, every locked copy (a consumer holds
    /// it) and otherwise the first ready copy in delivery order; the other ready copies are
    /// removed. Returns how many were removed.
    /// Requirements: DLV-0021, DLV-0022
    fn set_allow_duplicates(&mut self, allow: bool) -> u64 {
        self.config.allow_duplicates = allow;
        if allow {
            self.dups = None;
            return 0;
        }
        if self.dups.is_some() {
            return 0;
        }
        // The walk below needs the delivery order. During a replay it is sorted apart, and
        // the index stays deferred: built now, it would take the rest of the log's messages
        // one insert at a time.
        let order: Vec<MsgId> = if self.ready_deferred {
            self.ids_at(self.sorted_ready().into_iter().map(|(_, i)| i)).collect()
        } else {
            self.ready_ids().collect()
        };
        // Every payload is in RAM here: the engine materializes a queue's payloads before
        // it logs this change (and replay before it applies it). One still in the log
        // would count as unique.
        let mut dups: HashMap<Arc<str>, u32> = HashMap::new();
        for e in self.locks.iter() {
            if let Some(p) = self.msgs.get(e.value()).and_then(|m| m.payload.as_inline()) {
                *dups.entry(p.clone()).or_default() += 1;
            }
        }
        let mut doomed = Vec::new();
        for id in order {
            let Some(m) = self.msgs.get(&id) else {
                debug_assert!(false, "a ready entry without its message");
                continue;
            };
            let Some(p) = m.payload.as_inline() else { continue };
            match dups.get_mut(p) {
                Some(_) => doomed.push(m.id),
                None => {
                    dups.insert(p.clone(), 1);
                }
            }
        }
        for id in &doomed {
            if let Some(m) = self.take(id) {
                self.credit_message(&m);
            }
        }
        self.dups = Some(dups);
        doomed.len() as u64
    }

    /// Requirements: DLV-0014
    fn push_dead(&mut self, dl: DeadLetter) {
        let k = self.next_dead;
        self.next_dead += 1;
        self.dead_index.insert(dl.msg.id, k);
        self.dead.insert(k, dl);
    }

    /// Inserts a message new to the map (published, restored from a checkpoint, redriven),
    /// counting its payload in the duplicate set if the queue keeps one. False when the
    /// queue holds its id already (only a crafted log repeats one): it is dropped, and what
    /// it was charged given back.
    /// Requirements: SCH-0010
    fn insert_new(&mut self, m: Message) -> bool {
        let counts = self.dups.is_some();
        match self.insert(m) {
            Ok(m) => {
                let payload = m.payload.as_inline().filter(|_| counts).cloned();
                if let (Some(d), Some(p)) = (self.dups.as_mut(), payload) {
                    *d.entry(p).or_default() += 1;
                }
                true
            }
            Err(m) => {
                self.credit_message(&m);
                false
            }
        }
    }

    /// Puts a message into the map and the index its lock state calls for; refuses (returns)
    /// one whose id the map holds, so that no index entry outlives its message.
    fn insert(&mut self, m: Message) -> Result<&Message, Message> {
        // While a replay defers the ready index, a ready message of a queue without a
        // duplicate set goes into the slab alone, for the table to find at the next
        // catch-up (a crafted log's repeated id is counted as inserted here, and dropped
        // then); any other insert needs the table to find every message first.
        let (i, m) = if m.lock.is_none() && self.ready_deferred && self.dups.is_none() {
            self.msgs.insert_deferred(m)?
        } else {
            self.catch_up();
            self.msgs.insert(m)?
        };
        match &m.lock {
            Some(l) => {
                self.locks.insert((l.deadline_ms, m.seq), m.id);
            }
            None if self.ready_deferred => {}
            None => {
                self.ready.insert(m.key(self.config.ordering), i);
            }
        }
        Ok(m)
    }

    /// Puts back a message `take` took out, changed.
    fn put_back(&mut self, m: Message) {
        let refused = self.insert(m).is_err();
        debug_assert!(!refused, "a message taken out was still in the map");
    }

    /// Removes a message from the map and whichever index holds it. The duplicate set is
    /// left alone: callers that remove the message for good call `forget_payload`.
    fn take(&mut self, id: &MsgId) -> Option<Message> {
        let (i, m) = self.msgs.remove(id)?;
        match &m.lock {
            Some(l) => {
                self.locks.remove(&(l.deadline_ms, m.seq));
            }
            None if self.ready_deferred => {}
            None => {
                self.ready.remove(&m.key(self.config.ordering), &i);
            }
        }
        // A compaction of the slab moves the messages the ready index names by slot: it is
        // sorted again (a quarter of the slab at most, once per three quarters emptied).
        if self.msgs.shrink() && !self.ready_deferred {
            self.ready = ReadyIndex::from_sorted(self.sorted_ready());
        }
        Some(m)
    }

    /// Requirements: DLV-0020
    fn forget_payload(&mut self, payload: &Payload) {
        let Some(payload) = payload.as_inline() else { return };
        if let Some(d) = self.dups.as_mut() {
            if let Some(n) = d.get_mut(payload) {
                *n -= 1;
                if *n == 0 {
                    d.remove(payload);
                }
            }
        }
    }
}

impl Drop for QueueState {
    fn drop(&mut self) {
        self.release_memory();
    }
}

fn new_message(p: &PublishedMessage, spill: Option<&Spill<'_>>) -> Message {
    Message {
        id: p.id,
        seq: p.seq,
        priority: p.priority.clone(),
        payload: inline_payload(spill, p),
        max_retries: p.max_retries,
        retry_count: 0,
        created_at_ns: p.created_at_ns,
        lock: None,
    }
}

fn restored_message(snap: &SnapshotMessage, spill: Option<&Spill<'_>>) -> Message {
    let mut m = new_message(&snap.msg, spill);
    m.retry_count = snap.retry_count;
    m.lock = snap.lock.as_ref().map(|l| Lock::boxed(&l.consumer, l.token, l.deadline_ms));
    m
}

/// The checkpoint form of a dead letter whose payload reads `payload`.
pub fn snapshot_dead_letter(dl: &DeadLetter, payload: String) -> SnapshotDeadLetter {
    SnapshotDeadLetter {
        msg: published_form(&dl.msg, payload),
        retry_count: dl.msg.retry_count,
        at_ms: dl.at_ms,
    }
}

/// The checkpoint form of a message whose payload reads `payload`.
pub fn snapshot_message(m: &Message, payload: String) -> SnapshotMessage {
    SnapshotMessage {
        msg: published_form(m, payload),
        retry_count: m.retry_count,
        lock: m.lock.as_ref().map(|l| super::record::SnapshotLock {
            consumer: l.consumer.to_string(),
            token: l.token,
            deadline_ms: l.deadline_ms,
        }),
    }
}

fn published_form(m: &Message, payload: String) -> PublishedMessage {
    PublishedMessage {
        id: m.id,
        seq: m.seq,
        priority: m.priority.clone(),
        payload,
        max_retries: m.max_retries,
        created_at_ns: m.created_at_ns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::record::SnapshotLock;
    use crate::engine::types::PriorityKind;

    fn id(n: u64) -> MsgId {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&n.to_be_bytes());
        id
    }

    fn publish(qid: u64, n: u64, priority: Priority, payload: &str) -> Record {
        let msg = PublishedMessage {
            id: id(n),
            seq: n,
            priority,
            payload: payload.to_string(),
            max_retries: 3,
            created_at_ns: n,
        };
        Record::Published { qid, msg }
    }

    /// A history touching every path that moves a message in or out of the ready index:
    /// locks, nacks, expiries, releases, acks, dead letters, redrives, a purge in the
    /// middle and duplicates turned off (which reads the order) near the end.
    fn history(qid: u64, text: bool) -> Vec<Record> {
        let prio = |n: u64| {
            if text {
                Priority::Text(format!("p{}", (n * 7919) % 13).into())
            } else {
                Priority::Num((n * 7919) % 13)
            }
        };
        let lock = |n: u64| Record::Locked {
            qid,
            id: id(n),
            consumer: "c".into(),
            token: 1000 + n,
            deadline_ms: 50 + n % 4,
        };
        let mut recs = Vec::new();
        for n in 1..=40 {
            recs.push(publish(qid, n, prio(n), &format!("m{}", n % 9)));
        }
        for n in (1..=40).step_by(3) {
            recs.push(lock(n));
        }
        for n in (1..=40).step_by(9) {
            recs.push(Record::Nacked { qid, id: id(n) });
            recs.push(Record::Acked { qid, id: id(n + 3) });
        }
        recs.push(Record::Expired { qid, id: id(7) });
        recs.push(Record::Released { qid, id: id(16) });
        recs.push(Record::Renewed { qid, id: id(22), deadline_ms: 90 });
        recs.push(Record::DeadLettered { qid, id: id(25), at_ms: 5 });
        recs.push(Record::Acked { qid, id: id(2) });
        recs.push(Record::Redriven { qid, id: id(25) });
        recs.push(Record::QueuePurged { qid });
        for n in 41..=90 {
            recs.push(publish(qid, n, prio(n), &format!("m{}", n % 11)));
        }
        for n in (41..=90).step_by(4) {
            recs.push(lock(n));
        }
        recs.push(Record::Group(vec![
            Record::Nacked { qid, id: id(45) },
            Record::Acked { qid, id: id(46) },
        ]));
        recs.push(Record::DuplicatesChanged { qid, allow_duplicates: false });
        recs.push(publish(qid, 91, prio(91), "fresh"));
        recs.push(Record::Acked { qid, id: id(47) });
        recs
    }

    fn state(ordering: Ordering, text: bool) -> QueueState {
        let priority_kind = if text { PriorityKind::Text } else { PriorityKind::Numeric };
        let config = QueueConfig { ordering, allow_duplicates: true, priority_kind };
        QueueState::new(1, "q".into(), config, Arc::new(MemoryGauge::default()))
    }

    // Verifies: PER-0031, PER-0032
    #[test]
    fn a_ready_index_built_after_replay_orders_as_one_kept_all_along() {
        for ordering in [Ordering::MaxFirst, Ordering::MinFirst, Ordering::Fifo] {
            for text in [false, true] {
                // Cut the history at every point, so the deferred build happens in every
                // state, before and after the order-reading records.
                let recs = history(1, text);
                for cut in 0..=recs.len() {
                    let mut live = state(ordering, text);
                    let mut replayed = state(ordering, text);
                    replayed.defer_ready_index();
                    for r in &recs[..cut] {
                        assert_eq!(live.apply(r), replayed.apply(r), "{ordering:?} at {cut}");
                    }
                    // Even the records that read the order leave the index to be built.
                    assert!(replayed.ready_deferred, "{ordering:?} at {cut}");
                    replayed.finish_replay();
                    let want = live.peek_ready(usize::MAX);
                    assert_eq!(replayed.peek_ready(usize::MAX), want, "{ordering:?} at {cut}");
                    assert_eq!(replayed.ready_len(), want.len() as u64);
                    assert_eq!(replayed.due_locks(u64::MAX), live.due_locks(u64::MAX));
                    assert_eq!(replayed.len(), live.len());
                    // The rebuilt index (a run, after a restart) takes the rest of the
                    // history like the other, record by record.
                    for r in &recs[cut..] {
                        assert_eq!(live.apply(r), replayed.apply(r), "{ordering:?} {cut}");
                        let want = live.peek_ready(usize::MAX);
                        assert_eq!(replayed.peek_ready(usize::MAX), want, "{ordering:?} {cut}");
                        assert_eq!(replayed.ready_len(), want.len() as u64);
                    }
                    // And later traffic too.
                    let want = live.peek_ready(usize::MAX);
                    let more = publish(1, 500, Priority::Num(6), "late");
                    let more = if text {
                        publish(1, 500, Priority::Text("p6".into()), "late")
                    } else {
                        more
                    };
                    live.apply(&more);
                    replayed.apply(&more);
                    if let Some(first) = want.first() {
                        let lock = Record::Locked {
                            qid: 1,
                            id: *first,
                            consumer: "d".into(),
                            token: 9,
                            deadline_ms: 1,
                        };
                        live.apply(&lock);
                        replayed.apply(&lock);
                    }
                    assert_eq!(replayed.peek_ready(usize::MAX), live.peek_ready(usize::MAX));
                    assert_eq!(replayed.ready_len(), live.ready_len());
                }
            }
        }
    }

    /// `publish` of message `n` again, under a new sequence number: only a crafted log
    /// repeats an id.
    fn republish(qid: u64, n: u64, seq: u64, payload: &str) -> Record {
        let mut rec = publish(qid, n, Priority::Num(seq % 5), payload);
        if let Record::Published { msg, .. } = &mut rec {
            msg.seq = seq;
        }
        rec
    }

    // Verifies: PER-0033
    /// A replay leaves the table to find a run of publishes once the run ends: a repeated
    /// id among them (or of an earlier message) must still be dropped, the first message of
    /// the id kept, and its charge given back, as a queue that found each publish at once
    /// does; whatever record ends the run, the end of the replay included.
    #[test]
    fn a_repeated_id_in_a_replayed_run_of_publishes_is_dropped_as_at_once() {
        let qid = 1;
        let mut recs: Vec<Record> =
            (1..=6).map(|n| publish(qid, n, Priority::Num(n), "a")).collect();
        recs.push(republish(qid, 3, 100, "again"));
        recs.push(Record::Locked {
            qid,
            id: id(3),
            consumer: "c".into(),
            token: 7,
            deadline_ms: 9,
        });
        recs.push(republish(qid, 3, 101, "locked now"));
        recs.push(Record::Group(vec![
            publish(qid, 7, Priority::Num(7), "b"),
            republish(qid, 7, 102, "twice in a group"),
            republish(qid, 1, 103, "an old one"),
        ]));
        recs.push(Record::Acked { qid, id: id(2) });
        // A freed slot: the next publish fills it.
        recs.push(publish(qid, 8, Priority::Num(8), "c"));
        recs.push(republish(qid, 8, 104, "d"));
        // A run again (no slot free now), ended by a change that reads every payload.
        recs.push(publish(qid, 9, Priority::Num(9), "e"));
        recs.push(republish(qid, 9, 105, "f"));
        recs.push(publish(qid, 10, Priority::Num(10), "a"));
        // A checkpoint's messages wait too, but a locked one (12) needs the table first.
        let restored = |rec: Record, lock: Option<SnapshotLock>| match rec {
            Record::Published { msg, .. } => SnapshotMessage { msg, retry_count: 1, lock },
            _ => unreachable!("publish gives a Published record"),
        };
        let lock = SnapshotLock { consumer: "c".into(), token: 8, deadline_ms: 20 };
        recs.push(Record::MessagesSnapshot {
            qid,
            msgs: vec![
                restored(publish(qid, 11, Priority::Num(11), "g"), None),
                restored(republish(qid, 4, 106, "restored again"), None),
                restored(publish(qid, 12, Priority::Num(12), "h"), Some(lock)),
                restored(republish(qid, 11, 107, "restored twice"), None),
            ],
        });
        recs.push(Record::DuplicatesChanged { qid, allow_duplicates: false });
        for ordering in [Ordering::MaxFirst, Ordering::MinFirst, Ordering::Fifo] {
            for cut in 0..=recs.len() {
                let mut live = state(ordering, false);
                let mut replayed = state(ordering, false);
                replayed.defer_ready_index();
                for r in &recs[..cut] {
                    live.apply(r);
                    replayed.apply(r);
                }
                replayed.finish_replay();
                for r in &recs[cut..] {
                    live.apply(r);
                    replayed.apply(r);
                }
                let at = format!("{ordering:?} cut at {cut}");
                assert_eq!(replayed.len(), live.len(), "{at}");
                assert_eq!(replayed.peek_ready(usize::MAX), live.peek_ready(usize::MAX), "{at}");
                assert_eq!(replayed.due_locks(u64::MAX), live.due_locks(u64::MAX), "{at}");
                assert_eq!(replayed.held_bytes(), live.held_bytes(), "{at}");
                for n in 1..=12 {
                    let payload = |q: &QueueState| q.get(&id(n)).map(|m| m.payload.clone());
                    assert_eq!(payload(&replayed), payload(&live), "{at}: message {n}");
                }
            }
        }
        // The first copy of each id is the one kept (before duplicates go: 12 ids, one acked).
        let mut q = state(Ordering::Fifo, false);
        q.defer_ready_index();
        recs[..recs.len() - 1].iter().for_each(|r| {
            q.apply(r);
        });
        q.finish_replay();
        assert_eq!(q.len(), 11);
        assert_eq!(q.get(&id(7)).map(|m| m.seq), Some(7));
        assert_eq!(q.get(&id(9)).map(|m| m.seq), Some(9));
        assert_eq!(q.get(&id(4)).map(|m| m.seq), Some(4));
        assert_eq!(q.get(&id(11)).map(|m| m.seq), Some(11));
        assert_eq!(q.get(&id(3)).and_then(|m| m.lock.as_ref()).map(|l| l.deadline_ms), Some(9));
    }

    // Verifies: PER-0033
    /// Acks that empty three quarters of the slab move the messages left to other slots;
    /// the ready index, which names them by slot, must still deliver them in key order, and
    /// a locked message must go back to its place when it is nacked.
    #[test]
    fn a_compacted_slab_keeps_the_delivery_order() {
        for ordering in [Ordering::MaxFirst, Ordering::MinFirst, Ordering::Fifo] {
            for replaying in [false, true] {
                let mut q = state(ordering, false);
                if replaying {
                    q.defer_ready_index();
                }
                let prio = |n: u64| Priority::Num((n * 7919) % 17);
                for n in 1..=64 {
                    q.apply(&publish(1, n, prio(n), "p"));
                }
                let lock = |n: u64| Record::Locked {
                    qid: 1,
                    id: id(n),
                    consumer: "c".into(),
                    token: n,
                    deadline_ms: 9,
                };
                for n in (3..=64).step_by(16) {
                    q.apply(&lock(n));
                }
                let kept = |n: &u64| n % 8 == 3 || n % 16 == 0;
                for n in (1..=64).rev().filter(|n| !kept(n)) {
                    q.apply(&Record::Acked { qid: 1, id: id(n) });
                }
                q.finish_replay();
                assert!(q.msgs.slab_len() < 64, "no compaction ran");
                let want = |q: &QueueState| {
                    let mut ready: Vec<u64> = (1..=64)
                        .filter(|n| kept(n) && q.get(&id(*n)).is_some_and(|m| m.lock.is_none()))
                        .collect();
                    ready.sort_by_key(|n| ReadyKey::new(ordering, &prio(*n), *n));
                    ready.into_iter().map(id).collect::<Vec<_>>()
                };
                assert_eq!((q.len(), q.ready_len()), (12, 8));
                assert_eq!(q.peek_ready(usize::MAX), want(&q), "{ordering:?} {replaying}");
                q.apply(&Record::Nacked { qid: 1, id: id(19) });
                q.apply(&Record::Acked { qid: 1, id: id(27) });
                assert_eq!(q.ready_len(), 8);
                assert_eq!(q.peek_ready(usize::MAX), want(&q), "{ordering:?} {replaying}");
            }
        }
    }

    // Verifies: PER-0013, PER-0032
    /// Only a crafted log publishes an id twice; the second copy must not leave an index
    /// entry behind once the message is locked.
    #[test]
    fn a_publish_of_a_message_the_queue_holds_is_ignored() {
        for replaying in [false, true] {
            let mut q = state(Ordering::MaxFirst, false);
            if replaying {
                q.defer_ready_index();
            }
            let first = publish(1, 1, Priority::Num(3), "a");
            q.apply(&first);
            let held = q.held_bytes();
            // With duplicates off, the walk builds no index, deferred or not.
            q.apply(&Record::DuplicatesChanged { qid: 1, allow_duplicates: false });
            assert_eq!(q.apply(&first), Effect::default());
            assert_eq!(q.apply(&publish(1, 1, Priority::Num(8), "b")), Effect::default());
            q.finish_replay();
            assert_eq!((q.peek_ready(9), q.ready_len(), q.held_bytes()), (vec![id(1)], 1, held));
            let lock = Record::Locked {
                qid: 1,
                id: id(1),
                consumer: "c".into(),
                token: 5,
                deadline_ms: 9,
            };
            q.apply(&lock);
            assert_eq!((q.peek_ready(9), q.ready_len(), q.len()), (vec![], 0, 1), "{replaying}");
        }
    }
}
