//! The order in which a queue hands out its ready messages.

use std::cmp::Ordering as CmpOrdering;
use std::sync::Arc;

use crossbeam_skiplist::SkipMap;

use super::types::{Ordering, Priority};

/// Set in a text key's `seq` when the queue is MaxFirst (bytes compare in reverse). Publish
/// sequences never reach it: they count messages from 1. (Only a crafted log could hold
/// one that does; it loses its top bit, and may then clash with another sequence, as a
/// crafted log's repeated sequences could anyway.)
const DESC_BIT: u64 = 1 << 63;

/// Key of the ready index: the smallest key is the next message to deliver. A message keeps
/// its key for life, so a nacked or expired message goes back to exactly where it was.
/// 24 bytes (the direction of text keys rides in `seq`, not in a field of its own): the key
/// is stored in every skip-list node and run entry, and 8 bytes less put most nodes in a
/// smaller allocation.
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

/// A queue's ready messages in delivery order: a small skip list that takes every message
/// that becomes ready, and two sorted arrays (runs) behind it, in three levels as in a
/// log-structured merge tree. Delivery takes from whichever holds the smallest key. A run is
/// only ever shortened, but for the events that rebuild it: a restart sorts the messages it
/// replayed into the main run (one sort instead of a skip-list insert per message, two
/// fifths of a restart's time at a million); a skip list of `LIST_MAX` entries is merged
/// into the middle run; and a middle run grown to `mid_max` is merged into the main one.
/// An insert into a skip list of a million misses the cache on most of its levels, and one
/// of tens of thousands still on many (a fifth of the CPU a batch publish costs); a skip
/// list of 4,096 (about 250 KB) stays in the second-level cache, and a merge reads its
/// entries in order: about 11 for each it adds, to each run, at a million ready, and
/// sqrt(N / 8,192) at N. A message in a run takes 33 bytes of index (a queue's index names
/// its messages by 4-byte slot), one in the skip list a node of 40 bytes and 8 a tower
/// level.
/// Requirements: PER-0031, PER-0032
pub struct ReadyIndex<V> {
    /// Keyed by value too: a crafted log may repeat a key, and a skip list keeps one entry a
    /// key (an insert of a second would replace the first, whose message would then never
    /// be delivered).
    list: SkipMap<(ReadyKey, V), ()>,
    /// What the skip list gave up since the last merge into `run`.
    mid: Run<V>,
    run: Run<V>,
}

/// A sorted array of (key, value) from which entries are removed by marking them gone.
/// Entries before `head` are all gone; `head`, when in bounds, is not.
struct Run<V> {
    entries: Vec<(ReadyKey, V)>,
    gone: Vec<bool>,
    head: usize,
    /// Entries not gone.
    live: usize,
}

impl<V> Default for Run<V> {
    fn default() -> Self {
        Run { entries: Vec::new(), gone: Vec::new(), head: 0, live: 0 }
    }
}

/// The run is rebuilt from its live entries, into an array of their size, once it is at
/// least this long and half of it is gone: a drained run gives its memory back as it goes,
/// and copies no more entries than it drops. (Small in tests, so that they rebuild.)
#[cfg(not(test))]
const RUN_TRIM_MIN: usize = 4096;
#[cfg(test)]
const RUN_TRIM_MIN: usize = 4;

/// The middle run is merged into the main one once it holds at least this many entries
/// (`mid_max`): a merge stays a few milliseconds for queues of a few hundred thousand.
// Limitation: the merges, done under the queue's lock, pause the queue's other requests for
// a time that grows with the queue: the main one about 25 ms at a million ready, once per
// 90,000 messages made ready; the middle one about 1 ms there, once per 4,096.
#[cfg(not(test))]
const FOLD_MIN: usize = 1 << 15;
#[cfg(test)]
const FOLD_MIN: usize = 8;

/// How long the middle run may grow before it is merged into a main run of `run_len`
/// entries: sqrt(2 · `LIST_MAX` · `run_len`), which makes the two merges read about as many
/// entries for each message added (`mid_max / (2 · LIST_MAX)` and `run_len / mid_max`) and
/// their sum the least; at least `FOLD_MIN`.
fn mid_max(run_len: usize) -> usize {
    FOLD_MIN.max((2 * LIST_MAX).saturating_mul(run_len).isqrt())
}

/// The skip list is merged into the middle run once it holds this many entries: few enough
/// that its nodes stay in the cache.
#[cfg(not(test))]
const LIST_MAX: usize = 1 << 12;
#[cfg(test)]
const LIST_MAX: usize = 3;

impl<V: Copy + PartialEq + Send + 'static> Run<V> {
    fn from_sorted(entries: Vec<(ReadyKey, V)>) -> Run<V> {
        debug_assert!(entries.windows(2).all(|w| w[0].0 <= w[1].0), "an unsorted run");
        let live = entries.len();
        Run { gone: vec![false; live], entries, head: 0, live }
    }

    /// Marks the live entry `(key, value)` gone; false when there is none.
    fn remove(&mut self, key: &ReadyKey, value: &V) -> bool {
        // A delivery takes the head: no search.
        let at_head = self.entries.get(self.head).is_some_and(|(k, v)| k == key && v == value);
        let from = if at_head {
            self.head
        } else {
            self.head + self.entries[self.head..].partition_point(|(k, _)| k < key)
        };
        // Keys are unique in a valid log; a crafted one may repeat a sequence, so the value
        // picks the entry.
        let Some(i) = (from..self.entries.len())
            .take_while(|&i| self.entries[i].0 == *key)
            .find(|&i| !self.gone[i] && self.entries[i].1 == *value)
        else {
            return false;
        };
        self.gone[i] = true;
        self.live -= 1;
        while self.head < self.entries.len() && self.gone[self.head] {
            self.head += 1;
        }
        if self.live == 0 {
            *self = Run::default();
        } else if self.entries.len() >= RUN_TRIM_MIN && self.live * 2 <= self.entries.len() {
            self.compact(0);
        }
        true
    }

    /// Drops the gone entries, in place, and sizes the array for the live ones plus `room`:
    /// a drained run gives its memory back (`retain` alone keeps the allocation), and a merge
    /// finds its room in the same array (a large one is usually remapped, not copied; a new
    /// one would fault in every page again, two thirds of a merge's time).
    fn compact(&mut self, room: usize) {
        if self.live < self.entries.len() {
            // `retain` visits the entries once each, in order.
            let mut gone = self.gone.iter();
            self.entries.retain(|_| gone.next() == Some(&false));
        }
        let need = self.entries.len() + room;
        if self.entries.capacity() > need {
            self.entries.shrink_to(need);
        } else {
            self.entries.reserve_exact(room);
        }
        self.gone = Vec::with_capacity(need);
        self.gone.resize(self.entries.len(), false);
        self.head = 0;
    }

    fn iter(&self) -> impl Iterator<Item = (&ReadyKey, V)> + '_ {
        let live = self.entries[self.head..].iter().zip(&self.gone[self.head..]);
        live.filter(|(_, gone)| !**gone).map(|((k, v), _)| (k, *v))
    }

    /// The live entries, in order.
    fn into_live(self) -> Vec<(ReadyKey, V)> {
        let gone = self.gone;
        let live = self.entries.into_iter().zip(gone).filter(|(_, gone)| !gone);
        live.map(|(e, _)| e).collect()
    }

    /// Marks the live entry `(key, value)` gone, when this run's keys reach `key`; false
    /// when there is none. Past its last key (a FIFO queue's later messages, say) no search
    /// is needed.
    fn remove_if_within(&mut self, key: &ReadyKey, value: &V) -> bool {
        let within = self.entries.last().is_some_and(|(last, _)| key <= last);
        within && self.remove(key, value)
    }

    /// Merges `from`, sorted, into this run, in its own array (`Run::compact`), filled from
    /// the back; this run's entries go first on ties.
    fn merge(&mut self, mut from: Vec<(ReadyKey, V)>) {
        // Placeholders for the slots the merge fills; no key is cheaper to copy.
        let filler = match from.first() {
            Some(e) => (ReadyKey::Num { rank: 0, seq: 0 }, e.1),
            None => return,
        };
        let run = self;
        run.compact(from.len());
        let mut r = run.entries.len();
        run.entries.resize(r + from.len(), filler);
        for w in (0..run.entries.len()).rev() {
            // Backwards, a run entry goes first where it would come after.
            let take_run = match from.last() {
                Some(e) => r > 0 && !run_first(&run.entries[r - 1].0, &e.0),
                None => break,
            };
            if take_run {
                // Behind `r` are only slots already merged or fillers.
                r -= 1;
                run.entries.swap(w, r);
            } else if let Some(e) = from.pop() {
                run.entries[w] = e;
            }
        }
        run.gone.resize(run.entries.len(), false);
        run.live = run.entries.len();
        debug_assert!(run.entries.windows(2).all(|w| w[0].0 <= w[1].0), "an unsorted merge");
    }
}

/// Whether an entry of key `older`, in a lower level (the main run below the middle run,
/// a run below the skip list), comes before one of key `newer` in a higher level: on a tie
/// (only a crafted log's repeated keys make one) the lower's, which was there first.
fn run_first(older: &ReadyKey, newer: &ReadyKey) -> bool {
    older <= newer
}

/// Two sorted sequences as one, `older` first on ties.
fn merged<'a, V: 'a>(
    older: impl Iterator<Item = (&'a ReadyKey, V)>,
    newer: impl Iterator<Item = (&'a ReadyKey, V)>,
) -> impl Iterator<Item = (&'a ReadyKey, V)> {
    let (mut older, mut newer) = (older.peekable(), newer.peekable());
    std::iter::from_fn(move || {
        let from_older = match (older.peek(), newer.peek()) {
            (Some((a, _)), Some((b, _))) => run_first(a, b),
            (a, _) => a.is_some(),
        };
        if from_older {
            older.next()
        } else {
            newer.next()
        }
    })
}

impl<V: Copy + Ord + Send + 'static> Default for ReadyIndex<V> {
    fn default() -> Self {
        ReadyIndex { list: SkipMap::new(), mid: Run::default(), run: Run::default() }
    }
}

impl<V: Copy + Ord + Send + 'static> ReadyIndex<V> {
    /// An index holding `entries`, which must be sorted by key: what a restart replayed.
    pub fn from_sorted(entries: Vec<(ReadyKey, V)>) -> ReadyIndex<V> {
        let run = Run::from_sorted(entries);
        ReadyIndex { list: SkipMap::new(), mid: Run::default(), run }
    }

    pub fn len(&self) -> usize {
        self.list.len() + self.mid.live + self.run.live
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn insert(&mut self, key: ReadyKey, value: V) {
        self.list.insert((key, value), ());
        if self.list.len() < LIST_MAX {
            return;
        }
        // Taken out forwards: a skip list walked backwards searches for every step.
        let list = std::mem::replace(&mut self.list, SkipMap::new());
        self.mid.merge(list.into_iter().map(|(entry, ())| entry).collect());
        // Against the lengths, gone entries included: what a merge reads.
        if self.mid.entries.len() >= mid_max(self.run.entries.len()) {
            let mid = std::mem::take(&mut self.mid);
            self.run.merge(mid.into_live());
        }
    }

    /// Removes the entry of `key`, which should hold `value`.
    pub fn remove(&mut self, key: &ReadyKey, value: &V) {
        if !self.run.remove_if_within(key, value) && !self.mid.remove_if_within(key, value) {
            self.list.remove(&(key.clone(), *value));
        }
    }

    /// Values in delivery order: the runs and the skip list merged by key.
    pub fn iter(&self) -> impl Iterator<Item = V> + '_ {
        let mut runs = merged(self.run.iter(), self.mid.iter()).peekable();
        let mut list = self.list.iter().peekable();
        std::iter::from_fn(move || {
            let from_runs = match (runs.peek(), list.peek()) {
                (Some((a, _)), Some(b)) => run_first(a, &b.key().0),
                (r, _) => r.is_some(),
            };
            if from_runs {
                runs.next().map(|(_, v)| v)
            } else {
                list.next().map(|e| e.key().1)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

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

    fn rank(r: u64, seq: u64) -> ReadyKey {
        ReadyKey::Num { rank: r, seq }
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// A new key of this rank.
        Insert(u64),
        /// Remove one of the keys present.
        Remove(proptest::sample::Index),
        /// Remove one and put it back under the same key (a nack).
        Requeue(proptest::sample::Index),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        let op = prop_oneof![
            (0u64..20).prop_map(Op::Insert),
            any::<proptest::sample::Index>().prop_map(Op::Remove),
            any::<proptest::sample::Index>().prop_map(Op::Requeue),
        ];
        proptest::collection::vec(op, 0..200)
    }

    proptest! {
        // Verifies: PER-0032
        #[test]
        fn the_runs_and_the_skip_list_deliver_as_one_ordered_map(
            ranks in proptest::collection::vec(0u64..20, 0..200),
            ops in ops(),
        ) {
            let mut model = BTreeMap::new();
            let mut seq = 0;
            let mut start = Vec::new();
            for r in ranks {
                seq += 1;
                model.insert(rank(r, seq), seq);
                start.push((rank(r, seq), seq));
            }
            start.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            let mut index = ReadyIndex::from_sorted(start);
            for op in ops {
                match op {
                    Op::Insert(r) => {
                        seq += 1;
                        model.insert(rank(r, seq), seq);
                        index.insert(rank(r, seq), seq);
                    }
                    Op::Remove(i) | Op::Requeue(i) if !model.is_empty() => {
                        let k = model.keys().nth(i.index(model.len())).unwrap().clone();
                        let v = model.remove(&k).unwrap();
                        index.remove(&k, &v);
                        if matches!(op, Op::Requeue(_)) {
                            model.insert(k.clone(), v);
                            index.insert(k, v);
                        }
                    }
                    Op::Remove(_) | Op::Requeue(_) => {}
                }
                let want: Vec<u64> = model.values().copied().collect();
                prop_assert_eq!(index.iter().collect::<Vec<_>>(), want);
                prop_assert_eq!(index.len(), model.len());
                // An insert merges a grown skip list into the middle run, and then a grown
                // middle run into the main one (a removal that shrinks the main run leaves
                // the middle one as it is until then).
                if matches!(op, Op::Insert(_) | Op::Requeue(_)) {
                    prop_assert!(index.list.len() < LIST_MAX);
                    if index.list.is_empty() {
                        prop_assert!(index.mid.entries.len() < mid_max(index.run.entries.len()));
                    }
                }
            }
        }
    }

    // Verifies: PER-0032
    #[test]
    fn a_run_gives_its_memory_back_as_its_entries_go() {
        let n = 1000u64;
        let mut index = ReadyIndex::from_sorted((0..n).map(|s| (rank(0, s), s)).collect());
        // From the front (consumes) and from the middle (deletes), interleaved.
        let order: Vec<u64> = (0..n / 2).flat_map(|i| [i, n / 2 + i]).collect();
        for (done, s) in order.iter().enumerate() {
            index.remove(&rank(0, *s), s);
            let left = n as usize - done - 1;
            assert_eq!(index.len(), left);
            let held = index.run.entries.capacity().max(index.run.gone.capacity());
            assert!(held <= 2 * left + RUN_TRIM_MIN, "{held} held for {left} left");
        }
        assert_eq!(index.run.entries.capacity(), 0);
        assert_eq!(index.iter().next(), None);
    }

    // Verifies: PER-0032
    #[test]
    fn a_merge_keeps_the_run_first_on_ties_and_text_keys_in_order() {
        let mut index = ReadyIndex::from_sorted(vec![(rank(1, 1), 10), (rank(1, 1), 11)]);
        index.insert(rank(1, 1), 12);
        for s in 2..LIST_MAX as u64 + 1 {
            index.insert(rank(2, s), 100 + s);
        }
        assert!(index.list.is_empty() && index.mid.live == LIST_MAX, "merged into the middle");
        index.insert(rank(1, 1), 13);
        // One tied key in each level: the lowest first; a removal finds the value's level.
        assert_eq!(index.iter().take(5).collect::<Vec<_>>(), vec![10, 11, 12, 13, 102]);
        let mut removed = ReadyIndex::from_sorted(vec![(rank(1, 1), 10), (rank(1, 1), 11)]);
        for (key, value) in [(rank(1, 1), 12), (rank(2, 2), 102), (rank(2, 3), 103)] {
            removed.insert(key, value);
        }
        removed.insert(rank(1, 1), 13);
        removed.remove(&rank(1, 1), &12);
        assert_eq!(removed.iter().take(4).collect::<Vec<_>>(), vec![10, 11, 13, 102]);
        removed.remove(&rank(1, 1), &13);
        assert_eq!(removed.iter().take(3).collect::<Vec<_>>(), vec![10, 11, 102]);
        let mut s = LIST_MAX as u64 + 1;
        while index.mid.live + index.list.len() > 0 {
            index.insert(rank(2, s), 100 + s);
            s += 1;
        }
        assert_eq!(index.iter().take(5).collect::<Vec<_>>(), vec![10, 11, 12, 13, 102]);
        index.remove(&rank(1, 1), &11);
        assert_eq!(index.iter().take(2).collect::<Vec<_>>(), vec![10, 12]);

        let text = |p: &str, seq| ReadyKey::new(Ordering::MaxFirst, &Priority::Text(p.into()), seq);
        let mut index = ReadyIndex::from_sorted(vec![(text("m", 1), 1), (text("c", 2), 2)]);
        let words = ["z", "a", "m", "q", "b", "y", "c", "n"];
        for (i, w) in words.iter().enumerate() {
            index.insert(text(w, 3 + i as u64), 3 + i as u64);
        }
        assert_eq!((index.mid.live, index.list.len()), (6, 2), "two merges into the middle");
        // MaxFirst: bytes in reverse, then publish order.
        let got: Vec<u64> = index.iter().collect();
        assert_eq!(got, vec![3, 8, 6, 10, 1, 5, 2, 9, 7, 4]);
    }

    // Verifies: PER-0032
    #[test]
    fn a_merge_after_removals_keeps_the_memory_bound() {
        let n = 400u64;
        let mut index = ReadyIndex::from_sorted((0..n).map(|s| (rank(0, s), s)).collect());
        // Just under half gone, spread out: no rebuild before the merge.
        for s in (0..n).step_by(2).take(199) {
            index.remove(&rank(0, s), &s);
        }
        for s in n..n + 60 {
            index.insert(rank(1, s), s);
        }
        let mut left = index.len();
        let held = |r: &Run<u64>| r.entries.capacity().max(r.gone.capacity());
        for s in (0..n).chain(n..n + 60) {
            let held = held(&index.run) + held(&index.mid);
            assert!(held <= 2 * left + FOLD_MIN.max(RUN_TRIM_MIN), "{held} held for {left}");
            let before = index.len();
            index.remove(&rank(u64::from(s >= n), s), &s);
            left -= before - index.len();
        }
        assert_eq!(index.len(), 0);
    }

    // Verifies: PER-0032
    #[test]
    fn a_drained_middle_run_gives_its_memory_back() {
        let mut index = ReadyIndex::from_sorted((0..1000).map(|s| (rank(0, s), s)).collect());
        for s in 1000..1060 {
            index.insert(rank(1, s), s);
        }
        assert!(index.mid.live > 0, "the middle run holds some");
        for s in 1000..1060 {
            index.remove(&rank(1, s), &s);
        }
        assert_eq!((index.len(), index.mid.entries.capacity()), (1000, 0));
    }

    // Verifies: PER-0032
    #[test]
    fn a_repeated_key_in_the_skip_list_keeps_both_and_is_removed_by_its_value() {
        let mut index = ReadyIndex::default();
        index.insert(rank(1, 1), 11);
        index.insert(rank(1, 1), 10);
        assert_eq!((index.len(), index.iter().collect::<Vec<_>>()), (2, vec![10, 11]));
        index.remove(&rank(1, 1), &11);
        assert_eq!(index.iter().collect::<Vec<_>>(), vec![10]);
        index.remove(&rank(1, 1), &10);
        assert!(index.is_empty());
    }

    // Verifies: PER-0032
    #[test]
    fn a_repeated_key_in_the_run_is_removed_by_its_value() {
        let mut index = ReadyIndex::from_sorted(vec![(rank(1, 1), 10), (rank(1, 1), 11)]);
        index.remove(&rank(1, 1), &11);
        assert_eq!(index.iter().collect::<Vec<_>>(), vec![10]);
        index.remove(&rank(1, 1), &10);
        assert!(index.is_empty());
    }

    #[test]
    fn a_key_takes_24_bytes() {
        assert_eq!(std::mem::size_of::<ReadyKey>(), 24);
    }
}
