//! The route table. It is the single list of HTTP routes: the router dispatches from it,
//! `405`'s `Allow` header is computed from it, and `/openapi.json` is generated from it,
//! so a route cannot be served without being documented.

use warp::http::Method;

/// Every route of the API. Routes served by other modules (WebSocket, web UI) are listed
/// too, so the OpenAPI document covers the whole listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteId {
    Health,
    CreateQueue,
    UpdateQueue,
    DeleteQueue,
    PurgeQueue,
    PurgeAll,
    DeleteAll,
    Publish,
    PublishBatch,
    Consume,
    ConsumeBatch,
    Ack,
    Nack,
    Renew,
    AckBatch,
    NackBatch,
    Stats,
    QueueStats,
    QueueMetrics,
    Queues,
    DlqList,
    DlqRedrive,
    DlqPurge,
    Metrics,
    OpenApi,
    WebSocket,
    UiIndex,
    UiFile,
    UiAssets,
    Favicon,
}

/// The JSON body a route takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodySpec {
    /// Name of the schema under `components/schemas`.
    pub schema: &'static str,
    /// False when the body may be left out entirely.
    pub required: bool,
}

/// What a route answers on success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplySpec {
    /// Status only, no body.
    Empty,
    /// `application/json` of the named schema.
    Json(&'static str),
    /// Any other media type (plain text, HTML, the Prometheus format, an upgrade).
    Other { status: u16, media_type: &'static str },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    pub id: RouteId,
    pub method: &'static str,
    /// `{name}` segments are path parameters; a final `{path}` takes the rest of the path.
    pub path: &'static str,
    pub summary: &'static str,
    pub description: &'static str,
    pub body: Option<BodySpec>,
    pub reply: ReplySpec,
    /// Query parameters: (name, description); all optional non-negative integers.
    pub query: &'static [(&'static str, &'static str)],
    /// Served by another module's filter (WebSocket, web UI); the API router only answers
    /// these paths when that filter declined the request.
    pub foreign: bool,
}

const fn route(
    id: RouteId,
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    description: &'static str,
) -> RouteSpec {
    RouteSpec {
        id,
        method,
        path,
        summary,
        description,
        body: None,
        reply: ReplySpec::Empty,
        query: &[],
        foreign: false,
    }
}

const fn body(schema: &'static str) -> Option<BodySpec> {
    Some(BodySpec { schema, required: true })
}

/// Requirements: API-0024, SYS-0003
pub static ROUTES: &[RouteSpec] = &[
    RouteSpec {
        reply: ReplySpec::Other { status: 200, media_type: "text/plain" },
        ..route(
            RouteId::Health,
            "GET",
            "/health",
            "Liveness check",
            "Answers `OK` as plain text whenever the process serves requests. Never needs \
             a token and never touches storage.",
        )
    },
    RouteSpec {
        body: body("CreateQueue"),
        ..route(
            RouteId::CreateQueue,
            "POST",
            "/create-queue",
            "Create a queue",
            "Creates a queue with its ordering, duplicate policy and priority kind. 409 \
             `queue_exists` when it exists already (its config is left alone).",
        )
    },
    RouteSpec {
        body: body("UpdateQueue"),
        ..route(
            RouteId::UpdateQueue,
            "POST",
            "/update-queue",
            "Rename a queue or change its duplicate policy",
            "Renames the queue when `config.name` differs from `name` (messages, locks and \
             dead letters move with it; 409 when the target exists) and applies \
             `config.allow_duplicates`. Turning duplicates off removes available \
             duplicates once. Ordering and priority kind cannot change.",
        )
    },
    RouteSpec {
        reply: ReplySpec::Json("DeleteQueueReply"),
        ..route(
            RouteId::DeleteQueue,
            "DELETE",
            "/delete-queue/{queue}",
            "Delete a queue",
            "Removes the queue with all its messages (locked ones too), its config and its \
             dead letters. An unknown queue answers 200 with `deleted_messages: 0`.",
        )
    },
    RouteSpec {
        reply: ReplySpec::Json("PurgeQueueReply"),
        ..route(
            RouteId::PurgeQueue,
            "POST",
            "/purge-queue/{queue}",
            "Empty a queue",
            "Removes every message of the queue, locked ones too; keeps its config and \
             dead letters. Takes no body.",
        )
    },
    RouteSpec {
        reply: ReplySpec::Json("PurgeAllReply"),
        ..route(
            RouteId::PurgeAll,
            "POST",
            "/purge-all",
            "Empty every queue",
            "Purges every existing queue and reports how many queues and messages.",
        )
    },
    RouteSpec {
        reply: ReplySpec::Json("DeleteAllReply"),
        ..route(
            RouteId::DeleteAll,
            "POST",
            "/delete-all",
            "Delete every queue",
            "Deletes every existing queue as `/delete-queue` does.",
        )
    },
    RouteSpec {
        body: body("Publish"),
        reply: ReplySpec::Json("PublishReply"),
        ..route(
            RouteId::Publish,
            "POST",
            "/publish",
            "Publish one message",
            "Stores one message and answers its id. An unknown queue is created with the \
             default config. 409 `duplicate_payload` when the queue refuses duplicates \
             and holds the same payload; 400 `invalid_priority` for a priority of the \
             wrong kind.",
        )
    },
    RouteSpec {
        body: body("PublishBatch"),
        reply: ReplySpec::Json("PublishBatchReply"),
        ..route(
            RouteId::PublishBatch,
            "POST",
            "/publish-batch",
            "Publish several messages at once",
            "Stores every message of the batch in one durable write, or none of them; the \
             ids come back in request order.",
        )
    },
    RouteSpec {
        body: body("Consume"),
        reply: ReplySpec::Json("ConsumeReply"),
        ..route(
            RouteId::Consume,
            "POST",
            "/consume/{queue}",
            "Take the next message",
            "Locks the next available message to `consumer_id` for `timeout_seconds` \
             (default 30, at most 43200) and returns it, or `null` when there is none. \
             With `wait_seconds` (at most 20) an empty queue is watched that long first.",
        )
    },
    RouteSpec {
        body: body("ConsumeBatch"),
        reply: ReplySpec::Json("ConsumeBatchReply"),
        ..route(
            RouteId::ConsumeBatch,
            "POST",
            "/consume-batch/{queue}",
            "Take up to max_messages messages",
            "Like `/consume`, for up to `max_messages` (1 to 1000) messages; answers a \
             possibly empty array.",
        )
    },
    RouteSpec {
        body: body("Holder"),
        ..route(
            RouteId::Ack,
            "POST",
            "/ack/{queue}/{id}",
            "Acknowledge a message",
            "Deletes a message held by `consumer_id`. 404 `not_locked` when this consumer \
             does not hold it; 409 `stale_lock` when `lock_token` names an older delivery.",
        )
    },
    RouteSpec {
        body: body("Holder"),
        ..route(
            RouteId::Nack,
            "POST",
            "/nack/{queue}/{id}",
            "Give a message back",
            "Returns a held message to its place in the queue, or moves it to the dead \
             letters when its `retry_count` has reached `max_retries`.",
        )
    },
    RouteSpec {
        body: body("Renew"),
        reply: ReplySpec::Json("RenewReply"),
        ..route(
            RouteId::Renew,
            "POST",
            "/renew/{queue}/{id}",
            "Extend a lock",
            "Moves the lock deadline of a held message to now + `timeout_seconds` \
             (default 30) and answers the new deadline in epoch milliseconds.",
        )
    },
    RouteSpec {
        body: body("Batch"),
        reply: ReplySpec::Json("AckBatchReply"),
        ..route(
            RouteId::AckBatch,
            "POST",
            "/ack-batch/{queue}",
            "Acknowledge several messages",
            "Acknowledges every listed message held by `consumer_id` in one write; the \
             others are listed under `not_found`.",
        )
    },
    RouteSpec {
        body: body("Batch"),
        reply: ReplySpec::Json("NackBatchReply"),
        ..route(
            RouteId::NackBatch,
            "POST",
            "/nack-batch/{queue}",
            "Give several messages back",
            "Nacks every listed message held by `consumer_id` in one write, telling which \
             went back to the queue and which were dead-lettered.",
        )
    },
    RouteSpec {
        reply: ReplySpec::Json("StatsReply"),
        ..route(
            RouteId::Stats,
            "GET",
            "/stats",
            "Counts of every queue",
            "Every existing queue sorted by name with its counts, config and rates, and a \
             summary over all of them.",
        )
    },
    RouteSpec {
        reply: ReplySpec::Json("QueueStats"),
        ..route(
            RouteId::QueueStats,
            "GET",
            "/queue-stats/{queue}",
            "Counts of one queue",
            "One queue's counts, config and rates. An unknown queue answers zeros with \
             the default config.",
        )
    },
    RouteSpec {
        reply: ReplySpec::Json("MetricsSeries"),
        ..route(
            RouteId::QueueMetrics,
            "GET",
            "/queues/{queue}/metrics",
            "One queue's last minute",
            "The queue's 1-second samples of counts and rates, oldest first, at most 61.",
        )
    },
    RouteSpec {
        reply: ReplySpec::Json("QueueNames"),
        ..route(
            RouteId::Queues,
            "GET",
            "/queues",
            "Names of every queue",
            "Every existing queue name, empty queues included, sorted.",
        )
    },
    RouteSpec {
        reply: ReplySpec::Json("DeadLetters"),
        query: &[("limit", "Most dead letters to list (default 100, at most 10000).")],
        ..route(
            RouteId::DlqList,
            "GET",
            "/dlq/{queue}",
            "List dead letters",
            "The queue's dead letters, oldest first.",
        )
    },
    RouteSpec {
        body: Some(BodySpec { schema: "Redrive", required: false }),
        reply: ReplySpec::Json("RedriveReply"),
        ..route(
            RouteId::DlqRedrive,
            "POST",
            "/dlq/{queue}/redrive",
            "Put dead letters back",
            "Moves the named dead letters (all of them when `ids` is absent or there is no \
             body) back to their original place with `retry_count` 0.",
        )
    },
    RouteSpec {
        reply: ReplySpec::Json("DlqPurgeReply"),
        ..route(
            RouteId::DlqPurge,
            "POST",
            "/dlq/{queue}/purge",
            "Drop dead letters",
            "Deletes every dead letter of the queue.",
        )
    },
    RouteSpec {
        reply: ReplySpec::Other {
            status: 200,
            media_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
        },
        ..route(
            RouteId::Metrics,
            "GET",
            "/metrics",
            "Prometheus metrics",
            "Per-queue gauges and engine-wide counters in the Prometheus text format.",
        )
    },
    RouteSpec {
        reply: ReplySpec::Other { status: 200, media_type: "application/json" },
        ..route(
            RouteId::OpenApi,
            "GET",
            "/openapi.json",
            "This document",
            "The OpenAPI 3 description of every HTTP route.",
        )
    },
    RouteSpec {
        reply: ReplySpec::Other { status: 101, media_type: "application/octet-stream" },
        foreign: true,
        ..route(
            RouteId::WebSocket,
            "GET",
            "/ws",
            "WebSocket API",
            "Upgrades to the WebSocket protocol (publish, subscribe, ack, logs).",
        )
    },
    RouteSpec {
        reply: ReplySpec::Other { status: 200, media_type: "text/html" },
        foreign: true,
        ..route(RouteId::UiIndex, "GET", "/ui", "Web UI", "The web UI's start page.")
    },
    RouteSpec {
        reply: ReplySpec::Other { status: 200, media_type: "text/html" },
        foreign: true,
        ..route(
            RouteId::UiFile,
            "GET",
            "/ui/{path}",
            "Web UI files",
            "A file of the web UI; a path naming no file gets the start page (a deep link).",
        )
    },
    RouteSpec {
        reply: ReplySpec::Other { status: 200, media_type: "application/octet-stream" },
        foreign: true,
        ..route(
            RouteId::UiAssets,
            "GET",
            "/assets/{path}",
            "Web UI assets",
            "Scripts, styles and images of the web UI.",
        )
    },
    RouteSpec {
        reply: ReplySpec::Other { status: 200, media_type: "image/x-icon" },
        foreign: true,
        ..route(RouteId::Favicon, "GET", "/favicon.ico", "Icon", "The web UI's icon.")
    },
];

/// The outcome of matching a request against the table.
#[derive(Debug, PartialEq, Eq)]
pub enum Match {
    Found {
        spec: &'static RouteSpec,
        params: Vec<String>,
    },
    /// The path exists but not with this method; the `Allow` header value.
    WrongMethod(String),
    NotFound,
}

/// Matches percent-decoded path segments. `HEAD` is answered by `GET` routes.
/// Requirements: API-0005
pub fn find(method: &Method, segments: &[String]) -> Match {
    let mut allowed: Vec<&'static str> = Vec::new();
    for spec in ROUTES {
        let Some(params) = match_path(spec.path, segments) else { continue };
        let answers =
            spec.method == method.as_str() || (method == Method::HEAD && spec.method == "GET");
        if answers {
            return Match::Found { spec, params };
        }
        if !allowed.contains(&spec.method) {
            allowed.push(spec.method);
        }
    }
    if allowed.is_empty() {
        return Match::NotFound;
    }
    if allowed.contains(&"GET") {
        allowed.push("HEAD");
    }
    Match::WrongMethod(allowed.join(", "))
}

fn match_path(template: &str, segments: &[String]) -> Option<Vec<String>> {
    let parts: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    let mut params = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let is_param = part.starts_with('{') && part.ends_with('}');
        let is_last = i + 1 == parts.len();
        if is_param && is_last && *part == "{path}" {
            // A tail parameter takes the rest of the path, at least one segment.
            let rest = segments.get(i..).filter(|r| !r.is_empty())?;
            params.push(rest.join("/"));
            return Some(params);
        }
        let segment = segments.get(i)?;
        if is_param {
            params.push(segment.clone());
        } else if part != segment {
            return None;
        }
    }
    (segments.len() == parts.len()).then_some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(path: &str) -> Vec<String> {
        path.trim_start_matches('/').split('/').map(str::to_owned).collect()
    }

    // Verifies: API-0024
    #[test]
    fn every_route_is_unique_and_described() {
        for (i, a) in ROUTES.iter().enumerate() {
            assert!(!a.summary.is_empty() && !a.description.is_empty(), "{}", a.path);
            for b in &ROUTES[i + 1..] {
                assert!(a.id != b.id, "{:?} listed twice", a.id);
                assert!((a.method, a.path) != (b.method, b.path), "{} listed twice", a.path);
            }
        }
    }

    #[test]
    fn parameters_are_extracted_in_order() {
        let Match::Found { spec, params } = find(&Method::POST, &segs("/ack/q1/abc")) else {
            panic!("ack route not found");
        };
        assert_eq!(spec.id, RouteId::Ack);
        assert_eq!(params, ["q1", "abc"]);
    }

    // Verifies: API-0005
    #[test]
    fn wrong_method_lists_what_the_path_allows() {
        assert_eq!(find(&Method::POST, &segs("/stats")), Match::WrongMethod("GET, HEAD".into()));
        assert_eq!(find(&Method::GET, &segs("/publish")), Match::WrongMethod("POST".into()));
    }

    // Verifies: API-0005
    #[test]
    fn head_is_answered_by_get_routes() {
        assert!(matches!(find(&Method::HEAD, &segs("/queues")), Match::Found { .. }));
    }

    // Verifies: API-0005
    #[test]
    fn unknown_paths_and_extra_segments_do_not_match() {
        assert_eq!(find(&Method::GET, &segs("/nope")), Match::NotFound);
        assert_eq!(find(&Method::POST, &segs("/consume/a/b")), Match::NotFound);
        assert_eq!(find(&Method::GET, &segs("/stats/")), Match::NotFound);
    }

    #[test]
    fn tail_parameters_take_the_rest_of_the_path() {
        let Match::Found { spec, params } = find(&Method::GET, &segs("/assets/js/app.js")) else {
            panic!("assets route not found");
        };
        assert_eq!(spec.id, RouteId::UiAssets);
        assert_eq!(params, ["js/app.js"]);
    }
}
