//! `process.user` (config.md "POSIX process"): uid, gid, additionalGids and umask.

use crate::error::{Context, Result};
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::User;

/// Switches to the configured user: supplementary groups, then gid, then uid, so that each
/// step still has the privilege it needs.
pub fn switch(user: &User, setgroups_allowed: bool) -> Result<()> {
    if setgroups_allowed {
        let gids: Vec<Gid> = user
            .additional_gids()
            .iter()
            .flatten()
            .map(|g| Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&gids).ctx(|| format!("setgroups({:?})", user.additional_gids()))?;
    }
    let gid = Gid::from_raw(user.gid());
    nix::unistd::setresgid(gid, gid, gid).ctx(|| format!("setting gid {}", user.gid()))?;
    let uid = Uid::from_raw(user.uid());
    nix::unistd::setresuid(uid, uid, uid).ctx(|| format!("setting uid {}", user.uid()))?;
    Ok(())
}

/// Applies `user.umask` (runc's default is 0022).
pub fn apply_umask(user: &User) {
    let mask = user.umask().unwrap_or(0o022);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
}

/// True unless /proc/self/setgroups says "deny" (in a user namespace whose gid map was written
/// without privilege, setgroups is refused).
pub fn setgroups_allowed() -> bool {
    crate::sys::read_text("/proc/self/setgroups")
        .map(|s| s.trim() != "deny")
        .unwrap_or(true)
}
