//! Helpers shared by the `wal_*` test files.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use qrusty::wal::frame::{decode_frame, HEADER_LEN};
use qrusty::wal::segment::list_segments;
use qrusty::wal::{
    FileSystem, FsyncPolicy, RecoveryMode, RecoverySummary, SimFs, Wal, WalError, WalOptions,
};

pub fn dir() -> PathBuf {
    PathBuf::from("/data/wal")
}

/// Small segments, so a few hundred records span several.
pub fn small_opts() -> WalOptions {
    WalOptions { segment_bytes: 2048, max_record_bytes: 4096, ..WalOptions::new(dir()) }
}

pub fn truncating(opts: &WalOptions) -> WalOptions {
    WalOptions { recovery: RecoveryMode::Truncate, ..opts.clone() }
}

pub fn with_policy(opts: &WalOptions, fsync: FsyncPolicy) -> WalOptions {
    WalOptions { fsync, ..opts.clone() }
}

/// Record `i`: its number plus a filler of varying length, so frames differ in size.
pub fn record(i: usize) -> Vec<u8> {
    let mut body = format!("record-{i}:").into_bytes();
    body.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, i % 41));
    body
}

pub fn records(range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    range.map(record).collect()
}

/// Opens the log and returns it with every record body replayed.
pub fn open(
    fs: &SimFs,
    opts: &WalOptions,
) -> Result<(Wal, Vec<Vec<u8>>, RecoverySummary), WalError> {
    let mut seen = Vec::new();
    let (wal, summary) = Wal::open(opts.clone(), Arc::new(fs.clone()), &mut |_lsn, body| {
        seen.push(body.to_vec());
        Ok(())
    })?;
    Ok((wal, seen, summary))
}

/// Opens, checks nothing, closes: the records a start would see.
pub fn replay(fs: &SimFs, opts: &WalOptions) -> Result<Vec<Vec<u8>>, WalError> {
    let (wal, seen, _) = open(fs, opts)?;
    wal.close()?;
    Ok(seen)
}

/// Appends every body and waits until each is durable.
pub fn append_all(wal: &Wal, bodies: &[Vec<u8>]) {
    let tickets: Vec<_> = bodies.iter().map(|b| wal.append(b).expect("append")).collect();
    for ticket in tickets {
        ticket.wait_blocking().expect("durable");
    }
}

/// A log holding `bodies`, written through a fresh SimFs and closed.
pub fn written_log(opts: &WalOptions, bodies: &[Vec<u8>]) -> SimFs {
    let fs = SimFs::new(7);
    let (wal, seen, _) = open(&fs, opts).expect("open empty");
    assert!(seen.is_empty());
    append_all(&wal, bodies);
    wal.close().expect("close");
    fs
}

/// The segment files of a log: path and content, in id order.
pub fn segment_files(fs: &SimFs, dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    list_segments(fs, dir)
        .expect("list")
        .into_iter()
        .map(|(_, path)| {
            let bytes = fs.read(&path).expect("read").to_vec();
            (path, bytes)
        })
        .collect()
}

/// Start offsets of the frames of a segment, plus its end.
pub fn frame_offsets(bytes: &[u8], segment_id: u64) -> Vec<usize> {
    let mut offsets = vec![HEADER_LEN];
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        let (_, len) = decode_frame(&bytes[at..], segment_id, u32::MAX).expect("valid frame");
        at += len;
        offsets.push(at);
    }
    offsets
}

/// A fresh SimFs holding exactly `files`.
pub fn fs_with(files: &[(PathBuf, Vec<u8>)]) -> SimFs {
    let fs = SimFs::new(11);
    fs.create_dir_all(&dir()).unwrap();
    for (path, bytes) in files {
        fs.put(path, bytes);
    }
    fs
}

/// Runs `f` with this thread's tracing output captured; returns what it logged.
pub fn capture_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || SharedWriter(sink.clone()))
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buffer.lock().clone()).expect("utf-8 logs");
    (out, text)
}

struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
