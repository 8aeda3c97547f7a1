//! What `mfadmin serve` tells and asks of the operating system: readiness for systemd, the open-file limit.

use sd_notify::NotifyState;

/// Tell systemd (`Type=notify`) the daemon is ready: the listener is bound and the store open.
/// Without `$NOTIFY_SOCKET` (not started by systemd) this does nothing.
pub fn notify_ready() {
    notify(NotifyState::Ready);
}

/// Tell systemd the daemon is stopping, so `systemctl status` says so while requests finish.
pub fn notify_stopping() {
    notify(NotifyState::Stopping);
}

fn notify(state: NotifyState) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(std::slice::from_ref(&state)) {
        tracing::warn!("could not tell systemd {state}: {e}");
    }
}

/// Raise the soft limit on open files to the hard limit (every connection and sled's files take
/// one; the soft default of 1024 is too few for a busy server). Returns the limit now in force.
pub fn raise_open_file_limit() -> std::io::Result<libc::rlim_t> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            limit = raised;
        }
    }
    Ok(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
        let get = || {
            let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            // SAFETY: getrlimit only writes the struct we pass.
            assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
            limit
        };
        let hard = get().rlim_max;
        // Start below the hard limit, as a login shell's 1024 usually is.
        let lowered = libc::rlimit { rlim_cur: hard.min(1024), rlim_max: hard };
        // SAFETY: setrlimit only reads the struct we pass.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
        let now = super::raise_open_file_limit().unwrap();
        assert_eq!(get().rlim_cur, hard);
        assert_eq!(now, hard);
    }
}
