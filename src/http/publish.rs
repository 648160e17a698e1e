//! Publishing: one message or a batch.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use super::body::ApiRequest;
use super::{json_reply, HandlerResult};
use crate::engine::{Engine, NewMessage, Priority, DEFAULT_MAX_RETRIES};

/// A priority as it arrives on the wire: a u64, or a string for text queues. Anything
/// else (negative, fractional, beyond u64, null) is a shape error (422); whether the kind
/// fits the queue is the engine's call (400 `invalid_priority`).
/// Requirements: API-0015
pub struct WirePriority(pub Priority);

impl<'de> Deserialize<'de> for WirePriority {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PriorityVisitor).map(WirePriority)
    }
}

struct PriorityVisitor;

impl Visitor<'_> for PriorityVisitor {
    type Value = Priority;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer from 0 to 18446744073709551615, or a string on a Text queue")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Priority, E> {
        Ok(Priority::Num(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Priority, E> {
        u64::try_from(v)
            .map(Priority::Num)
            .map_err(|_| E::custom(format!("priority {v} is negative")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Priority, E> {
        Err(E::custom(format!("priority {v} is not an integer from 0 to 2^64-1")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Priority, E> {
        Ok(Priority::Text(v.into()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Priority, E> {
        Ok(Priority::Text(v.into_boxed_str()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Priority, E> {
        Err(E::custom("priority must not be null"))
    }
}

#[derive(Deserialize)]
struct PublishBody {
    queue: String,
    priority: WirePriority,
    payload: String,
    #[serde(default)]
    max_retries: Option<u32>,
}

#[derive(Deserialize)]
struct WireMessage {
    priority: WirePriority,
    payload: String,
    #[serde(default)]
    max_retries: Option<u32>,
}

impl From<WireMessage> for NewMessage {
    fn from(m: WireMessage) -> Self {
        NewMessage {
            priority: m.priority.0,
            payload: m.payload,
            max_retries: m.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
        }
    }
}

#[derive(Deserialize)]
struct PublishBatchBody {
    queue: String,
    messages: Vec<WireMessage>,
}

#[derive(Serialize)]
struct PublishReply {
    id: String,
}

#[derive(Serialize)]
struct PublishBatchReply {
    ids: Vec<String>,
}

/// Requirements: API-0014
pub async fn publish(engine: &Engine, req: ApiRequest) -> HandlerResult {
    let body: PublishBody = req.json().await?;
    let message = WireMessage {
        priority: body.priority,
        payload: body.payload,
        max_retries: body.max_retries,
    };
    let id = engine.publish(&body.queue, message.into()).await?;
    Ok(json_reply(&PublishReply { id }))
}

/// Requirements: DLV-0025
pub async fn publish_batch(engine: &Engine, req: ApiRequest) -> HandlerResult {
    let body: PublishBatchBody = req.json().await?;
    let messages = body.messages.into_iter().map(NewMessage::from).collect();
    let ids = engine.publish_batch(&body.queue, messages).await?;
    Ok(json_reply(&PublishBatchReply { ids }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Priority, serde_json::Error> {
        serde_json::from_str::<WirePriority>(json).map(|p| p.0)
    }

    // Verifies: SCH-0006
    #[test]
    fn numbers_and_strings_are_priorities() {
        assert_eq!(parse("0").unwrap(), Priority::Num(0));
        assert_eq!(parse("18446744073709551615").unwrap(), Priority::Num(u64::MAX));
        assert_eq!(parse("\"10\"").unwrap(), Priority::Text("10".into()));
    }

    // Verifies: API-0015
    #[test]
    fn out_of_range_values_are_shape_errors() {
        for bad in ["-1", "1.5", "18446744073709551616", "null", "true", "[1]"] {
            let err = parse(bad).unwrap_err();
            assert!(err.is_data(), "{bad}: {err}");
        }
    }
}
