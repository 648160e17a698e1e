//! The record type: every state change of the engine, as it is logged and replayed.
//!
//! A record names queues by a numeric queue id (`qid`) assigned at creation, so a rename is
//! one small record and later records need not repeat the name. Messages are named by
//! their 16-byte UUID. Encoding is bincode 2.0.1's `standard` configuration (varint
//! integers, little endian); `tests` below pins the bytes of every variant.

use bincode::{Decode, Encode};

use super::types::{Priority, QueueConfig};

/// A message id: the raw bytes of its UUID v4.
pub type MsgId = [u8; 16];

/// Largest record body the engine will decode; the log rejects longer frames anyway.
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// A message as published.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct PublishedMessage {
    pub id: MsgId,
    /// Server-wide sequence number: the tie-break between equal priorities.
    pub seq: u64,
    pub priority: Priority,
    pub payload: String,
    pub max_retries: u32,
    pub created_at_ns: u64,
}

/// A message's full state in a checkpoint: as published, plus what happened to it since.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SnapshotMessage {
    pub msg: PublishedMessage,
    pub retry_count: u32,
    pub lock: Option<SnapshotLock>,
}

/// The lock a consumer holds on a message, in a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SnapshotLock {
    pub consumer: String,
    pub token: u64,
    pub deadline_ms: u64,
}

/// A dead letter in a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SnapshotDeadLetter {
    pub msg: PublishedMessage,
    pub retry_count: u32,
    pub at_ms: u64,
}

/// One state change. Variants are only ever appended at the end: the variant index is part
/// of the on-disk format.
/// Requirements: PER-0004
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Record {
    QueueCreated {
        qid: u64,
        name: String,
        config: QueueConfig,
    },
    /// `allow_duplicates` changed; turning it off de-duplicates the queue as part of apply.
    DuplicatesChanged {
        qid: u64,
        allow_duplicates: bool,
    },
    QueueRenamed {
        qid: u64,
        name: String,
    },
    /// The queue, its messages and its dead letters are gone.
    QueueDeleted {
        qid: u64,
    },
    /// Every message (locked ones too) is gone; config and dead letters stay.
    QueuePurged {
        qid: u64,
    },
    Published {
        qid: u64,
        msg: PublishedMessage,
    },
    /// A consume: the message is locked until `deadline_ms` and its retry count goes up.
    Locked {
        qid: u64,
        id: MsgId,
        consumer: String,
        token: u64,
        deadline_ms: u64,
    },
    Renewed {
        qid: u64,
        id: MsgId,
        deadline_ms: u64,
    },
    Acked {
        qid: u64,
        id: MsgId,
    },
    /// Back to its place in the queue after a nack; retry count kept.
    Nacked {
        qid: u64,
        id: MsgId,
    },
    /// Back to its place after its lock expired; retry count kept.
    Expired {
        qid: u64,
        id: MsgId,
    },
    /// Back to its place because its consumer went away; retry count kept.
    Released {
        qid: u64,
        id: MsgId,
    },
    DeadLettered {
        qid: u64,
        id: MsgId,
        at_ms: u64,
    },
    /// A dead letter back to its original place with retry count 0.
    Redriven {
        qid: u64,
        id: MsgId,
    },
    DeadLettersPurged {
        qid: u64,
    },
    /// Several records that take effect together: one frame in the log, so a crash keeps
    /// all of them or none.
    Group(Vec<Record>),
    // The variants below only appear in checkpoint files, never in log segments.
    /// A queue as of log position `lsn`, created empty with this config; the snapshot
    /// records of its messages and dead letters follow. Log records of the queue up to
    /// `lsn` are already reflected, and replay skips them.
    QueueSnapshot {
        qid: u64,
        name: String,
        config: QueueConfig,
        lsn: u64,
    },
    /// Some of a queue's messages (ready or locked), in no particular order.
    MessagesSnapshot {
        qid: u64,
        msgs: Vec<SnapshotMessage>,
    },
    /// Some of a queue's dead letters, oldest first, after any sent before.
    DeadLettersSnapshot {
        qid: u64,
        dead: Vec<SnapshotDeadLetter>,
    },
    /// The last record of a checkpoint. Its catalog is as of `catalog_lsn`: catalog
    /// records up to it are reflected. Queue ids and message sequence numbers continue
    /// above `max_qid` and `max_seq`.
    Checkpoint {
        catalog_lsn: u64,
        max_qid: u64,
        max_seq: u64,
    },
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_RECORD_BYTES>()
}

impl Record {
    /// One record for several changes that take effect together: the change itself when
    /// there is one, else a `Group` of them.
    pub fn one_or_group(mut recs: Vec<Record>) -> Record {
        match recs.len() {
            1 => recs.pop().expect("one record"),
            _ => Record::Group(recs),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // Encoding into a Vec cannot fail: every field type is encodable and there is no
        // size limit on the write side.
        bincode::encode_to_vec(self, config()).expect("record encoding is infallible")
    }

    pub fn decode(bytes: &[u8]) -> Result<Record, String> {
        let (rec, used): (Record, usize) =
            bincode::decode_from_slice(bytes, config()).map_err(|e| e.to_string())?;
        if used != bytes.len() {
            return Err(format!("{} trailing bytes after the record", bytes.len() - used));
        }
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::types::{Ordering, PriorityKind};

    const ID: MsgId = [0xab; 16];

    /// One record of every kind, in variant order.
    fn samples() -> Vec<Record> {
        let config = QueueConfig {
            ordering: Ordering::MinFirst,
            allow_duplicates: false,
            priority_kind: PriorityKind::Text,
        };
        let msg = PublishedMessage {
            id: ID,
            seq: 300,
            priority: Priority::Num(u64::MAX),
            payload: "hi".into(),
            max_retries: 3,
            created_at_ns: 1,
        };
        vec![
            Record::QueueCreated { qid: 1, name: "q".into(), config },
            Record::DuplicatesChanged { qid: 1, allow_duplicates: true },
            Record::QueueRenamed { qid: 1, name: "r".into() },
            Record::QueueDeleted { qid: 1 },
            Record::QueuePurged { qid: 1 },
            Record::Published { qid: 1, msg },
            Record::Locked { qid: 1, id: ID, consumer: "w".into(), token: 7, deadline_ms: 251 },
            Record::Renewed { qid: 1, id: ID, deadline_ms: 2 },
            Record::Acked { qid: 1, id: ID },
            Record::Nacked { qid: 1, id: ID },
            Record::Expired { qid: 1, id: ID },
            Record::Released { qid: 1, id: ID },
            Record::DeadLettered { qid: 1, id: ID, at_ms: 5 },
            Record::Redriven { qid: 1, id: ID },
            Record::DeadLettersPurged { qid: 1 },
            Record::Group(vec![Record::QueuePurged { qid: 2 }, Record::QueueDeleted { qid: 2 }]),
            Record::QueueSnapshot {
                qid: 1,
                name: "q".into(),
                config: QueueConfig::default(),
                lsn: 9,
            },
            Record::MessagesSnapshot {
                qid: 1,
                msgs: vec![
                    SnapshotMessage { msg: small_msg(), retry_count: 2, lock: None },
                    SnapshotMessage {
                        msg: small_msg(),
                        retry_count: 1,
                        lock: Some(SnapshotLock { consumer: "w".into(), token: 8, deadline_ms: 3 }),
                    },
                ],
            },
            Record::DeadLettersSnapshot {
                qid: 1,
                dead: vec![SnapshotDeadLetter { msg: small_msg(), retry_count: 4, at_ms: 6 }],
            },
            Record::Checkpoint { catalog_lsn: 10, max_qid: 2, max_seq: 300 },
        ]
    }

    fn small_msg() -> PublishedMessage {
        PublishedMessage {
            id: ID,
            seq: 5,
            priority: Priority::Num(1),
            payload: "p".into(),
            max_retries: 3,
            created_at_ns: 1,
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    const AB16: &str = "abababababababababababababababab";

    // Verifies: PER-0004, PER-0006
    /// The on-disk encoding of every record kind. If this test fails, the format changed:
    /// existing logs would no longer replay. Add a new variant at the end instead, or bump
    /// the log's format version with a migration.
    #[test]
    fn golden_bytes_of_every_record_kind() {
        let expected = [
            "00010171010001".to_string(),
            "010101".to_string(),
            "02010172".to_string(),
            "0301".to_string(),
            "0401".to_string(),
            format!("0501{AB16}fb2c0100fdffffffffffffffff0268690301"),
            format!("0601{AB16}017707fbfb00"),
            format!("0701{AB16}02"),
            format!("0801{AB16}"),
            format!("0901{AB16}"),
            format!("0a01{AB16}"),
            format!("0b01{AB16}"),
            format!("0c01{AB16}05"),
            format!("0d01{AB16}"),
            "0e01".to_string(),
            "0f0204020302".to_string(),
            "1001017100010009".to_string(),
            format!("110102{AB16}050001017003010200{AB16}05000101700301010101770803"),
            format!("120101{AB16}050001017003010406"),
            "130a02fb2c01".to_string(),
        ];
        let got: Vec<String> = samples().iter().map(|r| hex(&r.encode())).collect();
        assert_eq!(got.len(), expected.len());
        for (i, (g, e)) in got.iter().zip(expected.iter()).enumerate() {
            assert_eq!(g, e, "record kind {i} ({:?}) encodes differently", samples()[i]);
        }
    }

    // Verifies: PER-0004, PER-0006
    /// A text priority is encoded as a string (variant 1, length, bytes), whatever type
    /// holds it in memory.
    #[test]
    fn golden_bytes_of_a_text_priority() {
        let msg = PublishedMessage { priority: Priority::Text("hi".into()), ..small_msg() };
        let got = hex(&Record::Published { qid: 1, msg }.encode());
        assert_eq!(got, format!("0501{AB16}050102686901700301"));
    }

    // Verifies: PER-0004
    #[test]
    fn every_kind_round_trips() {
        for r in samples() {
            assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        }
    }

    #[test]
    fn trailing_bytes_and_truncation_are_rejected() {
        let mut b = samples()[5].encode();
        b.push(0);
        assert!(Record::decode(&b).is_err());
        let b = samples()[5].encode();
        assert!(Record::decode(&b[..b.len() - 1]).is_err());
    }

    #[test]
    fn a_huge_claimed_length_is_refused_without_allocating() {
        // QueueCreated with a name claiming u64::MAX bytes.
        let b = [0x00, 0x01, 0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(Record::decode(&b).is_err());
    }
}
