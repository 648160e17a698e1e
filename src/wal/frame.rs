//! Byte layout of a segment header and of a record frame (see `FORMAT.md`).
//!
//! Everything here is pure: encoding into a buffer and decoding from a slice, no I/O.

/// First eight bytes of every segment file.
pub const MAGIC: [u8; 8] = *b"QRUSTYWL";
/// Bumped whenever a byte of the header or frame layout changes meaning.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the segment header; the first frame starts right after it.
pub const HEADER_LEN: usize = 32;
/// Size of a frame's fixed part: body length, then CRC.
pub const FRAME_HEADER_LEN: usize = 8;

/// Encodes the header of segment `segment_id`.
pub fn encode_header(segment_id: u64) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[0..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    // Bytes 12..16 are flags, 24..28 reserved: both zero in version 1.
    header[16..24].copy_from_slice(&segment_id.to_le_bytes());
    let crc = crc32fast::hash(&header[0..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
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
    /// Flags or reserved bytes set that version 1 does not know.
    UnknownFlags,
}

/// Decodes a segment header and returns the segment id it names.
pub fn decode_header(bytes: &[u8]) -> Result<u64, HeaderError> {
    let header = bytes.get(..HEADER_LEN).ok_or(HeaderError::Short)?;
    let stored_crc = u32::from_le_bytes(header[28..32].try_into().expect("4 bytes"));
    if header[0..8] != MAGIC || crc32fast::hash(&header[0..28]) != stored_crc {
        return Err(HeaderError::Invalid);
    }

    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(HeaderError::Version(version));
    }
    if header[12..16] != [0; 4] || header[24..28] != [0; 4] {
        return Err(HeaderError::UnknownFlags);
    }
    Ok(u64::from_le_bytes(header[16..24].try_into().expect("8 bytes")))
}

/// The frame checksum. The segment id is hashed first so that a frame copied from (or left
/// behind by) another segment never validates in this one.
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

    #[test]
    fn header_round_trips_and_rejects_any_flipped_byte() {
        let header = encode_header(0x0102_0304_0506_0708);
        assert_eq!(decode_header(&header), Ok(0x0102_0304_0506_0708));

        for i in 0..HEADER_LEN {
            let mut bad = header;
            bad[i] ^= 0x40;
            assert!(decode_header(&bad).is_err(), "flip at byte {i} accepted");
        }
        assert_eq!(decode_header(&header[..31]), Err(HeaderError::Short));
    }

    #[test]
    fn frame_from_another_segment_does_not_validate() {
        let frame = encode_frame(7, b"payload");
        assert_eq!(decode_frame(&frame, 7, 1024), Ok((&b"payload"[..], frame.len())));
        assert_eq!(decode_frame(&frame, 8, 1024), Err(FrameError::Checksum));
    }

    #[test]
    fn oversized_length_is_refused_before_the_body_is_read() {
        let mut frame = encode_frame(1, b"abc");
        frame[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_frame(&frame, 1, 1 << 20), Err(FrameError::TooLong(u32::MAX)));
        assert_eq!(decode_frame(&[0u8; 16], 1, 1 << 20), Err(FrameError::Empty));
        assert_eq!(decode_frame(&frame[..5], 1, 1 << 20), Err(FrameError::ShortHeader));
    }
}
