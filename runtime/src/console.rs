//! `process.terminal` with `--console-socket` (runc's protocol): the init allocates a pty
//! inside the container's devpts, makes the slave its controlling terminal and stdio, and
//! sends the master fd over the console socket with SCM_RIGHTS.

use crate::error::{Context, Error, Result};
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Connects to the console socket at `path` (done by the runtime, before the fork, on the host).
pub fn connect(path: &Path) -> Result<UnixStream> {
    UnixStream::connect(path).ctx(|| format!("connecting to console socket {}", path.display()))
}

/// Sends `fd` with a name over a unix socket (SCM_RIGHTS).
pub fn send_fd(sock: RawFd, name: &str, fd: RawFd) -> Result<()> {
    let fds = [fd];
    let iov = [IoSlice::new(name.as_bytes())];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    nix::sys::socket::sendmsg::<()>(sock, &iov, &cmsg, MsgFlags::empty(), None)
        .ctx(|| "sending the pty master over the console socket".into())?;
    Ok(())
}

/// Receives one fd sent with [`send_fd`].
pub fn recv_fd(sock: RawFd) -> Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .ctx(|| "receiving from the console socket".into())?;
    for c in msg
        .cmsgs()
        .map_err(|e| Error::msg(format!("reading control messages: {e}")))?
    {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel installed this fd in our table for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(Error::msg("no file descriptor received on the console socket"))
}

/// Allocates a pty from the container's /dev/ptmx. Returns (master, slave, slave path).
pub fn open_pty() -> Result<(OwnedFd, OwnedFd, String)> {
    use nix::fcntl::OFlag;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .ctx(|| "opening /dev/ptmx".into())?;
    nix::pty::grantpt(&master).ctx(|| "grantpt".into())?;
    nix::pty::unlockpt(&master).ctx(|| "unlockpt".into())?;
    let name = nix::pty::ptsname_r(&master).ctx(|| "ptsname".into())?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| format!("opening pty slave {name}"))?;
    // SAFETY: the raw fds are new and owned here.
    let master = unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(master)) };
    // SAFETY: `slave` is a new fd owned here.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    Ok((master, slave, name))
}

/// Sets the window size of a terminal.
pub fn set_size(fd: RawFd, rows: u16, cols: u16) -> Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ with a valid winsize pointer.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "setting the terminal size".into());
    }
    Ok(())
}

/// Makes `slave` the controlling terminal and stdin/stdout/stderr of this (session leader)
/// process.
pub fn make_controlling(slave: &OwnedFd) -> Result<()> {
    // SAFETY: TIOCSCTTY on an fd we own, from a session leader.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "making the pty the controlling terminal".into());
    }
    for target in 0..3 {
        nix::unistd::dup2(slave.as_raw_fd(), target).ctx(|| "attaching the pty to stdio".into())?;
    }
    Ok(())
}

/// Relays a pty master to this process's stdin/stdout (foreground `run` with a terminal). Puts
/// stdin in raw mode when it is a terminal and restores it on drop.
#[derive(Debug)]
pub struct Relay {
    master: OwnedFd,
    saved: Option<nix::sys::termios::Termios>,
    stdin_open: bool,
}

impl Relay {
    /// Starts relaying `master`; copies the window size of our stdin to it.
    pub fn new(master: OwnedFd) -> Result<Relay> {
        use nix::sys::termios;
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(&stdin).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            termios::cfmakeraw(&mut raw);
            termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &raw)
                .ctx(|| "setting the terminal to raw mode".into())?;
        }
        let r = Relay {
            master,
            saved,
            stdin_open: true,
        };
        r.resize();
        Ok(r)
    }

    /// Copies the window size of our stdin (if a terminal) to the pty.
    pub fn resize(&self) {
        let mut ws: libc::winsize = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ with a valid winsize pointer.
        if unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) } == 0 {
            let _ = set_size(self.master.as_raw_fd(), ws.ws_row, ws.ws_col);
        }
    }

    /// Copies data both ways until `wake` (the signal fd) is readable.
    pub fn pump_until_readable(&mut self, wake: RawFd) -> Result<()> {
        let mut buf = [0u8; 8192];
        loop {
            let mut fds = vec![
                libc::pollfd {
                    fd: wake,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.master.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            if self.stdin_open {
                fds.push(libc::pollfd {
                    fd: 0,
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            // SAFETY: fds is a valid array of fds.len() pollfd structs.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e).ctx(|| "polling the terminal".into());
            }
            if fds[1].revents != 0 && !copy(self.master.as_raw_fd(), 1, &mut buf) {
                // The container closed its terminal; only signals are left to wait for.
                return Ok(());
            }
            if self.stdin_open && fds.len() > 2 && fds[2].revents != 0 && !copy(0, self.master.as_raw_fd(), &mut buf) {
                self.stdin_open = false;
            }
            if fds[0].revents != 0 {
                return Ok(());
            }
        }
    }

    /// Copies what is left in the pty to stdout.
    pub fn drain(&mut self) {
        let mut buf = [0u8; 8192];
        while crate::sys::poll_readable(self.master.as_raw_fd(), Some(std::time::Duration::ZERO)).unwrap_or(false) {
            if !copy(self.master.as_raw_fd(), 1, &mut buf) {
                break;
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(std::io::stdin(), nix::sys::termios::SetArg::TCSANOW, t);
        }
    }
}

/// Copies one read's worth from `from` to `to`; false on end of file or error.
fn copy(from: RawFd, to: RawFd, buf: &mut [u8]) -> bool {
    // SAFETY: buf is a valid writable buffer of buf.len() bytes.
    let n = unsafe { libc::read(from, buf.as_mut_ptr().cast(), buf.len()) };
    // Negative (an error) or 0 (end of file) ends the relay.
    let n = match usize::try_from(n) {
        Ok(n) if n > 0 => n,
        _ => return false,
    };
    let mut off = 0usize;
    while off < n {
        // SAFETY: the slice buf[off..n] is valid and initialised.
        let w = unsafe { libc::write(to, buf[off..].as_ptr().cast(), n - off) };
        match usize::try_from(w) {
            Ok(w) if w > 0 => off += w,
            _ => return false,
        }
    }
    true
}
