//! Figures for the compaction note, not tests: run in release, one at a time, with
//! `cargo test --release --test compaction_figures -- --ignored --nocapture --test-threads 1`.
//! They print numbers and assert nothing; the scenario tests are in `compaction.rs`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qrusty::engine::*;
use qrusty::wal::{FsyncPolicy, WalOptions};

fn open(dir: &Path, segment_bytes: u64, fsync: FsyncPolicy, ratio: f64) -> Arc<Engine> {
    let wal = WalOptions { segment_bytes, fsync, ..WalOptions::new(dir) };
    let mut opts = EngineOptions::new(StorageConfig::Wal(wal));
    opts.compaction_ratio = ratio;
    // COMPACTION_NICE=0 measures compaction at the requests' own priority.
    if let Some(nice) = std::env::var("COMPACTION_NICE").ok().and_then(|v| v.parse().ok()) {
        opts.compaction_nice = nice;
    }
    Engine::open(opts).unwrap()
}

fn msg(i: u64) -> NewMessage {
    NewMessage {
        priority: Priority::Num(i % 10),
        payload: format!("payload {i:012}"),
        max_retries: 3,
    }
}

async fn fill(e: &Engine, queue: &str, n: u64) {
    for start in (0..n).step_by(1000) {
        e.publish_batch(queue, (start..(start + 1000).min(n)).map(msg).collect()).await.unwrap();
    }
}

async fn churn_batch(e: &Engine, start: u64, batch: u64) {
    e.publish_batch("churn", (start..start + batch).map(msg).collect()).await.unwrap();
    let got = e.consume("churn", "c", 60, batch as usize, Duration::ZERO).await.unwrap();
    let ids: Vec<String> = got.into_iter().map(|d| d.id).collect();
    e.ack_batch("churn", "c", &ids).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn figure_log_size_over_time_under_churn() {
    let tmp = tempfile::tempdir().unwrap();
    let e = open(tmp.path(), 4 << 20, FsyncPolicy::Always, 0.5);
    fill(&e, "kept", 1000).await;
    println!("messages_churned,log_bytes,checkpoint_bytes,compactions");
    let total: u64 = std::env::var("CHURN").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    for start in (0..total).step_by(100) {
        churn_batch(&e, start, 100).await;
        if start % 5000 == 0 {
            e.sample_metrics();
        }
        if start % 50_000 == 0 {
            let s = e.wal_stats().unwrap();
            println!("{start},{},{},{}", s.bytes_on_disk, s.checkpoint_bytes, s.compactions);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn figure_restart_time_with_and_without_history() {
    let live = 1_000_000;
    let cycles: u64 =
        std::env::var("CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000_000);
    for (label, history, ratio) in [
        ("no history", 0, 0.5),
        ("history, compacted", cycles, 0.5),
        ("history, never compacted", cycles, 2.0),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let e = open(tmp.path(), 64 << 20, FsyncPolicy::Never, ratio);
        fill(&e, "kept", live).await;
        for start in (0..history).step_by(1000) {
            churn_batch(&e, start, 1000).await;
            if start % 100_000 == 0 {
                e.sample_metrics();
            }
        }
        while e.compaction_running() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let bytes = e.wal_stats().unwrap().bytes_on_disk;
        e.shutdown().await;
        drop(e);

        let started = Instant::now();
        let e = open(tmp.path(), 64 << 20, FsyncPolicy::Never, ratio);
        let took = started.elapsed();
        assert_eq!(e.queue_stats("kept").unwrap().available, live);
        println!("{label}: {history} cycles, log {bytes} bytes, restart {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn figure_publish_p99_with_and_without_compaction() {
    let tmp = tempfile::tempdir().unwrap();
    let e = open(tmp.path(), 64 << 20, FsyncPolicy::Always, 2.0);
    fill(&e, "kept", 200_000).await;
    for compacting in [false, true, false, true] {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let bg = compacting.then(|| {
            let (e, stop) = (e.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut runs = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    e.compact_at_low_priority().unwrap();
                    runs += 1;
                }
                runs
            })
        });
        let mut tasks = Vec::new();
        for w in 0..16u64 {
            let e = e.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let end = Instant::now() + Duration::from_secs(5);
                let mut i = 0;
                while Instant::now() < end {
                    let t = Instant::now();
                    e.publish(&format!("p{w}"), msg(i)).await.unwrap();
                    lat.push(t.elapsed());
                    i += 1;
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.unwrap());
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let runs = bg.map_or(0, |h| h.join().unwrap());
        lat.sort();
        let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
        println!(
            "compaction running: {compacting} ({runs} runs): {} publishes, p50 {:?}, p99 {:?}, \
             max {:?}",
            lat.len(),
            pct(0.5),
            pct(0.99),
            lat.last().unwrap()
        );
    }
}
