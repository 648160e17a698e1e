//! The `wal_decode` check: arbitrary bytes as segment files, then recovery.
//!
//! Shared by the fuzz target (fuzz/fuzz_targets/wal_decode.rs) and the stable replay test
//! (tests/fuzz_corpus.rs), so both run the same oracle.
//!
//! Input: byte 0 holds flags (bit 0: rewrite each header and the frame CRCs so that the
//! bytes laid out after them read as frames, bit 1: then flip the byte that bytes 2..4
//! name), byte 1 the number of files (low two bits, plus one) and the id gap before each
//! (two bits per file, plus one). Then, for every file but the last, a little-endian u16
//! length and that many bytes; the last file takes the rest.
//!
//! The oracle is a small independent reader of FORMAT.md: it says which records a recovery
//! must return, or that the open must fail (damage that is not a torn tail in strict mode,
//! or a newer format in every mode). Recovery must agree, never panic, never make one
//! allocation much above the maximum record size or the input, and after a successful
//! open the log must take a new record and replay exactly the kept records plus it.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;
use std::sync::Arc;

use qrusty::wal::frame::encode_header;
use qrusty::wal::segment::segment_name;
use qrusty::wal::{FileSystem, RecoveryMode, SimFs, Wal, WalError, WalOptions};

/// The largest record body the decoded logs may hold: small, so that fuzzed lengths often
/// fall inside it.
pub const MAX_RECORD: u32 = 1024;
const HEADER: usize = 40;
const FRAME: usize = 8;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

/// A global allocator that remembers the largest single allocation the current thread made
/// while tracking is on. Install it with `#[global_allocator]` in the binary.
pub struct PeakAlloc;

unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

fn note(size: usize) {
    let _ = TRACKING.try_with(|on| {
        if on.get() {
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(size)));
        }
    });
}

/// Runs `f` and returns the largest single allocation this thread made meanwhile (0 when
/// [`PeakAlloc`] is not the global allocator).
fn peak_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    PEAK.with(|p| p.set(0));
    TRACKING.with(|t| t.set(true));
    let out = f();
    TRACKING.with(|t| t.set(false));
    (out, PEAK.with(Cell::get))
}

/// One input, decoded.
#[derive(Debug, Clone)]
pub struct Input {
    pub repair: bool,
    pub flip: Option<usize>,
    /// (segment id, content), ids ascending.
    pub files: Vec<(u64, Vec<u8>)>,
}

pub fn parse(data: &[u8]) -> Input {
    let flags = data.first().copied().unwrap_or(0);
    let layout = data.get(1).copied().unwrap_or(0);
    let flip_at =
        u16::from_le_bytes([data.get(2).copied().unwrap_or(0), data.get(3).copied().unwrap_or(0)]);
    let count = usize::from(layout & 3) + 1;
    let mut rest = data.get(4..).unwrap_or(&[]);
    let mut files = Vec::new();
    let mut id = 0;
    for i in 0..count {
        id += u64::from((layout >> (2 + 2 * i.min(2))) & 3) + 1;
        let content = if i + 1 == count {
            std::mem::take(&mut rest)
        } else {
            let len = match rest {
                [a, b, ..] => usize::from(u16::from_le_bytes([*a, *b])),
                _ => 0,
            };
            let after = rest.get(2..).unwrap_or(&[]);
            let (content, tail) = after.split_at(len.min(after.len()));
            rest = tail;
            content
        };
        files.push((id, content.to_vec()));
    }
    let flip = (flags & 2 != 0).then_some(usize::from(flip_at));
    Input { repair: flags & 1 != 0, flip, files }
}

/// The inverse of [`parse`], for the seed generator. Gaps are all 1.
pub fn encode(repair: bool, flip: Option<u16>, files: &[Vec<u8>]) -> Vec<u8> {
    assert!((1..=4).contains(&files.len()));
    let flags = u8::from(repair) | if flip.is_some() { 2 } else { 0 };
    let mut out = vec![flags, (files.len() - 1) as u8];
    out.extend_from_slice(&flip.unwrap_or(0).to_le_bytes());
    for (i, f) in files.iter().enumerate() {
        if i + 1 < files.len() {
            out.extend_from_slice(&(f.len() as u16).to_le_bytes());
        }
        out.extend_from_slice(f);
    }
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn crc(segment: u64, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&segment.to_le_bytes());
    h.update(&(body.len() as u32).to_le_bytes());
    h.update(body);
    h.finalize()
}

/// Rewrites the header and the CRC of every frame the lengths lay out, so that mutations of
/// lengths and bodies still reach the code behind the checksums.
fn repair(id: u64, bytes: &mut [u8]) {
    if bytes.len() < HEADER {
        return;
    }
    let first_lsn = u64_at(bytes, 24).max(1) % (1 << 40) + 1;
    bytes[..HEADER].copy_from_slice(&encode_header(id, first_lsn));
    let mut at = HEADER;
    while at + FRAME <= bytes.len() {
        let len = u32_at(bytes, at) as usize;
        if len == 0 || len > MAX_RECORD as usize || at + FRAME + len > bytes.len() {
            break;
        }
        let c = crc(id, &bytes[at + FRAME..at + FRAME + len]);
        bytes[at + 4..at + 8].copy_from_slice(&c.to_le_bytes());
        at += FRAME + len;
    }
}

/// Whether a whole frame with a matching CRC starts at `at`, and its body length.
fn frame_at(bytes: &[u8], at: usize, id: u64) -> Option<usize> {
    let head = bytes.get(at..at + FRAME)?;
    let len = u32_at(head, 0) as usize;
    let body = bytes.get(at + FRAME..(at + FRAME).checked_add(len)?)?;
    (len > 0 && crc(id, body) == u32_at(head, 4)).then_some(len)
}

/// What recovery must do with a log.
#[derive(Debug, PartialEq, Eq)]
pub enum Expect {
    /// Open succeeds and replays exactly these (LSN, body) pairs.
    Records(Vec<(u64, Vec<u8>)>),
    /// Open fails with `Corrupt` after replaying these.
    Fails(Vec<(u64, Vec<u8>)>),
}

/// The reference reader: FORMAT.md, "Reading a log", for segments only.
pub fn expect(files: &[(u64, Vec<u8>)], mode: RecoveryMode) -> Expect {
    let mut records = Vec::new();
    // LSNs run on from segment to segment, from 1 (these logs have no checkpoint).
    let mut next_lsn = 1;
    for (index, (id, b)) in files.iter().enumerate() {
        let newest = index + 1 == files.len();
        let magic = b.len() >= 8 && &b[..8] == b"QRUSTYWL";
        if magic && b.len() >= 32 && u32_at(b, 8) == 1 && crc32fast::hash(&b[..28]) == u32_at(b, 28)
        {
            return Expect::Fails(records);
        }
        let mut damage = None;
        let mut first_lsn = 0;
        if b.len() < HEADER || !magic || crc32fast::hash(&b[..36]) != u32_at(b, 36) {
            damage = Some(0);
        } else if u32_at(b, 8) != 2 || u32_at(b, 12) != 0 || u32_at(b, 32) != 0 {
            return Expect::Fails(records);
        } else if u64_at(b, 16) != *id
            || !(1..=1 << 62).contains(&u64_at(b, 24))
            || u64_at(b, 24) != next_lsn
        {
            damage = Some(0);
        } else {
            first_lsn = u64_at(b, 24);
        }
        let mut at = HEADER;
        let mut n = 0;
        while damage.is_none() && at < b.len() {
            match frame_at(b, at, *id) {
                Some(len) if len <= MAX_RECORD as usize => {
                    records.push((first_lsn + n, b[at + FRAME..at + FRAME + len].to_vec()));
                    n += 1;
                    at += FRAME + len;
                }
                // A real record above the limit: refused in every mode.
                Some(_) => return Expect::Fails(records),
                None => damage = Some(at),
            }
        }
        let Some(off) = damage else {
            next_lsn = first_lsn + n;
            continue;
        };
        let valid_follows = (off + 1..b.len())
            .any(|at| frame_at(b, at, *id).is_some_and(|len| len <= MAX_RECORD as usize));
        if mode == RecoveryMode::Strict && (valid_follows || !newest) {
            return Expect::Fails(records);
        }
        return Expect::Records(records);
    }
    Expect::Records(records)
}

fn dir() -> PathBuf {
    PathBuf::from("/fuzz/wal")
}

fn opts(mode: RecoveryMode) -> WalOptions {
    WalOptions { max_record_bytes: MAX_RECORD, recovery: mode, ..WalOptions::new(dir()) }
}

fn fs_holding(files: &[(u64, Vec<u8>)]) -> SimFs {
    let fs = SimFs::new(1);
    fs.create_dir_all(&dir()).expect("dir");
    for (id, bytes) in files {
        fs.put(&dir().join(segment_name(*id)), bytes);
    }
    fs
}

type Replayed = Vec<(u64, Vec<u8>)>;

fn open(fs: &SimFs, mode: RecoveryMode) -> (Result<Wal, WalError>, Replayed, u64) {
    let mut seen = Vec::new();
    let result = Wal::open(opts(mode), Arc::new(fs.clone()), &mut |lsn, body| {
        seen.push((lsn, body.to_vec()));
        Ok(())
    });
    let truncated = result.as_ref().map_or(0, |(_, s)| s.truncated_bytes);
    (result.map(|(wal, _)| wal), seen, truncated)
}

const PROBE: &[u8] = b"appended after recovery";

/// The check. Panics on any disagreement.
// Verifies: PER-0003, PER-0005, PER-0014, PER-0015, PER-0016, PER-0029
pub fn check(data: &[u8]) {
    let mut input = parse(data);
    for (id, bytes) in &mut input.files {
        if input.repair {
            repair(*id, bytes);
        }
    }
    if let Some(at) = input.flip {
        let total: usize = input.files.iter().map(|(_, b)| b.len()).sum();
        if total > 0 {
            let mut at = at % total;
            for (_, bytes) in &mut input.files {
                if at < bytes.len() {
                    bytes[at] ^= 0x55;
                    break;
                }
                at -= bytes.len();
            }
        }
    }
    let input_bytes: usize = input.files.iter().map(|(_, b)| b.len()).sum();
    // Reading a file copies it; anything beyond that and one record is a length trusted.
    let alloc_bound = 2 * input_bytes + 2 * MAX_RECORD as usize + (64 << 10);

    for mode in [RecoveryMode::Strict, RecoveryMode::Truncate] {
        let fs = fs_holding(&input.files);
        let want = expect(&input.files, mode);
        let ((result, seen, _), peak) = peak_allocation(|| open(&fs, mode));
        assert!(peak <= alloc_bound, "{mode:?}: recovery allocated {peak} bytes at once");
        match (want, result) {
            (Expect::Records(want), Ok(wal)) => {
                assert_eq!(seen, want, "{mode:?}: replayed records differ");
                let ticket = wal.append(PROBE).expect("append after recovery");
                ticket.wait_blocking().expect("probe durable");
                wal.close().expect("close");
                let (again, seen2, truncated) = open(&fs, RecoveryMode::Strict);
                let again = again.unwrap_or_else(|e| panic!("{mode:?}: reopen failed: {e}"));
                let bodies: Vec<&[u8]> = seen2.iter().map(|(_, b)| b.as_slice()).collect();
                let mut expected: Vec<&[u8]> = want.iter().map(|(_, b)| b.as_slice()).collect();
                expected.push(PROBE);
                assert_eq!(bodies, expected, "{mode:?}: the reopened log differs");
                assert_eq!(truncated, 0, "{mode:?}: the reopen cut bytes again");
                let lsns: Vec<u64> = seen2.iter().map(|(l, _)| *l).collect();
                let last = lsns.len() - 1;
                assert!(lsns[last] > lsns[..last].iter().copied().max().unwrap_or(0));
                again.close().expect("close");
            }
            (Expect::Fails(want), Err(WalError::Corrupt { .. })) => {
                assert_eq!(seen, want, "{mode:?}: records replayed before the error differ");
            }
            (want, Ok(_)) => panic!("{mode:?}: open succeeded, expected {want:?}"),
            (want, Err(e)) => panic!("{mode:?}: open failed with {e}, expected {want:?}"),
        }
    }
}

/// Seed inputs: logs written by the real writer, then cut, torn, zero-filled and damaged.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let written = |n: usize, segment_bytes: u64| -> Vec<Vec<u8>> {
        let fs = SimFs::new(3);
        let o = WalOptions { segment_bytes, ..opts(RecoveryMode::Strict) };
        let (wal, _) = Wal::open(o, Arc::new(fs.clone()), &mut |_, _| Ok(())).expect("open");
        for i in 0..n {
            let body = format!("record {i} {}", "x".repeat(i * 7 % 90));
            wal.append(body.as_bytes()).expect("append").wait_blocking().expect("durable");
        }
        wal.close().expect("close");
        let mut names = fs.list(&dir()).expect("list");
        names.sort();
        names.iter().map(|n| fs.read(&dir().join(n)).expect("read").to_vec()).collect()
    };
    let one = written(12, 1 << 20);
    let multi = written(30, 512);
    let multi = multi[..multi.len().min(4)].to_vec();
    out.push(("empty-dir-file".into(), encode(false, None, &[Vec::new()])));
    out.push(("header-only".into(), encode(false, None, &[one[0][..HEADER].to_vec()])));
    out.push(("one-segment".into(), encode(false, None, &one)));
    out.push(("multi-segment".into(), encode(false, None, &multi)));
    let seg = &one[0];
    for cut in [HEADER - 1, HEADER + 3, seg.len() / 2, seg.len() - 1] {
        out.push((format!("torn-at-{cut}"), encode(false, None, &[seg[..cut].to_vec()])));
    }
    let mut zeroed = seg.clone();
    zeroed.extend(std::iter::repeat_n(0, 64));
    out.push(("zero-filled-tail".into(), encode(false, None, &[zeroed])));
    out.push(("flip-mid-log".into(), encode(false, Some(60), &one)));
    out.push(("flip-repaired".into(), encode(true, Some(50), &one)));
    out.push(("flip-sealed-segment".into(), encode(false, Some(45), &multi)));
    let mut long = seg.clone();
    long[HEADER..HEADER + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    out.push(("huge-length".into(), encode(false, None, &[long.clone()])));
    out.push(("huge-length-repaired".into(), encode(true, None, &[long])));
    let mut v1 = seg[..32].to_vec();
    v1[8..12].copy_from_slice(&1u32.to_le_bytes());
    let c = crc32fast::hash(&v1[..28]);
    v1[28..32].copy_from_slice(&c.to_le_bytes());
    out.push(("version-1-header".into(), encode(false, None, &[v1])));
    let mut v3 = seg.clone();
    v3[8..12].copy_from_slice(&3u32.to_le_bytes());
    let c = crc32fast::hash(&v3[..36]);
    v3[36..40].copy_from_slice(&c.to_le_bytes());
    out.push(("version-3-header".into(), encode(false, None, &[v3])));
    let mut torn_multi = multi.clone();
    let last = torn_multi.len() - 1;
    let keep = torn_multi[last].len() - 5;
    torn_multi[last].truncate(keep);
    out.push(("multi-torn-newest".into(), encode(false, None, &torn_multi)));
    out
}
