//! Segment files: how they are named, found and created.

use std::io;
use std::path::{Path, PathBuf};

use super::frame;
use super::fs::{FileSystem, WalFile};

/// File name extension of a segment.
pub const SEGMENT_EXT: &str = ".qlog";

/// File name extension of a checkpoint.
pub const CHECKPOINT_EXT: &str = ".qckpt";
/// Suffix of a checkpoint still being written; such a file is never read, only removed.
pub const TEMP_SUFFIX: &str = ".tmp";

/// A segment's file name: its id in 20 zero-padded decimal digits, so that names sort in
/// id order too.
/// Requirements: PER-0001
pub fn segment_name(id: u64) -> String {
    format!("{id:020}{SEGMENT_EXT}")
}

/// The id a segment file name carries, or `None` for any other file.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_EXT)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A checkpoint's file name: the id of the first segment it does not cover, like a segment
/// name but with its own extension.
pub fn checkpoint_name(id: u64) -> String {
    format!("{id:020}{CHECKPOINT_EXT}")
}

/// The name a checkpoint is written under before its atomic rename.
pub fn checkpoint_temp_name(id: u64) -> String {
    format!("{}{TEMP_SUFFIX}", checkpoint_name(id))
}

/// The id a checkpoint file name carries, or `None` for any other file.
pub fn parse_checkpoint_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(CHECKPOINT_EXT)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// True for a checkpoint left half-written by a crash.
pub fn is_checkpoint_temp(name: &str) -> bool {
    name.strip_suffix(TEMP_SUFFIX).and_then(parse_checkpoint_name).is_some()
}

fn list_by(
    fs: &dyn FileSystem,
    dir: &Path,
    parse: fn(&str) -> Option<u64>,
) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found: Vec<(u64, PathBuf)> = fs
        .list(dir)?
        .into_iter()
        .filter_map(|name| parse(&name).map(|id| (id, dir.join(name))))
        .collect();
    found.sort_by_key(|(id, _)| *id);
    Ok(found)
}

/// The segments in `dir`, sorted by id.
pub fn list_segments(fs: &dyn FileSystem, dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    list_by(fs, dir, parse_segment_name)
}

/// The (complete, renamed) checkpoints in `dir`, sorted by id.
pub fn list_checkpoints(fs: &dyn FileSystem, dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    list_by(fs, dir, parse_checkpoint_name)
}

/// The segment the writer appends to.
pub struct ActiveSegment {
    pub id: u64,
    pub path: PathBuf,
    pub file: Box<dyn WalFile>,
    /// LSN of the first record that went (or goes) into this segment.
    pub first_lsn: u64,
    /// Bytes handed to the OS so far, header included.
    pub written: u64,
    /// Bytes whose records were acknowledged; on a failure the file is cut back to this.
    pub acked: u64,
    /// Length of the file: `written` plus the zeros preallocated after it.
    pub allocated: u64,
}

impl ActiveSegment {
    /// Creates segment `id` with its header, durable before it returns: the file content is
    /// synced, then the directory, so that a crash never leaves a newer segment whose entry
    /// exists but whose header does not (that would look like damage, not a torn tail).
    /// Requirements: PER-0011
    pub fn create(
        fs: &dyn FileSystem,
        dir: &Path,
        id: u64,
        first_lsn: u64,
    ) -> io::Result<ActiveSegment> {
        let path = dir.join(segment_name(id));
        let mut file = fs.create_new(&path)?;

        let result = file
            .append(&frame::encode_header(id, first_lsn))
            .and_then(|()| file.sync_data())
            .and_then(|()| fs.sync_dir(dir));
        if let Err(err) = result {
            drop(file);
            // Best effort: a half-made newest segment is also handled by recovery.
            let _ = fs.remove(&path);
            return Err(err);
        }

        let len = frame::HEADER_LEN as u64;
        Ok(ActiveSegment { id, path, file, first_lsn, written: len, acked: len, allocated: len })
    }

    /// Reopens an existing segment whose valid content is `len` bytes long.
    pub fn reopen(
        fs: &dyn FileSystem,
        id: u64,
        path: PathBuf,
        first_lsn: u64,
        len: u64,
    ) -> io::Result<Self> {
        let file = fs.open_append(&path)?;
        Ok(ActiveSegment { id, path, file, first_lsn, written: len, acked: len, allocated: len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Verifies: PER-0001
    #[test]
    fn names_sort_by_id_and_parse_back() {
        assert_eq!(segment_name(1), "00000000000000000001.qlog");
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        assert!(segment_name(9) < segment_name(10));
        assert_eq!(parse_segment_name("00000000000000000001.qlog.tmp"), None);
        assert_eq!(parse_segment_name("1.qlog"), None);
        assert_eq!(parse_segment_name("0000000000000000000x.qlog"), None);
        assert_eq!(parse_checkpoint_name(&checkpoint_name(42)), Some(42));
        assert_eq!(parse_segment_name(&checkpoint_name(42)), None);
        assert!(is_checkpoint_temp(&checkpoint_temp_name(42)));
        assert!(!is_checkpoint_temp(&checkpoint_name(42)));
    }
}
