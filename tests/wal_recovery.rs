//! Recovery scenarios: torn tails are cut, real damage stops the start (or is truncated on
//! request), and what survives is always exactly the records before the damage.

mod wal_support;

use qrusty::wal::frame::HEADER_LEN;
use qrusty::wal::segment::{parse_segment_name, segment_name};
use qrusty::wal::{CrashMode, FileSystem, FsyncPolicy, Wal, WalError};
use wal_support::*;

const RECORDS: usize = 300;

/// The original log, its segment files, and the record count before the newest segment
/// together with the frame offsets of that segment.
struct Fixture {
    files: Vec<(std::path::PathBuf, Vec<u8>)>,
    records_before_newest: usize,
    newest_offsets: Vec<usize>,
}

fn fixture() -> Fixture {
    let fs = written_log(&small_opts(), &records(0..RECORDS));
    let files = segment_files(&fs, &dir());
    assert!(files.len() >= 3, "the log should span several segments");

    let (newest_path, newest) = files.last().unwrap();
    let id = parse_segment_name(newest_path.file_name().unwrap().to_str().unwrap()).unwrap();
    let newest_offsets = frame_offsets(newest, id);
    let in_newest = newest_offsets.len() - 1;
    assert!(in_newest >= 4, "the newest segment should hold several records");
    Fixture { records_before_newest: RECORDS - in_newest, newest_offsets, files }
}

impl Fixture {
    fn with_newest(&self, newest: Vec<u8>) -> qrusty::wal::SimFs {
        let mut files = self.files.clone();
        files.last_mut().unwrap().1 = newest;
        fs_with(&files)
    }

    fn newest(&self) -> &(std::path::PathBuf, Vec<u8>) {
        self.files.last().unwrap()
    }

    /// Index (in the newest segment) of the frame containing byte `at`.
    fn frame_at(&self, at: usize) -> usize {
        self.newest_offsets.iter().rposition(|&start| start <= at).unwrap()
    }
}

// Verifies: PER-0014
#[test]
fn cutting_the_newest_segment_anywhere_in_its_last_three_records_keeps_the_prefix() {
    let fx = fixture();
    let (path, newest) = fx.newest();
    let offsets = &fx.newest_offsets;
    let first_cut = offsets[offsets.len() - 4];

    for cut in first_cut..newest.len() {
        let fs = fx.with_newest(newest[..cut].to_vec());
        let (wal, seen, summary) = open(&fs, &small_opts())
            .unwrap_or_else(|err| panic!("cut at {cut} of {}: {err}", path.display()));
        wal.close().unwrap();

        let whole_frames = fx.frame_at(cut);
        let expected = fx.records_before_newest + whole_frames;
        assert_eq!(seen, records(0..expected), "cut at {cut}");
        assert_eq!(summary.truncated_bytes, (cut - offsets[whole_frames]) as u64, "cut {cut}");
        assert_eq!(fs.read(path).unwrap().len(), offsets[whole_frames], "file cut back");
    }
}

// Verifies: PER-0003, PER-0014, PER-0015, PER-0016
#[test]
fn a_flipped_byte_in_the_last_three_records_is_cut_or_reported_where_it_is() {
    let fx = fixture();
    let (path, newest) = fx.newest();
    let offsets = &fx.newest_offsets;
    let last_frame = offsets.len() - 2;
    let (mut cut, mut refused) = (0, 0);

    for at in offsets[offsets.len() - 4]..newest.len() {
        let mut damaged = newest.clone();
        damaged[at] ^= 0xFF;
        let frame = fx.frame_at(at);
        let expected = records(0..fx.records_before_newest + frame);

        let fs = fx.with_newest(damaged.clone());
        match open(&fs, &small_opts()) {
            Ok((wal, seen, _)) => {
                wal.close().unwrap();
                assert_eq!(frame, last_frame, "flip at {at}: damage before a valid record");
                assert_eq!(seen, expected, "flip at {at}");
                cut += 1;
            }
            Err(WalError::Corrupt { file, offset, .. }) => {
                assert!(frame < last_frame, "flip at {at} in the last record must be cut");
                assert_eq!(&file, path);
                assert_eq!(offset, offsets[frame] as u64, "flip at {at}");
                refused += 1;
            }
            Err(other) => panic!("flip at {at}: unexpected {other}"),
        }

        // Truncate mode always starts, with the records before the damage.
        let fs = fx.with_newest(damaged);
        assert_eq!(replay(&fs, &truncating(&small_opts())).unwrap(), expected, "flip {at}");
    }
    assert_eq!(cut, offsets[last_frame + 1] - offsets[last_frame], "every flip in the last");
    assert_eq!(refused, offsets[last_frame] - offsets[last_frame - 2], "every earlier flip");
}

// Verifies: PER-0014
#[test]
fn torn_tail_then_more_appends_are_all_there_after_the_next_start() {
    let fx = fixture();
    let (_, newest) = fx.newest();
    let cut = fx.newest_offsets[fx.newest_offsets.len() - 2] + 5;
    let fs = fx.with_newest(newest[..cut].to_vec());
    let survivors = RECORDS - 1;

    let (opened, logs) = capture_logs(|| open(&fs, &small_opts()));
    let (wal, seen, _) = opened.unwrap();
    assert_eq!(seen.len(), survivors);
    assert_eq!(logs.matches("WARN").count(), 1, "one warning for the cut: {logs}");
    assert!(logs.contains("offset=") && logs.contains("dropped_bytes=5"), "{logs}");

    append_all(&wal, &records(1000..1040));
    wal.close().unwrap();

    let (reopened, logs) = capture_logs(|| replay(&fs, &small_opts()));
    let mut expected = records(0..survivors);
    expected.extend(records(1000..1040));
    assert_eq!(reopened.unwrap(), expected);
    assert!(!logs.contains("WARN"), "the second start is clean: {logs}");
}

// Verifies: PER-0014
#[test]
fn zero_filled_newest_segment_after_a_crash_starts_clean_and_warns_only_once() {
    let fs = written_log(&small_opts(), &records(0..100));
    let opts = with_policy(&small_opts(), FsyncPolicy::Never);
    let (wal, seen, _) = open(&fs, &opts).unwrap();
    assert_eq!(seen.len(), 100);
    // Unsynced records (policy never), then a crash that keeps the file size but not the
    // data: the newest segment ends in zeros.
    append_all(&wal, &records(100..110));
    fs.crash(CrashMode::ZeroFilled);
    drop(wal);

    let (first, logs) = capture_logs(|| replay(&fs, &small_opts()));
    assert_eq!(first.unwrap(), records(0..100));
    assert_eq!(logs.matches("WARN").count(), 1, "{logs}");

    let (second, logs) = capture_logs(|| replay(&fs, &small_opts()));
    assert_eq!(second.unwrap(), records(0..100));
    assert!(!logs.contains("WARN"), "{logs}");
}

// Verifies: PER-0014, PER-0001
#[test]
fn a_newest_segment_without_a_whole_header_is_removed() {
    let fx = fixture();
    for newest in [vec![], vec![0; HEADER_LEN], vec![0; 4096], fx.newest().1[..20].to_vec()] {
        let fs = fx.with_newest(newest);
        let (replayed, logs) = capture_logs(|| replay(&fs, &small_opts()));
        assert_eq!(replayed.unwrap(), records(0..fx.records_before_newest));
        assert_eq!(logs.matches("WARN").count(), 1, "{logs}");
        // New records go to a new segment above the removed one, never to a sealed one.
        let files = segment_files(&fs, &dir());
        let newest_id = |files: &[(std::path::PathBuf, Vec<u8>)]| {
            let name = files.last().unwrap().0.file_name().unwrap().to_str().unwrap().to_string();
            parse_segment_name(&name).unwrap()
        };
        assert_eq!(newest_id(&files), newest_id(&fx.files) + 1);
        assert_eq!(files.len(), fx.files.len());

        let (again, logs) = capture_logs(|| replay(&fs, &small_opts()));
        assert_eq!(again.unwrap(), records(0..fx.records_before_newest));
        assert!(!logs.contains("WARN"), "{logs}");
    }
}

// Verifies: PER-0015, PER-0016
#[test]
fn damage_in_an_older_segment_stops_the_start_or_truncates_everything_after_it() {
    let fx = fixture();
    let mut files = fx.files.clone();
    let (path, older) = &mut files[1];
    let id = parse_segment_name(path.file_name().unwrap().to_str().unwrap()).unwrap();
    let offsets = frame_offsets(older, id);
    // The last byte of the segment's last record: nothing valid follows in that file.
    let at = older.len() - 1;
    older[at] ^= 0x01;
    let path = path.clone();
    let records_before = frame_offsets(&files[0].1, 1).len() - 1 + offsets.len() - 2;

    let err = replay(&fs_with(&files), &small_opts()).expect_err("strict refuses");
    match err {
        WalError::Corrupt { file, offset, .. } => {
            assert_eq!(file, path);
            assert_eq!(offset, offsets[offsets.len() - 2] as u64);
        }
        other => panic!("unexpected {other}"),
    }

    let fs = fs_with(&files);
    let opts = truncating(&small_opts());
    assert_eq!(replay(&fs, &opts).unwrap(), records(0..records_before));
    // Later segments are deleted; the next records go to a fresh segment above them all.
    let kept: Vec<_> = segment_files(&fs, &dir()).into_iter().map(|(path, _)| path).collect();
    let last_old = fx.files.last().unwrap().0.file_name().unwrap().to_str().unwrap();
    let fresh = dir().join(segment_name(parse_segment_name(last_old).unwrap() + 1));
    assert_eq!(kept, [fx.files[0].0.clone(), fx.files[1].0.clone(), fresh]);

    // The truncated log takes new records after the kept prefix, with a fresh segment id.
    let (wal, _, _) = open(&fs, &small_opts()).unwrap();
    append_all(&wal, &records(5000..5003));
    wal.close().unwrap();
    let mut expected = records(0..records_before);
    expected.extend(records(5000..5003));
    assert_eq!(replay(&fs, &small_opts()).unwrap(), expected);
}

// Verifies: PER-0015, PER-0016
/// Records missing between segments leave every frame valid: a sealed segment cut at a
/// record boundary, one deleted, the first one deleted. Only the LSNs show the gap, and a
/// start must not go on without those records (acknowledged publishes lost, acked messages
/// back) and then compact the rest away.
#[test]
fn records_missing_between_segments_stop_the_start_or_truncate_after_the_gap() {
    let fx = fixture();
    assert!(fx.files.len() >= 4, "the gap cases need four segments");
    let in_segment = |i: usize| {
        let (path, bytes) = &fx.files[i];
        frame_offsets(
            bytes,
            parse_segment_name(path.file_name().unwrap().to_str().unwrap()).unwrap(),
        )
    };
    let before = |i: usize| (0..i).map(|j| in_segment(j).len() - 1).sum::<usize>();
    let second = in_segment(1);
    type Files = Vec<(std::path::PathBuf, Vec<u8>)>;
    let cases: Vec<(&str, Files, usize, usize)> = vec![
        // (case, files, the segment the start must name, records before the gap)
        (
            "a sealed segment cut after a record",
            {
                let mut files = fx.files.clone();
                files[1].1.truncate(second[2]);
                files
            },
            2,
            before(1) + 2,
        ),
        (
            "a sealed segment cut to its header",
            {
                let mut files = fx.files.clone();
                files[1].1.truncate(HEADER_LEN);
                files
            },
            2,
            before(1),
        ),
        (
            "a middle segment deleted",
            {
                let mut files = fx.files.clone();
                files.remove(2);
                files
            },
            2,
            before(2),
        ),
        ("the first segment deleted", fx.files[1..].to_vec(), 0, 0),
    ];
    for (case, files, gap_at, kept) in cases {
        let err = replay(&fs_with(&files), &small_opts()).expect_err(case);
        match err {
            WalError::Corrupt { file, offset, reason } => {
                assert_eq!(file, files[gap_at].0, "{case}");
                assert_eq!(offset, 0, "{case}");
                assert!(reason.contains("records are missing"), "{case}: {reason}");
            }
            other => panic!("{case}: unexpected {other}"),
        }
        // Truncate mode keeps what precedes the gap, and the log then starts cleanly.
        let fs = fs_with(&files);
        assert_eq!(replay(&fs, &truncating(&small_opts())).unwrap(), records(0..kept), "{case}");
        let (wal, _, _) = open(&fs, &small_opts()).unwrap();
        append_all(&wal, &records(7000..7002));
        wal.close().unwrap();
        let mut expected = records(0..kept);
        expected.extend(records(7000..7002));
        assert_eq!(replay(&fs, &small_opts()).unwrap(), expected, "{case}");
    }
    // The log as written starts without complaint.
    assert_eq!(replay(&fs_with(&fx.files), &small_opts()).unwrap(), records(0..RECORDS));
}

// Verifies: PER-0012
#[test]
fn a_record_rejected_by_replay_aborts_the_open_naming_its_place() {
    let fs = written_log(&small_opts(), &records(0..10));
    let mut count = 0;
    let result = Wal::open(small_opts(), std::sync::Arc::new(fs.clone()), &mut |_, _| {
        count += 1;
        if count == 4 {
            Err("bad record".to_string())
        } else {
            Ok(())
        }
    });
    match result {
        Err(WalError::Corrupt { offset, reason, .. }) => {
            let first = frame_offsets(&segment_files(&fs, &dir())[0].1, 1);
            assert_eq!(offset, first[3] as u64);
            assert!(reason.contains("bad record"), "{reason}");
        }
        Err(other) => panic!("unexpected {other}"),
        Ok(_) => panic!("open should fail"),
    }
}

// Verifies: PER-0002
#[test]
fn a_newer_format_version_is_refused_even_in_truncate_mode() {
    let fx = fixture();
    let mut files = fx.files.clone();
    let header = qrusty::wal::frame::encode_header(1, 1);
    let mut newer = header;
    newer[8] = 3;
    let crc = crc32fast::hash(&newer[..36]);
    newer[36..40].copy_from_slice(&crc.to_le_bytes());
    files[0].1[..HEADER_LEN].copy_from_slice(&newer);

    let fs = fs_with(&files);
    let err = replay(&fs, &truncating(&small_opts())).expect_err("refused");
    assert!(err.to_string().contains("version 3"), "{err}");
    assert_eq!(segment_files(&fs, &dir()).len(), fx.files.len(), "nothing deleted");
}

// Verifies: PER-0005
#[test]
fn a_record_above_a_lowered_size_limit_still_replays() {
    let fs = written_log(&small_opts(), &records(0..5));
    let (wal, _, _) = open(&fs, &small_opts()).unwrap();
    append_all(&wal, &[vec![b'z'; 3000]]);
    wal.close().unwrap();

    // The limit applies to new appends only: the log written under the higher one reads
    // back whole in both recovery modes, and the lowered limit refuses a new big record.
    let lowered = qrusty::wal::WalOptions { max_record_bytes: 1000, ..small_opts() };
    let mut expected = records(0..5);
    expected.push(vec![b'z'; 3000]);
    for opts in [lowered.clone(), truncating(&lowered)] {
        assert_eq!(replay(&fs, &opts).unwrap(), expected, "nothing was cut");
    }
    let (wal, _, _) = open(&fs, &lowered).unwrap();
    let refused = wal.append(&[b'y'; 1001]);
    assert!(matches!(refused, Err(qrusty::wal::WalError::RecordTooLarge { .. })));
    wal.close().unwrap();
}

// Verifies: PER-0014, PER-0015
#[test]
fn a_long_stretch_of_noise_after_the_last_record_is_judged_in_bounded_time() {
    let fx = fixture();
    let (_, newest) = fx.newest();
    // 40 MiB of bytes that each read as a length of about 16 MiB: every offset but the last
    // 16 MiB is a candidate record to hash. Checked one by one, that is petabytes.
    let mut noisy = newest.clone();
    noisy.resize(newest.len() + (40 << 20), 0x01);
    let fs = fx.with_newest(noisy);

    let (done, finished) = std::sync::mpsc::channel();
    let judged = {
        let fs = fs.clone();
        std::thread::spawn(move || {
            let strict = replay(&fs, &small_opts());
            let truncated = replay(&fs, &truncating(&small_opts()));
            let _ = done.send(());
            (strict, truncated)
        })
    };
    finished.recv_timeout(std::time::Duration::from_secs(300)).expect("recovery hangs");
    let (strict, truncated) = judged.join().unwrap();

    // Whether a valid record follows cannot be told within the budget: the strict start
    // stops where the noise begins and says how to keep what is before it.
    match strict.expect_err("strict refuses") {
        WalError::Corrupt { offset, reason, .. } => {
            assert_eq!(offset, newest.len() as u64);
            assert!(reason.contains("QRUSTY_RECOVERY=truncate"), "{reason}");
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(truncated.unwrap(), records(0..RECORDS));
}
