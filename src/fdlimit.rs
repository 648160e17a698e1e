//! Fits the connection cap to the file descriptors the process may open. Over the soft
//! `RLIMIT_NOFILE`, accept fails with EMFILE and clients hang in the backlog instead of
//! getting the `too_many_connections` reply, so at startup the soft limit is raised
//! towards the hard one and, if that is still too low, the cap is lowered to fit.

/// Descriptors kept for everything that is not a client connection: the listener, log
/// segments and checkpoints, the web UI's files, stdio.
pub const RESERVED_FDS: u64 = 64;

/// Most descriptors asked for when there is no cap: Linux's default `nr_open`, above
/// which even root cannot raise the soft limit.
const NO_CAP_FDS: u64 = 1 << 20;

/// The connection cap that fits the descriptor limit, after raising the soft limit as far
/// as needed and allowed. `max_connections` 0 (no cap) becomes the room the limit leaves,
/// silently; a cap above that room is lowered to it with one WARN.
/// Requirements: SYS-0032
pub fn fit_connection_cap(max_connections: usize) -> usize {
    let Some((soft, hard)) = nofile_limit() else { return max_connections };
    let wanted = match max_connections {
        0 => NO_CAP_FDS,
        n => (n as u64).saturating_add(RESERVED_FDS),
    }
    .min(hard);
    let soft = if soft < wanted && set_soft_nofile(wanted, hard) { wanted } else { soft };
    let room = soft.saturating_sub(RESERVED_FDS).max(1);
    let cap = usize::try_from(room).unwrap_or(usize::MAX);
    if max_connections == 0 {
        return cap;
    }
    if max_connections > cap {
        tracing::warn!(
            requested = max_connections,
            cap,
            nofile_soft = soft,
            nofile_hard = hard,
            "the open-file limit is too low for QRUSTY_MAX_CONNECTIONS; connections are \
             capped lower (raise the hard RLIMIT_NOFILE, e.g. `ulimit -Hn`, to lift it)"
        );
        return cap;
    }
    max_connections
}

/// The soft and hard `RLIMIT_NOFILE`, `RLIM_INFINITY` read as `u64::MAX`.
pub fn nofile_limit() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct it is given, which lives on this stack.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0).then(|| (from_rlim(lim.rlim_cur), from_rlim(lim.rlim_max)))
}

/// Sets the soft `RLIMIT_NOFILE`, keeping the hard one; false when refused.
pub fn set_soft_nofile(soft: u64, hard: u64) -> bool {
    let lim = libc::rlimit { rlim_cur: to_rlim(soft), rlim_max: to_rlim(hard) };
    // SAFETY: setrlimit only reads the struct it is given.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 }
}

// rlim_t is u64 on the 64-bit Linux targets we build for; the conversions keep
// RLIM_INFINITY explicit rather than relying on its value.
fn from_rlim(v: libc::rlim_t) -> u64 {
    if v == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        v
    }
}

fn to_rlim(v: u64) -> libc::rlim_t {
    if v == u64::MAX {
        libc::RLIM_INFINITY
    } else {
        v
    }
}
