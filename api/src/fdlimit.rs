//! The open-file limit. A coordinator holds a socket per connection on top of its store
//! files and journal, and the usual soft limit (often 1024) is far below what the machine
//! allows; servers raise it to the hard limit at start so connections cannot starve the
//! store of descriptors.

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit now in force
/// (`None` where the platform has no such limit or it cannot be read).
#[cfg(unix)]
pub fn raise_nofile() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit struct that we own; no other memory is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: setrlimit reads one rlimit struct that we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    // RLIM_INFINITY is the type's maximum: no practical limit. rlim_t is not u64 everywhere.
    #[allow(clippy::unnecessary_cast)]
    Some(lim.rlim_cur as u64)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit now in force
/// (`None` where the platform has no such limit or it cannot be read).
#[cfg(not(unix))]
pub fn raise_nofile() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(unix)]
    fn the_limit_is_readable_and_positive() {
        assert!(super::raise_nofile().is_some_and(|n| n > 0));
    }
}
