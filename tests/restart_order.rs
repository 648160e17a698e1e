//! A restart, from the log alone or from a checkpoint and its tail, delivers in exactly the
//! order of an engine that never restarted: the ready index rebuilt after replay (PER-0031)
//! against one kept record by record, over random histories of every operation.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use qrusty::clock::ManualClock;
use qrusty::engine::*;
use qrusty::wal::{FsyncPolicy, RecoveryMode, WalOptions};

const T0: u64 = 1_700_000_000_000;

fn open(dir: Option<&Path>, clock: &Arc<ManualClock>) -> Arc<Engine> {
    let storage = match dir {
        Some(d) => StorageConfig::Wal(WalOptions {
            dir: d.to_path_buf(),
            segment_bytes: 4096,
            fsync: FsyncPolicy::Always,
            recovery: RecoveryMode::Strict,
            max_record_bytes: 16 * 1024 * 1024,
        }),
        None => StorageConfig::Memory,
    };
    let mut opts = EngineOptions::new(storage);
    opts.clock = clock.clone();
    Engine::open(opts).unwrap()
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn holder(c: &str) -> Holder {
    Holder { consumer_id: c.into(), lock_token: None }
}

async fn drain(e: &Engine, q: &str) -> Vec<(String, u32)> {
    let mut out = vec![];
    while let Some(d) = e.consume(q, "drain", 30, 1, Duration::ZERO).await.unwrap().pop() {
        e.ack(q, &d.id, &holder("drain")).await.unwrap();
        out.push((d.payload, d.retry_count));
    }
    out
}

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
    let mut a = open(Some(tmp.path()), &ca);
    let b = open(None, &cb);
    let kind = if text { PriorityKind::Text } else { PriorityKind::Numeric };
    let cfg = QueueConfig { ordering, allow_duplicates: true, priority_kind: kind };
    a.create_queue("q", cfg.clone()).await.unwrap();
    b.create_queue("q", cfg).await.unwrap();
    let mut rng = Rng(seed);
    let mut held: Vec<(String, String)> = vec![]; // (id in a, id in b)
    for step in 0..300 {
        if Some(step) == compact_at {
            a.compact().unwrap();
        }
        if Some(step) == dedup_at {
            a.update_queue("q", None, Some(false)).await.unwrap();
            b.update_queue("q", None, Some(false)).await.unwrap();
        }
        match rng.next() % 10 {
            0..=4 => {
                let p = rng.next() % 7;
                let prio = if text { Priority::Text(format!("t{p}")) } else { Priority::Num(p) };
                let payload = format!("m{}", rng.next() % 60);
                let m = NewMessage { priority: prio, payload, max_retries: 2 };
                let ra = a.publish("q", m.clone()).await;
                let rb = b.publish("q", m).await;
                assert_eq!(ra.is_ok(), rb.is_ok());
            }
            5 | 6 => {
                let n = 1 + rng.next() as usize % 3;
                let timeout = 1 + rng.next() % 3;
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
                let (x, y) = held.remove(rng.next() as usize % held.len());
                let _ = a.ack("q", &x, &holder("c")).await;
                let _ = b.ack("q", &y, &holder("c")).await;
            }
            8 if !held.is_empty() => {
                let (x, y) = held.remove(rng.next() as usize % held.len());
                let _ = a.nack("q", &x, &holder("c")).await;
                let _ = b.nack("q", &y, &holder("c")).await;
            }
            9 => {
                let ms = rng.next() % 2500;
                ca.advance_ms(ms);
                cb.advance_ms(ms);
                if rng.next() % 4 == 0 {
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
    a = open(Some(tmp.path()), &ca);
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
