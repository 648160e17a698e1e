//! Replays the checked-in fuzz corpus (fuzz/corpus/<target>/) through the same checks the
//! fuzz targets run (fuzz/checks/), on the stable toolchain, so that a regression of any
//! input the fuzzer once found shows up in CI without nightly.
//!
//! `cargo test --test fuzz_corpus -- --ignored write_seed_corpus` rewrites the generated
//! seeds (files named `seed-*`); inputs the fuzzer found keep their own names.

use std::path::{Path, PathBuf};

#[path = "../fuzz/checks/crash_recovery.rs"]
mod crash_recovery;
#[path = "../fuzz/checks/http_body.rs"]
mod http_body;
#[path = "../fuzz/checks/wal_decode.rs"]
mod wal_decode;

#[global_allocator]
static ALLOC: wal_decode::PeakAlloc = wal_decode::PeakAlloc;

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target)
}

fn replay(target: &str, check: fn(&[u8])) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus(target))
        .unwrap_or_else(|e| panic!("corpus of {target}: {e}"))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "the {target} corpus holds only {} inputs", files.len());
    let failed: Vec<String> = files
        .iter()
        .filter(|file| {
            let data = std::fs::read(file).expect("corpus file");
            std::panic::catch_unwind(|| check(&data)).is_err()
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(failed.is_empty(), "inputs failing the {target} check: {failed:#?}");
}

// Verifies: PER-0003, PER-0005, PER-0014, PER-0015, PER-0016, PER-0029
#[test]
fn wal_decode_corpus_passes() {
    replay("wal_decode", wal_decode::check);
}

// Verifies: PER-0009, PER-0012, PER-0013, PER-0024, PER-0028, PER-0029, DLV-0007
#[test]
fn crash_recovery_corpus_passes() {
    replay("crash_recovery", crash_recovery::check);
}

// Verifies: API-0002, API-0003
#[test]
fn http_body_corpus_passes() {
    replay("http_body", http_body::check);
}

/// Writes the generated seeds. Not a test: run it by hand after changing a generator.
#[test]
#[ignore]
fn write_seed_corpus() {
    type Seeds = Vec<(String, Vec<u8>)>;
    let targets: [(&str, Seeds); 3] = [
        ("wal_decode", wal_decode::seeds()),
        ("crash_recovery", crash_recovery::seeds()),
        ("http_body", http_body::seeds()),
    ];
    crash_recovery::check_seed_encoding();
    for (target, seeds) in targets {
        let dir = corpus(target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        for (name, bytes) in seeds {
            std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
        }
    }
}

/// Prints the scenario of the crash_recovery input named by `FUZZ_INPUT`, then runs it.
#[test]
#[ignore]
fn explain_crash_recovery_input() {
    let path = std::env::var("FUZZ_INPUT").expect("FUZZ_INPUT names an input file");
    let data = std::fs::read(path).expect("input");
    eprintln!("{}", crash_recovery::describe(&data));
    crash_recovery::check(&data);
}
