//! Segment files: how they are named, found and created.

use std::io;
use std::path::{Path, PathBuf};

use super::frame;
use super::fs::{FileSystem, WalFile};

/// File name extension of a segment.
pub const SEGMENT_EXT: &str = ".qlog";

/// A segment's file name: its id in 20 zero-padded decimal digits, so that names sort in
/// id order too.
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

/// The segments in `dir`, sorted by id.
pub fn list_segments(fs: &dyn FileSystem, dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut segments: Vec<(u64, PathBuf)> = fs
        .list(dir)?
        .into_iter()
        .filter_map(|name| parse_segment_name(&name).map(|id| (id, dir.join(name))))
        .collect();
    segments.sort_by_key(|(id, _)| *id);
    Ok(segments)
}

/// The segment the writer appends to.
pub struct ActiveSegment {
    pub id: u64,
    pub path: PathBuf,
    pub file: Box<dyn WalFile>,
    /// Bytes handed to the OS so far, header included.
    pub written: u64,
    /// Bytes whose records were acknowledged; on a failure the file is cut back to this.
    pub acked: u64,
}

impl ActiveSegment {
    /// Creates segment `id` with its header, durable before it returns: the file content is
    /// synced, then the directory, so that a crash never leaves a newer segment whose entry
    /// exists but whose header does not (that would look like damage, not a torn tail).
    pub fn create(fs: &dyn FileSystem, dir: &Path, id: u64) -> io::Result<ActiveSegment> {
        let path = dir.join(segment_name(id));
        let mut file = fs.create_new(&path)?;

        let result = file
            .append(&frame::encode_header(id))
            .and_then(|()| file.sync_data())
            .and_then(|()| fs.sync_dir(dir));
        if let Err(err) = result {
            drop(file);
            // Best effort: a half-made newest segment is also handled by recovery.
            let _ = fs.remove(&path);
            return Err(err);
        }

        let len = frame::HEADER_LEN as u64;
        Ok(ActiveSegment { id, path, file, written: len, acked: len })
    }

    /// Reopens an existing segment whose valid content is `len` bytes long.
    pub fn reopen(fs: &dyn FileSystem, id: u64, path: PathBuf, len: u64) -> io::Result<Self> {
        let file = fs.open_append(&path)?;
        Ok(ActiveSegment { id, path, file, written: len, acked: len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_id_and_parse_back() {
        assert_eq!(segment_name(1), "00000000000000000001.qlog");
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        assert!(segment_name(9) < segment_name(10));
        assert_eq!(parse_segment_name("00000000000000000001.qlog.tmp"), None);
        assert_eq!(parse_segment_name("1.qlog"), None);
        assert_eq!(parse_segment_name("0000000000000000000x.qlog"), None);
    }
}
