//! Byte layout of a segment header and of a record frame (see `FORMAT.md`).
//!
//! Everything here is pure: encoding into a buffer and decoding from a slice, no I/O.

/// First eight bytes of every segment file.
pub const MAGIC: [u8; 8] = *b"QRUSTYWL";
/// First eight bytes of every checkpoint file.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"QRUSTYCK";
/// Bumped whenever a byte of the header or frame layout changes meaning. Version 2 added the
/// first LSN to the header (and checkpoint files).
pub const FORMAT_VERSION: u32 = 2;
/// Size of the segment (and checkpoint) header; the first frame starts right after it.
pub const HEADER_LEN: usize = 40;
/// Size of a frame's fixed part: body length, then CRC.
pub const FRAME_HEADER_LEN: usize = 8;
/// Size of the footer that closes a checkpoint file.
pub const FOOTER_LEN: usize = 28;
/// Largest record body the format allows. Replay accepts every record up to this size,
/// whatever `WalOptions::max_record_bytes` says today, so lowering the append limit never
/// makes an existing log unreadable.
pub const MAX_RECORD_BYTES: u32 = 1 << 30;
/// First eight bytes of a checkpoint footer. Read as a frame length it is far above any
/// record size, so a footer can never be mistaken for a frame.
pub const FOOTER_MAGIC: [u8; 8] = *b"QCKPTEND";

/// What a segment or checkpoint header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The segment id, or for a checkpoint the id of the first segment it does not cover.
    pub id: u64,
    /// Log sequence number of the segment's first record (the next one when it has none).
    pub first_lsn: u64,
}

/// Encodes the header of segment `segment_id` whose first record gets `first_lsn`.
/// Requirements: PER-0002
pub fn encode_header(segment_id: u64, first_lsn: u64) -> [u8; HEADER_LEN] {
    encode_header_with(MAGIC, segment_id, first_lsn)
}

/// Encodes the header of a checkpoint covering the segments below `covers_below`.
pub fn encode_checkpoint_header(covers_below: u64, first_lsn: u64) -> [u8; HEADER_LEN] {
    encode_header_with(CHECKPOINT_MAGIC, covers_below, first_lsn)
}

fn encode_header_with(magic: [u8; 8], id: u64, first_lsn: u64) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[0..8].copy_from_slice(&magic);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    // Bytes 12..16 are flags, 32..36 reserved: both zero in version 2.
    header[16..24].copy_from_slice(&id.to_le_bytes());
    header[24..32].copy_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32fast::hash(&header[0..36]);
    header[36..40].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Why a segment header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer than `HEADER_LEN` bytes.
    Short,
    /// Magic or checksum wrong: not (or no longer) a segment header.
    Invalid,
    /// A valid header of a format this build cannot read.
    Version(u32),
    /// Flags or reserved bytes set that version 2 does not know.
    UnknownFlags,
}

/// Decodes a segment header.
pub fn decode_header(bytes: &[u8]) -> Result<Header, HeaderError> {
    decode_header_with(MAGIC, bytes)
}

/// Decodes a checkpoint header.
pub fn decode_checkpoint_header(bytes: &[u8]) -> Result<Header, HeaderError> {
    decode_header_with(CHECKPOINT_MAGIC, bytes)
}

/// Requirements: PER-0002
fn decode_header_with(magic: [u8; 8], bytes: &[u8]) -> Result<Header, HeaderError> {
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    // A version 1 header (32 bytes, CRC at 28) is recognised as such rather than read as
    // damage: damage in the newest segment would be cut, and cutting an old log loses it.
    let v1 = bytes.len() >= 32 && bytes[0..8] == magic && u32_at(8) == 1;
    if v1 && crc32fast::hash(&bytes[0..28]) == u32_at(28) {
        return Err(HeaderError::Version(1));
    }
    if bytes.len() < HEADER_LEN {
        return Err(HeaderError::Short);
    }
    if bytes[0..8] != magic || crc32fast::hash(&bytes[0..36]) != u32_at(36) {
        return Err(HeaderError::Invalid);
    }

    let version = u32_at(8);
    if version != FORMAT_VERSION {
        return Err(HeaderError::Version(version));
    }
    if u32_at(12) != 0 || u32_at(32) != 0 {
        return Err(HeaderError::UnknownFlags);
    }
    Ok(Header { id: u64_at(16), first_lsn: u64_at(24) })
}

/// The key that checkpoint frames are checksummed with instead of a segment id: the top bit
/// set, so that a frame of checkpoint `id` never validates in segment `id` or vice versa.
pub fn checkpoint_key(id: u64) -> u64 {
    id | (1 << 63)
}

/// Encodes the footer that closes checkpoint `id`: it proves the file is whole and says
/// how many frames precede it and the last LSN the checkpoint reflects.
pub fn encode_footer(id: u64, frames: u64, last_lsn: u64) -> [u8; FOOTER_LEN] {
    let mut footer = [0u8; FOOTER_LEN];
    footer[0..8].copy_from_slice(&FOOTER_MAGIC);
    footer[8..16].copy_from_slice(&frames.to_le_bytes());
    footer[16..24].copy_from_slice(&last_lsn.to_le_bytes());
    let crc = footer_crc(id, &footer[..24]);
    footer[24..28].copy_from_slice(&crc.to_le_bytes());
    footer
}

/// Decodes a footer of checkpoint `id`: `(frames, last_lsn)`, or `None` if `bytes` is not
/// exactly a valid footer.
pub fn decode_footer(id: u64, bytes: &[u8]) -> Option<(u64, u64)> {
    if bytes.len() != FOOTER_LEN || bytes[0..8] != FOOTER_MAGIC {
        return None;
    }
    let stored = u32::from_le_bytes(bytes[24..28].try_into().expect("4 bytes"));
    if footer_crc(id, &bytes[..24]) != stored {
        return None;
    }
    let frames = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let last_lsn = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    Some((frames, last_lsn))
}

fn footer_crc(id: u64, fields: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&checkpoint_key(id).to_le_bytes());
    hasher.update(fields);
    hasher.finalize()
}

/// The frame checksum. The segment id is hashed first so that a frame copied from (or left
/// behind by) another segment never validates in this one.
/// Requirements: PER-0003
pub fn frame_crc(segment_id: u64, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&segment_id.to_le_bytes());
    hasher.update(&(body.len() as u32).to_le_bytes());
    hasher.update(body);
    hasher.finalize()
}

/// Appends the length and a zero CRC placeholder, then the body. The writer fills the CRC in
/// with [`seal_frame`] once it knows which segment the frame lands in.
pub fn push_unsealed(buf: &mut Vec<u8>, body: &[u8]) {
    buf.reserve(FRAME_HEADER_LEN + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(body);
}

/// Length in bytes of the frame starting at `frame[0]` (fixed part plus body).
pub fn frame_len(frame: &[u8]) -> usize {
    let body_len = u32::from_le_bytes(frame[0..4].try_into().expect("4 bytes"));
    FRAME_HEADER_LEN + body_len as usize
}

/// Writes the CRC of a frame built by [`push_unsealed`] for segment `segment_id`.
pub fn seal_frame(frame: &mut [u8], segment_id: u64) {
    let crc = frame_crc(segment_id, &frame[FRAME_HEADER_LEN..]);
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Encodes one complete frame (used by tests and by whoever rewrites segments).
pub fn encode_frame(segment_id: u64, body: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
    push_unsealed(&mut buf, body);
    seal_frame(&mut buf, segment_id);
    buf
}

/// Why the bytes at some offset are not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Not even the fixed part fits in what is left.
    ShortHeader,
    /// Length zero: never written by the log, and what a zero-filled tail looks like.
    Empty,
    /// The length is above the maximum record size.
    TooLong(u32),
    /// The body would run past the end of the segment.
    ShortBody,
    /// Checksum mismatch.
    Checksum,
}

impl FrameError {
    pub fn describe(self) -> String {
        match self {
            FrameError::ShortHeader => "incomplete frame header".to_string(),
            FrameError::Empty => "zero-length frame".to_string(),
            FrameError::TooLong(len) => format!("frame length {len} above the maximum"),
            FrameError::ShortBody => "frame body runs past the end of the file".to_string(),
            FrameError::Checksum => "frame checksum mismatch".to_string(),
        }
    }
}

/// Decodes the frame at the start of `bytes`: returns its body and the frame's total length.
/// The length is checked against `max_body` before the body is touched, so a damaged length
/// can never make the reader allocate or hash a huge range.
/// Requirements: PER-0003, PER-0005
pub fn decode_frame(
    bytes: &[u8],
    segment_id: u64,
    max_body: u32,
) -> Result<(&[u8], usize), FrameError> {
    let fixed = bytes.get(..FRAME_HEADER_LEN).ok_or(FrameError::ShortHeader)?;
    let body_len = u32::from_le_bytes(fixed[0..4].try_into().expect("4 bytes"));
    let stored_crc = u32::from_le_bytes(fixed[4..8].try_into().expect("4 bytes"));
    if body_len == 0 {
        return Err(FrameError::Empty);
    }
    if body_len > max_body {
        return Err(FrameError::TooLong(body_len));
    }

    let end = FRAME_HEADER_LEN + body_len as usize;
    let body = bytes.get(FRAME_HEADER_LEN..end).ok_or(FrameError::ShortBody)?;
    if frame_crc(segment_id, body) != stored_crc {
        return Err(FrameError::Checksum);
    }
    Ok((body, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Verifies: PER-0002
    #[test]
    fn header_round_trips_and_rejects_any_flipped_byte() {
        let header = encode_header(0x0102_0304_0506_0708, 99);
        let expected = Header { id: 0x0102_0304_0506_0708, first_lsn: 99 };
        assert_eq!(decode_header(&header), Ok(expected));
        assert_eq!(decode_checkpoint_header(&header), Err(HeaderError::Invalid));

        for i in 0..HEADER_LEN {
            let mut bad = header;
            bad[i] ^= 0x40;
            assert!(decode_header(&bad).is_err(), "flip at byte {i} accepted");
        }
        assert_eq!(decode_header(&header[..39]), Err(HeaderError::Short));
    }

    // Verifies: PER-0002
    #[test]
    fn a_version_1_header_is_refused_as_an_old_format_not_as_damage() {
        let mut old = [0u8; 32];
        old[0..8].copy_from_slice(&MAGIC);
        old[8..12].copy_from_slice(&1u32.to_le_bytes());
        old[16..24].copy_from_slice(&1u64.to_le_bytes());
        let crc = crc32fast::hash(&old[0..28]);
        old[28..32].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_header(&old), Err(HeaderError::Version(1)));
    }

    // Verifies: PER-0023
    #[test]
    fn a_footer_validates_only_for_its_own_checkpoint() {
        let footer = encode_footer(5, 12, 345);
        assert_eq!(decode_footer(5, &footer), Some((12, 345)));
        assert_eq!(decode_footer(6, &footer), None);
        assert_eq!(decode_footer(5, &footer[..27]), None);
        // Read as a frame length, the footer magic is far above any record size.
        let len = u32::from_le_bytes(footer[0..4].try_into().unwrap());
        assert!(len > 1 << 30);
    }

    // Verifies: PER-0003
    #[test]
    fn frame_from_another_segment_does_not_validate() {
        let frame = encode_frame(7, b"payload");
        assert_eq!(decode_frame(&frame, 7, 1024), Ok((&b"payload"[..], frame.len())));
        assert_eq!(decode_frame(&frame, 8, 1024), Err(FrameError::Checksum));
    }

    // Verifies: PER-0005
    #[test]
    fn oversized_length_is_refused_before_the_body_is_read() {
        let mut frame = encode_frame(1, b"abc");
        frame[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_frame(&frame, 1, 1 << 20), Err(FrameError::TooLong(u32::MAX)));
        assert_eq!(decode_frame(&[0u8; 16], 1, 1 << 20), Err(FrameError::Empty));
        assert_eq!(decode_frame(&frame[..5], 1, 1 << 20), Err(FrameError::ShortHeader));
    }
}
