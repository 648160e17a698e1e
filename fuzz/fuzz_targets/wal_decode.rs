#![no_main]

#[path = "../checks/wal_decode.rs"]
mod check;

#[global_allocator]
static ALLOC: check::PeakAlloc = check::PeakAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
