//! The open-files limit. A broker holds a descriptor per partition (its active segment)
//! plus one per connection, so a soft limit of 1,024 (a common default) would cap it at a
//! few hundred partitions. At start the soft limit is raised to the hard one, as Kafka's
//! documentation asks operators to do by hand.
//!
//! `getrlimit`/`setrlimit` are foreign functions, hence the module's `unsafe`.
#![allow(unsafe_code)]

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns (soft, hard) after, or
/// None if the limits cannot be read.
pub fn raise_open_files_limit() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the call's duration.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit; the call only reads it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    Some((lim.rlim_cur, lim.rlim_max))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let (soft, hard) = super::raise_open_files_limit().unwrap();
        assert_eq!(soft, hard);
    }
}
