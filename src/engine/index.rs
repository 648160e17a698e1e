//! The order in which a queue hands out its ready messages.

use std::cmp::Ordering as CmpOrdering;
use std::sync::Arc;

use super::types::{Ordering, Priority};

/// Set in a text key's `seq` when the queue is MaxFirst (bytes compare in reverse). Publish
/// sequences never reach it: they count messages from 1. (Only a crafted log could hold
/// one that does; it loses its top bit, and may then clash with another sequence, as a
/// crafted log's repeated sequences could anyway.)
const DESC_BIT: u64 = 1 << 63;

/// Key of the ready index: the smallest key is the next message to deliver. A message keeps
/// its key for life, so a nacked or expired message goes back to exactly where it was.
/// 24 bytes (the direction of text keys rides in `seq`, not in a field of its own): the key
/// is stored in every skip-list node, and 8 bytes less put most nodes in a smaller
/// allocation.
/// Requirements: SCH-0002, SCH-0003, SCH-0004, SCH-0005, SCH-0006, SCH-0007
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadyKey {
    /// Numeric priorities and FIFO: `rank` already folds in the direction (MaxFirst stores
    /// `u64::MAX - priority`, FIFO stores 0), then publish sequence.
    Num { rank: u64, seq: u64 },
    /// Text priorities compare byte by byte, in reverse when `seq` carries `DESC_BIT` (the
    /// same for every key of a queue), then by publish sequence.
    Text { prio: Arc<str>, seq: u64 },
}

impl ReadyKey {
    pub fn new(ordering: Ordering, priority: &Priority, seq: u64) -> ReadyKey {
        match (ordering, priority) {
            (Ordering::Fifo, _) => ReadyKey::Num { rank: 0, seq },
            (Ordering::MaxFirst, Priority::Num(p)) => ReadyKey::Num { rank: u64::MAX - p, seq },
            (Ordering::MinFirst, Priority::Num(p)) => ReadyKey::Num { rank: *p, seq },
            (o, Priority::Text(t)) => {
                let desc = if o == Ordering::MaxFirst { DESC_BIT } else { 0 };
                ReadyKey::Text { prio: Arc::from(&**t), seq: seq & !DESC_BIT | desc }
            }
        }
    }

    #[cfg(test)]
    pub fn seq(&self) -> u64 {
        match self {
            ReadyKey::Num { seq, .. } => *seq,
            ReadyKey::Text { seq, .. } => *seq & !DESC_BIT,
        }
    }
}

impl Ord for ReadyKey {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        match (self, other) {
            (ReadyKey::Num { rank: a, seq: sa }, ReadyKey::Num { rank: b, seq: sb }) => {
                a.cmp(b).then(sa.cmp(sb))
            }
            (ReadyKey::Text { prio: a, seq: sa }, ReadyKey::Text { prio: b, seq: sb }) => {
                let by_prio = a.as_bytes().cmp(b.as_bytes());
                let by_prio = if sa & DESC_BIT != 0 { by_prio.reverse() } else { by_prio };
                // Both carry the same direction bit, so it leaves their order alone.
                by_prio.then(sa.cmp(sb))
            }
            // A queue never mixes the two kinds; any fixed order keeps `Ord` total.
            (ReadyKey::Num { .. }, ReadyKey::Text { .. }) => CmpOrdering::Less,
            (ReadyKey::Text { .. }, ReadyKey::Num { .. }) => CmpOrdering::Greater,
        }
    }
}

impl PartialOrd for ReadyKey {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(o: Ordering, p: u64, seq: u64) -> ReadyKey {
        ReadyKey::new(o, &Priority::Num(p), seq)
    }

    // Verifies: SCH-0002, SCH-0005, SCH-0006
    #[test]
    fn max_first_puts_high_priorities_first_and_ties_in_publish_order() {
        let o = Ordering::MaxFirst;
        assert!(num(o, u64::MAX, 9) < num(o, 0, 1));
        assert!(num(o, 5, 1) < num(o, 5, 2));
    }

    // Verifies: SCH-0003, SCH-0005, SCH-0006
    #[test]
    fn min_first_puts_low_priorities_first() {
        let o = Ordering::MinFirst;
        assert!(num(o, 0, 9) < num(o, u64::MAX, 1));
        assert!(num(o, 7, 3) < num(o, 7, 4));
    }

    // Verifies: SCH-0004
    #[test]
    fn fifo_ignores_priority() {
        let o = Ordering::Fifo;
        assert!(num(o, 0, 1) < num(o, u64::MAX, 2));
    }

    // Verifies: SCH-0007
    #[test]
    fn text_priorities_compare_bytes_in_the_queue_direction() {
        let t = |o, s: &str, seq| ReadyKey::new(o, &Priority::Text(s.into()), seq);
        assert!(t(Ordering::MaxFirst, "b", 2) < t(Ordering::MaxFirst, "a", 1));
        assert!(t(Ordering::MinFirst, "a", 2) < t(Ordering::MinFirst, "b", 1));
        assert!(t(Ordering::MinFirst, "a", 1) < t(Ordering::MinFirst, "a", 2));
        assert!(t(Ordering::MaxFirst, "a", 1) < t(Ordering::MaxFirst, "a", 2));
        assert_eq!(t(Ordering::MaxFirst, "a", 7).seq(), 7);
        assert_eq!(t(Ordering::MinFirst, "a", 7).seq(), 7);
    }

    #[test]
    fn a_key_takes_24_bytes() {
        assert_eq!(std::mem::size_of::<ReadyKey>(), 24);
    }
}
