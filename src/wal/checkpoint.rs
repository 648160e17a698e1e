//! Checkpoint files: the live state of the engine as of some LSN, written beside the log so
//! that the segments before it can be deleted.
//!
//! A checkpoint is written under a temporary name, synced, renamed into place and the
//! directory synced; only then are the segments it covers and older checkpoints deleted.
//! A crash before the rename leaves the old checkpoint and segments in charge (the
//! temporary file is removed at the next open); a crash after it leaves the new checkpoint
//! in charge, and the next open deletes what it made obsolete. Either way the state is
//! exactly what it was.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::frame::{self, FrameError, FOOTER_LEN, HEADER_LEN};
use super::fs::{FileSystem, WalFile};
use super::segment::{checkpoint_name, checkpoint_temp_name, list_checkpoints, list_segments};
use super::writer::Shared;
use super::WalError;

/// Frames are gathered into appends of about this size.
const WRITE_CHUNK: usize = 1 << 20;

/// Sees each body of a checkpoint with the file offset it starts at.
pub type BodyVisit<'a> = dyn FnMut(u64, &[u8]) -> Result<(), String> + 'a;

/// What reading a checkpoint found.
pub struct Loaded {
    pub records: u64,
    pub last_lsn: u64,
}

/// Reads a whole checkpoint, passing every body, with its file offset, to `visit`.
/// Anything short of a valid header, valid frames and a valid footer at the very end is an
/// error: a checkpoint is only renamed into place once it is complete and synced, so
/// damage here is real.
/// Requirements: PER-0023
pub fn read(
    bytes: &[u8],
    id: u64,
    max_record_bytes: u32,
    path: &Path,
    visit: &mut BodyVisit<'_>,
) -> Result<Loaded, WalError> {
    let corrupt = |offset: usize, reason: String| WalError::Corrupt {
        file: path.to_path_buf(),
        offset: offset as u64,
        reason: format!("checkpoint: {reason}"),
    };
    match frame::decode_checkpoint_header(bytes) {
        Ok(header) if header.id == id => {}
        Ok(header) => return Err(corrupt(0, format!("header names {}", header.id))),
        Err(err) => return Err(corrupt(0, format!("bad header: {err:?}"))),
    }

    let key = frame::checkpoint_key(id);
    let mut offset = HEADER_LEN;
    let mut records = 0;
    loop {
        let rest = &bytes[offset..];
        if let Some((frames, last_lsn)) = frame::decode_footer(id, rest) {
            if frames != records {
                let reason = format!("footer counts {frames} records, the file holds {records}");
                return Err(corrupt(offset, reason));
            }
            return Ok(Loaded { records, last_lsn });
        }
        let (body, len) = match frame::decode_frame(rest, key, max_record_bytes) {
            Ok(found) => found,
            Err(FrameError::ShortHeader) if rest.len() < FOOTER_LEN => {
                return Err(corrupt(offset, "no footer: the file is incomplete".to_string()));
            }
            Err(err) => return Err(corrupt(offset, err.describe())),
        };
        let body_at = (offset + frame::FRAME_HEADER_LEN) as u64;
        visit(body_at, body)
            .map_err(|reason| corrupt(offset, format!("replay rejected it: {reason}")))?;
        records += 1;
        offset += len;
    }
}

/// What a committed checkpoint did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointReport {
    /// Bytes of the new checkpoint file.
    pub checkpoint_bytes: u64,
    /// Bytes of the segments and older checkpoints deleted.
    pub deleted_bytes: u64,
    pub segments_deleted: usize,
    /// Log bytes (segments and checkpoint) before the commit and after it.
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub took: Duration,
}

/// A checkpoint being written. Dropping it without [`CheckpointWriter::commit`] removes the
/// temporary file (best effort; the next open removes it otherwise).
/// Requirements: PER-0023
pub struct CheckpointWriter {
    fs: Arc<dyn FileSystem>,
    shared: Arc<Shared>,
    dir: PathBuf,
    id: u64,
    temp: PathBuf,
    file: Option<Box<dyn WalFile>>,
    buf: Vec<u8>,
    records: u64,
    bytes: u64,
    max_record_bytes: u32,
    started: Instant,
    renamed: bool,
}

impl CheckpointWriter {
    pub(super) fn create(
        fs: Arc<dyn FileSystem>,
        shared: Arc<Shared>,
        dir: PathBuf,
        covers_below: u64,
        first_lsn: u64,
    ) -> Result<CheckpointWriter, WalError> {
        // A second checkpoint under a live id would replace the file that addresses into
        // the first one point at (see `Locator::add_checkpoint`).
        if shared.locator.has_checkpoint(covers_below) {
            return Err(WalError::CheckpointExists(covers_below));
        }
        let temp = dir.join(checkpoint_temp_name(covers_below));
        // A leftover of a failed attempt in this process; a crash leftover is gone already.
        let _ = fs.remove(&temp);
        let file = fs.create_new(&temp)?;
        let mut buf = Vec::with_capacity(WRITE_CHUNK + 4096);
        buf.extend_from_slice(&frame::encode_checkpoint_header(covers_below, first_lsn));
        let max_record_bytes = shared.max_record_bytes;
        Ok(CheckpointWriter {
            fs,
            shared,
            dir,
            id: covers_below,
            temp,
            file: Some(file),
            buf,
            records: 0,
            bytes: 0,
            max_record_bytes,
            started: Instant::now(),
            renamed: false,
        })
    }

    /// Adds one record body; returns the file offset it starts at.
    pub fn append(&mut self, body: &[u8]) -> Result<u64, WalError> {
        if body.is_empty() {
            return Err(WalError::EmptyRecord);
        }
        if body.len() > self.max_record_bytes as usize {
            let max = self.max_record_bytes;
            return Err(WalError::RecordTooLarge { len: body.len(), max });
        }
        let at = self.buf.len();
        let body_at = self.bytes + (at + frame::FRAME_HEADER_LEN) as u64;
        frame::push_unsealed(&mut self.buf, body);
        frame::seal_frame(&mut self.buf[at..], frame::checkpoint_key(self.id));
        self.records += 1;
        if self.buf.len() >= WRITE_CHUNK {
            self.flush()?;
        }
        Ok(body_at)
    }

    /// The id of the checkpoint: addresses of bytes in it name this id.
    pub fn id(&self) -> u64 {
        self.id
    }

    fn flush(&mut self) -> Result<(), WalError> {
        let file = self.file.as_mut().ok_or(WalError::Closed)?;
        file.append(&self.buf)?;
        self.bytes += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Makes the checkpoint the log's starting point and deletes what it covers.
    /// `last_lsn` must be durable in the log already: the next open continues LSNs above it.
    ///
    /// Every step waits for the one before to be durable: footer, fdatasync, rename,
    /// directory sync; then the deletions and a second directory sync.
    /// Requirements: PER-0024
    pub fn commit(mut self, last_lsn: u64) -> Result<CheckpointReport, WalError> {
        let footer = frame::encode_footer(self.id, self.records, last_lsn);
        self.buf.extend_from_slice(&footer);
        self.flush()?;
        let mut file = self.file.take().ok_or(WalError::Closed)?;
        file.sync_data()?;
        drop(file);

        let stats = &self.shared.stats;
        let bytes_before = stats.bytes_on_disk.load(Ordering::Relaxed);
        let path = self.dir.join(checkpoint_name(self.id));
        // Readable before anything it replaces is deleted; a failure here deletes nothing.
        let reader = self.fs.open_read(&self.temp)?;
        self.fs.rename(&self.temp, &path)?;
        self.renamed = true;
        self.fs.sync_dir(&self.dir)?;
        self.shared.locator.add_checkpoint(self.id, reader)?;
        let old_checkpoint = stats.checkpoint_bytes.swap(self.bytes, Ordering::Relaxed);
        stats.bytes_on_disk.fetch_add(self.bytes, Ordering::Relaxed);

        // From here on a crash is harmless: the next open loads this checkpoint and deletes
        // whatever of the rest is still there.
        let mut deleted_bytes = 0;
        for (id, older) in list_checkpoints(&*self.fs, &self.dir)? {
            if id != self.id {
                self.fs.remove(&older)?;
            }
        }
        if old_checkpoint > 0 {
            deleted_bytes += old_checkpoint;
            stats.bytes_on_disk.fetch_sub(old_checkpoint, Ordering::Relaxed);
        }
        let mut segments_deleted = 0;
        for (id, segment) in list_segments(&*self.fs, &self.dir)? {
            if id >= self.id {
                break;
            }
            self.fs.remove(&segment)?;
            segments_deleted += 1;
            let len = stats.sealed.lock().remove(&id).unwrap_or(0);
            deleted_bytes += len;
            stats.bytes_on_disk.fetch_sub(len, Ordering::Relaxed);
            stats.segments.fetch_sub(1, Ordering::Relaxed);
        }
        self.fs.sync_dir(&self.dir)?;

        let took = self.started.elapsed();
        let reclaimed = deleted_bytes.saturating_sub(self.bytes);
        stats.compactions.fetch_add(1, Ordering::Relaxed);
        stats.compaction_micros_sum.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        stats.compaction_reclaimed.fetch_add(reclaimed, Ordering::Relaxed);
        Ok(CheckpointReport {
            checkpoint_bytes: self.bytes,
            deleted_bytes,
            segments_deleted,
            bytes_before,
            bytes_after: stats.bytes_on_disk.load(Ordering::Relaxed),
            took,
        })
    }
}

impl Drop for CheckpointWriter {
    fn drop(&mut self) {
        self.file = None;
        if !self.renamed {
            let _ = self.fs.remove(&self.temp);
        }
    }
}
