//! Golden bytes: the on-disk encoding described in src/wal/FORMAT.md may never change
//! silently. The expected bytes were computed independently (zlib's CRC-32), not by this
//! crate.

use std::sync::Arc;

use qrusty::wal::frame::{
    decode_frame, decode_header, encode_checkpoint_header, encode_footer, encode_frame,
    encode_header, Header, HEADER_LEN,
};
use qrusty::wal::{FileSystem, SimFs, Wal, WalOptions};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// Verifies: PER-0002, PER-0006
#[test]
fn segment_header_bytes_are_pinned() {
    // Segment 1 whose first record has LSN 1; format version 2.
    assert_eq!(
        hex(&encode_header(1, 1)),
        "515255535459574c020000000000000001000000000000000100000000000000000000001d8215ba"
    );
    assert_eq!(decode_header(&encode_header(1, 1)), Ok(Header { id: 1, first_lsn: 1 }));
}

// Verifies: PER-0006, PER-0023
#[test]
fn checkpoint_header_and_footer_bytes_are_pinned() {
    // A checkpoint covering the segments below 3, whose log continues at LSN 5.
    assert_eq!(
        hex(&encode_checkpoint_header(3, 5)),
        "515255535459434b020000000000000003000000000000000500000000000000000000007176d400"
    );
    // Closing 2 frames, reflecting the log up to LSN 9.
    assert_eq!(
        hex(&encode_footer(3, 2, 9)),
        "51434b5054454e4402000000000000000900000000000000fbc4a2de"
    );
}

// Verifies: PER-0003, PER-0006
#[test]
fn record_frame_bytes_are_pinned() {
    assert_eq!(hex(&encode_frame(1, b"hello")), "050000002a2eecf468656c6c6f");
    // The same body in segment 2 carries another checksum: the segment id is hashed.
    assert_eq!(hex(&encode_frame(2, b"hello")[4..8]), "ae7576a7");
}

// Verifies: PER-0001, PER-0006
#[test]
fn a_fresh_log_file_is_header_then_frames() {
    let fs = SimFs::new(1);
    let dir = std::path::PathBuf::from("/log");
    let (wal, _) =
        Wal::open(WalOptions::new(&dir), Arc::new(fs.clone()), &mut |_, _| Ok(())).expect("open");
    wal.append(b"hello").unwrap().wait_blocking().unwrap();
    wal.close().unwrap();

    let file = fs.read(&dir.join("00000000000000000001.qlog")).unwrap();
    let header = hex(&encode_header(1, 1));
    assert_eq!(hex(&file), format!("{header}050000002a2eecf468656c6c6f"));
    assert_eq!(decode_frame(&file[HEADER_LEN..], 1, 16).unwrap().0, b"hello");
}
