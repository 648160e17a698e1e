//! `GET /openapi.json`: an OpenAPI 3.0 document generated from the route table, so a
//! route cannot be served undocumented. The schemas below describe the JSON the handlers
//! read and write; keep them in step with the structs in the route modules.

use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use super::routes::{ReplySpec, RouteId, RouteSpec, ROUTES};
use crate::engine::{MAX_CONSUME_BATCH, MAX_TIMEOUT_SECS, MAX_WAIT_SECS};

/// The document, built once.
/// Requirements: API-0024, API-0025
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

fn build() -> Value {
    let mut paths = Map::new();
    for spec in ROUTES {
        let item = paths.entry(spec.path).or_insert_with(|| json!({}));
        item[spec.method.to_ascii_lowercase()] = operation(spec);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Qrusty",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A durable priority-queue server, wire-compatible with the \
                            qrusty 0.15.0 API. Every error reply is a JSON object with a \
                            stable `code`.",
        },
        "paths": paths,
        "components": { "schemas": schemas() },
    })
}

fn operation(spec: &RouteSpec) -> Value {
    let mut op = json!({
        "operationId": format!("{:?}", spec.id),
        "summary": spec.summary,
        "description": spec.description,
        "responses": responses(spec),
    });

    let mut params: Vec<Value> = path_params(spec.path)
        .map(|name| {
            json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
        })
        .collect();
    params.extend(spec.query.iter().map(|(name, description)| {
        json!({
            "name": name, "in": "query", "required": false, "description": description,
            "schema": {"type": "integer", "minimum": 0, "maximum": 10_000},
        })
    }));
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }

    if spec.foreign {
        // Answered by the WebSocket or UI module, not by the API router.
        op["x-served-by"] = json!(if spec.id == RouteId::WebSocket { "ws" } else { "ui" });
    }
    if let Some(body) = spec.body {
        op["requestBody"] = json!({
            "required": body.required,
            "content": {"application/json": {"schema": schema_ref(body.schema)}},
        });
    }
    op
}

fn path_params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
}

fn responses(spec: &RouteSpec) -> Value {
    let (status, success) = match spec.reply {
        ReplySpec::Empty => ("200".to_owned(), json!({"description": "Done (empty body)."})),
        ReplySpec::Json(schema) => (
            "200".to_owned(),
            json!({
                "description": "Success.",
                "content": {"application/json": {"schema": schema_ref(schema)}},
            }),
        ),
        ReplySpec::Other { status, media_type } => (
            status.to_string(),
            json!({
                "description": "Success.",
                "content": {media_type: {"schema": {"type": "string"}}},
            }),
        ),
    };
    let failure = if spec.foreign {
        json!({"description": "Failure, with a short plain-text or JSON reason."})
    } else {
        json!({
            "description": "Failure: a JSON body with a human `error` and a stable `code`.",
            "content": {"application/json": {"schema": schema_ref("Error")}},
        })
    };
    json!({ status: success, "default": failure })
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn object(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties})
}

fn string_array() -> Value {
    json!({"type": "array", "items": {"type": "string"}})
}

fn count() -> Value {
    json!({"type": "integer", "minimum": 0})
}

fn rate() -> Value {
    json!({"type": "number", "minimum": 0})
}

fn timeout_field() -> Value {
    json!({"type": "integer", "minimum": 0, "maximum": MAX_TIMEOUT_SECS, "nullable": true})
}

fn wait_field() -> Value {
    json!({"type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECS, "nullable": true})
}

fn delivery_properties() -> Value {
    json!({
        "id": {"type": "string"},
        "payload": {"type": "string"},
        "retry_count": count(),
        "lock_token": {"type": "string"},
    })
}

/// The component schemas; split in parts to stay within `json!`'s recursion limit.
fn schemas() -> Value {
    let mut all = Map::new();
    for part in [admin_schemas(), delivery_schemas(), stats_schemas()] {
        if let Value::Object(map) = part {
            all.extend(map);
        }
    }
    Value::Object(all)
}

fn admin_schemas() -> Value {
    json!({
        "Error": object(&["error", "code"], json!({
            "error": {"type": "string"},
            "code": {"type": "string"},
        })),
        "Ordering": {"type": "string", "enum": ["MaxFirst", "MinFirst", "Fifo"]},
        "PriorityKind": {"type": "string", "enum": ["Numeric", "Text"]},
        "Priority": {
            "description": "A u64 on Numeric queues, a 1 to 255 byte string on Text queues.",
            "oneOf": [
                {"type": "integer", "minimum": 0, "maximum": u64::MAX},
                {"type": "string", "minLength": 1},
            ],
        },
        "QueueConfig": object(&["ordering", "allow_duplicates", "priority_kind"], json!({
            "ordering": schema_ref("Ordering"),
            "allow_duplicates": {"type": "boolean"},
            "priority_kind": schema_ref("PriorityKind"),
        })),
        "CreateQueue": object(&["name", "config"], json!({
            "name": {"type": "string"},
            "config": object(&["ordering"], json!({
                "ordering": schema_ref("Ordering"),
                "allow_duplicates": {"type": "boolean", "default": true},
                "priority_kind": schema_ref("PriorityKind"),
            })),
        })),
        "UpdateQueue": object(&["name", "config"], json!({
            "name": {"type": "string"},
            "config": object(&[], json!({
                "name": {"type": "string", "description": "New name: renames the queue."},
                "allow_duplicates": {"type": "boolean"},
            })),
        })),
        "DeleteQueueReply": object(&["queue", "deleted_messages"], json!({
            "queue": {"type": "string"}, "deleted_messages": count(),
        })),
        "PurgeQueueReply": object(&["queue", "purged_messages"], json!({
            "queue": {"type": "string"}, "purged_messages": count(),
        })),
        "PurgeAllReply": object(&["purged_queues", "purged_messages"], json!({
            "purged_queues": count(), "purged_messages": count(),
        })),
        "DeleteAllReply": object(&["deleted_queues", "deleted_messages"], json!({
            "deleted_queues": count(), "deleted_messages": count(),
        })),
    })
}

fn delivery_schemas() -> Value {
    let delivery_required = ["id", "payload", "retry_count", "lock_token"];
    let mut nullable_delivery = object(&delivery_required, delivery_properties());
    nullable_delivery["nullable"] = json!(true);

    json!({
        "Publish": object(&["queue", "priority", "payload"], json!({
            "queue": {"type": "string"},
            "priority": schema_ref("Priority"),
            "payload": {"type": "string"},
            "max_retries": {"type": "integer", "minimum": 0, "maximum": u32::MAX,
                            "nullable": true, "default": 3},
        })),
        "PublishReply": object(&["id"], json!({"id": {"type": "string"}})),
        "BatchMessage": object(&["priority", "payload"], json!({
            "priority": schema_ref("Priority"),
            "payload": {"type": "string"},
            "max_retries": {"type": "integer", "minimum": 0, "maximum": u32::MAX,
                            "nullable": true, "default": 3},
        })),
        "PublishBatch": object(&["queue", "messages"], json!({
            "queue": {"type": "string"},
            "messages": {"type": "array", "items": schema_ref("BatchMessage")},
        })),
        "PublishBatchReply": object(&["ids"], json!({"ids": string_array()})),
        "Consume": object(&["consumer_id"], json!({
            "consumer_id": {"type": "string"},
            "timeout_seconds": timeout_field(),
            "wait_seconds": wait_field(),
        })),
        "Delivery": object(&delivery_required, delivery_properties()),
        "ConsumeReply": nullable_delivery,
        "ConsumeBatch": object(&["consumer_id", "max_messages"], json!({
            "consumer_id": {"type": "string"},
            "timeout_seconds": timeout_field(),
            "wait_seconds": wait_field(),
            "max_messages": {"type": "integer", "minimum": 1, "maximum": MAX_CONSUME_BATCH},
        })),
        "ConsumeBatchReply": {"type": "array", "items": schema_ref("Delivery")},
        "Holder": object(&["consumer_id"], json!({
            "consumer_id": {"type": "string"},
            "lock_token": {"type": "string", "nullable": true},
        })),
        "Renew": object(&["consumer_id"], json!({
            "consumer_id": {"type": "string"},
            "timeout_seconds": timeout_field(),
            "lock_token": {"type": "string", "nullable": true},
        })),
        "RenewReply": object(&["locked_until_ms"], json!({"locked_until_ms": count()})),
        "Batch": object(&["consumer_id", "message_ids"], json!({
            "consumer_id": {"type": "string"},
            "message_ids": string_array(),
        })),
        "AckBatchReply": object(&["acked", "not_found"], json!({
            "acked": string_array(), "not_found": string_array(),
        })),
        "NackBatchReply": object(&["unlocked", "dead_lettered", "dropped", "not_found"], json!({
            "unlocked": string_array(),
            "dead_lettered": string_array(),
            "dropped": string_array(),
            "not_found": string_array(),
        })),
    })
}

fn stats_schemas() -> Value {
    json!({
        "QueueStats": object(
            &["name", "available", "locked", "total", "dead_lettered", "config",
              "publish_rate_per_sec", "ack_rate_per_sec", "nack_rate_per_sec"],
            json!({
                "name": {"type": "string"},
                "available": count(),
                "locked": count(),
                "total": count(),
                "dead_lettered": count(),
                "config": schema_ref("QueueConfig"),
                "publish_rate_per_sec": rate(),
                "ack_rate_per_sec": rate(),
                "nack_rate_per_sec": rate(),
            }),
        ),
        "StatsReply": object(&["queues", "summary"], json!({
            "queues": {"type": "array", "items": schema_ref("QueueStats")},
            "summary": object(
                &["total_queues", "total_messages", "total_available", "total_locked"],
                json!({
                    "total_queues": count(),
                    "total_messages": count(),
                    "total_available": count(),
                    "total_locked": count(),
                }),
            ),
        })),
        "MetricsSeries": object(
            &["queue", "resolution_seconds", "window_seconds", "points"],
            json!({
                "queue": {"type": "string"},
                "resolution_seconds": count(),
                "window_seconds": count(),
                "points": {"type": "array", "maxItems": 61, "items": object(
                    &["t_ms", "total", "locked", "publish_rate_per_sec", "ack_rate_per_sec",
                      "nack_rate_per_sec"],
                    json!({
                        "t_ms": count(),
                        "total": count(),
                        "locked": count(),
                        "publish_rate_per_sec": rate(),
                        "ack_rate_per_sec": rate(),
                        "nack_rate_per_sec": rate(),
                    }),
                )},
            }),
        ),
        "QueueNames": string_array(),
        "DeadLetter": object(
            &["id", "payload", "priority", "retry_count", "dead_lettered_at_ms"],
            json!({
                "id": {"type": "string"},
                "payload": {"type": "string"},
                "priority": schema_ref("Priority"),
                "retry_count": count(),
                "dead_lettered_at_ms": count(),
            }),
        ),
        "DeadLetters": {"type": "array", "items": schema_ref("DeadLetter")},
        "Redrive": object(&[], json!({
            "ids": {"type": "array", "items": {"type": "string"}, "nullable": true},
        })),
        "RedriveReply": object(&["redriven"], json!({"redriven": count()})),
        "DlqPurgeReply": object(&["purged"], json!({"purged": count()})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` in the document must name a schema that exists.
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    // Verifies: API-0024
    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let mut found = Vec::new();
        refs(doc, &mut found);
        assert!(!found.is_empty());
        for r in found {
            let name = r.trim_start_matches("#/components/schemas/");
            assert!(doc["components"]["schemas"].get(name).is_some(), "dangling {r}");
        }
    }

    // Verifies: API-0024
    #[test]
    fn every_route_has_an_operation_with_its_path_parameters() {
        let doc = document();
        for spec in ROUTES {
            let op = &doc["paths"][spec.path][spec.method.to_ascii_lowercase()];
            assert_eq!(op["description"], spec.description, "{}", spec.path);
            let declared = op["parameters"]
                .as_array()
                .map_or(0, |p| p.iter().filter(|p| p["in"] == "path").count());
            assert_eq!(declared, path_params(spec.path).count(), "{}", spec.path);
        }
    }
}
