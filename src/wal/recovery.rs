//! Startup: replay every segment in order, tell a torn tail (cut it, warn once) from real
//! damage (stop, or keep the valid prefix in truncate mode).

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::frame::{self, FrameError, HeaderError, FRAME_HEADER_LEN, HEADER_LEN};
use super::fs::FileSystem;
use super::segment::list_segments;
use super::{RecoveryMode, RecoverySummary, WalError, WalOptions};

/// What recovery leaves for the writer.
pub struct Recovered {
    pub summary: RecoverySummary,
    /// The newest kept segment with a valid header: id, path, valid length.
    pub tail: Option<(u64, PathBuf, u64)>,
    /// Highest segment id ever seen, kept or not: new segments must go above it.
    pub max_id: u64,
}

/// Where and why a segment stops being valid.
struct Damage {
    offset: u64,
    reason: String,
}

/// What a scan of one segment found.
struct Scan {
    /// Length of the valid part (the whole file when there is no damage).
    valid_len: u64,
    records: u64,
    damage: Option<Damage>,
}

pub fn recover(
    fs: &dyn FileSystem,
    opts: &WalOptions,
    visit: &mut dyn FnMut(&[u8]) -> Result<(), String>,
) -> Result<Recovered, WalError> {
    let started = Instant::now();
    let segments = list_segments(fs, &opts.dir)?;
    let max_id = segments.last().map_or(0, |(id, _)| *id);
    let mut summary = RecoverySummary::default();
    let mut tail = None;

    for (index, (id, path)) in segments.iter().enumerate() {
        let newest = index + 1 == segments.len();
        let bytes = fs.read(path)?;
        let scan = scan_segment(&bytes, *id, opts.max_record_bytes, path, visit)?;
        summary.records += scan.records;

        let Some(damage) = scan.damage else {
            summary.segments += 1;
            summary.bytes += scan.valid_len;
            tail = Some((*id, path.clone(), scan.valid_len));
            continue;
        };

        let valid_follows = next_valid_frame(&bytes, damage.offset + 1, *id, opts.max_record_bytes);
        let torn_tail = newest && valid_follows.is_none();
        if !torn_tail && opts.recovery == RecoveryMode::Strict {
            let reason = match valid_follows {
                Some(at) => format!("{}; a valid record follows at offset {at}", damage.reason),
                None => format!("{}; in a sealed segment", damage.reason),
            };
            return Err(WalError::Corrupt { file: path.clone(), offset: damage.offset, reason });
        }

        // Later segments go first, newest first: a crash half-way must never leave a cut
        // segment followed by records that were after the damage.
        let mut dropped = bytes.len() as u64 - damage.offset;
        drop(bytes);
        for (_, later) in segments[index + 1..].iter().rev() {
            dropped += fs.read(later)?.len() as u64;
            fs.remove(later)?;
        }
        if index + 1 < segments.len() {
            fs.sync_dir(&opts.dir)?;
        }
        let kept = cut_segment(fs, &opts.dir, path, damage.offset)?;

        if torn_tail {
            tracing::warn!(
                file = %path.display(),
                offset = damage.offset,
                dropped_bytes = dropped,
                reason = %damage.reason,
                "cut the torn tail of the newest log segment"
            );
        } else {
            tracing::warn!(
                file = %path.display(),
                offset = damage.offset,
                dropped_bytes = dropped,
                reason = %damage.reason,
                "damaged log: kept the valid prefix and dropped the rest (recovery = truncate)"
            );
        }
        summary.truncated_bytes = dropped;
        if kept {
            summary.segments += 1;
            summary.bytes += damage.offset;
            tail = Some((*id, path.clone(), damage.offset));
        }
        break;
    }

    summary.millis = started.elapsed().as_millis() as u64;
    Ok(Recovered { summary, tail, max_id })
}

/// Replays the valid frames of one segment through `visit`, stopping at the first damage.
fn scan_segment(
    bytes: &[u8],
    id: u64,
    max_record_bytes: u32,
    path: &Path,
    visit: &mut dyn FnMut(&[u8]) -> Result<(), String>,
) -> Result<Scan, WalError> {
    let header_damage = match frame::decode_header(bytes) {
        Ok(named) if named == id => None,
        Ok(named) => Some(format!("header names segment {named}, file name says {id}")),
        Err(HeaderError::Short) => Some("incomplete segment header".to_string()),
        Err(HeaderError::Invalid) => Some("invalid segment header".to_string()),
        // A header that validates but that this build cannot read is a newer log, not
        // damage: cutting it would destroy it, whatever the recovery mode.
        Err(HeaderError::Version(version)) => {
            let reason = format!("unsupported log format version {version}");
            return Err(WalError::Corrupt { file: path.to_path_buf(), offset: 8, reason });
        }
        Err(HeaderError::UnknownFlags) => {
            let reason = "segment header sets flags this version does not know".to_string();
            return Err(WalError::Corrupt { file: path.to_path_buf(), offset: 12, reason });
        }
    };
    if let Some(reason) = header_damage {
        let damage = Some(Damage { offset: 0, reason });
        return Ok(Scan { valid_len: 0, records: 0, damage });
    }

    let mut offset = HEADER_LEN;
    let mut records = 0;
    while offset < bytes.len() {
        match frame::decode_frame(&bytes[offset..], id, max_record_bytes) {
            Ok((body, len)) => {
                visit(body).map_err(|reason| WalError::Corrupt {
                    file: path.to_path_buf(),
                    offset: offset as u64,
                    reason: format!("replay rejected the record: {reason}"),
                })?;
                records += 1;
                offset += len;
            }
            Err(FrameError::TooLong(len)) if whole_valid_frame(&bytes[offset..], id, len) => {
                // A real record above today's limit (the limit was lowered): not damage, and
                // cutting it as a torn tail would lose it.
                let reason = format!("record of {len} bytes is above max_record_bytes");
                return Err(WalError::Corrupt {
                    file: path.to_path_buf(),
                    offset: offset as u64,
                    reason,
                });
            }
            Err(err) => {
                let damage = Some(Damage { offset: offset as u64, reason: err.describe() });
                return Ok(Scan { valid_len: offset as u64, records, damage });
            }
        }
    }
    Ok(Scan { valid_len: offset as u64, records, damage: None })
}

/// True when `bytes` starts with a whole frame of body length `len` whose CRC matches. Reads
/// only what is already in the file, so a damaged length costs no allocation.
fn whole_valid_frame(bytes: &[u8], id: u64, len: u32) -> bool {
    let end = FRAME_HEADER_LEN + len as usize;
    let Some(body) = bytes.get(FRAME_HEADER_LEN..end) else { return false };
    frame::frame_crc(id, body).to_le_bytes() == bytes[4..8]
}

/// The offset of the first frame at or after `from` that validates, if any. This is what
/// tells a torn tail (nothing valid after the damage) from a damaged record in mid-log.
// Limitation: each candidate offset may hash up to max_record_bytes, so a long damaged
// tail whose bytes read as plausible lengths costs time quadratic in its size.
fn next_valid_frame(bytes: &[u8], from: u64, id: u64, max_record_bytes: u32) -> Option<u64> {
    let from = from as usize;
    let last = bytes.len().checked_sub(FRAME_HEADER_LEN + 1)?;
    (from..=last)
        .find(|&at| frame::decode_frame(&bytes[at..], id, max_record_bytes).is_ok())
        .map(|at| at as u64)
}

/// Cuts a segment at `offset`, durably. A segment left without a whole header is removed
/// instead. Returns whether the file is kept.
fn cut_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    path: &Path,
    offset: u64,
) -> Result<bool, WalError> {
    if offset < HEADER_LEN as u64 {
        fs.remove(path)?;
        fs.sync_dir(dir)?;
        return Ok(false);
    }
    let mut file = fs.open_append(path)?;
    file.set_len(offset)?;
    file.sync_data()?;
    Ok(true)
}
