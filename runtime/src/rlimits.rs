//! `process.rlimits` (config.md "POSIX process"): applied by the parent with `prlimit(2)` on
//! the init, before the init drops privileges, so that a hard limit above the runtime's own is
//! a clear error (raising it needs CAP_SYS_RESOURCE) instead of a failure inside the container.

use crate::error::{Error, Result};
use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

/// The resource number of an rlimit type.
pub fn resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    match t {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// The spec name of an rlimit type (`RLIMIT_NOFILE`).
pub fn name(t: PosixRlimitType) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_else(|| format!("{t:?}"))
}

/// Applies the rlimits to process `pid`.
pub fn apply(pid: i32, limits: &[PosixRlimit]) -> Result<()> {
    for l in limits {
        if l.soft() > l.hard() {
            return Err(Error::msg(format!(
                "rlimit {}: soft limit {} is above hard limit {}",
                name(l.typ()),
                l.soft(),
                l.hard()
            )));
        }
        let new = libc::rlimit {
            rlim_cur: l.soft(),
            rlim_max: l.hard(),
        };
        // SAFETY: prlimit with a valid rlimit pointer and a null old-limit pointer.
        if unsafe { libc::prlimit(pid, resource(l.typ()), &new, std::ptr::null_mut()) } != 0 {
            let e = std::io::Error::last_os_error();
            let hint = if e.raw_os_error() == Some(libc::EPERM) {
                " (raising a hard limit needs CAP_SYS_RESOURCE)"
            } else {
                ""
            };
            return Err(Error::msg(format!(
                "setting rlimit {} to soft {} hard {}: {e}{hint}",
                name(l.typ()),
                l.soft(),
                l.hard()
            )));
        }
    }
    Ok(())
}
