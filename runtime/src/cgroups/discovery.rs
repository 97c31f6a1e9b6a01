//! Where a container's cgroup lives: the hierarchies this host mounts (only the visible ones),
//! our own cgroup in each, and `linux.cgroupsPath` resolved with runc's semantics.

use super::*;

/// Parses /proc/self/mountinfo text into the cgroup hierarchies, first visible mount of each
/// kept. A mount that a later mount covers (at its mountpoint or above it, such as a tmpfs
/// mounted over /sys/fs/cgroup inside a sandbox) is not visible and does not count.
pub fn parse_mountinfo(text: &str) -> Vec<Hierarchy> {
    let mountpoints: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split_once(" - ").and_then(|(pre, _)| pre.split(' ').nth(4)))
        .map(|m| PathBuf::from(unescape(m)))
        .collect();
    let mut out: Vec<Hierarchy> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        let (root, mountpoint) = (unescape(pre[3]), PathBuf::from(unescape(pre[4])));
        if !matches!(post[0], "cgroup" | "cgroup2") {
            continue;
        }
        if mountpoints
            .iter()
            .skip(i + 1)
            .any(|later| mountpoint.starts_with(later))
        {
            continue;
        }
        let h = match post[0] {
            "cgroup2" => Hierarchy {
                mountpoint,
                root,
                controllers: Vec::new(),
                v2: true,
            },
            "cgroup" => {
                let controllers: Vec<String> = post[2]
                    .split(',')
                    .filter(|o| v1::is_controller_option(o))
                    .map(String::from)
                    .collect();
                if controllers.is_empty() {
                    continue;
                }
                Hierarchy {
                    mountpoint,
                    root,
                    controllers,
                    v2: false,
                }
            }
            _ => continue,
        };
        if !out.iter().any(|o| o.v2 == h.v2 && o.controllers == h.controllers) {
            out.push(h);
        }
    }
    out
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
pub(crate) fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The hierarchies mounted on this host.
pub fn hierarchies() -> Result<Vec<Hierarchy>> {
    let text = crate::sys::read_text("/proc/self/mountinfo").ctx(|| "reading /proc/self/mountinfo".into())?;
    Ok(parse_mountinfo(&text))
}

/// Our own cgroup in the hierarchy with these controllers, from /proc/self/cgroup text.
pub fn own_cgroup(proc_cgroup: &str, h: &Hierarchy) -> Option<String> {
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (id, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        if h.v2 {
            if id == "0" && ctrls.is_empty() {
                return Some(path.to_string());
            }
        } else {
            let mut a: Vec<&str> = ctrls.split(',').collect();
            let mut b: Vec<&str> = h.controllers.iter().map(String::as_str).collect();
            a.sort_unstable();
            b.sort_unstable();
            if a == b {
                return Some(path.to_string());
            }
        }
    }
    None
}

/// A cgroup path relative to a hierarchy's mount: a mount whose root is not "/" (inside a
/// cgroup namespace or a bind) shows only part of the tree, so that prefix goes.
fn under_root<'a>(cg: &'a Path, h: &Hierarchy) -> &'a Path {
    let rel = cg.strip_prefix(&h.root).unwrap_or(cg);
    rel.strip_prefix("/").unwrap_or(rel)
}

/// Computes the container's cgroup directories, with runc's `cgroupsPath` semantics: an
/// absolute path is taken from the root of each hierarchy; a relative one (and the default,
/// the container id) from the cgroup of the runtime itself.
pub fn paths_for(hs: &[Hierarchy], proc_cgroup: &str, cgroups_path: Option<&Path>, id: &str) -> Result<CgroupPaths> {
    // An empty cgroupsPath means "not set", as in runc: never the runtime's own cgroup.
    let inner = cgroups_path
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(id));
    if inner.to_string_lossy().contains(':') {
        return Err(Error::msg(format!(
            "cgroupsPath {:?} is in the systemd slice:prefix:name form, which needs --systemd-cgroup (not supported)",
            inner
        )));
    }
    if inner.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(Error::msg(format!("cgroupsPath {:?} must not contain '..'", inner)));
    }
    let mut dirs = Vec::new();
    for h in hs {
        let own = own_cgroup(proc_cgroup, h).unwrap_or_else(|| "/".into());
        let cg = if inner.is_absolute() {
            inner.clone()
        } else {
            Path::new(&own).join(&inner)
        };
        let rel = under_root(&cg, h);
        // The container must get a cgroup of its own: never a hierarchy's root, and never the
        // runtime's own cgroup (deleting the container would kill the caller).
        let own_rel = under_root(Path::new(&own), h);
        if rel.as_os_str().is_empty() || rel == own_rel {
            return Err(Error::msg(format!(
                "cgroupsPath {:?} names the root or the runtime's own cgroup in {}",
                inner,
                h.mountpoint.display()
            )));
        }
        dirs.push(CgroupDir {
            mountpoint: h.mountpoint.clone(),
            path: h.mountpoint.join(rel),
            controllers: h.controllers.join(","),
            v2: h.v2,
        });
    }
    Ok(CgroupPaths { dirs })
}

impl CgroupPaths {
    /// Computes the paths for a container on this host.
    pub fn for_container(cgroups_path: Option<&Path>, id: &str) -> Result<Self> {
        let hs = hierarchies()?;
        if hs.is_empty() {
            return Err(Error::msg("no cgroup hierarchy is mounted on this host"));
        }
        let own = crate::sys::read_text("/proc/self/cgroup").ctx(|| "reading /proc/self/cgroup".into())?;
        paths_for(&hs, &own, cgroups_path, id)
    }

    /// The cgroup directories process `pid` is in now, one per hierarchy (how a shim finds a
    /// running container's memory cgroup).
    pub fn of_process(pid: i32) -> Result<Self> {
        let text =
            crate::sys::read_text(format!("/proc/{pid}/cgroup")).ctx(|| format!("reading /proc/{pid}/cgroup"))?;
        let dirs = hierarchies()?
            .into_iter()
            .filter_map(|h| {
                let cg = own_cgroup(&text, &h)?;
                Some(CgroupDir {
                    path: h.mountpoint.join(under_root(Path::new(&cg), &h)),
                    mountpoint: h.mountpoint,
                    controllers: h.controllers.join(","),
                    v2: h.v2,
                })
            })
            .collect();
        Ok(CgroupPaths { dirs })
    }
}
