//! Where a message's payload is: in RAM, or left in the log and read back on delivery.
//!
//! A payload longer than the spill threshold stays where the log already holds it: the
//! body of its Published record (addressed by LSN and offset), or after a compaction the
//! checkpoint. The message keeps a 16-byte address instead of the bytes, so what a queued
//! message costs in RAM does not depend on its payload's size. The offset comes from the
//! bincode layout of the record and is checked against the encoded bytes before it is
//! trusted; a mismatch keeps the payload in RAM.
//!
//! Requirements: SYS-0034

use std::cell::Cell;
use std::sync::Arc;

use super::catalog::{Catalog, Queue};
use super::queue::QueueState;
use super::record::{MsgId, PublishedMessage, Record};
use super::{Engine, EngineError, Result};
use crate::wal::{BodyAt, LogLoc};

/// A message's payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// Held in RAM.
    Inline(Arc<str>),
    /// In the log; read with `Engine::payload_text` (or `read_delivered`).
    Logged(LogLoc),
}

impl Payload {
    pub fn inline(text: &str) -> Payload {
        Payload::Inline(Arc::from(text))
    }

    /// Length of the payload in bytes.
    pub fn len(&self) -> usize {
        match self {
            Payload::Inline(p) => p.len(),
            Payload::Logged(loc) => loc.len(),
        }
    }

    /// Bytes of it held in RAM.
    pub fn ram_len(&self) -> usize {
        match self {
            Payload::Inline(p) => p.len(),
            Payload::Logged(_) => 0,
        }
    }

    /// The text, when it is in RAM.
    pub fn as_inline(&self) -> Option<&Arc<str>> {
        match self {
            Payload::Inline(p) => Some(p),
            Payload::Logged(_) => None,
        }
    }
}

/// How a record's payloads may be left in the log: the encoded body they are in, where
/// that body lives, and the threshold above which a payload is not kept in RAM.
pub struct Spill<'a> {
    threshold: usize,
    at: BodyAt,
    body: &'a [u8],
    /// Payload offsets in the body, by message id, in encoding order.
    spans: Vec<(MsgId, usize)>,
    /// Where the next lookup starts: messages are applied in encoding order.
    cursor: Cell<usize>,
}

impl<'a> Spill<'a> {
    /// `rec` is the decoded form of `body`. A threshold of 0 spills nothing.
    pub fn new(threshold: usize, at: BodyAt, rec: &Record, body: &'a [u8]) -> Spill<'a> {
        let mut spans = Vec::new();
        if threshold > 0 {
            payload_spans(rec, 0, &mut spans);
        }
        Spill { threshold, at, body, spans, cursor: Cell::new(0) }
    }

    /// A `Spill` for [`Spill::address`] lookups only, which any payload length passes.
    pub fn for_addresses(at: BodyAt, rec: &Record, body: &'a [u8]) -> Spill<'a> {
        Spill::new(1, at, rec, body)
    }

    /// The payload a message built from `p` keeps: its address when it is long enough and
    /// its bytes are where the layout says; a copy in RAM otherwise.
    pub fn payload(&self, p: &PublishedMessage) -> Payload {
        self.locate(p).map_or_else(|| Payload::inline(&p.payload), Payload::Logged)
    }

    fn locate(&self, p: &PublishedMessage) -> Option<LogLoc> {
        stays_in_log(self.threshold, p.payload.len()).then(|| self.address(p)).flatten()
    }

    /// Where `p`'s payload bytes are in the body, whatever their length up to
    /// [`LogLoc::MAX_LEN`].
    pub fn address(&self, p: &PublishedMessage) -> Option<LogLoc> {
        let len = p.payload.len();
        let start = self.cursor.get();
        let i = (start..self.spans.len()).chain(0..start).find(|&i| self.spans[i].0 == p.id)?;
        self.cursor.set(i + 1);
        let off = self.spans[i].1;
        if self.body.get(off..off + len)? != p.payload.as_bytes() {
            return None;
        }
        self.at.loc(off as u64, u32::try_from(len).ok()?)
    }
}

/// Whether a payload of `len` bytes is left in the log under `threshold` (0: none is): one
/// too long for an address stays in RAM.
pub fn stays_in_log(threshold: usize, len: usize) -> bool {
    threshold > 0 && len > threshold && len <= LogLoc::MAX_LEN
}

/// The payload a message built from `p` keeps: in RAM without a spill source.
pub fn inline_payload(spill: Option<&Spill<'_>>, p: &PublishedMessage) -> Payload {
    match spill {
        Some(s) => s.payload(p),
        None => Payload::inline(&p.payload),
    }
}

fn enc_len<T: bincode::Encode>(value: &T) -> usize {
    let mut size = bincode::enc::write::SizeWriter::default();
    // A size count cannot fail: every field type is encodable (see `Record::encode`).
    let _ = bincode::encode_into_writer(value, &mut size, bincode::config::standard());
    size.bytes_written
}

/// The offset of the payload bytes of `m` when its encoding starts at `base`.
fn message_payload_at(m: &PublishedMessage, base: usize) -> usize {
    base + enc_len(&m.id) + enc_len(&m.seq) + enc_len(&m.priority) + enc_len(&(m.payload.len()))
}

/// Appends to `out` the offset of every payload in `rec`'s encoding (which starts at
/// `base`), by message id. bincode's standard layout: an enum is its variant index as a
/// varint, then its fields in order; a Vec or String its length as a varint, then its
/// items; a byte array its bytes.
pub fn payload_spans(rec: &Record, base: usize, out: &mut Vec<(MsgId, usize)>) {
    let tag = |r: &Record| enc_len(&variant_index(r));
    match rec {
        Record::Published { qid, msg } => {
            out.push((msg.id, message_payload_at(msg, base + tag(rec) + enc_len(qid))));
        }
        Record::Group(recs) => {
            let mut at = base + tag(rec) + enc_len(&recs.len());
            for r in recs {
                payload_spans(r, at, out);
                at += enc_len(r);
            }
        }
        Record::MessagesSnapshot { qid, msgs } => {
            let mut at = base + tag(rec) + enc_len(qid) + enc_len(&msgs.len());
            for s in msgs {
                out.push((s.msg.id, message_payload_at(&s.msg, at)));
                at += enc_len(s);
            }
        }
        Record::DeadLettersSnapshot { qid, dead } => {
            let mut at = base + tag(rec) + enc_len(qid) + enc_len(&dead.len());
            for d in dead {
                out.push((d.msg.id, message_payload_at(&d.msg, at)));
                at += enc_len(d);
            }
        }
        _ => {}
    }
}

/// The variant index bincode writes for the record kinds that carry payloads.
fn variant_index(rec: &Record) -> u32 {
    match rec {
        Record::Published { .. } => 5,
        Record::Group(_) => 15,
        Record::MessagesSnapshot { .. } => 17,
        Record::DeadLettersSnapshot { .. } => 18,
        _ => 0,
    }
}

/// A payload's bytes as text: they were a `str` when published.
pub fn text(bytes: Vec<u8>) -> std::result::Result<String, String> {
    String::from_utf8(bytes).map_err(|_| "payload bytes in the log are not UTF-8".to_string())
}

/// Brings the payloads of a queue into RAM before `rec` turns its duplicates off (the
/// duplicate set needs the bytes), reading them with `read`.
/// Requirements: DLV-0021, SYS-0034
pub fn materialize_before(
    cat: &Catalog,
    rec: &Record,
    read: &mut dyn FnMut(LogLoc) -> std::result::Result<String, String>,
) -> std::result::Result<(), String> {
    match rec {
        Record::DuplicatesChanged { qid, allow_duplicates: false } => match cat.queues.get(qid) {
            Some(q) => q.state.lock().materialize(read),
            None => Ok(()),
        },
        Record::Group(recs) => recs.iter().try_for_each(|r| materialize_before(cat, r, read)),
        _ => Ok(()),
    }
}

fn unreadable(reason: &str) -> EngineError {
    EngineError::StorageUnavailable(format!("cannot read a payload from the log: {reason}"))
}

impl Engine {
    /// The spill threshold for a payload of the queue in `st` (0: it stays in RAM).
    /// Requirements: SYS-0034
    pub(super) fn spill_threshold(&self, st: &QueueState) -> usize {
        if st.spills_payloads() {
            self.spill_above
        } else {
            0
        }
    }

    /// The text of a payload, read from the log when it is there. Callers that hold the
    /// queue's lock need nothing more: a compaction moves payloads under that lock, and
    /// drops the old files only after.
    /// Requirements: SYS-0034
    pub(super) fn payload_text(&self, p: &Payload) -> Result<String> {
        match p {
            Payload::Inline(t) => Ok(t.to_string()),
            Payload::Logged(loc) => self.read_logged(*loc),
        }
    }

    fn read_logged(&self, loc: LogLoc) -> Result<String> {
        let Some(log) = &self.log else { return Err(unreadable("there is no log")) };
        let read = log.read(loc).map_err(|e| e.to_string()).and_then(text);
        read.map_err(|reason| {
            tracing::error!(error = %reason, "a payload could not be read from the log");
            unreadable(&reason)
        })
    }

    /// The payload of message `id` of `q`, read outside the queue's lock from `loc`, where
    /// it was when the lock was held. A compaction may have moved it into a checkpoint
    /// since and dropped the file it was in: then it is read from where it is now.
    /// Requirements: SYS-0034
    pub(super) fn read_delivered(&self, q: &Queue, id: &MsgId, mut loc: LogLoc) -> Result<String> {
        // Each retry follows one compaction; more than a few in one delivery is a failure.
        for _ in 0..4 {
            let err = match self.read_logged(loc) {
                Ok(text) => return Ok(text),
                Err(e) => e,
            };
            match q.state.lock().payload_of(id) {
                Some(Payload::Logged(now)) if *now != loc => loc = *now,
                Some(Payload::Inline(text)) => return Ok(text.to_string()),
                _ => return Err(err),
            }
        }
        self.read_logged(loc)
    }

    /// Brings every payload of `q` into RAM (before its duplicates are turned off). Refused
    /// with `MemoryLimit`, before anything is read or changed, when the payloads would take
    /// the memory charged past `QRUSTY_MAX_MEMORY_BYTES`.
    /// Requirements: SYS-0026, SYS-0034
    // Limitation: the payloads are read under the queue's mutex and the catalog write lock
    // the caller holds, so every other request waits for those reads.
    pub(super) fn materialize(&self, q: &Queue) -> Result<()> {
        let mut st = q.state.lock();
        let needed = st.logged_payload_bytes();
        let what = "turning duplicates off (it reads the payloads from the log into RAM)";
        self.limits.check_memory(&self.memory, needed, what)?;
        let mut read = |loc| self.read_logged(loc).map_err(|e| e.to_string());
        st.materialize(&mut read).map_err(EngineError::StorageUnavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::record::{SnapshotDeadLetter, SnapshotLock, SnapshotMessage};
    use crate::engine::types::Priority;

    // Verifies: SYS-0034
    /// Only a payload longer than the threshold and short enough for an address stays in
    /// the log; the memory check charges the others as held in RAM.
    #[test]
    fn a_payload_stays_in_the_log_only_between_the_threshold_and_the_address_limit() {
        assert!(!stays_in_log(0, 1000));
        assert!(!stays_in_log(64, 64));
        assert!(stays_in_log(64, 65));
        assert!(stays_in_log(64, LogLoc::MAX_LEN));
        assert!(!stays_in_log(64, LogLoc::MAX_LEN + 1));
    }

    fn msg(n: u8, payload: &str, priority: Priority) -> PublishedMessage {
        PublishedMessage {
            id: [n; 16],
            seq: 300 + u64::from(n),
            priority,
            payload: payload.to_string(),
            max_retries: 3,
            created_at_ns: 1 << 40,
        }
    }

    fn check_spans(rec: &Record, expected: usize) {
        let body = rec.encode();
        let mut spans = Vec::new();
        payload_spans(rec, 0, &mut spans);
        assert_eq!(spans.len(), expected, "{rec:?}");
        let spill = Spill::new(1, BodyAt::Record(9), rec, &body);
        let mut found = 0;
        let mut visit = |m: &PublishedMessage| {
            let Payload::Logged(loc) = spill.payload(m) else { panic!("kept inline: {m:?}") };
            assert_eq!(loc.len(), m.payload.len());
            found += 1;
        };
        match rec {
            Record::Published { msg, .. } => visit(msg),
            Record::Group(recs) => recs.iter().for_each(|r| {
                if let Record::Published { msg, .. } = r {
                    visit(msg)
                }
            }),
            Record::MessagesSnapshot { msgs, .. } => msgs.iter().for_each(|s| visit(&s.msg)),
            Record::DeadLettersSnapshot { dead, .. } => dead.iter().for_each(|d| visit(&d.msg)),
            _ => {}
        }
        assert_eq!(found, expected);
    }

    // Verifies: SYS-0034
    #[test]
    fn payload_offsets_match_the_encoding_of_every_kind_that_carries_payloads() {
        let long = "x".repeat(300);
        let text = Priority::Text("high".into());
        check_spans(&Record::Published { qid: 1, msg: msg(1, &long, Priority::Num(7)) }, 1);
        check_spans(&Record::Published { qid: 1 << 40, msg: msg(2, "héllo", text.clone()) }, 1);
        let group = Record::Group(vec![
            Record::Published { qid: 3, msg: msg(3, &long, Priority::Num(u64::MAX)) },
            Record::Acked { qid: 3, id: [9; 16] },
            Record::Published { qid: 3, msg: msg(4, "ab", text.clone()) },
        ]);
        check_spans(&group, 2);
        let lock = Some(SnapshotLock { consumer: "w".into(), token: 8, deadline_ms: 3 });
        let msgs = vec![
            SnapshotMessage { msg: msg(5, &long, Priority::Num(1)), retry_count: 2, lock },
            SnapshotMessage { msg: msg(6, "yy", text.clone()), retry_count: 0, lock: None },
        ];
        check_spans(&Record::MessagesSnapshot { qid: 300, msgs }, 2);
        let dead = vec![SnapshotDeadLetter { msg: msg(7, &long, text), retry_count: 4, at_ms: 6 }];
        check_spans(&Record::DeadLettersSnapshot { qid: 1, dead }, 1);
    }

    // Verifies: SYS-0034
    #[test]
    fn short_payloads_and_wrong_bytes_stay_in_ram() {
        let m = msg(1, &"z".repeat(100), Priority::Num(1));
        let rec = Record::Published { qid: 1, msg: m.clone() };
        let body = rec.encode();
        let at = BodyAt::Record(4);
        assert!(matches!(Spill::new(100, at, &rec, &body).payload(&m), Payload::Inline(_)));
        assert!(matches!(Spill::new(0, at, &rec, &body).payload(&m), Payload::Inline(_)));
        assert!(matches!(Spill::new(99, at, &rec, &body).payload(&m), Payload::Logged(_)));
        let mut other = body.clone();
        let last = other.len() - 20;
        other[last] ^= 1;
        assert!(matches!(Spill::new(10, at, &rec, &other).payload(&m), Payload::Inline(_)));
    }

    // Verifies: SYS-0034
    /// A consume copies the address under the queue's lock and reads after its wait for
    /// durability; a compaction in between moves the payload and drops the old file.
    #[tokio::test]
    async fn an_address_taken_before_a_compaction_still_finds_its_payload() {
        use crate::engine::{EngineOptions, NewMessage, StorageConfig};
        use crate::wal::{SimFs, WalOptions};

        let fs = SimFs::new(3);
        let wal = WalOptions { segment_bytes: 64 << 10, ..WalOptions::new("/sim/log") };
        let mut opts = EngineOptions::new(StorageConfig::Wal(wal));
        opts.fs = Some(Arc::new(fs.clone()));
        let e = Engine::open(opts).unwrap();
        let text = "z".repeat(5000);
        let new = NewMessage { priority: Priority::Num(1), payload: text.clone(), max_retries: 3 };
        let id = e.publish("q", new).await.unwrap();
        let id = crate::engine::messages::parse_id(&id).unwrap();
        let q = e.catalog.read().get("q").unwrap().clone();
        let loc_of = || match q.state.lock().payload_of(&id) {
            Some(Payload::Logged(loc)) => *loc,
            other => panic!("not in the log: {other:?}"),
        };
        let old = loc_of();

        let report = e.compact().unwrap();
        assert_eq!(report.segments_deleted, 1);
        assert_ne!(loc_of(), old, "moved into the checkpoint");
        assert!(e.read_logged(old).is_err(), "the file it was in is forgotten");
        assert_eq!(e.read_delivered(&q, &id, old).unwrap(), text);
        e.shutdown().await;
    }

    // Verifies: SYS-0034
    /// An address a delivery took into the live checkpoint (after a restart) stays good
    /// through a compaction that finds nothing logged since: no other file takes its id.
    #[tokio::test]
    async fn an_address_into_the_live_checkpoint_outlives_a_compaction_with_nothing_new() {
        use crate::engine::{EngineOptions, NewMessage, StorageConfig};
        use crate::wal::{SimFs, WalOptions};

        let fs = SimFs::new(4);
        let open = || {
            let wal = WalOptions { segment_bytes: 64 << 10, ..WalOptions::new("/sim/log") };
            let mut opts = EngineOptions::new(StorageConfig::Wal(wal));
            opts.fs = Some(Arc::new(fs.clone()));
            Engine::open(opts).unwrap()
        };
        let e = open();
        let mut ids = Vec::new();
        for i in 0..30 {
            let payload = format!("{i:03}:{}", "k".repeat(1500));
            let new = NewMessage { priority: Priority::Num(1), payload, max_retries: 3 };
            ids.push(crate::engine::messages::parse_id(&e.publish("q", new).await.unwrap()));
        }
        e.compact().unwrap();
        e.shutdown().await;
        drop(e);

        let e = open();
        let q = e.catalog.read().get("q").unwrap().clone();
        let taken: Vec<(MsgId, LogLoc)> = ids
            .iter()
            .map(|id| {
                let id = id.unwrap();
                match q.state.lock().payload_of(&id) {
                    Some(Payload::Logged(loc)) => (id, *loc),
                    other => panic!("not in the log: {other:?}"),
                }
            })
            .collect();
        e.compact().unwrap();
        for (i, (id, loc)) in taken.iter().enumerate() {
            let text = e.read_delivered(&q, id, *loc).unwrap();
            assert!(text.starts_with(&format!("{i:03}:")), "message {i} read other bytes");
        }
        e.shutdown().await;
    }
}
