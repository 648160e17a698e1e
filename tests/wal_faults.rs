//! Injected I/O failures: a failed write or fsync is never acknowledged, turns the log
//! read-only, and leaves no trace of the failed records at the next start.

mod wal_support;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use qrusty::wal::{CrashMode, Fault, SimFs, Wal, WalError};
use wal_support::*;

/// Everything logged by any thread of this test binary (the writer thread logs the ERROR).
fn global_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || LogSink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        buffer
    })
    .clone()
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes 20 good records, arms `fault`, appends one more: it must fail and poison the log.
fn single_failure_leaves_no_trace(fault: Fault) {
    let logs = global_logs();
    let fs = SimFs::new(3);
    let (wal, _, _) = open(&fs, &small_opts()).unwrap();
    append_all(&wal, &records(0..20));

    fs.inject(fault, 1);
    let doomed = wal.append(b"never acknowledged").unwrap();
    assert!(matches!(doomed.wait_blocking(), Err(WalError::ReadOnly(_))), "{fault:?}");
    assert!(matches!(wal.append(b"later"), Err(WalError::ReadOnly(_))), "{fault:?}");
    assert!(wal.stats().read_only);
    assert!(matches!(wal.close(), Err(WalError::ReadOnly(_))));
    let text = String::from_utf8(logs.lock().clone()).unwrap();
    assert!(text.contains("ERROR") && text.contains("read-only"), "{text}");

    // A start without a crash, then one after a power cut: only the acknowledged records.
    assert_eq!(replay(&fs, &small_opts()).unwrap(), records(0..20), "{fault:?}");
    fs.crash(CrashMode::Durable);
    let (wal, seen, _) = open(&fs, &small_opts()).unwrap();
    assert_eq!(seen, records(0..20), "{fault:?}");

    // The reopened log works again.
    append_all(&wal, &records(20..25));
    wal.close().unwrap();
    assert_eq!(replay(&fs, &small_opts()).unwrap(), records(0..25));
}

// Verifies: PER-0009
#[test]
fn failed_fsync_fails_the_ticket_and_every_later_append() {
    single_failure_leaves_no_trace(Fault::Sync);
}

// Verifies: PER-0009, PER-0028
#[test]
fn full_disk_fails_the_ticket_and_every_later_append() {
    single_failure_leaves_no_trace(Fault::NoSpace);
}

// Verifies: PER-0009
#[test]
fn failed_write_fails_the_ticket_and_every_later_append() {
    single_failure_leaves_no_trace(Fault::Write);
}

/// Each appender's bodies, and which were acknowledged.
type Outcomes = Vec<Vec<(Vec<u8>, bool)>>;

/// Eight threads append until the log fails; returns what each appended and its outcome.
fn concurrent_appends_until_failure(wal: &Arc<Wal>) -> Outcomes {
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                let mut outcomes = Vec::new();
                for i in 0..200 {
                    let body = format!("thread-{t}-{i}").into_bytes();
                    let Ok(ticket) = wal.append(&body) else { break };
                    let ok = ticket.wait_blocking().is_ok();
                    outcomes.push((body, ok));
                    if !ok {
                        break;
                    }
                }
                outcomes
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// Every acknowledged record is in the log, no failed one is, and each thread's records
/// appear in its append order.
fn assert_log_matches(replayed: &[Vec<u8>], outcomes: &Outcomes) {
    let mut acked = 0;
    for per_thread in outcomes {
        let in_log: Vec<_> = replayed
            .iter()
            .filter(|body| per_thread.iter().any(|(b, _)| b == *body))
            .cloned()
            .collect();
        let ok: Vec<_> = per_thread.iter().filter(|(_, ok)| *ok).map(|(b, _)| b.clone()).collect();
        assert_eq!(in_log, ok);
        acked += ok.len();
    }
    assert_eq!(replayed.len(), acked, "nothing but acknowledged records");
}

// Verifies: PER-0007, PER-0009
#[test]
fn a_failed_fsync_under_group_commit_fails_every_waiter_it_covered() {
    let fs = SimFs::new(5);
    fs.set_sync_delay(Duration::from_millis(2));
    let (wal, _, _) = open(&fs, &small_opts()).unwrap();
    let wal = Arc::new(wal);

    fs.inject(Fault::Sync, 30);
    let outcomes = concurrent_appends_until_failure(&wal);
    let failed = outcomes.iter().flatten().filter(|(_, ok)| !ok).count();
    assert!(failed >= 1, "the fault fired");
    assert!(matches!(wal.append(b"after"), Err(WalError::ReadOnly(_))));
    drop(wal);

    assert_log_matches(&replay(&fs, &small_opts()).unwrap(), &outcomes);
    fs.crash(CrashMode::Durable);
    assert_log_matches(&replay(&fs, &small_opts()).unwrap(), &outcomes);
}

// Verifies: PER-0009, PER-0010
#[test]
fn a_failure_while_rolling_keeps_what_the_sealed_segment_acknowledged() {
    let fs = SimFs::new(9);
    let (wal, _, _) = open(&fs, &small_opts()).unwrap();
    // The next segment cannot be created: records that fit before the roll are sealed and
    // acknowledged, the rest fail.
    fs.inject(Fault::Create, 1);
    let bodies = records(0..200);
    let tickets: Vec<_> = bodies.iter().map(|b| wal.append(b).unwrap()).collect();
    let acked: Vec<bool> = tickets.into_iter().map(|t| t.wait_blocking().is_ok()).collect();
    let ok = acked.iter().take_while(|ok| **ok).count();
    assert!(ok > 0 && ok < 200, "some records fit before the roll, {ok} did");
    assert!(acked[ok..].iter().all(|ok| !ok), "nothing after a failure is acknowledged");
    drop(wal);

    fs.crash(CrashMode::Durable);
    assert_eq!(replay(&fs, &small_opts()).unwrap(), records(0..ok));
}

// Verifies: PER-0009
#[test]
fn ticket_failure_reaches_async_waiters() {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let fs = SimFs::new(13);
    let (wal, _, _) = open(&fs, &small_opts()).unwrap();
    // A slow failing fsync: the later appends queue up behind it and fail with it.
    fs.set_sync_delay(Duration::from_millis(200));
    fs.inject(Fault::Sync, 1);
    let tickets: Vec<_> = (0..10).map(|i| wal.append(&record(i)).unwrap()).collect();
    let results = rt.block_on(async {
        let waits = tickets.into_iter().map(|t| tokio::spawn(t.wait()));
        let mut results = Vec::new();
        for wait in waits {
            results.push(tokio::time::timeout(Duration::from_secs(10), wait).await);
        }
        results
    });
    for result in results {
        assert!(matches!(result, Ok(Ok(Err(WalError::ReadOnly(_))))));
    }
}
