//! cgroup v2 specifics.

use std::path::Path;

/// True when `path` is the root of a cgroup2 file system (statfs magic CGROUP2_SUPER_MAGIC).
pub fn is_cgroup2_mount(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}
