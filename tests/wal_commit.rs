//! The writer: group commit, ordering, segment rolls, fsync policies, crashes under load,
//! and the real file system.

mod wal_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use qrusty::wal::segment::list_segments;
use qrusty::wal::{real_fs, CrashMode, FsyncPolicy, SimFs, Wal, WalError, WalOptions};
use wal_support::*;

/// `threads` appenders, each appending `per_thread` records and waiting for each.
fn hammer(wal: &Arc<Wal>, threads: usize, per_thread: usize) -> Vec<Vec<Vec<u8>>> {
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..per_thread {
                    let body = format!("t{t}-{i}").into_bytes();
                    let Ok(ticket) = wal.append(&body) else { break };
                    if ticket.wait_blocking().is_err() {
                        break;
                    }
                    acked.push(body);
                }
                acked
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Each appender's records appear in the log in the order it appended them.
fn per_thread_order(replayed: &[Vec<u8>], thread: usize) -> Vec<Vec<u8>> {
    let prefix = format!("t{thread}-");
    replayed.iter().filter(|b| b.starts_with(prefix.as_bytes())).cloned().collect()
}

// Verifies: PER-0007
#[test]
fn concurrent_appenders_share_fsyncs_and_keep_their_order() {
    let fs = SimFs::new(1);
    fs.set_sync_delay(Duration::from_millis(2));
    let (wal, _, _) = open(&fs, &small_opts()).unwrap();
    let wal = Arc::new(wal);
    let before = wal.stats().fsyncs;

    let acked = hammer(&wal, 16, 100);
    let stats = wal.stats();
    assert_eq!(acked.iter().map(Vec::len).sum::<usize>(), 1600);
    assert_eq!(stats.records_written, 1600);
    let fsyncs = stats.fsyncs - before;
    assert!(fsyncs * 4 < 1600, "group commit: {fsyncs} fsyncs for 1600 records");
    assert_eq!(stats.fsync_buckets.iter().sum::<u64>(), stats.fsyncs);
    drop(wal);

    let replayed = replay(&fs, &small_opts()).unwrap();
    assert_eq!(replayed.len(), 1600);
    for (t, mine) in acked.iter().enumerate() {
        assert_eq!(&per_thread_order(&replayed, t), mine);
    }
}

// Verifies: PER-0007
#[test]
fn async_appenders_share_fsyncs() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let fs = SimFs::new(2);
    fs.set_sync_delay(Duration::from_millis(2));
    let (wal, _, _) = open(&fs, &small_opts()).unwrap();
    let wal = Arc::new(wal);

    rt.unwrap().block_on(async {
        let tasks: Vec<_> = (0..64)
            .map(|t| {
                let wal = wal.clone();
                tokio::spawn(async move {
                    for i in 0..30 {
                        let ticket = wal.append(format!("t{t}-{i}").as_bytes()).unwrap();
                        ticket.wait().await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(60), task).await.unwrap().unwrap();
        }
    });
    let fsyncs = wal.stats().fsyncs;
    assert!(fsyncs * 8 < 64 * 30, "group commit: {fsyncs} fsyncs for 1920 records");
    drop(wal);

    let replayed = replay(&fs, &small_opts()).unwrap();
    assert_eq!(replayed.len(), 64 * 30);
    for t in 0..64 {
        let expected: Vec<_> = (0..30).map(|i| format!("t{t}-{i}").into_bytes()).collect();
        assert_eq!(per_thread_order(&replayed, t), expected);
    }
}

// Verifies: PER-0010, PER-0012
#[test]
fn the_log_rolls_at_the_segment_size_and_replays_across_segments() {
    let opts = WalOptions { segment_bytes: 256, ..small_opts() };
    let mut bodies = records(0..1000);
    bodies.insert(500, vec![b'x'; 1000]); // larger than a segment: goes alone
    let fs = SimFs::new(3);
    let (wal, _, _) = open(&fs, &opts).unwrap();
    // In several batches, so that rolls happen both inside a batch and between batches.
    for chunk in bodies.chunks(97) {
        append_all(&wal, chunk);
    }
    let stats = wal.stats();
    wal.close().unwrap();

    let files = segment_files(&fs, &dir());
    assert!(files.len() > 50, "{} segments", files.len());
    assert_eq!(stats.segments, files.len());
    assert_eq!(stats.bytes_on_disk, files.iter().map(|(_, b)| b.len() as u64).sum::<u64>());
    for (path, bytes) in &files {
        let id: u64 = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        let frames = frame_offsets(bytes, id).len() - 1;
        assert!(
            bytes.len() <= 256 || frames == 1,
            "{} holds {} bytes",
            path.display(),
            bytes.len()
        );
    }

    let (wal, replayed, summary) = open(&fs, &opts).unwrap();
    assert_eq!(replayed, bodies);
    assert_eq!(summary.segments, files.len());
    assert_eq!(summary.records, bodies.len() as u64);
    assert_eq!(summary.truncated_bytes, 0);
    drop(wal);
}

// Verifies: PER-0008
#[test]
fn interval_policy_acknowledges_before_the_fsync_and_syncs_within_the_interval() {
    let fs = SimFs::new(4);
    let opts = with_policy(&small_opts(), FsyncPolicy::Interval(Duration::from_millis(200)));
    let (wal, _, _) = open(&fs, &opts).unwrap();
    // A slow disk: acknowledging 20 records one by one would take two seconds if each
    // waited for an fsync.
    fs.set_sync_delay(Duration::from_millis(100));

    let started = Instant::now();
    for body in records(0..20) {
        wal.append(&body).unwrap().wait_blocking().unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    assert!(wal.stats().fsyncs <= 2, "fsyncs: {}", wal.stats().fsyncs);

    // Within the interval (plus the slow fsync) the written records become durable.
    let deadline = Instant::now() + Duration::from_secs(5);
    while wal.stats().fsyncs == 0 || fs_durable_records(&fs) < 20 {
        assert!(Instant::now() < deadline, "no interval fsync");
        std::thread::sleep(Duration::from_millis(20));
    }
    fs.crash(CrashMode::Durable);
    drop(wal);
    assert_eq!(replay(&fs, &small_opts()).unwrap(), records(0..20));
}

/// How many records would survive a crash now.
fn fs_durable_records(fs: &SimFs) -> usize {
    list_segments(fs, &dir())
        .unwrap()
        .into_iter()
        .map(|(id, path)| {
            let bytes = fs.durable_content(&path).unwrap_or_default();
            let mut at = qrusty::wal::frame::HEADER_LEN;
            let mut count = 0;
            while let Ok((_, len)) =
                qrusty::wal::frame::decode_frame(bytes.get(at..).unwrap_or_default(), id, u32::MAX)
            {
                at += len;
                count += 1;
            }
            count
        })
        .sum()
}

// Verifies: PER-0008
#[test]
fn never_policy_acknowledges_without_fsync_and_close_makes_it_durable() {
    let fs = SimFs::new(5);
    let opts = with_policy(&small_opts(), FsyncPolicy::Never);
    let (wal, _, _) = open(&fs, &opts).unwrap();
    append_all(&wal, &records(0..30));
    assert_eq!(wal.stats().fsyncs, 0);
    assert_eq!(fs_durable_records(&fs), 0, "nothing synced yet");
    wal.close().unwrap();
    assert_eq!(fs_durable_records(&fs), 30, "close syncs");

    fs.crash(CrashMode::Durable);
    assert_eq!(replay(&fs, &opts).unwrap(), records(0..30));
}

// Verifies: PER-0007, SYS-0005
#[test]
fn a_power_cut_under_load_keeps_every_acknowledged_record_and_only_a_prefix() {
    for step in 0..40u64 {
        let fs = SimFs::new(100 + step);
        let (wal, _, _) = open(&fs, &small_opts()).unwrap();
        let wal = Arc::new(wal);
        fs.halt_after(step * 3);
        let acked = hammer(&wal, 4, 60);
        fs.crash(CrashMode::TornWrite);
        drop(wal);

        let replayed = replay(&fs, &small_opts()).unwrap();
        for (t, mine) in acked.iter().enumerate() {
            let survived = per_thread_order(&replayed, t);
            assert!(survived.starts_with(mine), "step {step}: acked record of t{t} lost");
            let expected: Vec<_> =
                (0..survived.len()).map(|i| format!("t{t}-{i}").into_bytes()).collect();
            assert_eq!(survived, expected, "step {step}: t{t} has a gap");
        }
    }
}

// Verifies: PER-0005
#[test]
fn append_refuses_empty_oversized_and_closed() {
    let fs = SimFs::new(6);
    let (wal, _, _) = open(&fs, &small_opts()).unwrap();
    assert!(matches!(wal.append(b""), Err(WalError::EmptyRecord)));
    let big = vec![0u8; small_opts().max_record_bytes as usize + 1];
    assert!(matches!(wal.append(&big), Err(WalError::RecordTooLarge { .. })));
    wal.close().unwrap();
    assert!(matches!(wal.append(b"late"), Err(WalError::Closed)));
}

// Verifies: PER-0014
#[test]
fn the_real_file_system_keeps_records_and_cuts_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = WalOptions { segment_bytes: 4096, ..WalOptions::new(tmp.path().join("wal")) };
    let collect = |opts: &WalOptions| {
        let mut seen = Vec::new();
        let (wal, _) = Wal::open(opts.clone(), real_fs(), &mut |_, b| {
            seen.push(b.to_vec());
            Ok(())
        })
        .unwrap();
        (wal, seen)
    };

    let (wal, seen) = collect(&opts);
    assert!(seen.is_empty());
    append_all(&wal, &records(0..300));
    wal.close().unwrap();

    let segments = list_segments(&*real_fs(), &opts.dir).unwrap();
    assert!(segments.len() > 1);
    let (_, newest) = segments.last().unwrap();
    let len = std::fs::metadata(newest).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(newest).unwrap();
    file.set_len(len - 3).unwrap();

    let (wal, seen) = collect(&opts);
    assert_eq!(seen, records(0..299));
    append_all(&wal, &records(300..310));
    drop(wal);

    let (wal, seen) = collect(&opts);
    let mut expected = records(0..299);
    expected.extend(records(300..310));
    assert_eq!(seen, expected);
    assert!(real_fs().read(newest).unwrap().len() as u64 > len - 3);
    drop(wal);
}

// Verifies: PER-0007, PER-0014
/// The active segment runs ahead of its records with zeros (so an fdatasync commits data,
/// not a new file length); a crash leaves those zeros behind. Copying the directory while
/// the log is open is what a crash leaves on disk.
#[test]
fn preallocated_zeros_left_by_a_crash_are_cut_and_every_record_replays() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = WalOptions::new(tmp.path().join("wal"));
    let crashed = WalOptions::new(tmp.path().join("crashed"));
    let (wal, _) = Wal::open(opts.clone(), real_fs(), &mut |_, _| Ok(())).unwrap();
    append_all(&wal, &records(0..50));

    std::fs::create_dir(&crashed.dir).unwrap();
    let (_, segment) = list_segments(&*real_fs(), &opts.dir).unwrap().pop().unwrap();
    let copy = crashed.dir.join(segment.file_name().unwrap());
    std::fs::copy(&segment, &copy).unwrap();
    let valid: usize = records(0..50).iter().map(|r| r.len() + 8).sum::<usize>() + 40;
    let on_disk = std::fs::read(&copy).unwrap();
    assert!(on_disk.len() > valid, "no zeros ahead of the records");
    assert!(on_disk[valid..].iter().all(|&b| b == 0));
    wal.close().unwrap();
    assert_eq!(std::fs::metadata(&segment).unwrap().len() as usize, valid, "close trims");

    let mut seen = Vec::new();
    let (wal, _) = Wal::open(crashed.clone(), real_fs(), &mut |_, b| {
        seen.push(b.to_vec());
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, records(0..50));
    append_all(&wal, &records(50..60));
    drop(wal);
    let mut seen = Vec::new();
    let (wal, _) = Wal::open(crashed, real_fs(), &mut |_, b| {
        seen.push(b.to_vec());
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, records(0..60));
    drop(wal);
}
