//! Engine operations one at a time, at a small and a large backlog, in memory and on the
//! write-ahead log with fsync always. With fsync always a single caller waits for one
//! fdatasync per operation, so the log figures are the disk's sync latency plus the
//! engine's own cost; the memory figures are the engine's cost alone.
//!
//! Each routine keeps the backlog at its size: what it adds or removes in the timed part
//! is undone, untimed, before the next sample.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use qrusty::engine::{Engine, EngineOptions, Holder, StorageConfig};
use qrusty::wal::{FsyncPolicy, WalOptions};
use tokio::runtime::Runtime;

const QUEUE: &str = "bench";
const CONSUMER: &str = "w1";
const LOCK_SECS: u64 = 3600;
const FILL_BATCH: u64 = 1000;

struct Setup {
    rt: Runtime,
    engine: Arc<Engine>,
    holder: Holder,
    /// Numbers the messages published so far; payloads stay unique.
    published: u64,
    backlog: u64,
    _dir: Option<tempfile::TempDir>,
}

impl Setup {
    /// An engine holding `backlog` ready messages in one queue. The fill goes through
    /// `publish_batch`, so even a million messages take seconds, not minutes.
    fn new(on_log: bool, backlog: u64) -> Setup {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = on_log.then(|| tempfile::tempdir().expect("temp dir"));
        let storage = match &dir {
            Some(d) => {
                let mut opts = WalOptions::new(d.path());
                opts.fsync = FsyncPolicy::Always;
                StorageConfig::Wal(opts)
            }
            None => StorageConfig::Memory,
        };
        let engine = Engine::open(EngineOptions::new(storage)).expect("engine opens");
        let holder = Holder { consumer_id: CONSUMER.into(), lock_token: None };
        let mut setup = Setup { rt, engine, holder, published: 0, backlog, _dir: dir };
        setup.fill(backlog);
        setup
    }

    fn fill(&mut self, n: u64) {
        let mut left = n;
        while left > 0 {
            let k = left.min(FILL_BATCH);
            let msgs = (self.published..self.published + k).map(support::message).collect();
            self.published += k;
            self.rt.block_on(self.engine.publish_batch(QUEUE, msgs)).expect("fill");
            left -= k;
        }
    }

    fn publish_one(&mut self) {
        self.published += 1;
        let msg = support::message(self.published);
        self.rt.block_on(self.engine.publish(QUEUE, msg)).expect("publish");
    }

    fn consume_one(&self) -> String {
        let got =
            self.rt.block_on(self.engine.consume(QUEUE, CONSUMER, LOCK_SECS, 1, Duration::ZERO));
        got.expect("consume").pop().expect("the backlog is never empty").id
    }

    fn ack(&self, id: &str) {
        self.rt.block_on(self.engine.ack(QUEUE, id, &self.holder)).expect("ack");
    }

    fn consume_many(&self, n: u64) -> Vec<String> {
        (0..n).map(|_| self.consume_one()).collect()
    }

    /// Runs `round` over `iters` messages in rounds of at most half the backlog (which
    /// each round restores, untimed) and adds up the times the rounds measured.
    fn rounds(&mut self, iters: u64, round: impl Fn(&mut Setup, u64) -> Duration) -> Duration {
        let most = (self.backlog / 2).max(1);
        let (mut left, mut total) = (iters, Duration::ZERO);
        while left > 0 {
            let n = left.min(most);
            total += round(self, n);
            left -= n;
        }
        total
    }
}

fn operations(c: &mut Criterion) {
    let big = support::scaled(1_000_000, 5_000) as u64;
    for (mode, on_log) in [("memory", false), ("wal_fsync_always", true)] {
        for backlog in [1_000, big] {
            let mut s = Setup::new(on_log, backlog);
            let mut g = c.benchmark_group(format!("engine_{mode}"));
            g.throughput(Throughput::Elements(1));
            g.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
            if on_log {
                g.sample_size(10);
            }
            g.bench_function(BenchmarkId::new("publish", backlog), |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        s.publish_one();
                    }
                    let took = start.elapsed();
                    for id in s.consume_many(iters) {
                        s.ack(&id);
                    }
                    took
                })
            });
            g.bench_function(BenchmarkId::new("consume", backlog), |b| {
                b.iter_custom(|iters| {
                    s.rounds(iters, |s, n| {
                        let start = Instant::now();
                        let ids = s.consume_many(n);
                        let took = start.elapsed();
                        ids.iter().for_each(|id| s.ack(id));
                        s.fill(n);
                        took
                    })
                })
            });
            g.bench_function(BenchmarkId::new("ack", backlog), |b| {
                b.iter_custom(|iters| {
                    s.rounds(iters, |s, n| {
                        let ids = s.consume_many(n);
                        let start = Instant::now();
                        ids.iter().for_each(|id| s.ack(id));
                        let took = start.elapsed();
                        s.fill(n);
                        took
                    })
                })
            });
            g.finish();
        }
    }
}

criterion_group!(benches, operations);
criterion_main!(benches);
