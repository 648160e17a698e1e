//! What both bench binaries share: how big to make things, and the messages they publish.

// Each bench binary uses a different part of this module.
#![allow(dead_code)]

use qrusty::engine::{NewMessage, Priority};

/// True under `cargo bench` of an optimised build. `cargo test --all-targets` runs the
/// bench binaries without `--bench` (criterion's test mode: each routine once) and in debug
/// builds; there the large setups shrink so the test run stays short.
pub fn full_size() -> bool {
    !cfg!(debug_assertions) && std::env::args().any(|a| a == "--bench")
}

/// `big` under `cargo bench`, `small` in test mode.
pub fn scaled(big: usize, small: usize) -> usize {
    if full_size() {
        big
    } else {
        small
    }
}

/// A 100-byte payload, unique per `n` (so duplicate-refusing queues would accept it too).
pub fn payload(n: u64) -> String {
    format!("{n:0>100}")
}

/// Deterministic spread-out priorities, as the load generator's random ones are.
pub fn priority(n: u64) -> u64 {
    n.wrapping_mul(0x9e37_79b9_7f4a_7c15) % 1_000_000
}

pub fn message(n: u64) -> NewMessage {
    NewMessage { priority: Priority::Num(priority(n)), payload: payload(n), max_retries: 3 }
}
