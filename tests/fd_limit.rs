//! The connection cap fitted to the open-file limit. One test in its own binary: it changes
//! the process's RLIMIT_NOFILE, which other tests must not see.

use qrusty::fdlimit::{fit_connection_cap, nofile_limit, set_soft_nofile, RESERVED_FDS};

// Verifies: SYS-0032
#[test]
fn the_soft_limit_is_raised_and_a_cap_above_the_hard_limit_is_lowered() {
    let (_, hard) = nofile_limit().expect("getrlimit works");
    let hard = hard.min(1 << 20);
    assert!(hard >= 1024, "the test needs a hard limit of at least 1024, found {hard}");

    // A soft limit below the cap is raised to fit it, and the cap is kept.
    assert!(set_soft_nofile(256, hard));
    let cap = (hard - RESERVED_FDS) as usize;
    assert_eq!(fit_connection_cap(cap), cap);
    assert_eq!(nofile_limit().unwrap().0, hard, "soft raised to the cap plus the reserve");

    // A cap the hard limit cannot hold is lowered to what it leaves.
    assert!(set_soft_nofile(256, hard));
    let room = (hard - RESERVED_FDS) as usize;
    assert_eq!(fit_connection_cap(hard as usize * 2), room);
    assert_eq!(nofile_limit().unwrap().0, hard);

    // No cap becomes the room the limit leaves, so the listener refuses instead of failing
    // to accept.
    assert_eq!(fit_connection_cap(0), room);
}
