#![no_main]

#[path = "../checks/crash_recovery.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
