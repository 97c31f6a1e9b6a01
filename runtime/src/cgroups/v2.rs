//! cgroup v2 specifics.

/// Enables, in every ancestor of `dir` below (and including) the mount root, all controllers
/// the ancestor has, so that `dir` gets the controllers' files (runc does the same). A
/// controller that cannot be enabled (e.g. a parent with processes of its own) is left out;
/// a limit that needs it then fails with a clear error.
pub fn enable_controllers(mountpoint: &std::path::Path, dir: &std::path::Path) {
    let Ok(rel) = dir.strip_prefix(mountpoint) else { return };
    let mut cur = mountpoint.to_path_buf();
    for comp in rel.components() {
        let avail = crate::sys::read_text(cur.join("cgroup.controllers")).unwrap_or_default();
        let enabled = crate::sys::read_text(cur.join("cgroup.subtree_control")).unwrap_or_default();
        for c in avail
            .split_whitespace()
            .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
        {
            let _ = std::fs::write(cur.join("cgroup.subtree_control"), format!("+{c}"));
        }
        cur.push(comp);
    }
}
