//! Golden bytes: the on-disk encoding described in src/wal/FORMAT.md may never change
//! silently. The expected bytes were computed independently (zlib's CRC-32), not by this
//! crate.

use std::sync::Arc;

use qrusty::wal::frame::{decode_frame, decode_header, encode_frame, encode_header};
use qrusty::wal::{FileSystem, SimFs, Wal, WalOptions};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn segment_header_bytes_are_pinned() {
    assert_eq!(
        hex(&encode_header(1)),
        "515255535459574c0100000000000000010000000000000000000000fa617737"
    );
    assert_eq!(decode_header(&encode_header(1)), Ok(1));
}

#[test]
fn record_frame_bytes_are_pinned() {
    assert_eq!(hex(&encode_frame(1, b"hello")), "050000002a2eecf468656c6c6f");
    // The same body in segment 2 carries another checksum: the segment id is hashed.
    assert_eq!(hex(&encode_frame(2, b"hello")[4..8]), "ae7576a7");
}

#[test]
fn a_fresh_log_file_is_header_then_frames() {
    let fs = SimFs::new(1);
    let dir = std::path::PathBuf::from("/log");
    let (wal, _) =
        Wal::open(WalOptions::new(&dir), Arc::new(fs.clone()), &mut |_| Ok(())).expect("open");
    wal.append(b"hello").unwrap().wait_blocking().unwrap();
    wal.close().unwrap();

    let file = fs.read(&dir.join("00000000000000000001.qlog")).unwrap();
    assert_eq!(hex(&file), format!("{}{}", hex(&encode_header(1)), "050000002a2eecf468656c6c6f"));
    assert_eq!(decode_frame(&file[32..], 1, 16).unwrap().0, b"hello");
}
