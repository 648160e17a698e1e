//! Payloads left in the log: above QRUSTY_SPILL_PAYLOAD_BYTES a queued message keeps only
//! an address of its payload in the log, and every way out (consume, dead-letter listing,
//! inspection, checkpoint) reads the bytes back, byte for byte, across restarts and
//! compactions.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use qrusty::clock::ManualClock;
use qrusty::engine::limits::message_cost;
use qrusty::engine::*;
use qrusty::wal::{Fault, FsyncPolicy, RecoveryMode, SimFs, WalOptions};
use serde_json::json;

const T0: u64 = 1_700_000_000_000;
const KIB: usize = 1024;

fn wal_opts(dir: &Path, fsync: FsyncPolicy) -> WalOptions {
    WalOptions {
        dir: dir.to_path_buf(),
        segment_bytes: 64 << 10,
        fsync,
        recovery: RecoveryMode::Strict,
        max_record_bytes: 16 << 20,
    }
}

fn sim_dir() -> PathBuf {
    PathBuf::from("/sim/log")
}

fn open_sim(fs: &SimFs, clock: &Arc<ManualClock>) -> Arc<Engine> {
    let mut opts =
        EngineOptions::new(StorageConfig::Wal(wal_opts(&sim_dir(), FsyncPolicy::Always)));
    opts.clock = clock.clone();
    opts.fs = Some(Arc::new(fs.clone()));
    Engine::open(opts).unwrap()
}

/// A distinct payload of about 10 KiB, with multi-byte characters in it.
fn big(tag: &str, i: usize) -> String {
    let mut s = format!("{tag}-{i:04}-é-");
    while s.len() < 10 * KIB {
        s.push_str(&format!("{}", (i * 7919 + s.len()) % 10));
    }
    s
}

/// Publishes `n` payloads of `big(tag, _)` to "q", one request each; returns them in order.
async fn publish_big(e: &Engine, tag: &str, n: usize, max_retries: u32) -> Vec<String> {
    let sent: Vec<String> = (0..n).map(|i| big(tag, i)).collect();
    for p in &sent {
        e.publish("q", msg(p.clone(), max_retries)).await.unwrap();
    }
    sent
}

fn msg(payload: String, max_retries: u32) -> NewMessage {
    NewMessage { priority: Priority::Num(5), payload, max_retries }
}

fn holder(c: &str) -> Holder {
    Holder { consumer_id: c.into(), lock_token: None }
}

/// Payloads of `queue` in delivery order, and of its dead letters oldest first.
fn contents(e: &Engine, queue: &str) -> (Vec<String>, Vec<String>) {
    let dump = e.inspect();
    let Some(q) = dump.iter().find(|q| q.name == queue) else { return (vec![], vec![]) };
    let msgs = q.messages.iter().map(|m| m.payload.clone()).collect();
    let dead = q.dead.iter().map(|d| d.msg.payload.clone()).collect();
    (msgs, dead)
}

fn check(e: &Engine, ready: &[String], dead: &[String]) {
    let (got_ready, got_dead) = contents(e, "q");
    assert!(got_ready == ready, "ready payloads differ");
    assert!(got_dead == dead, "dead letter payloads differ");
    let listed: Vec<String> =
        e.dlq_list("q", usize::MAX).unwrap().into_iter().map(|d| d.payload).collect();
    assert!(listed == dead, "listed dead letters differ");
    // No payload byte is charged: each message costs its fixed overhead only.
    let held = (ready.len() + dead.len()) as u64 * message_cost(0, &Priority::Num(5));
    assert_eq!(e.memory_held(), held);
}

// Verifies: SYS-0034
#[tokio::test]
async fn large_payloads_come_back_byte_exact_across_restarts_compactions_and_redrive() {
    let fs = SimFs::new(11);
    let clock = Arc::new(ManualClock::new(T0));
    let e = open_sim(&fs, &clock);

    // Single publishes, then one batch (a Group record holding many payloads).
    let mut ready = publish_big(&e, "single", 20, 0).await;
    let batch: Vec<String> = (0..20).map(|i| big("batch", i)).collect();
    e.publish_batch("q", batch.iter().map(|p| msg(p.clone(), 0)).collect()).await.unwrap();
    ready.extend(batch);
    let mut dead = Vec::new();
    check(&e, &ready, &dead);

    // Consumed byte-exact; acked ones go, nacked ones (no retries left) become dead letters.
    let got = e.consume("q", "w", 30, 6, Duration::ZERO).await.unwrap();
    let payloads: Vec<String> = got.iter().map(|d| d.payload.clone()).collect();
    assert!(payloads == ready[..6], "consumed payloads differ");
    for d in &got[..3] {
        e.ack("q", &d.id, &holder("w")).await.unwrap();
    }
    for d in &got[3..] {
        assert_eq!(e.nack("q", &d.id, &holder("w")).await.unwrap(), NackOutcome::DeadLettered);
    }
    dead.extend(ready.drain(..6).skip(3));
    check(&e, &ready, &dead);

    // A restart rebuilds addresses from the segments.
    drop(e);
    let e = open_sim(&fs, &clock);
    check(&e, &ready, &dead);

    // A compaction moves them into the checkpoint and deletes the segments they were in.
    let report = e.compact().unwrap();
    assert!(report.segments_deleted > 0, "{report:?}");
    check(&e, &ready, &dead);
    let got = e.consume("q", "w", 30, 2, Duration::ZERO).await.unwrap();
    assert!(got[0].payload == ready[0] && got[1].payload == ready[1]);
    for d in &got {
        e.ack("q", &d.id, &holder("w")).await.unwrap();
    }
    ready.drain(..2);

    // Addresses in the checkpoint survive a restart, and a second compaction (which
    // replaces that checkpoint) moves them again; newer messages come from the segments.
    drop(e);
    let e = open_sim(&fs, &clock);
    check(&e, &ready, &dead);
    for i in 0..8 {
        ready.push(big("late", i));
        e.publish("q", msg(big("late", i), 0)).await.unwrap();
    }
    e.compact().unwrap();
    check(&e, &ready, &dead);
    drop(e);
    let e = open_sim(&fs, &clock);
    check(&e, &ready, &dead);

    // Redriven dead letters go back to their place and are delivered byte-exact.
    assert_eq!(e.dlq_redrive("q", None).await.unwrap(), 3);
    let (now, _) = contents(&e, "q");
    assert!(now[..3] == dead[..], "redriven payloads come first again");
    let got = e.consume("q", "w", 30, 3, Duration::ZERO).await.unwrap();
    let payloads: Vec<String> = got.iter().map(|d| d.payload.clone()).collect();
    assert!(payloads == dead, "redriven payloads differ");
    e.shutdown().await;
}

// Verifies: SYS-0034
#[tokio::test]
async fn short_payloads_memory_mode_and_a_zero_threshold_stay_in_ram() {
    let clock = Arc::new(ManualClock::new(T0));
    let payloads = ["x".repeat(64), "y".repeat(65)];
    let cost = |p: &str| message_cost(p.len(), &Priority::Num(5));
    let fixed = message_cost(0, &Priority::Num(5));

    let fs = SimFs::new(5);
    let e = open_sim(&fs, &clock);
    for p in &payloads {
        e.publish("q", msg(p.clone(), 3)).await.unwrap();
    }
    // 64 bytes is not above the default threshold; 65 is.
    assert_eq!(e.memory_held(), cost(&payloads[0]) + fixed);

    // Memory mode has no log to leave payloads in; a threshold of 0 turns spilling off.
    let wal = StorageConfig::Wal(wal_opts(&sim_dir(), FsyncPolicy::Always));
    for (storage, spill) in [(StorageConfig::Memory, 64), (wal, 0)] {
        let mut opts = EngineOptions::new(storage);
        opts.clock = clock.clone();
        opts.fs = Some(Arc::new(SimFs::new(6)));
        opts.spill_payload_bytes = spill;
        let e = Engine::open(opts).unwrap();
        for p in &payloads {
            e.publish("q", msg(p.clone(), 3)).await.unwrap();
        }
        assert_eq!(e.memory_held(), cost(&payloads[0]) + cost(&payloads[1]));
    }
}

// Verifies: SYS-0034, DLV-0021
#[tokio::test]
async fn turning_duplicates_off_brings_spilled_payloads_back_into_ram() {
    let fs = SimFs::new(7);
    let clock = Arc::new(ManualClock::new(T0));
    let e = open_sim(&fs, &clock);
    let (a, b) = (big("a", 1), big("b", 2));
    for p in [&a, &b, &a] {
        e.publish("q", msg(p.clone(), 3)).await.unwrap();
    }
    let fixed = message_cost(0, &Priority::Num(5));
    assert_eq!(e.memory_held(), 3 * fixed);

    // The duplicate set needs the bytes: the queue holds them again, the later copy of
    // `a` is removed, and a new copy is refused.
    e.update_queue("q", None, Some(false)).await.unwrap();
    let inline =
        message_cost(a.len(), &Priority::Num(5)) + message_cost(b.len(), &Priority::Num(5));
    assert_eq!(e.memory_held(), inline);
    assert!(contents(&e, "q").0 == [a.clone(), b.clone()]);
    let again = e.publish("q", msg(a.clone(), 3)).await;
    assert!(matches!(again, Err(EngineError::DuplicatePayload)), "{again:?}");

    // Replay does the same from the log: the Published records come before the change.
    drop(e);
    let e = open_sim(&fs, &clock);
    assert_eq!(e.memory_held(), inline);
    assert!(contents(&e, "q").0 == [a.clone(), b.clone()]);
    assert!(matches!(e.publish("q", msg(b, 3)).await, Err(EngineError::DuplicatePayload)));
    e.shutdown().await;
}

// Verifies: PER-0013, DLV-0021
/// A restart reads many segments of spilled payloads, and records that turn duplicates off
/// (which read the payloads before them back into RAM) between them.
#[tokio::test]
async fn a_restart_applies_every_record_in_log_order_across_segments_and_payload_reads() {
    let fs = SimFs::new(11);
    let clock = Arc::new(ManualClock::new(T0));
    let e = open_sim(&fs, &clock);
    for round in 0..3 {
        // 10 KiB payloads, a fifth of them repeated: several 64 KiB segments a round.
        for i in 0..60 {
            e.publish("q", msg(big(&format!("r{round}"), i % 48), 3)).await.unwrap();
        }
        e.update_queue("q", None, Some(false)).await.unwrap();
        e.update_queue("q", None, Some(true)).await.unwrap();
    }
    e.update_queue("q", None, Some(false)).await.unwrap();
    let before = contents(&e, "q");
    assert_eq!(before.0.len(), 3 * 48, "repeats were dropped each round");
    let held = e.memory_held();
    drop(e);

    let e = open_sim(&fs, &clock);
    assert!(contents(&e, "q") == before, "the restart changed the queue");
    assert_eq!(e.memory_held(), held);
    let again = e.publish("q", msg(big("r1", 3), 3)).await;
    assert!(matches!(again, Err(EngineError::DuplicatePayload)), "{again:?}");
    e.shutdown().await;
}

/// An engine on a simulated file system whose queue "q" holds one large payload, after a
/// consume (1 s lock) that failed because the read of that payload did: the file system,
/// the clock, the engine and the payload.
async fn a_failed_delivery(
    seed: u64,
    max_retries: u32,
) -> (SimFs, Arc<ManualClock>, Arc<Engine>, String) {
    let fs = SimFs::new(seed);
    let clock = Arc::new(ManualClock::new(T0));
    let e = open_sim(&fs, &clock);
    let p = big("r", seed as usize);
    e.publish("q", msg(p.clone(), max_retries)).await.unwrap();
    fs.inject(Fault::Read, 1);
    let got = e.consume("q", "w", 1, 1, Duration::ZERO).await;
    assert!(matches!(got, Err(EngineError::StorageUnavailable(_))), "{got:?}");
    (fs, clock, e, p)
}

// Verifies: SYS-0034
/// A read the file layer reports as failed (the simulated file system's EIO; on a real
/// disk an I/O error under the memory map is a SIGBUS, which no request survives).
#[tokio::test]
async fn a_failed_read_answers_storage_unavailable_and_loses_nothing() {
    let (fs, _clock, e, p) = a_failed_delivery(9, 5).await;

    // The failed delivery gave its lock back: the message is delivered whole at once.
    // Its retry count still includes the failed delivery (a documented limitation).
    let got = e.consume("q", "w", 30, 1, Duration::ZERO).await.unwrap();
    assert!(got.len() == 1 && got[0].payload == p);
    assert_eq!(got[0].retry_count, 2);

    // A dead letter whose payload cannot be read fails the listing the same way, once.
    let d = big("d", 0);
    e.publish("d", msg(d.clone(), 0)).await.unwrap();
    let got = e.consume("d", "w", 30, 1, Duration::ZERO).await.unwrap();
    e.nack("d", &got[0].id, &holder("w")).await.unwrap();
    fs.inject(Fault::Read, 1);
    let listed = e.dlq_list("d", 10);
    assert!(matches!(listed, Err(EngineError::StorageUnavailable(_))), "{listed:?}");
    let listed = e.dlq_list("d", 10).unwrap();
    assert!(listed.len() == 1 && listed[0].payload == d);
    e.shutdown().await;
}

/// The memory gauge of `n` messages of `size`-byte payloads, published in batches.
async fn held_after(dir: &Path, spill: usize, n: usize, size: usize) -> u64 {
    let mut opts = EngineOptions::new(StorageConfig::Wal(wal_opts(dir, FsyncPolicy::Never)));
    opts.spill_payload_bytes = spill;
    let e = Engine::open(opts).unwrap();
    for start in (0..n).step_by(500) {
        let batch = (start..(start + 500).min(n))
            .map(|i| {
                let mut p = format!("{i:08}");
                p.extend(std::iter::repeat_n('m', size - p.len()));
                msg(p, 3)
            })
            .collect();
        e.publish_batch("q", batch).await.unwrap();
    }
    let held = e.memory_held();
    e.shutdown().await;
    held
}

// Verifies: SYS-0034, SYS-0026
#[tokio::test]
async fn what_a_queued_message_costs_in_ram_does_not_depend_on_its_payload_size() {
    const N: usize = 20_000;
    let spilled = tempfile::tempdir().unwrap();
    let held = held_after(spilled.path(), 64, N, 4 * KIB).await;
    assert!(held < (N * 4 * KIB / 10) as u64, "{held} bytes held for {N} spilled messages");
    assert_eq!(held, N as u64 * message_cost(0, &Priority::Num(5)));

    let inline = tempfile::tempdir().unwrap();
    let held_inline = held_after(inline.path(), 0, N, 4 * KIB).await;
    assert_eq!(held_inline, N as u64 * message_cost(4 * KIB, &Priority::Num(5)));
}

// Verifies: SYS-0034
/// The real file layer: reads go through memory maps of files the writer is still
/// appending to (mapped again as they grow), and of checkpoints.
#[tokio::test]
async fn real_files_are_read_through_maps_that_follow_the_growing_segment() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let mut wal = wal_opts(dir.path(), FsyncPolicy::Always);
        wal.segment_bytes = 8 << 20;
        Engine::open(EngineOptions::new(StorageConfig::Wal(wal))).unwrap()
    };
    let e = open();
    let mut sent = Vec::new();
    // Each round reads the newest records, past what the last map covered: the segment
    // grows by 1 MiB of preallocated zeros at a time.
    for round in 0..6 {
        let batch: Vec<String> = (0..40).map(|i| big(&format!("round{round}"), i)).collect();
        e.publish_batch("q", batch.iter().map(|p| msg(p.clone(), 3)).collect()).await.unwrap();
        let got = e.consume("q", "w", 30, 40, Duration::ZERO).await.unwrap();
        let payloads: Vec<String> = got.iter().map(|d| d.payload.clone()).collect();
        assert!(payloads == batch, "round {round} differs");
        sent.extend(batch);
    }
    drop(e);
    let e = open();
    assert!(contents(&e, "q").0 == sent, "after a restart");
    e.compact().unwrap();
    assert!(contents(&e, "q").0 == sent, "after a compaction");
    e.shutdown().await;
}

// Verifies: SYS-0034
/// The log's read API alone: a record still in the pending buffer is waited for, and
/// bytes of no live record are an error, not a panic.
#[test]
fn the_log_reads_bytes_inside_a_record_body_once_it_is_written() {
    use qrusty::wal::{LogLoc, Wal, WalError};
    let fs = SimFs::new(2);
    let (wal, _) =
        Wal::open(wal_opts(&sim_dir(), FsyncPolicy::Always), Arc::new(fs.clone()), &mut |_, _| {
            Ok(())
        })
        .unwrap();
    let mut lsns = Vec::new();
    for i in 0..200u32 {
        let body = format!("record {i:05} body");
        lsns.push(wal.append(body.as_bytes()).unwrap().seq());
    }
    for (i, lsn) in lsns.iter().enumerate() {
        let got = wal.read(LogLoc::in_record(*lsn, 7, 5).unwrap()).unwrap();
        assert_eq!(got, format!("{i:05}").into_bytes());
    }
    let never = wal.read(LogLoc::in_record(lsns[199] + 1, 0, 1).unwrap());
    assert!(matches!(never, Err(WalError::Unreadable(_))), "{never:?}");
    let past_end = wal.read(LogLoc::in_record(lsns[0], 0, 1 << 20).unwrap());
    assert!(past_end.is_err());
    // The next record's frame follows in the file, but an address names one body only.
    let into_next = wal.read(LogLoc::in_record(lsns[0], 7, 30).unwrap());
    assert!(matches!(into_next, Err(WalError::Unreadable(_))), "{into_next:?}");
    let far = wal.read(LogLoc::in_record(lsns[0], (1 << 40) - 1, 2).unwrap());
    assert!(matches!(far, Err(WalError::Unreadable(_))), "{far:?}");
    assert!(LogLoc::in_record(lsns[0], u64::MAX, 2).is_none());
    let whole = wal.read(LogLoc::in_record(lsns[0], 0, 17).unwrap()).unwrap();
    assert_eq!(whole, b"record 00000 body");
    let no_checkpoint = wal.read(LogLoc::in_checkpoint(1, 40, 3).unwrap());
    assert!(matches!(no_checkpoint, Err(WalError::Unreadable(_))));
    wal.close().unwrap();
}

// Verifies: SYS-0034
/// Over HTTP: a spilled payload is delivered whole, and a read the (simulated) file layer
/// fails answers 503 `storage_unavailable` while the server and the message live on.
#[tokio::test]
async fn over_http_a_failed_read_is_a_503_and_the_next_delivery_is_whole() {
    let fs = SimFs::new(13);
    let sim = fs.clone();
    let s = common::TestServer::start_engine(
        move |opts| {
            opts.storage = StorageConfig::Wal(wal_opts(&sim_dir(), FsyncPolicy::Always));
            opts.fs = Some(Arc::new(sim));
        },
        |_| {},
    )
    .await;
    let (first, second) = (big("http", 1), big("http", 2));
    s.publish("q", json!(1), &first).await;
    s.publish("q", json!(1), &second).await;
    let got = s.consume("q", "c").await.expect("a message");
    assert!(got["payload"] == first.as_str(), "first payload differs");

    // A plain consume and a long poll that fail to read the payload both give the lock
    // back: only the first message stays locked, and the second is delivered at once.
    for body in [json!({"consumer_id": "c"}), json!({"consumer_id": "c", "wait_seconds": 1})] {
        fs.inject(Fault::Read, 1);
        let failed = s.post("/consume/q", body).await;
        failed.assert_error(503, "storage_unavailable");
        assert!(s.health_is_ok().await);
        let stats = s.get("/queue-stats/q").await.json();
        assert_eq!((stats["total"].as_u64(), stats["locked"].as_u64()), (Some(2), Some(1)));
    }
    let again = s.consume("q", "c").await.expect("a message");
    assert!(again["payload"] == second.as_str(), "second payload differs");
    s.stop().await;
}

// Verifies: SYS-0034
/// A payload that cannot be read leaves the message in the queue: with no retries left,
/// the failed attempt must not make it a dead letter that was never delivered.
#[tokio::test]
async fn a_failed_read_does_not_turn_a_message_into_a_dead_letter() {
    let (_fs, clock, e, p) = a_failed_delivery(22, 0).await;
    clock.advance_ms(1_001);
    let got = e.consume("q", "w", 30, 1, Duration::ZERO).await.unwrap();
    let dead = e.dlq_list("q", 10).unwrap();
    assert_eq!((got.len(), dead.len()), (1, 0), "a dead letter it never was delivered");
    assert!(got[0].payload == p);
    e.shutdown().await;
}

// Verifies: SYS-0034, PER-0020
/// A compaction with nothing logged since the last one has nothing to cover: it must not
/// write a checkpoint under the live one's id, since the addresses messages hold into the
/// live file would then read the new file's bytes at the old offsets. Here the commit's
/// last directory sync is set to fail, so a repointing step after the commit never runs.
#[tokio::test]
async fn a_compaction_with_nothing_new_leaves_the_live_checkpoint_and_its_bytes_alone() {
    let fs = SimFs::new(21);
    let clock = Arc::new(ManualClock::new(T0));
    let e = open_sim(&fs, &clock);
    let sent = publish_big(&e, "same-id", 40, 3).await;
    e.compact().unwrap();
    drop(e);
    // After the restart every message points into the checkpoint; the active segment is
    // empty, so the next roll is skipped.
    let e = open_sim(&fs, &clock);
    fs.inject(Fault::SyncDir, 2);
    let report = e.compact();
    let got = e.consume("q", "w", 30, 40, Duration::ZERO).await.unwrap();
    let payloads: Vec<String> = got.into_iter().map(|d| d.payload).collect();
    let wrong = payloads.iter().zip(&sent).filter(|(a, b)| a != b).count();
    assert_eq!(payloads.len(), sent.len());
    assert_eq!(wrong, 0, "{wrong} payloads are another message's bytes");
    // It did nothing, so the failing directory sync was never reached.
    let report = report.unwrap();
    assert_eq!((report.messages, report.segments_deleted), (0, 0), "{report:?}");
    drop(e);
    let e = open_sim(&fs, &clock);
    assert!(contents(&e, "q").0 == sent, "after a restart");
    e.shutdown().await;
}

// Verifies: SYS-0026, SYS-0034, DLV-0021
/// Turning duplicates off reads the queue's spilled payloads into RAM: refused with
/// `memory_limit` when they would pass QRUSTY_MAX_MEMORY_BYTES, and nothing changes.
#[tokio::test]
async fn turning_duplicates_off_is_refused_when_the_payloads_would_pass_the_memory_limit() {
    let fs = SimFs::new(23);
    let mut wal = wal_opts(&sim_dir(), FsyncPolicy::Always);
    wal.segment_bytes = 1 << 20;
    let mut opts = EngineOptions::new(StorageConfig::Wal(wal));
    opts.fs = Some(Arc::new(fs.clone()));
    opts.max_memory_bytes = 64 << 10;
    let e = Engine::open(opts).unwrap();
    publish_big(&e, "limit", 20, 3).await;
    let held = e.memory_held();
    assert!(held <= e.memory_limit());
    let changed = e.update_queue("q", None, Some(false)).await;
    assert!(matches!(changed, Err(EngineError::MemoryLimit(_))), "{changed:?}");
    assert_eq!(e.memory_held(), held, "a payload was brought into RAM");
    // Duplicates are still allowed.
    e.publish("q", msg(big("limit", 0), 3)).await.unwrap();
    e.shutdown().await;
}

/// Descriptors this process holds open on files in `dir`.
fn descriptors_into(dir: &Path) -> usize {
    let dir = dir.canonicalize().unwrap();
    let fds = std::fs::read_dir("/proc/self/fd").unwrap();
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.starts_with(&dir))
        .count()
}

// Verifies: SYS-0034, SYS-0024
/// Reads of sealed segments and checkpoints go through memory maps that hold no file
/// descriptor: only the active segment keeps descriptors (the writer's and a reader's),
/// however many segments payloads are spread over.
#[tokio::test]
async fn sealed_segments_and_checkpoints_hold_no_file_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let wal = wal_opts(dir.path(), FsyncPolicy::Always);
        Engine::open(EngineOptions::new(StorageConfig::Wal(wal))).unwrap()
    };
    let e = open();
    let sent = publish_big(&e, "fd", 120, 3).await;
    let segments = e.wal_stats().map_or(0, |s| s.segments);
    assert!(segments > 10, "{segments} segments");
    assert!(contents(&e, "q").0 == sent);
    assert!(descriptors_into(dir.path()) <= 2, "{} open", descriptors_into(dir.path()));
    drop(e);
    let e = open();
    assert!(contents(&e, "q").0 == sent, "after a restart");
    assert!(descriptors_into(dir.path()) <= 2, "{} open", descriptors_into(dir.path()));
    e.publish("q", msg(big("fd", 999), 3)).await.unwrap();
    e.compact().unwrap();
    assert!(contents(&e, "q").0.len() == sent.len() + 1, "after a compaction");
    assert!(descriptors_into(dir.path()) <= 2, "{} open", descriptors_into(dir.path()));
    e.shutdown().await;
}

// Verifies: SYS-0034, PER-0010
/// A new segment that cannot be opened for reads does not stop the log: writes go on, a
/// delivery of a payload in it answers 503, and after a restart every payload is there.
#[tokio::test]
async fn a_segment_that_cannot_be_opened_for_reads_does_not_fail_the_log() {
    let fs = SimFs::new(41);
    let clock = Arc::new(ManualClock::new(T0));
    let e = open_sim(&fs, &clock);
    // The next open for reads is the first roll's.
    fs.inject(Fault::OpenRead, 1);
    let sent = publish_big(&e, "open", 20, 3).await;
    assert!(e.wal_stats().is_some_and(|s| !s.read_only && s.segments > 2));
    let got = e.consume("q", "w", 30, 20, Duration::ZERO).await;
    assert!(matches!(got, Err(EngineError::StorageUnavailable(_))), "{got:?}");
    drop(e);
    let e = open_sim(&fs, &clock);
    assert!(contents(&e, "q").0 == sent, "after a restart");
    e.shutdown().await;
}
