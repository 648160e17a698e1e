//! A queue's messages, found by id.

use std::hash::{BuildHasher, RandomState};

use hashbrown::hash_table::{Entry, HashTable};

use super::queue::Message;
use super::record::MsgId;

/// A queue's messages by id. Each message carries its id, so a bucket holds the box and the
/// id's hash: 16 bytes and a control byte, where a map from id to box takes 24 and one (at
/// a million messages, in 2^21 buckets: 36 bytes of table per message instead of 52). The
/// hash is kept so that growing the table rehashes without reading every message, a cache
/// miss each (a restart grows it from nothing).
#[derive(Default)]
pub struct MessageTable {
    table: HashTable<(u64, Box<Message>)>,
    // Randomly keyed, as std's maps are: the ids replayed from a log are not trusted to
    // be the random ones the server generates.
    hasher: RandomState,
}

impl MessageTable {
    pub fn len(&self) -> usize {
        self.table.len()
    }

    fn hash(&self, id: &MsgId) -> u64 {
        self.hasher.hash_one(id)
    }

    pub fn get(&self, id: &MsgId) -> Option<&Message> {
        let hash = self.hash(id);
        self.table.find(hash, |(h, m)| *h == hash && m.id == *id).map(|(_, m)| &**m)
    }

    pub fn get_mut(&mut self, id: &MsgId) -> Option<&mut Message> {
        let hash = self.hash(id);
        self.table.find_mut(hash, |(h, m)| *h == hash && m.id == *id).map(|(_, m)| &mut **m)
    }

    /// Adds `m` and returns where it now is; refuses (returns) it when the table holds a
    /// message of its id already, which only a crafted log asks for: replacing it would
    /// leave the old copy's index entries behind.
    pub fn insert(&mut self, m: Box<Message>) -> Result<&Message, Box<Message>> {
        let hash = self.hash(&m.id);
        match self.table.entry(hash, |(h, x)| *h == hash && x.id == m.id, |(h, _)| *h) {
            Entry::Occupied(_) => Err(m),
            Entry::Vacant(e) => Ok(&e.insert((hash, m)).into_mut().1),
        }
    }

    pub fn remove(&mut self, id: &MsgId) -> Option<Box<Message>> {
        let hash = self.hash(id);
        let found = self.table.find_entry(hash, |(h, m)| *h == hash && m.id == *id);
        found.ok().map(|e| e.remove().0 .1)
    }

    pub fn values(&self) -> impl Iterator<Item = &Message> {
        self.table.iter().map(|(_, m)| &**m)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Message> {
        self.table.iter_mut().map(|(_, m)| &mut **m)
    }

    pub fn clear(&mut self) {
        self.table.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::payload::Payload;
    use crate::engine::types::Priority;

    fn msg(n: u8) -> Box<Message> {
        Box::new(Message {
            id: [n; 16],
            seq: u64::from(n),
            priority: Priority::Num(u64::from(n)),
            payload: Payload::inline("p"),
            max_retries: 3,
            retry_count: 0,
            created_at_ns: 0,
            lock: None,
        })
    }

    #[test]
    fn finds_refuses_repeats_and_removes_by_id() {
        let mut t = MessageTable::default();
        for n in 0..200 {
            assert_eq!(t.insert(msg(n)).map(|m| m.seq).ok(), Some(u64::from(n)));
        }
        assert_eq!(t.len(), 200);
        assert_eq!(t.get(&[7; 16]).map(|m| m.seq), Some(7));
        t.get_mut(&[7; 16]).unwrap().retry_count = 2;
        let mut again = msg(7);
        again.seq = 700;
        assert_eq!(t.insert(again).err().map(|m| m.seq), Some(700), "refused");
        assert_eq!((t.len(), t.get(&[7; 16]).map(|m| m.retry_count)), (200, Some(2)));
        assert_eq!(t.remove(&[9; 16]).map(|m| m.seq), Some(9));
        assert!(t.remove(&[9; 16]).is_none() && t.get(&[9; 16]).is_none());
        assert_eq!(t.values().count(), 199);
        t.clear();
        assert_eq!(t.len(), 0);
    }

    // A queued message is allocated in a 96-byte chunk; a field that grows it past 88
    // bytes costs 16 bytes a message.
    #[test]
    fn a_message_stays_within_88_bytes() {
        assert!(std::mem::size_of::<Message>() <= 88);
    }
}
