//! The order in which a queue hands out its ready messages.

use std::cmp::Ordering as CmpOrdering;
use std::sync::Arc;

use super::types::{Ordering, Priority};

/// Key of the ready index: the smallest key is the next message to deliver. A message keeps
/// its key for life, so a nacked or expired message goes back to exactly where it was.
/// Requirements: SCH-0002, SCH-0003, SCH-0004, SCH-0005, SCH-0006, SCH-0007
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadyKey {
    /// Numeric priorities and FIFO: `rank` already folds in the direction (MaxFirst stores
    /// `u64::MAX - priority`, FIFO stores 0), then publish sequence.
    Num { rank: u64, seq: u64 },
    /// Text priorities compare byte by byte; `desc` is the same for every key of a queue.
    Text { desc: bool, prio: Arc<str>, seq: u64 },
}

impl ReadyKey {
    pub fn new(ordering: Ordering, priority: &Priority, seq: u64) -> ReadyKey {
        match (ordering, priority) {
            (Ordering::Fifo, _) => ReadyKey::Num { rank: 0, seq },
            (Ordering::MaxFirst, Priority::Num(p)) => ReadyKey::Num { rank: u64::MAX - p, seq },
            (Ordering::MinFirst, Priority::Num(p)) => ReadyKey::Num { rank: *p, seq },
            (o, Priority::Text(t)) => {
                ReadyKey::Text { desc: o == Ordering::MaxFirst, prio: Arc::from(t.as_str()), seq }
            }
        }
    }

    pub fn seq(&self) -> u64 {
        match self {
            ReadyKey::Num { seq, .. } | ReadyKey::Text { seq, .. } => *seq,
        }
    }
}

impl Ord for ReadyKey {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        match (self, other) {
            (ReadyKey::Num { rank: a, seq: sa }, ReadyKey::Num { rank: b, seq: sb }) => {
                a.cmp(b).then(sa.cmp(sb))
            }
            (
                ReadyKey::Text { desc, prio: a, seq: sa },
                ReadyKey::Text { prio: b, seq: sb, .. },
            ) => {
                let by_prio = a.as_bytes().cmp(b.as_bytes());
                let by_prio = if *desc { by_prio.reverse() } else { by_prio };
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
    }
}
