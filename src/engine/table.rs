//! A queue's messages, found by id.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::hash_table::{Entry, HashTable};

use super::queue::Message;
use super::record::MsgId;

/// The most messages one table holds: every slot number is below `u32::MAX`.
pub const MAX_MESSAGES: usize = u32::MAX as usize;

/// A slab of at most this many slots is kept when the last message leaves: a queue that
/// holds a message or two at a time does not allocate it again for every one.
const KEEP_EMPTY: usize = 64;

/// A slab this long or longer is compacted once three quarters of its slots are empty.
/// (Small in tests, so that they compact.)
#[cfg(not(test))]
const COMPACT_MIN: usize = 4096;
#[cfg(test)]
const COMPACT_MIN: usize = 8;

/// A queue's messages by id. The messages sit side by side in one array of slots (the
/// slab); the hash table maps an id to its slot and holds a 4-byte slot number and a control
/// byte a bucket. At a million messages, in 2^21 buckets, that is 88 bytes of slot and 10.5
/// of table a message, where a boxed message took a 96-byte allocation and 36 bytes of
/// table; and a restart fills the slab in order, instead of allocating a box per message.
/// The table keeps no hash: growing it rehashes each id from its slot, a read out of order
/// that a stored hash would save at 8 bytes a bucket more.
/// Requirements: PER-0033
// Limitation: a queue holds at most `MAX_MESSAGES` (the slot number is 32 bits). A publish
// past it is refused (`Limits::check_publish`); a redrive or a checkpoint's message past it
// would be dropped as a repeated id is, which takes 4 billion messages, over 350 GB of RAM.
#[derive(Default)]
pub struct MessageTable {
    table: HashTable<u32>,
    slots: Vec<Option<Message>>,
    /// Empty slots below `slots.len()`, the next one to fill last.
    free: Vec<u32>,
    /// While a restart replays the log: each slot's hash, so that growing the table reads
    /// it from this array of 8-byte entries instead of from the slots, 88 bytes apart and a
    /// cache miss each (a fifth of a restart at a million). Dropped when replay ends.
    replay_hashes: Option<Vec<u64>>,
    /// While a restart replays the log: how many of the last slots hold messages the table
    /// does not find yet (`insert_deferred`); 0 when it finds every one.
    waiting: usize,
    // Randomly keyed, as std's maps are: the ids replayed from a log are not trusted to
    // be the random ones the server generates. foldhash, not std's SipHash: a growing
    // table hashes every id again (a restart grows it from nothing), and SipHash took a
    // tenth of a restart. The ids are the server's own, never a client's choice.
    hasher: RandomState,
}

/// A message's place in the slab: it keeps it from insert to removal, unless a compaction
/// (`MessageTable::shrink`) moves every message.
pub type Slot = u32;

/// The message in slot `i`: every slot the table names holds one.
fn slot(slots: &[Option<Message>], i: u32) -> Option<&Message> {
    slots.get(i as usize).and_then(Option::as_ref)
}

/// The number a slot added at the end of `slots` gets: none past `MAX_MESSAGES`.
fn next_slot(slots: &[Option<Message>]) -> Option<Slot> {
    u32::try_from(slots.len()).ok().filter(|&i| (i as usize) < MAX_MESSAGES)
}

/// The hash of the id in slot `i`, for a table that grows or is rebuilt.
fn slot_hash(hasher: &RandomState, slots: &[Option<Message>], i: u32) -> u64 {
    slot(slots, i).map_or(0, |m| hasher.hash_one(m.id))
}

impl MessageTable {
    /// Messages held; while replay defers some, a crafted log's repeated ids among them
    /// count until `catch_up` drops them.
    pub fn len(&self) -> usize {
        self.table.len() + self.waiting
    }

    fn hash(&self, id: &MsgId) -> u64 {
        self.hasher.hash_one(id)
    }

    fn find(&self, id: &MsgId) -> Option<u32> {
        debug_assert_eq!(self.waiting, 0, "a lookup before catch_up");
        let slots = &self.slots;
        let found =
            self.table.find(self.hash(id), |&i| slot(slots, i).is_some_and(|m| m.id == *id));
        found.copied()
    }

    pub fn get(&self, id: &MsgId) -> Option<&Message> {
        self.find(id).and_then(|i| slot(&self.slots, i))
    }

    /// The message in slot `i`, if it holds one.
    pub fn at(&self, i: Slot) -> Option<&Message> {
        slot(&self.slots, i)
    }

    pub fn get_mut(&mut self, id: &MsgId) -> Option<&mut Message> {
        let i = self.find(id)?;
        self.slots.get_mut(i as usize).and_then(Option::as_mut)
    }

    /// Adds `m` and returns its slot and where it now is; refuses (returns) it when the
    /// table holds a message of its id already, which only a crafted log asks for:
    /// replacing it would leave the old copy's index entries behind.
    pub fn insert(&mut self, m: Message) -> Result<(Slot, &Message), Message> {
        // A message left waiting would stay in the slab, counted but never found again.
        assert_eq!(self.waiting, 0, "insert before catch_up");
        let MessageTable { table, slots, free, replay_hashes, hasher, .. } = self;
        let hash = hasher.hash_one(m.id);
        let known = replay_hashes.as_deref().unwrap_or_default();
        let entry = table.entry(
            hash,
            |&i| slot(slots, i).is_some_and(|x| x.id == m.id),
            |&i| match known.get(i as usize) {
                Some(h) => *h,
                None => slot_hash(hasher, slots, i),
            },
        );
        let Entry::Vacant(e) = entry else { return Err(m) };
        let i = match free.pop() {
            Some(i) => i,
            None => {
                let Some(i) = next_slot(slots) else { return Err(m) };
                slots.push(None);
                i
            }
        };
        e.insert(i);
        if let Some(known) = replay_hashes {
            if known.len() <= i as usize {
                known.resize(i as usize + 1, 0);
            }
            known[i as usize] = hash;
        }
        Ok((i, slots[i as usize].insert(m)))
    }

    /// While replaying, with no free slot to fill: adds `m` at the end of the slab and leaves
    /// finding it to [`MessageTable::catch_up`], which the caller runs before anything else
    /// reads or changes the table. A restart's run of publishes so goes into the table in
    /// one tight pass, sized once, instead of a probe (a cache miss or two) between the
    /// decoding of each record and the next, and a growth now and then: at a million
    /// messages, a restart took 0.53-0.58 s with the probes and 0.33-0.38 s without.
    /// Otherwise (and past `MAX_MESSAGES`) the same as [`MessageTable::insert`].
    /// Requirements: PER-0033
    pub fn insert_deferred(&mut self, m: Message) -> Result<(Slot, &Message), Message> {
        // Slots wait only while no slot is free: a freed slot is only ever pushed by a
        // removal or a catch-up, both of which leave none waiting.
        if self.replay_hashes.is_none() || !self.free.is_empty() {
            return self.insert(m);
        }
        let Some(i) = next_slot(&self.slots) else { return Err(m) };
        self.slots.push(Some(m));
        self.waiting += 1;
        let m = self.slots[i as usize].as_ref().expect("just pushed");
        Ok((i, m))
    }

    /// Makes the table find the messages `insert_deferred` added. Returns those whose id it
    /// held already (only a crafted log repeats one), taken out as `insert` would have
    /// refused them: the first message of an id stays.
    pub fn catch_up(&mut self) -> Vec<Message> {
        if self.waiting == 0 {
            return Vec::new();
        }
        let from = self.slots.len() - std::mem::take(&mut self.waiting);
        let MessageTable { table, slots, free, replay_hashes, hasher, .. } = self;
        let known = replay_hashes.get_or_insert_with(Vec::new);
        known.resize(slots.len(), 0);
        // Every hash first: the growth below reads those of the slots it moves.
        for (h, m) in known[from..].iter_mut().zip(&slots[from..]) {
            *h = m.as_ref().map_or(0, |m| hasher.hash_one(m.id));
        }
        table.reserve(slots.len() - from, |&i| known[i as usize]);
        let mut repeated = Vec::new();
        for i in from..slots.len() {
            let id = match &slots[i] {
                Some(m) => m.id,
                None => continue,
            };
            let same = |&j: &u32| slot(slots, j).is_some_and(|x| x.id == id);
            match table.entry(known[i], same, |&j| known[j as usize]) {
                Entry::Vacant(e) => {
                    e.insert(i as u32);
                }
                Entry::Occupied(_) => {
                    repeated.extend(slots[i].take());
                    free.push(i as u32);
                }
            }
        }
        repeated
    }

    /// Takes out the message of `id`, with the slot it had. The caller then calls
    /// [`MessageTable::shrink`], once the slot is out of its indexes.
    pub fn remove(&mut self, id: &MsgId) -> Option<(Slot, Message)> {
        assert_eq!(self.waiting, 0, "a removal before catch_up");
        let hash = self.hash(id);
        let slots = &self.slots;
        let found = self.table.find_entry(hash, |&i| slot(slots, i).is_some_and(|m| m.id == *id));
        let i = found.ok()?.remove().0;
        let m = self.slots.get_mut(i as usize).and_then(Option::take)?;
        self.free.push(i);
        Some((i, m))
    }

    /// Gives memory back as the table empties: all of it when the last message leaves (but
    /// a slab of up to `KEEP_EMPTY` slots), and once three quarters of a large slab is
    /// empty, a copy of the rest side by side. A drained queue so gives back its slab as it
    /// goes, and copies no more than it dropped.
    /// Returns true when messages moved to other slots: a slot kept elsewhere is stale.
    // Limitation: the copy runs under the queue's lock, and so does the sort of the ready
    // index that follows (`QueueState::take`): about 55 ms, once, for a queue that held a
    // million messages and is down to a quarter of a million.
    pub fn shrink(&mut self) -> bool {
        let live = self.table.len();
        assert_eq!(self.waiting, 0, "a shrink before catch_up");
        if live == 0 && self.slots.capacity() <= KEEP_EMPTY {
            self.slots.clear();
            self.free.clear();
            false
        } else if live == 0 {
            self.clear();
            false
        } else if self.slots.len() >= COMPACT_MIN && live <= self.slots.len() / 4 {
            self.compact();
            true
        } else {
            false
        }
    }

    /// Moves every message into a new slab of their number, and the table to match.
    fn compact(&mut self) {
        // A new array: collecting in place would keep the old allocation.
        let mut slots = Vec::with_capacity(self.table.len());
        slots.extend(std::mem::take(&mut self.slots).into_iter().filter(Option::is_some));
        let hasher = &self.hasher;
        let mut table = HashTable::with_capacity(slots.len());
        for i in 0..slots.len() as u32 {
            // Ids are unique in the table being replaced: no search.
            let rehash = |&j: &u32| slot_hash(hasher, &slots, j);
            table.insert_unique(slot_hash(hasher, &slots, i), i, rehash);
        }
        self.table = table;
        self.slots = slots;
        self.free = Vec::new();
        if self.replay_hashes.is_some() {
            self.begin_replay();
        }
    }

    /// Keeps each slot's hash beside the slab until [`MessageTable::end_replay`].
    pub fn begin_replay(&mut self) {
        let numbered = 0..self.slots.len() as u32;
        let hashes = numbered.map(|i| slot_hash(&self.hasher, &self.slots, i));
        self.replay_hashes = Some(hashes.collect());
    }

    pub fn end_replay(&mut self) {
        self.replay_hashes = None;
    }

    pub fn values(&self) -> impl Iterator<Item = &Message> {
        self.slots.iter().flatten()
    }

    /// Slots in the slab, empty ones included.
    #[cfg(test)]
    pub fn slab_len(&self) -> usize {
        self.slots.len()
    }

    /// Every message with its slot, in slot order.
    pub fn slotted(&self) -> impl Iterator<Item = (Slot, &Message)> {
        let numbered = self.slots.iter().enumerate();
        numbered.filter_map(|(i, m)| m.as_ref().map(|m| (i as Slot, m)))
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Message> {
        self.slots.iter_mut().flatten()
    }

    pub fn clear(&mut self) {
        let replaying = self.replay_hashes.is_some();
        *self = MessageTable::default();
        if replaying {
            self.begin_replay();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::payload::Payload;
    use crate::engine::types::Priority;

    fn msg(n: u8) -> Message {
        Message {
            id: [n; 16],
            seq: u64::from(n),
            priority: Priority::Num(u64::from(n)),
            payload: Payload::inline("p"),
            max_retries: 3,
            retry_count: 0,
            created_at_ns: 0,
            lock: None,
        }
    }

    #[test]
    fn finds_refuses_repeats_and_removes_by_id() {
        let mut t = MessageTable::default();
        for n in 0..200 {
            assert_eq!(t.insert(msg(n)).map(|(i, m)| (i, m.seq)).ok(), Some((n.into(), n.into())));
        }
        assert_eq!(t.len(), 200);
        assert_eq!(t.get(&[7; 16]).map(|m| m.seq), Some(7));
        t.get_mut(&[7; 16]).unwrap().retry_count = 2;
        let mut again = msg(7);
        again.seq = 700;
        assert_eq!(t.insert(again).err().map(|m| m.seq), Some(700), "refused");
        assert_eq!((t.len(), t.get(&[7; 16]).map(|m| m.retry_count)), (200, Some(2)));
        assert_eq!(t.remove(&[9; 16]).map(|(i, m)| (i, m.seq)), Some((9, 9)));
        assert!(!t.shrink() && t.at(9).is_none() && t.at(8).is_some());
        assert!(t.remove(&[9; 16]).is_none() && t.get(&[9; 16]).is_none());
        assert_eq!(t.values().count(), 199);
        t.clear();
        assert_eq!(t.len(), 0);
    }

    // Verifies: PER-0033
    #[test]
    fn a_slab_emptied_to_a_quarter_is_compacted_and_finds_every_message() {
        let mut t = MessageTable::default();
        for n in 0..200 {
            assert!(t.insert(msg(n)).is_ok());
        }
        let mut moved = 0;
        for n in (0..200).filter(|n| n % 4 != 0) {
            assert_eq!(t.remove(&[n; 16]).map(|(_, m)| m.seq), Some(u64::from(n)));
            moved += usize::from(t.shrink());
        }
        assert_eq!(moved, 1, "one compaction, at a quarter");
        assert_eq!((t.len(), t.slots.len(), t.free.len()), (50, 50, 0), "compacted");
        for n in 0..200 {
            let want = (n % 4 == 0).then_some(u64::from(n));
            assert_eq!(t.get(&[n; 16]).map(|m| m.seq), want, "{n}");
        }
        for (i, m) in t.slotted() {
            assert_eq!(t.at(i).map(|x| x.id), Some(m.id));
        }
        // Slots a removal empties are filled again before the slab grows.
        let (gone, _) = t.remove(&[4; 16]).unwrap();
        assert!(!t.shrink());
        assert_eq!(t.insert(msg(1)).ok().map(|(i, _)| i), Some(gone));
        assert_eq!((t.len(), t.slots.len(), t.values().count()), (50, 50, 50));
        for n in (0..200).filter(|n| n % 4 == 0 && *n != 4).chain([1]) {
            assert!(t.remove(&[n; 16]).is_some(), "{n}");
            t.shrink();
        }
        assert_eq!((t.len(), t.values().count()), (0, 0));
        assert!(t.slots.capacity() <= KEEP_EMPTY, "given back: {}", t.slots.capacity());
        assert!(t.insert(msg(3)).is_ok() && t.get(&[3; 16]).is_some());
    }

    // Verifies: PER-0033
    /// While a restart replays, growing the table reads each hash from beside the slab: the
    /// hashes must follow the messages through a compaction and through reused slots.
    #[test]
    fn replay_hashes_follow_the_slots_through_compaction_and_growth() {
        let mut t = MessageTable::default();
        t.begin_replay();
        for n in 0..64 {
            assert!(t.insert(msg(n)).is_ok());
        }
        for n in (0..64).filter(|n| n % 8 != 0) {
            assert!(t.remove(&[n; 16]).is_some());
            t.shrink();
        }
        assert_eq!(t.slab_len(), 16, "compacted once, at 16 left");
        // The table grows several times past what it held, reading the stored hashes.
        for n in 64..=255 {
            assert!(t.insert(msg(n)).is_ok());
        }
        for n in 0..=255u8 {
            let want = (n >= 64 || n % 8 == 0).then_some(u64::from(n));
            assert_eq!(t.get(&[n; 16]).map(|m| m.seq), want, "{n}");
        }
        t.end_replay();
        assert!(t.remove(&[70; 16]).is_some() && t.insert(msg(70)).is_ok());
        assert_eq!(t.get(&[70; 16]).map(|m| m.seq), Some(70));
    }

    // A queued message is a slot of the slab: a field that grows it past 88 bytes costs a
    // message as much, and an empty slot must cost no more than a full one.
    #[test]
    fn a_message_stays_within_88_bytes() {
        assert!(std::mem::size_of::<Message>() <= 88);
        assert_eq!(std::mem::size_of::<Option<Message>>(), std::mem::size_of::<Message>());
    }
}
