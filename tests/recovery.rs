//! Restarts over the write-ahead log: what was acknowledged before is there after.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::Rng;
use proptest::test_runner::{RngAlgorithm, TestRng};
use qrusty::clock::ManualClock;
use qrusty::engine::*;
use qrusty::wal::{FsyncPolicy, RecoveryMode, WalOptions};

const T0: u64 = 1_700_000_000_000;

fn wal_opts(dir: &Path, segment_bytes: u64) -> WalOptions {
    WalOptions {
        dir: dir.to_path_buf(),
        segment_bytes,
        fsync: FsyncPolicy::Always,
        recovery: RecoveryMode::Strict,
        max_record_bytes: 16 * 1024 * 1024,
    }
}

fn open(dir: &Path, clock: &Arc<ManualClock>, segment_bytes: u64) -> Arc<Engine> {
    let mut opts = EngineOptions::new(StorageConfig::Wal(wal_opts(dir, segment_bytes)));
    opts.clock = clock.clone();
    Engine::open(opts).unwrap()
}

fn msg(p: Priority, payload: &str, max_retries: u32) -> NewMessage {
    NewMessage { priority: p, payload: payload.into(), max_retries }
}

fn holder(c: &str) -> Holder {
    Holder { consumer_id: c.into(), lock_token: None }
}

/// Everything a client can observe of the engine, for before/after comparisons.
fn observe(e: &Engine) -> Vec<String> {
    let mut out = vec![];
    for s in e.stats() {
        out.push(format!(
            "{} {:?} avail={} locked={} dead={}",
            s.name, s.config, s.available, s.locked, s.dead_lettered
        ));
        for d in e.dlq_list(&s.name, usize::MAX).unwrap() {
            out.push(format!("  dlq {} {} {:?} {}", d.id, d.payload, d.priority, d.retry_count));
        }
    }
    out
}

async fn drain(e: &Engine, q: &str) -> Vec<(String, u32)> {
    let mut out = vec![];
    while let Some(d) = e.consume(q, "drain", 30, 1, Duration::ZERO).await.unwrap().pop() {
        e.ack(q, &d.id, &holder("drain")).await.unwrap();
        out.push((d.payload, d.retry_count));
    }
    out
}

// Verifies: PER-0012, PER-0013, SCH-0010
#[tokio::test]
async fn graceful_restart_keeps_queues_messages_locks_retries_dead_letters_and_dedup() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let locked_id;
    {
        let e = open(dir.path(), &clock, 4096);
        let min = QueueConfig { ordering: Ordering::MinFirst, ..Default::default() };
        e.create_queue("min", min).await.unwrap();
        let text = QueueConfig {
            priority_kind: PriorityKind::Text,
            allow_duplicates: false,
            ..Default::default()
        };
        e.create_queue("text", text).await.unwrap();
        for (i, p) in [5u64, 0, u64::MAX, 5].iter().enumerate() {
            e.publish("max", msg(Priority::Num(*p), &format!("m{i}"), 3)).await.unwrap();
            e.publish("min", msg(Priority::Num(*p), &format!("n{i}"), 3)).await.unwrap();
        }
        for t in ["b", "a", "c"] {
            e.publish("text", msg(Priority::Text(t.into()), t, 3)).await.unwrap();
        }
        // A retried message keeps its count; a locked one keeps its lock and holder.
        let d = e.consume("max", "w", 30, 1, Duration::ZERO).await.unwrap().pop().unwrap();
        e.nack("max", &d.id, &holder("w")).await.unwrap();
        let d = e.consume("min", "w", 60, 1, Duration::ZERO).await.unwrap().pop().unwrap();
        locked_id = d.id;
        // A dead letter.
        e.publish("dl", msg(Priority::Num(1), "poison", 0)).await.unwrap();
        let d = e.consume("dl", "w", 30, 1, Duration::ZERO).await.unwrap().pop().unwrap();
        e.nack("dl", &d.id, &holder("w")).await.unwrap();
        // Renamed and deleted queues.
        e.publish("old", msg(Priority::Num(1), "moved", 3)).await.unwrap();
        e.update_queue("old", Some("new"), None).await.unwrap();
        e.publish("gone", msg(Priority::Num(1), "x", 3)).await.unwrap();
        e.delete_queue("gone").await.unwrap();
        let before = observe(&e);
        e.shutdown().await;
        drop(e);
        let e = open(dir.path(), &clock, 4096);
        assert_eq!(observe(&e), before);
    }
    let e = open(dir.path(), &clock, 4096);
    // The lock survived with its holder: the holder can ack it, nobody else can take it.
    assert_eq!(e.ack("min", &locked_id, &holder("other")).await, Err(EngineError::NotLocked));
    assert!(matches!(
        e.publish("text", msg(Priority::Text("z".into()), "a", 3)).await,
        Err(EngineError::DuplicatePayload)
    ));
    assert_eq!(
        drain(&e, "max").await,
        [("m2".into(), 2), ("m0".into(), 1), ("m3".into(), 1), ("m1".into(), 1)]
    );
    let min: Vec<String> = drain(&e, "min").await.into_iter().map(|p| p.0).collect();
    assert_eq!(min, ["n0", "n3", "n2"]);
    e.ack("min", &locked_id, &holder("w")).await.unwrap();
    let text: Vec<String> = drain(&e, "text").await.into_iter().map(|p| p.0).collect();
    assert_eq!(text, ["c", "b", "a"]);
    assert_eq!(drain(&e, "new").await, [("moved".into(), 1)]);
    assert!(!e.queue_exists("gone"));
    assert_eq!(e.dlq_list("dl", 10).unwrap()[0].payload, "poison");
    // New messages after a restart sort after the old ones (sequence numbers continue).
    e.publish("fifo", msg(Priority::Num(0), "first", 3)).await.unwrap();
    e.shutdown().await;
    drop(e);
    let e = open(dir.path(), &clock, 4096);
    e.publish("fifo", msg(Priority::Num(0), "second", 3)).await.unwrap();
    let order: Vec<String> = drain(&e, "fifo").await.into_iter().map(|p| p.0).collect();
    assert_eq!(order, ["first", "second"]);
}

// Verifies: PER-0013
#[tokio::test]
async fn lock_deadlines_survive_a_restart_and_expire_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    {
        let e = open(dir.path(), &clock, 1 << 20);
        e.publish("q", msg(Priority::Num(1), "x", 3)).await.unwrap();
        e.consume("q", "w", 10, 1, Duration::ZERO).await.unwrap();
        e.shutdown().await;
    }
    let e = open(dir.path(), &clock, 1 << 20);
    let s = e.queue_stats("q").unwrap();
    assert_eq!((s.available, s.locked), (0, 1));
    clock.advance_ms(10_000);
    let s = e.queue_stats("q").unwrap();
    assert_eq!((s.available, s.locked), (1, 0));
    let d = e.consume("q", "w2", 10, 1, Duration::ZERO).await.unwrap().pop().unwrap();
    assert_eq!(d.retry_count, 2);
}

fn open_sim(fs: &qrusty::wal::SimFs, clock: &Arc<ManualClock>) -> Arc<Engine> {
    let mut opts = EngineOptions::new(StorageConfig::Wal(wal_opts(Path::new("/sim"), 1 << 20)));
    opts.clock = clock.clone();
    opts.fs = Some(Arc::new(fs.clone()));
    Engine::open(opts).unwrap()
}

// Verifies: PER-0009
#[tokio::test]
async fn a_failed_fsync_acknowledges_nothing_and_leaves_no_trace_after_a_crash() {
    use qrusty::wal::{CrashMode, Fault, SimFs};
    let fs = SimFs::new(7);
    let clock = Arc::new(ManualClock::new(T0));
    let e = open_sim(&fs, &clock);
    e.publish("q", msg(Priority::Num(1), "kept", 3)).await.unwrap();
    fs.inject(Fault::Sync, 1);
    let err = e.publish("q", msg(Priority::Num(1), "lost", 3)).await.unwrap_err();
    assert!(matches!(err, EngineError::StorageUnavailable(_)), "{err:?}");
    // The log is read-only now: writes fail at once, reads keep working.
    let err = e.publish("q", msg(Priority::Num(1), "later", 3)).await.unwrap_err();
    assert!(matches!(err, EngineError::StorageUnavailable(_)));
    assert!(e.queue_stats("q").is_ok());
    drop(e);
    fs.crash(CrashMode::TornWrite);
    let e = open_sim(&fs, &clock);
    let all: Vec<String> = drain(&e, "q").await.into_iter().map(|p| p.0).collect();
    assert_eq!(all, ["kept"]);
}

// Verifies: PER-0028
#[tokio::test]
async fn a_disk_full_write_answers_storage_unavailable_and_corrupts_nothing() {
    use qrusty::wal::{CrashMode, Fault, SimFs};
    let fs = SimFs::new(11);
    let clock = Arc::new(ManualClock::new(T0));
    let e = open_sim(&fs, &clock);
    for i in 0..20 {
        e.publish("q", msg(Priority::Num(i), &format!("m{i}"), 3)).await.unwrap();
    }
    fs.inject(Fault::NoSpace, 1);
    let err = e.publish("q", msg(Priority::Num(99), "nospace", 3)).await.unwrap_err();
    assert!(matches!(err, EngineError::StorageUnavailable(_)), "{err:?}");
    drop(e);
    fs.crash(CrashMode::Durable);
    let e = open_sim(&fs, &clock);
    assert_eq!(drain(&e, "q").await.len(), 20);
}

/// An engine with no log, beside which a restarted one is compared.
fn open_memory(clock: &Arc<ManualClock>) -> Arc<Engine> {
    let mut opts = EngineOptions::new(StorageConfig::Memory);
    opts.clock = clock.clone();
    Engine::open(opts).unwrap()
}

// A restart, from the log alone or from a checkpoint and its tail, delivers in exactly the
// order of an engine that never restarted: the ready index rebuilt after replay (PER-0031)
// against one kept record by record, over random histories of every operation.

async fn run(
    ordering: Ordering,
    text: bool,
    seed: u64,
    compact_at: Option<usize>,
    dedup_at: Option<usize>,
) {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Arc::new(ManualClock::new(T0));
    let cb = Arc::new(ManualClock::new(T0));
    let mut a = open(tmp.path(), &ca, 4096);
    let b = open_memory(&cb);
    let kind = if text { PriorityKind::Text } else { PriorityKind::Numeric };
    let cfg = QueueConfig { ordering, allow_duplicates: true, priority_kind: kind };
    a.create_queue("q", cfg.clone()).await.unwrap();
    b.create_queue("q", cfg).await.unwrap();
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut held: Vec<(String, String)> = vec![]; // (id in a, id in b)
    for step in 0..300 {
        if Some(step) == compact_at {
            a.compact().unwrap();
        }
        if Some(step) == dedup_at {
            a.update_queue("q", None, Some(false)).await.unwrap();
            b.update_queue("q", None, Some(false)).await.unwrap();
        }
        match rng.next_u64() % 10 {
            0..=4 => {
                let p = rng.next_u64() % 7;
                let prio =
                    if text { Priority::Text(format!("t{p}").into()) } else { Priority::Num(p) };
                let payload = format!("m{}", rng.next_u64() % 60);
                let m = NewMessage { priority: prio, payload, max_retries: 2 };
                let ra = a.publish("q", m.clone()).await;
                let rb = b.publish("q", m).await;
                assert_eq!(ra.is_ok(), rb.is_ok());
            }
            5 | 6 => {
                let n = 1 + rng.next_u64() as usize % 3;
                let timeout = 1 + rng.next_u64() % 3;
                let da = a.consume("q", "c", timeout, n, Duration::ZERO).await.unwrap();
                let db = b.consume("q", "c", timeout, n, Duration::ZERO).await.unwrap();
                let pa: Vec<_> = da.iter().map(|d| d.payload.clone()).collect();
                let pb: Vec<_> = db.iter().map(|d| d.payload.clone()).collect();
                assert_eq!(pa, pb, "step {step}");
                for (x, y) in da.into_iter().zip(db) {
                    held.push((x.id, y.id));
                }
            }
            7 if !held.is_empty() => {
                let (x, y) = held.remove(rng.next_u64() as usize % held.len());
                let _ = a.ack("q", &x, &holder("c")).await;
                let _ = b.ack("q", &y, &holder("c")).await;
            }
            8 if !held.is_empty() => {
                let (x, y) = held.remove(rng.next_u64() as usize % held.len());
                let _ = a.nack("q", &x, &holder("c")).await;
                let _ = b.nack("q", &y, &holder("c")).await;
            }
            9 => {
                let ms = rng.next_u64() % 2500;
                ca.advance_ms(ms);
                cb.advance_ms(ms);
                if rng.next_u64() % 4 == 0 {
                    let x = a.dlq_redrive("q", None).await.unwrap();
                    let y = b.dlq_redrive("q", None).await.unwrap();
                    assert_eq!(x, y);
                }
            }
            _ => {}
        }
    }
    if seed >= 3 {
        let _ = a.compact();
    }
    a.shutdown().await;
    drop(a);
    a = open(tmp.path(), &ca, 4096);
    let sa: Vec<_> =
        a.stats().into_iter().map(|s| (s.available, s.locked, s.dead_lettered)).collect();
    let sb: Vec<_> =
        b.stats().into_iter().map(|s| (s.available, s.locked, s.dead_lettered)).collect();
    assert_eq!(sa, sb, "{ordering:?} {text} {seed}");
    // Let every lock expire, then compare the whole delivery order.
    ca.advance_ms(100_000);
    cb.advance_ms(100_000);
    assert_eq!(drain(&a, "q").await, drain(&b, "q").await, "{ordering:?} {text} {seed}");
}

// Verifies: PER-0031, PER-0013
#[tokio::test]
async fn restart_order_matches_a_never_restarted_engine() {
    for ordering in [Ordering::MaxFirst, Ordering::MinFirst, Ordering::Fifo] {
        for text in [false, true] {
            for seed in 0..6u64 {
                let compact_at = [None, Some(100), Some(250)][seed as usize % 3];
                let dedup_at = [None, Some(150)][seed as usize % 2];
                run(ordering, text, seed, compact_at, dedup_at).await;
            }
        }
    }
}
