//! Startup: load the newest checkpoint, then replay every segment it does not cover, in
//! order; tell a torn tail (cut it, warn once) from real damage (stop, or keep the valid
//! prefix in truncate mode).

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::checkpoint;
use super::frame::{self, FrameError, HeaderError, FRAME_HEADER_LEN, HEADER_LEN, MAX_RECORD_BYTES};
use super::fs::FileSystem;
use super::locate::{BodyAt, Locator};
use super::segment::{is_checkpoint_temp, list_checkpoints, list_segments};
use super::{RecoveryMode, RecoverySummary, WalError, WalOptions};

/// The largest first LSN a segment header may give. A real log is nowhere near it; a
/// header above it (valid CRC, arbitrary bytes) would make LSN arithmetic overflow, so it
/// counts as damage, like first LSN 0 (found by the `wal_decode` fuzz target).
/// Requirements: PER-0002
pub(crate) const MAX_FIRST_LSN: u64 = 1 << 62;
/// The visitor recovery feeds: `(lsn, body)`, checkpoint bodies with
/// [`CHECKPOINT_LSN`](super::CHECKPOINT_LSN).
pub type Visit<'a> = dyn FnMut(u64, &[u8]) -> Result<(), String> + 'a;
/// The visitor that also learns where each body is, and may read (through the locator)
/// bytes of bodies visited before.
pub type AddressedVisit<'a> = dyn FnMut(BodyAt, &[u8], &Locator) -> Result<(), String> + 'a;

/// What recovery leaves for the writer.
pub struct Recovered {
    pub summary: RecoverySummary,
    /// The newest kept segment with a valid header.
    pub tail: Option<Tail>,
    /// Highest segment id ever seen, kept or not: new segments must go above it.
    pub max_id: u64,
    /// LSN of the last record recovered (or that a checkpoint reflects): appends continue
    /// above it.
    pub last_lsn: u64,
    /// Sealed segments kept: id -> bytes.
    pub sealed: Vec<(u64, u64)>,
    /// Bytes of the checkpoint loaded (0 when none).
    pub checkpoint_bytes: u64,
}

/// The newest segment, which the writer may reopen.
pub struct Tail {
    pub id: u64,
    pub path: PathBuf,
    pub first_lsn: u64,
    /// Valid length in bytes.
    pub len: u64,
    /// LSN its next record would get.
    pub next_lsn: u64,
}

/// The first LSN the next segment's header may give. Each segment starts where the one
/// before it ended; the first one after a checkpoint at or before the LSN after the last
/// the checkpoint reflects (the checkpoint may reflect records of that segment too), and
/// with no checkpoint, at 1. A gap means records are missing: a segment deleted or cut at
/// a record boundary, which no frame check sees.
/// Requirements: PER-0015
enum NextLsn {
    Exactly(u64),
    AtMost(u64),
}

impl NextLsn {
    /// Why a segment whose header gives `first` does not follow, if it does not.
    fn gap(&self, first: u64) -> Option<String> {
        match *self {
            NextLsn::Exactly(want) if first != want => Some(format!(
                "the segment starts at LSN {first} where the log before it ends at LSN {}: \
                 records are missing (a segment deleted or cut short)",
                want - 1
            )),
            NextLsn::AtMost(most) if first > most => Some(format!(
                "the segment starts at LSN {first} where the checkpoint ends at LSN {}: \
                 records are missing (a segment deleted or cut short)",
                most - 1
            )),
            _ => None,
        }
    }
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
    /// LSN of the first record, from the header (0 when the header is damaged).
    first_lsn: u64,
    damage: Option<Damage>,
}

/// Requirements: PER-0012, PER-0016
pub fn recover(
    fs: &dyn FileSystem,
    opts: &WalOptions,
    locator: &Locator,
    visit: &mut AddressedVisit<'_>,
) -> Result<Recovered, WalError> {
    let started = Instant::now();
    let mut summary = RecoverySummary::default();
    let loaded = load_checkpoint(fs, opts, locator, visit, &mut summary)?;
    let covers_below = loaded.map_or(0, |(id, _, _)| id);
    let mut last_lsn = loaded.map_or(0, |(_, lsn, _)| lsn);

    let all_segments = list_segments(fs, &opts.dir)?;
    // A checkpoint's segment id was created (and made durable) before the checkpoint, so new
    // segments go above it even if that segment was later cut away as a torn tail.
    let max_id = all_segments.last().map_or(0, |(id, _)| *id).max(covers_below.saturating_sub(1));
    let segments: Vec<(u64, PathBuf)> =
        all_segments.into_iter().filter(|(id, _)| *id >= covers_below).collect();
    let mut tail: Option<Tail> = None;
    let mut sealed = Vec::new();
    let mut next = match loaded {
        Some((_, lsn, _)) => NextLsn::AtMost(lsn + 1),
        None => NextLsn::Exactly(1),
    };

    for (index, (id, path)) in segments.iter().enumerate() {
        let newest = index + 1 == segments.len();
        let bytes = fs.read(path)?;
        let file = fs.open_read(path)?;
        let indexed = Indexed { locator, file };
        let scan = scan_segment(&bytes, *id, MAX_RECORD_BYTES, &next, path, &indexed, visit)?;
        next = NextLsn::Exactly(scan.first_lsn + scan.records);
        summary.records += scan.records;
        if scan.first_lsn > 0 {
            last_lsn = last_lsn.max(scan.first_lsn + scan.records - 1);
        }

        let Some(damage) = scan.damage else {
            summary.segments += 1;
            summary.bytes += scan.valid_len;
            if let Some(older) = tail.take() {
                sealed.push((older.id, older.len));
            }
            tail = Some(Tail {
                id: *id,
                path: path.clone(),
                first_lsn: scan.first_lsn,
                len: scan.valid_len,
                next_lsn: scan.first_lsn + scan.records,
            });
            continue;
        };

        let after = after_damage(&bytes, damage.offset + 1, *id, MAX_RECORD_BYTES);
        let torn_tail = newest && matches!(after, AfterDamage::Nothing);
        if !torn_tail && opts.recovery == RecoveryMode::Strict {
            let reason = match after {
                AfterDamage::Valid(at) => {
                    format!("{}; a valid record follows at offset {at}", damage.reason)
                }
                AfterDamage::Unsure => format!(
                    "{}; the search for a valid record after it gave up after hashing {} MiB \
                     (QRUSTY_RECOVERY=truncate keeps the records before it)",
                    damage.reason,
                    SEARCH_BUDGET_BYTES >> 20
                ),
                AfterDamage::Nothing => format!("{}; in a sealed segment", damage.reason),
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
        if !kept {
            locator.forget_segment(*id);
        }

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
            if let Some(older) = tail.take() {
                sealed.push((older.id, older.len));
            }
            tail = Some(Tail {
                id: *id,
                path: path.clone(),
                first_lsn: scan.first_lsn,
                len: damage.offset,
                next_lsn: scan.first_lsn + scan.records,
            });
        }
        break;
    }

    summary.millis = started.elapsed().as_millis() as u64;
    let checkpoint_bytes = summary.checkpoint_bytes;
    Ok(Recovered { summary, tail, max_id, last_lsn, sealed, checkpoint_bytes })
}

/// Loads the newest checkpoint, if any, through `visit`, then removes what it makes
/// obsolete: half-written checkpoints, older checkpoints and the segments it covers (all
/// left behind by a crash during compaction). Returns its id, the last LSN it reflects and
/// its size.
/// Requirements: PER-0024
fn load_checkpoint(
    fs: &dyn FileSystem,
    opts: &WalOptions,
    locator: &Locator,
    visit: &mut AddressedVisit<'_>,
    summary: &mut RecoverySummary,
) -> Result<Option<(u64, u64, u64)>, WalError> {
    let dir = &opts.dir;
    let mut removed = false;
    for name in fs.list(dir)? {
        if is_checkpoint_temp(&name) {
            fs.remove(&dir.join(name))?;
            removed = true;
        }
    }

    let mut checkpoints = list_checkpoints(fs, dir)?;
    let Some((id, path)) = checkpoints.pop() else {
        if removed {
            fs.sync_dir(dir)?;
        }
        return Ok(None);
    };
    // Limitation: a damaged newest checkpoint fails the open in every recovery mode. The
    // segments it covered are gone, so there is no valid prefix to fall back to.
    let bytes = fs.read(&path)?;
    locator.add_checkpoint(id, fs.open_read(&path)?)?;
    let loaded = checkpoint::read(&bytes, id, MAX_RECORD_BYTES, &path, &mut |offset, body| {
        visit(BodyAt::Checkpoint { id, offset }, body, locator)
    })?;
    summary.checkpoint_records = loaded.records;
    summary.checkpoint_bytes = bytes.len() as u64;

    for (_, older) in checkpoints {
        fs.remove(&older)?;
        removed = true;
    }
    for (segment, seg_path) in list_segments(fs, dir)? {
        if segment < id {
            fs.remove(&seg_path)?;
            removed = true;
        }
    }
    if removed {
        fs.sync_dir(dir)?;
    }
    Ok(Some((id, loaded.last_lsn, bytes.len() as u64)))
}

/// Where recovery notes the body offsets of a segment it replays, and its read handle.
struct Indexed<'a> {
    locator: &'a Locator,
    file: std::sync::Arc<dyn super::fs::ReadAt>,
}

/// Replays the valid frames of one segment through `visit`, stopping at the first damage.
/// Each body is indexed before it is visited, so the visitor may read back into it.
/// Requirements: PER-0014, PER-0015, SYS-0034
fn scan_segment(
    bytes: &[u8],
    id: u64,
    max_record_bytes: u32,
    next: &NextLsn,
    path: &Path,
    indexed: &Indexed<'_>,
    visit: &mut AddressedVisit<'_>,
) -> Result<Scan, WalError> {
    let mut first_lsn = 0;
    let header_damage = match frame::decode_header(bytes) {
        // A gap is damage before the segment's first record: none of its records is
        // replayed, as none after a damaged record is (and `first_lsn` stays 0).
        Ok(header) if header.id == id && (1..=MAX_FIRST_LSN).contains(&header.first_lsn) => {
            let gap = next.gap(header.first_lsn);
            if gap.is_none() {
                first_lsn = header.first_lsn;
            }
            gap
        }
        Ok(header) if header.id == id => {
            Some(format!("header gives first LSN {}, outside 1..=2^62", header.first_lsn))
        }
        Ok(header) => Some(format!("header names segment {}, file name says {id}", header.id)),
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
        return Ok(Scan { valid_len: 0, records: 0, first_lsn, damage });
    }

    indexed.locator.add_segment(id, first_lsn, indexed.file.clone());
    let mut offset = HEADER_LEN;
    let mut records = 0;
    while offset < bytes.len() {
        match frame::decode_frame(&bytes[offset..], id, max_record_bytes) {
            Ok((body, len)) => {
                let lsn = first_lsn + records;
                let body_at = (offset + FRAME_HEADER_LEN) as u64;
                let at = match indexed.locator.push_bodies(id, [body_at]) {
                    true => BodyAt::Record(lsn),
                    false => BodyAt::Unaddressable(lsn),
                };
                visit(at, body, indexed.locator).map_err(|reason| WalError::Corrupt {
                    file: path.to_path_buf(),
                    offset: offset as u64,
                    reason: format!("replay rejected the record: {reason}"),
                })?;
                records += 1;
                offset += len;
            }
            Err(FrameError::TooLong(len)) if whole_valid_frame(&bytes[offset..], id, len) => {
                // A real record above the format's maximum (written by a build that allowed
                // more): not damage, and cutting it as a torn tail would lose it.
                let reason = format!("record of {len} bytes is above max_record_bytes");
                return Err(WalError::Corrupt {
                    file: path.to_path_buf(),
                    offset: offset as u64,
                    reason,
                });
            }
            Err(err) => {
                let damage = Some(Damage { offset: offset as u64, reason: err.describe() });
                return Ok(Scan { valid_len: offset as u64, records, first_lsn, damage });
            }
        }
    }
    Ok(Scan { valid_len: offset as u64, records, first_lsn, damage: None })
}

/// True when `bytes` starts with a whole frame of body length `len` whose CRC matches. Reads
/// only what is already in the file, so a damaged length costs no allocation.
fn whole_valid_frame(bytes: &[u8], id: u64, len: u32) -> bool {
    let end = FRAME_HEADER_LEN + len as usize;
    let Some(body) = bytes.get(FRAME_HEADER_LEN..end) else { return false };
    frame::frame_crc(id, body).to_le_bytes() == bytes[4..8]
}

/// Bytes the search for a valid record after damage may hash before it gives up. Each
/// offset whose first bytes read as a length that fits may hash that many bytes, so a long
/// damaged region whose bytes read as plausible lengths (tens of megabytes of noise) would
/// otherwise keep the start busy for hours.
pub(crate) const SEARCH_BUDGET_BYTES: u64 = 256 << 20;

/// What follows damage in a segment.
enum AfterDamage {
    /// A frame that validates, at this offset: the damage is in mid-log.
    Valid(u64),
    /// Nothing that validates: in the newest segment, a torn tail.
    Nothing,
    /// The search spent `SEARCH_BUDGET_BYTES` first: a valid record may follow.
    Unsure,
}

/// Looks for the first frame at or after `from` that validates. This is what tells a torn
/// tail (nothing valid after the damage) from a damaged record in mid-log.
/// Requirements: PER-0014, PER-0015
fn after_damage(bytes: &[u8], from: u64, id: u64, max_record_bytes: u32) -> AfterDamage {
    let Some(last) = bytes.len().checked_sub(FRAME_HEADER_LEN + 1) else {
        return AfterDamage::Nothing;
    };
    let mut budget = SEARCH_BUDGET_BYTES;
    for at in from as usize..=last {
        let rest = &bytes[at..];
        // What `decode_frame` will hash: a length that is in range and fits in the file.
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
        let fits =
            len != 0 && len <= max_record_bytes && len as usize <= rest.len() - FRAME_HEADER_LEN;
        let hashed = if fits { u64::from(len) } else { 0 };
        if hashed > budget {
            return AfterDamage::Unsure;
        }
        budget -= hashed;
        if frame::decode_frame(rest, id, max_record_bytes).is_ok() {
            return AfterDamage::Valid(at as u64);
        }
    }
    AfterDamage::Nothing
}

/// Cuts a segment at `offset`, durably. A segment left without a whole header is removed
/// instead. Returns whether the file is kept.
/// Requirements: PER-0014
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
