//! The queue engine driven directly, in memory, with a clock the tests move.

use std::sync::Arc;
use std::time::Duration;

use qrusty::clock::ManualClock;
use qrusty::engine::*;

fn engine() -> (Arc<Engine>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let mut opts = EngineOptions::new(StorageConfig::Memory);
    opts.clock = clock.clone();
    (Engine::open(opts).unwrap(), clock)
}

fn msg(p: u64, payload: &str) -> NewMessage {
    NewMessage { priority: Priority::Num(p), payload: payload.into(), max_retries: 3 }
}

fn holder(c: &str) -> Holder {
    Holder { consumer_id: c.into(), lock_token: None }
}

fn cfg(ordering: Ordering) -> QueueConfig {
    QueueConfig { ordering, ..Default::default() }
}

async fn take(e: &Engine, q: &str, c: &str) -> Option<Delivery> {
    e.consume(q, c, 30, 1, Duration::ZERO).await.unwrap().pop()
}

async fn drain_payloads(e: &Engine, q: &str) -> Vec<String> {
    let mut out = vec![];
    while let Some(d) = take(e, q, "drain").await {
        e.ack(q, &d.id, &holder("drain")).await.unwrap();
        out.push(d.payload);
    }
    out
}

// Verifies: SCH-0002, SCH-0003, SCH-0004, SCH-0005, SCH-0006
#[tokio::test]
async fn max_first_min_first_and_fifo_order_with_extremes_and_ties() {
    let (e, _) = engine();
    for (q, o) in
        [("max", Ordering::MaxFirst), ("min", Ordering::MinFirst), ("fifo", Ordering::Fifo)]
    {
        e.create_queue(q, cfg(o)).await.unwrap();
        for (p, s) in [(5, "a"), (u64::MAX, "b"), (0, "c"), (5, "d")] {
            e.publish(q, msg(p, s)).await.unwrap();
        }
    }
    assert_eq!(drain_payloads(&e, "max").await, ["b", "a", "d", "c"]);
    assert_eq!(drain_payloads(&e, "min").await, ["c", "a", "d", "b"]);
    assert_eq!(drain_payloads(&e, "fifo").await, ["a", "b", "c", "d"]);
}

// Verifies: SCH-0010, DLV-0009
#[tokio::test]
async fn nacked_message_goes_back_to_its_original_place() {
    let (e, _) = engine();
    e.publish("q", msg(1, "old")).await.unwrap();
    let d = take(&e, "q", "w").await.unwrap();
    e.publish("q", msg(1, "new")).await.unwrap();
    assert_eq!(e.nack("q", &d.id, &holder("w")).await.unwrap(), NackOutcome::Requeued);
    assert_eq!(drain_payloads(&e, "q").await, ["old", "new"]);
}

// Verifies: SCH-0007, SCH-0008
#[tokio::test]
async fn text_priorities_order_bytewise_and_reject_the_wrong_kind() {
    let (e, _) = engine();
    let c = QueueConfig { priority_kind: PriorityKind::Text, ..Default::default() };
    e.create_queue("t", c).await.unwrap();
    for p in ["b", "a", "c"] {
        let m =
            NewMessage { priority: Priority::Text(p.into()), payload: p.into(), max_retries: 3 };
        e.publish("t", m).await.unwrap();
    }
    assert_eq!(drain_payloads(&e, "t").await, ["c", "b", "a"]);
    let err = e.publish("t", msg(1, "x")).await.unwrap_err();
    assert!(matches!(err, EngineError::InvalidPriority(_)));
    let text =
        NewMessage { priority: Priority::Text("x".into()), payload: "x".into(), max_retries: 3 };
    assert!(matches!(e.publish("n", text).await, Err(EngineError::InvalidPriority(_))));
}

// Verifies: DLV-0004, DLV-0005, DLV-0006, DLV-0007
#[tokio::test]
async fn lock_holder_rules_and_stale_tokens() {
    let (e, clock) = engine();
    e.publish("q", msg(1, "m")).await.unwrap();
    let first = take(&e, "q", "a").await.unwrap();
    assert_eq!(first.retry_count, 1);
    assert_eq!(e.ack("q", &first.id, &holder("b")).await, Err(EngineError::NotLocked));
    clock.advance_ms(30_000);
    // Expiry is exact: the old holder lost the message at its deadline.
    assert_eq!(e.ack("q", &first.id, &holder("a")).await, Err(EngineError::NotLocked));
    let second = take(&e, "q", "a").await.unwrap();
    assert_eq!(second.retry_count, 2);
    assert_ne!(first.lock_token, second.lock_token);
    let stale = Holder { consumer_id: "a".into(), lock_token: Some(first.lock_token.clone()) };
    assert_eq!(e.ack("q", &second.id, &stale).await, Err(EngineError::StaleLock));
    let fresh = Holder { consumer_id: "a".into(), lock_token: Some(second.lock_token) };
    e.ack("q", &second.id, &fresh).await.unwrap();
    assert_eq!(e.ack("q", &second.id, &fresh).await, Err(EngineError::NotLocked));
}

// Verifies: DLV-0009, DLV-0011, DLV-0014, DLV-0016
#[tokio::test]
async fn nack_dead_letters_after_max_retries_and_expiry_counts_too() {
    let (e, clock) = engine();
    let m = NewMessage { priority: Priority::Num(1), payload: "p".into(), max_retries: 2 };
    e.publish("q", m.clone()).await.unwrap();
    let d = take(&e, "q", "w").await.unwrap();
    assert_eq!(e.nack("q", &d.id, &holder("w")).await.unwrap(), NackOutcome::Requeued);
    let d = take(&e, "q", "w").await.unwrap();
    assert_eq!(d.retry_count, 2);
    assert_eq!(e.nack("q", &d.id, &holder("w")).await.unwrap(), NackOutcome::DeadLettered);
    assert!(take(&e, "q", "w").await.is_none());

    // A worker that dies holding it: expiry with retries used up dead-letters it.
    e.publish("q", m).await.unwrap();
    take(&e, "q", "w").await.unwrap();
    clock.advance_ms(30_001);
    take(&e, "q", "w").await.unwrap();
    let s = e.queue_stats("q").unwrap();
    assert_eq!((s.available, s.locked, s.dead_lettered), (0, 1, 1));
    clock.advance_ms(30_001);
    let s = e.queue_stats("q").unwrap();
    assert_eq!((s.available, s.locked, s.dead_lettered), (0, 0, 2));
    // The listing shows it at once too, before anything settles the lock, as it will be.
    let unsettled = e.dlq_list("q", 10).unwrap();
    assert_eq!(unsettled.len(), 2);
    assert_eq!(e.dlq_list("q", 1).unwrap(), unsettled[..1]);
    assert!(take(&e, "q", "w").await.is_none());
    let dl = e.dlq_list("q", 10).unwrap();
    assert_eq!(dl, unsettled);
    assert_eq!(e.dlq_redrive("q", None).await.unwrap(), 2);
    let d = take(&e, "q", "w").await.unwrap();
    assert_eq!(d.retry_count, 1);
}

// Verifies: DLV-0019, DLV-0020, DLV-0021
#[tokio::test]
async fn duplicates_rejected_and_deduplicated_on_config_change() {
    let (e, _) = engine();
    e.create_queue("d", QueueConfig { allow_duplicates: false, ..Default::default() })
        .await
        .unwrap();
    e.publish("d", msg(1, "x")).await.unwrap();
    assert_eq!(e.publish("d", msg(2, "x")).await, Err(EngineError::DuplicatePayload));
    let d = take(&e, "d", "w").await.unwrap();
    assert_eq!(e.publish("d", msg(2, "x")).await, Err(EngineError::DuplicatePayload));
    e.ack("d", &d.id, &holder("w")).await.unwrap();
    e.publish("d", msg(2, "x")).await.unwrap();

    e.publish("u", msg(1, "a")).await.unwrap();
    e.publish("u", msg(1, "a")).await.unwrap();
    e.publish("u", msg(1, "b")).await.unwrap();
    let locked = take(&e, "u", "w").await.unwrap();
    assert_eq!(locked.payload, "a");
    e.update_queue("u", None, Some(false)).await.unwrap();
    // The locked "a" counts as the kept copy: its ready twin is removed.
    let s = e.queue_stats("u").unwrap();
    assert_eq!((s.available, s.locked), (1, 1));
}

// Verifies: API-0009, API-0010, API-0011, API-0012
#[tokio::test]
async fn rename_moves_messages_and_locks_purge_and_delete_count() {
    let (e, _) = engine();
    e.publish("a", msg(1, "1")).await.unwrap();
    e.publish("a", msg(1, "2")).await.unwrap();
    let d = take(&e, "a", "w").await.unwrap();
    e.update_queue("a", Some("b"), None).await.unwrap();
    assert!(!e.queue_exists("a"));
    assert_eq!(e.ack("b", &d.id, &holder("w")).await, Ok(()));
    assert_eq!(e.purge_queue("b").await.unwrap(), 1);
    assert!(e.queue_exists("b"));
    e.publish("b", msg(1, "3")).await.unwrap();
    assert_eq!(e.delete_queue("b").await.unwrap(), 1);
    assert_eq!(e.delete_queue("b").await.unwrap(), 0);
    assert!(e.stats().is_empty());
    e.create_queue("c", QueueConfig::default()).await.unwrap();
    assert_eq!(
        e.update_queue("nope", Some("x"), None).await,
        Err(EngineError::QueueNotFound("nope".into()))
    );
    e.create_queue("x", QueueConfig::default()).await.unwrap();
    assert_eq!(
        e.update_queue("c", Some("x"), None).await,
        Err(EngineError::QueueExists("x".into()))
    );
}

// Verifies: DLV-0023, DLV-0024, DLV-0026
#[tokio::test]
async fn batches_report_what_happened_to_each_id() {
    let (e, _) = engine();
    e.publish_batch("q", vec![msg(1, "a"), msg(2, "b"), msg(3, "c")]).await.unwrap();
    let got = e.consume("q", "w", 30, 10, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 3);
    let ids: Vec<String> =
        vec![got[2].id.clone(), got[0].id.clone(), "nope".into(), got[0].id.clone()];
    let out = e.ack_batch("q", "w", &ids).await.unwrap();
    assert_eq!(out.acked, vec![got[0].id.clone(), got[2].id.clone()]);
    assert_eq!(out.not_found, vec!["nope".to_string(), got[0].id.clone()]);
    let out = e.nack_batch("q", "w", &[got[1].id.clone()]).await.unwrap();
    assert_eq!(out.unlocked, vec![got[1].id.clone()]);
}

// Verifies: DLV-0027
#[tokio::test]
async fn long_poll_wakes_on_publish() {
    let (e, _) = engine();
    e.create_queue("q", QueueConfig::default()).await.unwrap();
    let e2 = e.clone();
    let waiter =
        tokio::spawn(async move { e2.consume("q", "w", 30, 1, Duration::from_secs(5)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    e.publish("q", msg(1, "hello")).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(2), waiter).await.unwrap().unwrap().unwrap();
    assert_eq!(got[0].payload, "hello");
}

// Verifies: DLV-0003
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_consumers_get_each_message_exactly_once() {
    let (e, _) = engine();
    let msgs: Vec<_> = (0..2000).map(|i| msg(i % 7, &i.to_string())).collect();
    e.publish_batch("q", msgs).await.unwrap();
    let mut tasks = vec![];
    for w in 0..8 {
        let e = e.clone();
        tasks.push(tokio::spawn(async move {
            let c = format!("w{w}");
            let mut seen = vec![];
            while let Some(d) = take(&e, "q", &c).await {
                e.ack("q", &d.id, &holder(&c)).await.unwrap();
                seen.push(d.payload);
            }
            seen
        }));
    }
    let mut all = vec![];
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 2000);
}

// Verifies: API-0021, API-0022
#[tokio::test]
async fn the_metrics_sampler_does_not_block_other_operations() {
    let (e, clock) = engine();
    e.publish("q", msg(1, "x")).await.unwrap();
    for _ in 0..3 {
        clock.advance_ms(1000);
        e.sample_metrics();
    }
    let points = e.metrics_series("q").unwrap();
    assert_eq!(points.len(), 3);
    assert_eq!(points[2].total, 1);
    assert!(e.queue_stats("q").unwrap().publish_rate_per_sec > 0.0);
}

// Verifies: API-0029, SYS-0024
#[tokio::test]
async fn queue_and_message_limits_refuse_the_excess_and_keep_what_is_there() {
    let mut opts = EngineOptions::new(StorageConfig::Memory);
    opts.max_queues = 2;
    opts.max_messages_per_queue = 2;
    let e = Engine::open(opts).unwrap();
    e.publish("a", msg(1, "one")).await.unwrap();
    e.publish("a", msg(2, "two")).await.unwrap();
    assert!(matches!(e.publish("a", msg(3, "three")).await, Err(EngineError::QueueFull(_))));
    // A batch that would cross the limit is refused whole.
    e.create_queue("b", QueueConfig::default()).await.unwrap();
    let batch = vec![msg(1, "x"), msg(1, "y"), msg(1, "z")];
    assert!(matches!(e.publish_batch("b", batch).await, Err(EngineError::QueueFull(_))));
    assert_eq!(e.queue_stats("b").unwrap().total(), 0);

    // A third queue is refused, explicitly or by publish.
    let third = e.create_queue("c", QueueConfig::default()).await;
    assert!(matches!(third, Err(EngineError::QueueFull(_))));
    assert!(matches!(e.publish("c", msg(1, "x")).await, Err(EngineError::QueueFull(_))));
    assert!(!e.queue_exists("c"));
    assert_eq!(drain_payloads(&e, "a").await, ["two", "one"]);
}
