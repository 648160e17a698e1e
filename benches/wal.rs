//! The log layer: record encoding, frame sealing and checking, group commit under
//! concurrent appenders with fsync always, and replay of a prebuilt log (MB/s), both the
//! log scan alone and the whole engine rebuild a restart does.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use qrusty::engine::record::{PublishedMessage, Record};
use qrusty::engine::{Engine, EngineOptions, Priority, QueueConfig, StorageConfig};
use qrusty::wal::{frame, real_fs, FsyncPolicy, Wal, WalOptions};

const QID: u64 = 1;

fn published(n: u64) -> Record {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&n.to_le_bytes());
    Record::Published {
        qid: QID,
        msg: PublishedMessage {
            id,
            seq: n + 1,
            priority: Priority::Num(support::priority(n)),
            payload: support::payload(n),
            max_retries: 3,
            created_at_ns: 1_764_000_000_000_000_000 + n,
        },
    }
}

fn encoding(c: &mut Criterion) {
    let rec = published(123_456);
    let body = rec.encode();
    let locked = Record::Locked {
        qid: QID,
        id: [7; 16],
        consumer: "w12".into(),
        token: 987_654_321,
        deadline_ms: 1_764_000_000_000,
    };
    let framed = frame::encode_frame(3, &body);

    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("encode_published_100b", |b| b.iter(|| std::hint::black_box(&rec).encode()));
    g.bench_function("decode_published_100b", |b| {
        b.iter(|| Record::decode(std::hint::black_box(&body)).unwrap())
    });
    g.bench_function("frame_seal_published_100b", |b| {
        b.iter(|| frame::encode_frame(3, std::hint::black_box(&body)))
    });
    g.bench_function("frame_check_published_100b", |b| {
        b.iter(|| frame::decode_frame(std::hint::black_box(&framed), 3, u32::MAX).unwrap().1)
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_locked", |b| b.iter(|| std::hint::black_box(&locked).encode()));
    g.finish();
}

fn open_log(dir: &Path, fsync: FsyncPolicy) -> Wal {
    let mut opts = WalOptions::new(dir);
    opts.fsync = fsync;
    Wal::open(opts, real_fs(), &mut |_, _| Ok(())).expect("log opens").0
}

/// `appenders` threads each append and wait for durability in a loop; one fsync covers
/// whatever piled up meanwhile, so records/s should grow with the number of appenders.
fn group_commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let wal = open_log(dir.path(), FsyncPolicy::Always);
    let body = published(1).encode();
    let mut g = c.benchmark_group("group_commit_fsync_always");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10).warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    let counts: &[u64] = if support::full_size() { &[1, 4, 16, 64] } else { &[1, 4] };
    for &appenders in counts {
        g.bench_with_input(BenchmarkId::new("appenders", appenders), &appenders, |b, &n| {
            b.iter_custom(|iters| {
                let each = iters.div_ceil(n);
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..n {
                        s.spawn(|| {
                            for _ in 0..each {
                                wal.append(&body).unwrap().wait_blocking().unwrap();
                            }
                        });
                    }
                });
                // Rounding up made each thread do a little more than asked for.
                start.elapsed().mul_f64(iters as f64 / (each * n) as f64)
            })
        });
    }
    g.finish();
}

/// Writes a log of one queue holding `messages` published messages; returns its bytes.
fn build_log(dir: &Path, messages: u64) -> u64 {
    let wal = open_log(dir, FsyncPolicy::Never);
    let created =
        Record::QueueCreated { qid: QID, name: "bench".into(), config: QueueConfig::default() };
    drop(wal.append(&created.encode()).unwrap());
    for n in 0..messages {
        drop(wal.append(&published(n).encode()).unwrap());
    }
    wal.close().expect("log closes");
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
}

fn replay(c: &mut Criterion) {
    let messages = support::scaled(1_000_000, 2_000) as u64;
    let dir = tempfile::tempdir().expect("temp dir");
    let bytes = build_log(dir.path(), messages);
    let opts = WalOptions::new(dir.path());

    let mut g = c.benchmark_group(format!("replay_{messages}_published"));
    g.sample_size(10).warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("log_scan", |b| {
        b.iter(|| {
            let mut seen = 0u64;
            let mut visit = |_: u64, body: &[u8]| {
                seen += body.len() as u64;
                Ok(())
            };
            drop(Wal::open(opts.clone(), real_fs(), &mut visit).unwrap());
            seen
        })
    });
    g.bench_function("log_scan_and_decode", |b| {
        b.iter(|| {
            let mut visit = |_: u64, body: &[u8]| Record::decode(body).map(drop);
            drop(Wal::open(opts.clone(), real_fs(), &mut visit).unwrap());
        })
    });
    // What a restart costs before the first consume can be served.
    g.bench_function("engine_open", |b| {
        b.iter(|| {
            let engine = Engine::open(EngineOptions::new(StorageConfig::Wal(opts.clone())));
            drop(engine.unwrap());
        })
    });
    g.finish();
}

criterion_group!(benches, encoding, group_commit, replay);
criterion_main!(benches);
