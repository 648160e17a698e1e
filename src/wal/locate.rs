//! Reading bytes back out of the log: where each record body of a live segment starts,
//! and a read handle of every live segment and checkpoint file.
//!
//! A frame's position in its segment is only decided when the writer writes it, so bytes
//! of a log record are addressed by the record's LSN and an offset inside its body; the
//! writer (and recovery, as it replays) notes each body's file offset here. Checkpoint
//! bodies have no LSN, so bytes in a checkpoint are addressed by the checkpoint's id and a
//! file offset. Entries of deleted files stay until [`Locator::forget_below`]: their read
//! handles keep the files readable (an unlinked file lives on while it is open) until
//! whoever holds addresses into them has moved them elsewhere.
//!
//! Requirements: SYS-0034

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;

use super::fs::ReadAt;
use super::{frame, WalError};

/// Set in [`LogLoc`]'s key when it names a checkpoint rather than a log record; LSNs stay
/// below it (recovery refuses a log starting above 2^62).
const CHECKPOINT_BIT: u64 = 1 << 63;

/// Bits of [`LogLoc`]'s `span` that hold the length, below the offset's low 40 bits.
const LEN_BITS: u32 = 24;
const OFF_BITS: u32 = 64 - LEN_BITS;
/// A checkpoint's key holds its id in the low 32 bits and, above them, the bits of the
/// offset that `span` has no room for.
const ID_BITS: u32 = 32;

/// Where some bytes of the log live: inside the body of a log record, or in a checkpoint
/// file. 16 bytes, which keeps a queued message whose payload is in the log within 88: the
/// length (below 16 MiB) shares a word with the offset (below 2^40, ample inside one record
/// body; a checkpoint offset puts its higher bits beside the checkpoint id).
// Limitation: a payload of 16 MiB or more (possible only with `QRUSTY_MAX_PAYLOAD_BYTES` and
// `QRUSTY_MAX_BODY_BYTES` raised past it) has no address, so it stays in RAM. Nor have
// payloads in a checkpoint whose id (a segment id) reaches 2^32: compaction then fails.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LogLoc {
    /// The record's LSN; or `CHECKPOINT_BIT` | the offset's high bits << `ID_BITS` | the
    /// checkpoint's id.
    key: u64,
    /// The offset's low `OFF_BITS` bits << `LEN_BITS` | the length.
    span: u64,
}

impl LogLoc {
    /// Bytes an address can cover: a longer run has none.
    pub const MAX_LEN: usize = (1 << LEN_BITS) - 1;

    fn span(off: u64, len: u32) -> Option<u64> {
        let low = off & ((1 << OFF_BITS) - 1);
        (len as usize <= LogLoc::MAX_LEN).then_some(low << LEN_BITS | u64::from(len))
    }

    /// `len` bytes at `off` inside the body of the log record `lsn`; `None` when `len` is
    /// above [`LogLoc::MAX_LEN`], `off` reaches 2^40 (a record body is at most 1 GiB) or
    /// `lsn` has `CHECKPOINT_BIT` set.
    pub fn in_record(lsn: u64, off: u64, len: u32) -> Option<LogLoc> {
        let fits = off >> OFF_BITS == 0 && lsn & CHECKPOINT_BIT == 0;
        let span = LogLoc::span(off, len).filter(|_| fits)?;
        Some(LogLoc { key: lsn, span })
    }

    /// `len` bytes at file offset `off` of checkpoint `id`; `None` when `len` is above
    /// [`LogLoc::MAX_LEN`] or `id` reaches 2^32.
    pub fn in_checkpoint(id: u64, off: u64, len: u32) -> Option<LogLoc> {
        let high = off >> OFF_BITS;
        // 64 - 40 = 24 high bits fit in the 31 between the id and the flag.
        let key = CHECKPOINT_BIT | high << ID_BITS | id;
        let span = LogLoc::span(off, len).filter(|_| id >> ID_BITS == 0)?;
        Some(LogLoc { key, span })
    }

    pub fn len(&self) -> usize {
        (self.span & LogLoc::MAX_LEN as u64) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn off(&self) -> u64 {
        let low = self.span >> LEN_BITS;
        match self.lsn() {
            Some(_) => low,
            None => ((self.key & !CHECKPOINT_BIT) >> ID_BITS) << OFF_BITS | low,
        }
    }

    /// The checkpoint holding the bytes; `None` for a log record.
    fn checkpoint(&self) -> Option<u64> {
        self.lsn().is_none().then_some(self.key & ((1 << ID_BITS) - 1))
    }

    /// The LSN of the record holding the bytes; `None` for a checkpoint.
    pub fn lsn(&self) -> Option<u64> {
        (self.key & CHECKPOINT_BIT == 0).then_some(self.key)
    }
}

impl std::fmt::Debug for LogLoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("LogLoc");
        match self.lsn() {
            Some(lsn) => d.field("lsn", &lsn),
            None => d.field("checkpoint", &self.checkpoint().unwrap_or_default()),
        };
        d.field("off", &self.off()).field("len", &self.len()).finish()
    }
}

/// Where recovery found a body, for a visitor that wants to address bytes inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyAt {
    /// A log record, addressable by its LSN.
    Record(u64),
    /// A body of checkpoint `id` starting at file offset `offset`.
    Checkpoint { id: u64, offset: u64 },
    /// A log record whose body offset does not fit the index (a segment written with a
    /// segment size above 2 GiB): its bytes cannot be addressed.
    Unaddressable(u64),
}

impl BodyAt {
    /// The LSN recovery's plain visitor gets: [`super::CHECKPOINT_LSN`] for checkpoints.
    pub fn lsn(&self) -> u64 {
        match self {
            BodyAt::Record(lsn) | BodyAt::Unaddressable(lsn) => *lsn,
            BodyAt::Checkpoint { .. } => super::CHECKPOINT_LSN,
        }
    }

    /// The address of `len` bytes at `off` inside this body, when it has one.
    pub fn loc(&self, off: u64, len: u32) -> Option<LogLoc> {
        match *self {
            BodyAt::Record(lsn) => LogLoc::in_record(lsn, off, len),
            BodyAt::Checkpoint { id, offset } => {
                LogLoc::in_checkpoint(id, offset.checked_add(off)?, len)
            }
            BodyAt::Unaddressable(_) => None,
        }
    }
}

/// Marks a body whose offset does not fit in the index.
const NO_OFFSET: u32 = u32::MAX;

struct SegmentIndex {
    id: u64,
    file: Arc<dyn ReadAt>,
    /// File offset of the body of record `first_lsn + i`.
    bodies: Vec<u32>,
}

/// The index and read handles of the live files.
#[derive(Default)]
pub struct Locator {
    /// By (first LSN, segment id): an empty segment may share its first LSN with the next.
    segments: RwLock<BTreeMap<(u64, u64), SegmentIndex>>,
    checkpoints: RwLock<BTreeMap<u64, Arc<dyn ReadAt>>>,
}

impl Locator {
    /// Starts indexing segment `id`, whose first record is `first_lsn`. Every older
    /// segment is sealed by then (only the newest is appended to): their handles give up
    /// their file descriptors, so reads hold one descriptor, the active segment's, outside
    /// the open-file budget of the connection limit.
    // Limitation: each sealed segment and checkpoint holds a memory map instead, counted
    // against the kernel's limit of maps per process (vm.max_map_count, 65530 by default).
    pub(crate) fn add_segment(&self, id: u64, first_lsn: u64, file: Arc<dyn ReadAt>) {
        let mut segments = self.segments.write();
        for older in segments.values().filter(|s| s.id < id) {
            older.file.seal();
        }
        let index = SegmentIndex { id, file, bodies: Vec::new() };
        segments.insert((first_lsn, id), index);
    }

    /// Notes the body offsets of the next records of segment `id`, in LSN order. Returns
    /// false when one does not fit (it is then unaddressable).
    pub(crate) fn push_bodies(&self, id: u64, offsets: impl IntoIterator<Item = u64>) -> bool {
        let mut segments = self.segments.write();
        let Some(index) = segments.values_mut().rev().find(|s| s.id == id) else {
            return false;
        };
        let mut fits = true;
        for off in offsets {
            let off = u32::try_from(off).ok().filter(|o| *o != NO_OFFSET);
            fits &= off.is_some();
            index.bodies.push(off.unwrap_or(NO_OFFSET));
        }
        fits
    }

    /// Makes checkpoint `id` readable. Refuses an id that is live already: addresses
    /// (id, offset) into it were taken against its layout, and a new file under the same
    /// id would answer them with other bytes.
    pub(crate) fn add_checkpoint(&self, id: u64, file: Arc<dyn ReadAt>) -> Result<(), WalError> {
        let mut checkpoints = self.checkpoints.write();
        if checkpoints.contains_key(&id) {
            return Err(WalError::CheckpointExists(id));
        }
        // A checkpoint is complete before it is made readable.
        file.seal();
        checkpoints.insert(id, file);
        Ok(())
    }

    /// True while checkpoint `id` is readable.
    pub(crate) fn has_checkpoint(&self, id: u64) -> bool {
        self.checkpoints.read().contains_key(&id)
    }

    /// Drops the entries of segments below `id` and of checkpoints below it: nothing
    /// addresses them any more.
    pub(crate) fn forget_below(&self, id: u64) {
        self.segments.write().retain(|_, s| s.id >= id);
        self.checkpoints.write().retain(|c, _| *c >= id);
    }

    /// Drops segment `id` (cut away by recovery).
    pub(crate) fn forget_segment(&self, id: u64) {
        self.segments.write().retain(|_, s| s.id != id);
    }

    /// Copies the bytes at `loc`. The record must already be written. Bytes outside the
    /// record's body are an error; in a checkpoint only the file's end bounds them.
    pub fn read(&self, loc: LogLoc) -> Result<Vec<u8>, WalError> {
        let gone = |what: String| WalError::Unreadable(what);
        let (file, off) = match loc.lsn() {
            Some(lsn) => {
                let segments = self.segments.read();
                let found =
                    segments.range(..=(lsn, u64::MAX)).rev().find(|(_, s)| !s.bodies.is_empty());
                let Some(((first, _), s)) = found else {
                    return Err(gone(format!("record {lsn} is in no live segment")));
                };
                let body = s.bodies.get((lsn - first) as usize).copied();
                let body = body.filter(|b| *b != NO_OFFSET).ok_or_else(|| {
                    gone(format!("record {lsn} is not in the index of segment {}", s.id))
                })?;
                let file = s.file.clone();
                drop(segments);
                // Bytes past the body's end are another record's: the frame's length field,
                // just before the body, bounds what an address may name.
                let at = u64::from(body);
                let prefix = file.read_at(at.saturating_sub(frame::FRAME_HEADER_LEN as u64), 4)?;
                let body_len = u32::from_le_bytes(prefix[..4].try_into().expect("4 bytes"));
                let (off, len) = (loc.off(), loc.len() as u64);
                if off + len > u64::from(body_len) {
                    return Err(gone(format!(
                        "{len} bytes at {off} are outside the {body_len}-byte body of {lsn}"
                    )));
                }
                (file, at + off)
            }
            None => {
                let id = loc.checkpoint().unwrap_or_default();
                let file = self.checkpoints.read().get(&id).cloned();
                let file = file.ok_or_else(|| gone(format!("checkpoint {id} is not live")))?;
                (file, loc.off())
            }
        };
        Ok(file.read_at(off, loc.len())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Verifies: SYS-0034
    #[test]
    fn an_address_is_small() {
        assert_eq!(std::mem::size_of::<LogLoc>(), 16);
    }

    // Verifies: SYS-0034
    #[test]
    fn an_address_keeps_its_offset_and_length_up_to_the_limits() {
        let max = LogLoc::MAX_LEN as u32;
        let loc = LogLoc::in_record(9, (1 << 40) - 1, max).unwrap();
        assert_eq!((loc.off(), loc.len(), loc.lsn()), ((1 << 40) - 1, max as usize, Some(9)));
        assert_eq!(LogLoc::in_record(9, 1 << 40, 1), None);
        assert_eq!(LogLoc::in_record(9, 0, max + 1), None);
        // Checkpoints are not bounded by a record body: offsets far past 1 TiB.
        for off in [0, 5, (1 << 40) - 1, 1 << 40, (1 << 52) + 12_345, u64::MAX] {
            let loc = LogLoc::in_checkpoint(u64::from(u32::MAX), off, 7).unwrap();
            assert_eq!((loc.off(), loc.len(), loc.lsn()), (off, 7, None), "{off}");
            assert_eq!(loc.checkpoint(), Some(u64::from(u32::MAX)));
        }
        assert_eq!(LogLoc::in_checkpoint(1 << 32, 0, 1), None);
        assert_eq!(LogLoc::in_checkpoint(1, 0, max + 1), None);
        assert_eq!(LogLoc::in_record(CHECKPOINT_BIT | 9, 0, 1), None);
        assert_eq!(BodyAt::Checkpoint { id: 1, offset: u64::MAX }.loc(1, 1), None);
        let shown = format!("{:?}", LogLoc::in_record(3, 4, 5).unwrap());
        assert_eq!(shown, "LogLoc { lsn: 3, off: 4, len: 5 }");
        let shown = format!("{:?}", LogLoc::in_checkpoint(2, 1 << 41, 5).unwrap());
        assert_eq!(shown, "LogLoc { checkpoint: 2, off: 2199023255552, len: 5 }");
    }

    // Verifies: SYS-0034
    #[test]
    fn record_and_checkpoint_addresses_are_told_apart() {
        assert_eq!(LogLoc::in_record(7, 3, 2).unwrap().lsn(), Some(7));
        assert_eq!(LogLoc::in_checkpoint(7, 3, 2).unwrap().lsn(), None);
        let at = BodyAt::Checkpoint { id: 4, offset: 100 };
        assert_eq!(at.loc(5, 1), Some(LogLoc::in_checkpoint(4, 105, 1).unwrap()));
        assert_eq!(BodyAt::Unaddressable(9).loc(0, 1), None);
    }

    struct NoBytes;

    impl ReadAt for NoBytes {
        fn read_at(&self, _: u64, _: usize) -> std::io::Result<Vec<u8>> {
            Ok(Vec::new())
        }
    }

    // Verifies: SYS-0034
    #[test]
    fn a_live_checkpoint_id_is_not_given_a_second_file() {
        let locator = Locator::default();
        locator.add_checkpoint(3, Arc::new(NoBytes)).unwrap();
        let again = locator.add_checkpoint(3, Arc::new(NoBytes));
        assert!(matches!(again, Err(WalError::CheckpointExists(3))), "{again:?}");
        assert!(locator.has_checkpoint(3) && !locator.has_checkpoint(4));
    }
}
