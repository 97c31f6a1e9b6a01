//! OOM-kill notifications for TaskOOM, from the container's memory cgroup: on v1 an eventfd
//! registered through `cgroup.event_control` for `memory.oom_control`, on v2 inotify on
//! `memory.events`. Both only wake the shim; whether a kill happened is decided by the
//! `oom_kill` counter, which the exit path also reads, so that TaskOOM always comes before
//! the TaskExit the kill caused, and exactly once.

use dray_runtime::cgroups::CgroupPaths;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::PathBuf;
use tokio::io::unix::AsyncFd;

/// The `oom_kill` counter of one memory cgroup and how much of it was reported.
#[derive(Debug)]
pub struct OomCounter {
    file: PathBuf,
    seen: u64,
}

impl OomCounter {
    fn read(&self) -> u64 {
        std::fs::read_to_string(&self.file)
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("oom_kill ").and_then(|v| v.trim().parse().ok()))
            })
            .unwrap_or(0)
    }

    /// True once for every increase of the counter since the last call.
    pub fn take_new(&mut self) -> bool {
        let c = self.read();
        if c > self.seen {
            self.seen = c;
            true
        } else {
            false
        }
    }
}

/// The fd that becomes readable when the cgroup's OOM state may have changed.
#[derive(Debug)]
pub struct OomNotifier {
    fd: AsyncFd<File>,
    _keep: Option<File>,
}

impl OomNotifier {
    /// Waits for the next wake-up and drains it.
    pub async fn wait(&self) -> std::io::Result<()> {
        loop {
            let mut g = self.fd.readable().await?;
            let mut buf = [0u8; 4096];
            match g.try_io(|f| f.get_ref().read(&mut buf)) {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => return Err(e),
                Err(_) => continue,
            }
        }
    }
}

fn own(fd: i32) -> std::io::Result<File> {
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Starts watching the memory cgroup of the container whose init is `pid`.
pub fn watch(pid: i32) -> std::io::Result<(OomCounter, OomNotifier)> {
    let paths = CgroupPaths::of_process(pid).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mem = paths
        .host("memory", Some("memory"))
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no memory cgroup"))?;
    let dir = mem.path.clone();
    if mem.v2 {
        let file = dir.join("memory.events");
        // SAFETY: inotify_init1 takes flags only.
        let ino = own(unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) })?;
        let c = std::ffi::CString::new(file.as_os_str().as_encoded_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        // SAFETY: `c` is a valid NUL-terminated path; the watch belongs to `ino`.
        if unsafe { libc::inotify_add_watch(ino.as_raw_fd(), c.as_ptr(), libc::IN_MODIFY) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut counter = OomCounter { file, seen: 0 };
        counter.seen = counter.read();
        return Ok((
            counter,
            OomNotifier {
                fd: crate::stdio::register(ino)?,
                _keep: None,
            },
        ));
    }
    let control = File::open(dir.join("memory.oom_control"))?;
    // SAFETY: eventfd takes an initial value and flags only.
    let efd = own(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    std::fs::write(
        dir.join("cgroup.event_control"),
        format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()),
    )?;
    let mut counter = OomCounter {
        file: dir.join("memory.oom_control"),
        seen: 0,
    };
    counter.seen = counter.read();
    Ok((
        counter,
        OomNotifier {
            fd: crate::stdio::register(efd)?,
            _keep: Some(control),
        },
    ))
}
