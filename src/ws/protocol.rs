//! Frames: parsing a client's text frame into a request, and writing the server's
//! `ok`, `error`, `deliver` and `log` frames.
//!
//! Field checks follow 0.15.0 except where `changes.md` tightens them: a `priority` or
//! `max_retries` of the wrong type or range is an error, never a silent default.

use serde::Serialize;
use serde_json::{Map, Value};

use super::errors::WsError;
use crate::engine::{Delivery, Priority, DEFAULT_MAX_RETRIES, MAX_TIMEOUT_SECS};
use crate::logs::{rfc3339_utc, LogEntry};

/// Lock duration of a `renew` without `timeout_seconds`, as 0.15.0 always used.
pub const DEFAULT_RENEW_SECS: u64 = 30;

/// The parts of a request frame that every type shares.
/// Requirements: WS-0005
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    /// Echoed in the reply when the client sent a string.
    pub req_id: Option<String>,
    /// The operation runs but nothing is sent back, not even an error.
    pub no_reply: bool,
}

/// One client request, its fields checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Write(WriteRequest),
    Local(LocalRequest),
}

/// A request that changes queue state and nothing of the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteRequest {
    Publish { queue: String, payload: String, priority: Priority, max_retries: u32 },
    Ack { queue: String, id: String, lock_token: Option<String> },
    Nack { queue: String, id: String, lock_token: Option<String> },
    BatchAck { queue: String, ids: Vec<String> },
    BatchNack { queue: String, ids: Vec<String> },
    Renew { queue: String, id: String, lock_token: Option<String>, timeout_secs: u64 },
}

/// A request that changes the connection: its subscriptions and its log stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalRequest {
    Subscribe { queue: String, credits: Option<u64> },
    Unsubscribe { queue: String },
    Credit { queue: String, credits: u64 },
    SubscribeLogs,
    UnsubscribeLogs,
}

/// A text frame that is not JSON at all: the connection closes with 1007.
#[derive(Debug, PartialEq, Eq)]
pub struct InvalidJson;

/// Parses one text frame. The envelope comes back even when the request is refused, so
/// the error frame can still echo `req_id` (or be suppressed by `no_reply`).
/// Requirements: WS-0003
pub fn parse(text: &str) -> Result<(Envelope, Result<Request, WsError>), InvalidJson> {
    let value: Value = serde_json::from_str(text).map_err(|_| InvalidJson)?;
    let Value::Object(obj) = value else {
        return Ok((Envelope::default(), Err(WsError::invalid_request("missing 'type' field"))));
    };
    let envelope = Envelope {
        req_id: obj.get("req_id").and_then(Value::as_str).map(str::to_owned),
        no_reply: obj.get("no_reply").and_then(Value::as_bool).unwrap_or(false),
    };
    Ok((envelope, parse_request(&obj)))
}

/// Requirements: WS-0009
fn parse_request(obj: &Map<String, Value>) -> Result<Request, WsError> {
    let Some(kind) = obj.get("type").and_then(Value::as_str) else {
        return Err(WsError::invalid_request("missing 'type' field"));
    };
    let f = Fields { obj, op: kind };
    use LocalRequest as L;
    use WriteRequest as W;
    let write = |w| Ok(Request::Write(w));
    let local = |l| Ok(Request::Local(l));
    match kind {
        "publish" => write(W::Publish {
            queue: f.required_str("queue")?,
            payload: f.required_str("payload")?,
            priority: f.priority()?,
            max_retries: f.max_retries()?,
        }),
        // 0.15.0: credits that are not a non-negative integer mean "unlimited".
        "subscribe" => local(L::Subscribe {
            queue: f.required_str("queue")?,
            credits: obj.get("credits").and_then(Value::as_u64),
        }),
        "unsubscribe" => local(L::Unsubscribe { queue: f.required_str("queue")? }),
        "ack" => write(W::Ack {
            queue: f.required_str("queue")?,
            id: f.required_str("id")?,
            lock_token: f.optional_str("lock_token")?,
        }),
        "nack" => write(W::Nack {
            queue: f.required_str("queue")?,
            id: f.required_str("id")?,
            lock_token: f.optional_str("lock_token")?,
        }),
        "batch-ack" => write(W::BatchAck { queue: f.required_str("queue")?, ids: f.ids()? }),
        "batch-nack" => write(W::BatchNack { queue: f.required_str("queue")?, ids: f.ids()? }),
        "renew" => write(W::Renew {
            queue: f.required_str("queue")?,
            id: f.required_str("id")?,
            lock_token: f.optional_str("lock_token")?,
            timeout_secs: f.timeout_secs()?,
        }),
        "credit" => {
            let queue = f.required_str("queue")?;
            match obj.get("credits").and_then(Value::as_u64) {
                Some(credits) if credits >= 1 => local(L::Credit { queue, credits }),
                _ => Err(WsError::invalid_request("credit requires positive 'credits' field")),
            }
        }
        "subscribe-logs" => local(L::SubscribeLogs),
        "unsubscribe-logs" => local(L::UnsubscribeLogs),
        other => Err(WsError::new("unknown_type", format!("unknown frame type '{other}'"))),
    }
}

/// The fields of one request object, with the operation name for error messages.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    op: &'a str,
}

impl Fields<'_> {
    /// A field that is absent or JSON `null` counts as not given.
    fn get(&self, name: &str) -> Option<&Value> {
        self.obj.get(name).filter(|v| !v.is_null())
    }

    fn required_str(&self, name: &str) -> Result<String, WsError> {
        match self.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(WsError::invalid_request(format!(
                "{} requires '{name}' field (a string)",
                self.op
            ))),
        }
    }

    fn optional_str(&self, name: &str) -> Result<Option<String>, WsError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(WsError::invalid_request(format!("'{name}' must be a string"))),
        }
    }

    /// A u64 on numeric queues, a string on text queues; which one the queue takes is
    /// the engine's check.
    fn priority(&self) -> Result<Priority, WsError> {
        match self.get("priority") {
            None => Ok(Priority::Num(0)),
            Some(Value::String(s)) => Ok(Priority::Text(s.as_str().into())),
            Some(v) => v.as_u64().map(Priority::Num).ok_or_else(|| {
                WsError::new(
                    "invalid_priority",
                    "'priority' must be an integer from 0 to 2^64-1, or a string on a text queue",
                )
            }),
        }
    }

    fn max_retries(&self) -> Result<u32, WsError> {
        match self.get("max_retries") {
            None => Ok(DEFAULT_MAX_RETRIES),
            Some(v) => v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| {
                WsError::invalid_request("'max_retries' must be an integer from 0 to 2^32-1")
            }),
        }
    }

    fn timeout_secs(&self) -> Result<u64, WsError> {
        match self.get("timeout_seconds") {
            None => Ok(DEFAULT_RENEW_SECS),
            Some(v) => v.as_u64().filter(|&n| n <= MAX_TIMEOUT_SECS).ok_or_else(|| {
                WsError::new(
                    "invalid_timeout",
                    format!("'timeout_seconds' must be an integer from 0 to {MAX_TIMEOUT_SECS}"),
                )
            }),
        }
    }

    /// 0.15.0 skips array elements that are not strings rather than refusing the batch.
    /// Requirements: WS-0026
    fn ids(&self) -> Result<Vec<String>, WsError> {
        match self.get("ids") {
            Some(Value::Array(items)) => {
                Ok(items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            }
            _ => Err(WsError::invalid_request(format!("{} requires 'ids' array", self.op))),
        }
    }
}

#[derive(Serialize)]
struct OkFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    fields: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    req_id: Option<&'a str>,
}

#[derive(Serialize)]
struct ErrorFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    req_id: Option<&'a str>,
}

#[derive(Serialize)]
struct DeliverFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    queue: &'a str,
    id: &'a str,
    payload: &'a str,
    priority: &'a Priority,
    created_at: String,
    lock_token: &'a str,
}

#[derive(Serialize)]
struct LogFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: &'a str,
    level: &'a str,
    message: &'a str,
}

/// `{"type":"ok", ...fields, "req_id"?}`.
pub fn ok_frame(fields: Map<String, Value>, req_id: Option<&str>) -> String {
    to_json(&OkFrame { kind: "ok", fields, req_id })
}

/// Requirements: WS-0022
pub fn error_frame(err: &WsError, req_id: Option<&str>) -> String {
    to_json(&ErrorFrame { kind: "error", code: err.code, message: &err.message, req_id })
}

/// Requirements: WS-0013
pub fn deliver_frame(d: &Delivery) -> String {
    to_json(&DeliverFrame {
        kind: "deliver",
        queue: &d.queue,
        id: &d.id,
        payload: &d.payload,
        priority: &d.priority,
        created_at: rfc3339_utc(d.created_at_ns),
        lock_token: &d.lock_token,
    })
}

pub fn log_frame(entry: &LogEntry) -> String {
    to_json(&LogFrame {
        kind: "log",
        timestamp: &entry.timestamp,
        level: entry.level,
        message: &entry.message,
    })
}

fn to_json(frame: &impl Serialize) -> String {
    // Plain structs of strings and numbers: serialising them cannot fail.
    serde_json::to_string(frame).expect("frame serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> Result<Request, WsError> {
        parse(text).expect("valid JSON").1
    }

    fn code(text: &str) -> &'static str {
        request(text).expect_err("refused").code
    }

    // Verifies: WS-0005
    #[test]
    fn envelope_echoes_only_string_req_ids() {
        let (env, _) = parse(r#"{"type":"ack","req_id":"r1","no_reply":true}"#).unwrap();
        assert_eq!(env, Envelope { req_id: Some("r1".into()), no_reply: true });
        let (env, _) = parse(r#"{"type":"ack","req_id":7,"no_reply":"yes"}"#).unwrap();
        assert_eq!(env, Envelope::default());
    }

    // Verifies: WS-0003, WS-0004
    #[test]
    fn non_json_is_distinguished_from_non_objects() {
        assert_eq!(parse("").unwrap_err(), InvalidJson);
        assert_eq!(parse("{nope").unwrap_err(), InvalidJson);
        for text in ["[]", "1", "null", "\"x\"", r#"{"type":3}"#] {
            assert_eq!(code(text), "invalid_request", "{text}");
        }
        assert_eq!(code(r#"{"type":"shout"}"#), "unknown_type");
    }

    // Verifies: WS-0009
    #[test]
    fn publish_defaults_and_checks() {
        assert_eq!(
            request(r#"{"type":"publish","queue":"q","payload":"p"}"#).unwrap(),
            Request::Write(WriteRequest::Publish {
                queue: "q".into(),
                payload: "p".into(),
                priority: Priority::Num(0),
                max_retries: DEFAULT_MAX_RETRIES,
            })
        );
        let text = r#"{"type":"publish","queue":"q","payload":"p","priority":"hi"}"#;
        assert!(matches!(
            request(text),
            Ok(Request::Write(WriteRequest::Publish { priority: Priority::Text(_), .. }))
        ));
        for bad in ["-1", "1.5", "true", "{}", "18446744073709551616"] {
            let text =
                format!(r#"{{"type":"publish","queue":"q","payload":"p","priority":{bad}}}"#);
            assert_eq!(code(&text), "invalid_priority", "{bad}");
        }
        for bad in ["-1", "\"3\"", "4294967296", "2.0"] {
            let text =
                format!(r#"{{"type":"publish","queue":"q","payload":"p","max_retries":{bad}}}"#);
            assert_eq!(code(&text), "invalid_request", "{bad}");
        }
        assert_eq!(code(r#"{"type":"publish","queue":"q","payload":{"a":1}}"#), "invalid_request");
        assert_eq!(code(r#"{"type":"publish","payload":"p"}"#), "invalid_request");
    }

    // Verifies: WS-0010
    #[test]
    fn subscribe_credits_follow_the_loose_0_15_rule() {
        let credits = |text: &str| match request(text).unwrap() {
            Request::Local(LocalRequest::Subscribe { credits, .. }) => credits,
            other => panic!("{other:?}"),
        };
        assert_eq!(credits(r#"{"type":"subscribe","queue":"q","credits":0}"#), Some(0));
        assert_eq!(credits(r#"{"type":"subscribe","queue":"q","credits":5}"#), Some(5));
        assert_eq!(credits(r#"{"type":"subscribe","queue":"q","credits":-1}"#), None);
        assert_eq!(credits(r#"{"type":"subscribe","queue":"q"}"#), None);
    }

    // Verifies: WS-0011
    #[test]
    fn credit_needs_a_positive_integer() {
        for bad in ["0", "-2", "\"5\"", "null"] {
            let text = format!(r#"{{"type":"credit","queue":"q","credits":{bad}}}"#);
            assert_eq!(code(&text), "invalid_request", "{bad}");
        }
    }

    // Verifies: WS-0017
    #[test]
    fn renew_timeout_is_optional_and_bounded() {
        let text = r#"{"type":"renew","queue":"q","id":"i"}"#;
        assert!(matches!(
            request(text),
            Ok(Request::Write(WriteRequest::Renew { timeout_secs: 30, .. }))
        ));
        let text = r#"{"type":"renew","queue":"q","id":"i","timeout_seconds":43201}"#;
        assert_eq!(code(text), "invalid_timeout");
    }

    // Verifies: WS-0016, WS-0026
    #[test]
    fn batch_ids_skip_non_strings() {
        let text = r#"{"type":"batch-ack","queue":"q","ids":["a",1,null,"b"]}"#;
        assert_eq!(
            request(text).unwrap(),
            Request::Write(WriteRequest::BatchAck {
                queue: "q".into(),
                ids: vec!["a".into(), "b".into()]
            })
        );
        assert_eq!(code(r#"{"type":"batch-nack","queue":"q","ids":"a"}"#), "invalid_request");
    }

    // Verifies: WS-0002
    #[test]
    fn ok_frames_put_fields_and_req_id_together() {
        let mut fields = Map::new();
        fields.insert("acked".into(), 2.into());
        let v: Value = serde_json::from_str(&ok_frame(fields, Some("r"))).unwrap();
        assert_eq!(v, serde_json::json!({"type":"ok","acked":2,"req_id":"r"}));
    }
}
