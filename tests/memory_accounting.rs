//! The memory gauge behind QRUSTY_MAX_MEMORY_BYTES: kept as a running count, it must match
//! what the queues hold after every kind of change, and come out the same when a restart
//! rebuilds the queues from the log or from a checkpoint.

use std::sync::Arc;
use std::time::Duration;

use qrusty::clock::ManualClock;
use qrusty::engine::limits::message_cost;
use qrusty::engine::*;
use qrusty::wal::WalOptions;

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Arc<Engine> {
    let mut opts = EngineOptions::new(StorageConfig::Wal(WalOptions::new(dir)));
    opts.clock = clock.clone();
    // Every payload in RAM, so every one is charged (tests/payload_spill.rs covers the
    // payloads left in the log).
    opts.spill_payload_bytes = 0;
    Engine::open(opts).unwrap()
}

fn msg(priority: Priority, payload: String, max_retries: u32) -> NewMessage {
    NewMessage { priority, payload, max_retries }
}

/// The cost of every dead letter, from the listing.
fn dead_letter_bytes(e: &Engine) -> u64 {
    let mut total = 0;
    for s in e.stats() {
        for d in e.dlq_list(&s.name, usize::MAX).unwrap() {
            total += message_cost(d.payload.len(), &d.priority);
        }
    }
    total
}

// Verifies: SYS-0026
#[tokio::test]
async fn the_gauge_follows_every_change_and_survives_restarts_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let e = open(dir.path(), &clock);
    let text = QueueConfig { priority_kind: PriorityKind::Text, ..QueueConfig::default() };
    e.create_queue("t", text).await.unwrap();

    let mut live = 0;
    for i in 0..20usize {
        let payload = "p".repeat(10 + i * 7);
        live += message_cost(payload.len(), &Priority::Num(1));
        e.publish("n", msg(Priority::Num(1), payload, 0)).await.unwrap();
        let prio = Priority::Text(format!("k{i:03}").into());
        live += message_cost(3 + i, &prio);
        e.publish("t", msg(prio, "x".repeat(3 + i), 3)).await.unwrap();
    }
    assert_eq!(e.memory_held(), live);

    // Acks free; a nack past max_retries moves the message to the dead letters (still held).
    let got = e.consume("n", "c", 30, 6, Duration::ZERO).await.unwrap();
    let holder = Holder { consumer_id: "c".into(), lock_token: None };
    for d in &got[..3] {
        e.ack("n", &d.id, &holder).await.unwrap();
        live -= message_cost(d.payload.len(), &Priority::Num(1));
    }
    for d in &got[3..] {
        e.nack("n", &d.id, &holder).await.unwrap();
    }
    assert_eq!(e.memory_held(), live);
    assert_eq!(e.dlq_list("n", usize::MAX).unwrap().len(), 3);
    let dead = dead_letter_bytes(&e);

    // Restart: replayed from the log.
    drop(e);
    let e = open(dir.path(), &clock);
    assert_eq!(e.memory_held(), live);

    // Restart from a checkpoint: snapshots charge the same.
    let report = e.compact().unwrap();
    assert_eq!((report.messages, report.dead_letters), (14 + 20, 3));
    assert_eq!(e.memory_held(), live, "a compaction changes nothing held");
    drop(e);
    let e = open(dir.path(), &clock);
    assert_eq!(e.memory_held(), live);

    // Purging the dead letters, then the queue, then deleting the other frees it all.
    e.dlq_purge("n").await.unwrap();
    live -= dead;
    assert_eq!(e.memory_held(), live);
    e.purge_queue("n").await.unwrap();
    e.delete_queue("t").await.unwrap();
    assert_eq!(e.memory_held(), 0);
    e.shutdown().await;
}

// Verifies: SYS-0026
#[tokio::test]
async fn turning_duplicates_off_frees_the_copies_it_removes() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let mut opts = EngineOptions::new(StorageConfig::Memory);
    opts.clock = clock;
    let e = Engine::open(opts).unwrap();
    for _ in 0..4 {
        e.publish("d", msg(Priority::Num(1), "same".into(), 3)).await.unwrap();
    }
    let one = message_cost(4, &Priority::Num(1));
    assert_eq!(e.memory_held(), 4 * one);
    e.update_queue("d", None, Some(false)).await.unwrap();
    assert_eq!(e.memory_held(), one);
}
