//! Typed messages between the runtime (parent) and the container's init, over a
//! `SOCK_SEQPACKET` socket pair: one datagram per message, JSON encoded, so a message is
//! never split or merged and a dead peer shows as end-of-file.

use crate::error::{Context, Error, Result};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, OwnedFd};

/// A message of the create protocol. The phase order is documented in [`crate::process`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// Parent → init: set-up may begin (the uid/gid maps of a new user namespace are
    /// written; on the intermediate path, the process is also in its cgroup already).
    Go,
    /// Parent → init: the container's cgroup directories exist (a v1 cgroup mount binds them).
    CgroupsMade,
    /// Parent → init: the init is in its cgroups and has its rlimits and oom score; from here
    /// on it may create the cgroup namespace, mount the cgroup file system and let hooks run.
    InCgroup,
    /// Intermediate → parent: I unshared a user namespace, write my id maps.
    NeedIdMaps,
    /// Parent → intermediate: the id maps are written.
    IdMapsDone,
    /// Intermediate → parent: the init is this pid (host pid namespace).
    InitPid(i32),
    /// Init → parent: mounts are done, before pivot_root: run prestart and createRuntime hooks.
    RunCreateRuntimeHooks,
    /// Parent → init: hooks done, with the state JSON that the createContainer (status
    /// `creating`) and startContainer (status `created`) hooks receive.
    HooksDone { creating: String, created: String },
    /// Init → parent: set-up complete; the init now waits on the exec fifo for `start`.
    Ready,
    /// Init/exec → parent: the seccomp notify fd is attached (SCM_RIGHTS); send it to the
    /// profile's listenerPath.
    SeccompNotify,
    /// Init → parent: set-up failed, with the reason.
    Error(String),
}

/// One end of the socket pair.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
    /// An fd that arrived with the last message, if any.
    received: std::cell::RefCell<Option<OwnedFd>>,
    /// The receive buffer, allocated on the first message and reused.
    buf: std::cell::RefCell<Vec<u8>>,
}

impl Channel {
    /// A connected pair of channels (close-on-exec).
    pub fn pair() -> Result<(Channel, Channel)> {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
            .ctx(|| "creating the init socket pair".into())?;
        Ok((
            Channel {
                fd: a,
                received: Default::default(),
                buf: Default::default(),
            },
            Channel {
                fd: b,
                received: Default::default(),
                buf: Default::default(),
            },
        ))
    }

    /// Sends a message.
    pub fn send(&self, msg: &Msg) -> Result<()> {
        let data = serde_json::to_vec(msg).map_err(|e| Error::msg(format!("encoding {msg:?}: {e}")))?;
        loop {
            // SAFETY: data is a valid buffer of data.len() bytes.
            let r = unsafe {
                libc::send(
                    self.fd.as_raw_fd(),
                    data.as_ptr().cast(),
                    data.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if r >= 0 {
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e).ctx(|| "sending to the init channel".into());
            }
        }
    }

    /// Sends a message with an fd attached (SCM_RIGHTS).
    pub fn send_with_fd(&self, msg: &Msg, fd: i32) -> Result<()> {
        let data = serde_json::to_vec(msg).map_err(|e| Error::msg(format!("encoding {msg:?}: {e}")))?;
        let s = String::from_utf8_lossy(&data).into_owned();
        crate::console::send_fd(self.fd.as_raw_fd(), &s, fd)
    }

    /// Takes the fd that came with the last message.
    pub fn take_fd(&self) -> Option<OwnedFd> {
        self.received.borrow_mut().take()
    }

    /// Receives a message; None when the peer closed its end (exited). An attached fd is kept
    /// for [`Self::take_fd`].
    pub fn recv(&self) -> Result<Option<Msg>> {
        self.recv_flags(0)
    }

    /// A message already queued, without waiting: how the runtime finds the init's `Error`
    /// after a failure of its own (the init may have failed first).
    pub fn try_recv(&self) -> Option<Msg> {
        self.recv_flags(libc::MSG_DONTWAIT).ok().flatten()
    }

    fn recv_flags(&self, flags: i32) -> Result<Option<Msg>> {
        use std::os::fd::FromRawFd;
        let mut buf = self.buf.borrow_mut();
        if buf.is_empty() {
            // Zeroed by the allocator (fresh pages): only the pages a message fills are touched.
            *buf = vec![0; 1024 * 1024];
        }
        loop {
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let mut cmsg = [0u64; 8];
            // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_iov = &mut iov;
            hdr.msg_iovlen = 1;
            hdr.msg_control = cmsg.as_mut_ptr().cast();
            hdr.msg_controllen = std::mem::size_of_val(&cmsg);
            // SAFETY: hdr points to valid buffers.
            let r = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut hdr, libc::MSG_CMSG_CLOEXEC | flags) };
            if r > 0 && hdr.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
                return Err(Error::msg("a message on the init channel was truncated"));
            }
            if r > 0 {
                // SAFETY: walking the control messages the kernel wrote into `cmsg`.
                unsafe {
                    let mut c = libc::CMSG_FIRSTHDR(&hdr);
                    while !c.is_null() {
                        if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                            let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32);
                            *self.received.borrow_mut() = Some(OwnedFd::from_raw_fd(fd));
                        }
                        c = libc::CMSG_NXTHDR(&hdr, c);
                    }
                }
                // r > 0 here.
                let len = r.unsigned_abs().min(buf.len());
                let msg = serde_json::from_slice(&buf[..len])
                    .map_err(|e| Error::msg(format!("bad message on the init channel: {e}")))?;
                return Ok(Some(msg));
            }
            if r == 0 {
                return Ok(None);
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e).ctx(|| "receiving from the init channel".into());
            }
        }
    }

    /// Receives a message and fails unless it is `want`; an `Error` from the peer is returned as
    /// an error.
    pub fn expect(&self, want: &Msg) -> Result<()> {
        match self.recv()? {
            Some(m) if &m == want => Ok(()),
            Some(Msg::Error(e)) => Err(Error::Msg(e)),
            Some(m) => Err(Error::msg(format!("protocol error: expected {want:?}, got {m:?}"))),
            None => Err(Error::msg("the container's init exited during set-up")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_eof_is_seen() {
        let (a, b) = Channel::pair().unwrap();
        a.send(&Msg::InitPid(42)).unwrap();
        let done = Msg::HooksDone {
            creating: "{\"x\":1}".into(),
            created: String::new(),
        };
        a.send(&done).unwrap();
        assert_eq!(b.recv().unwrap(), Some(Msg::InitPid(42)));
        assert_eq!(b.recv().unwrap(), Some(done));
        a.send(&Msg::Error("boom".into())).unwrap();
        assert_eq!(b.expect(&Msg::Ready).unwrap_err().to_string(), "boom");
        drop(a);
        assert_eq!(b.recv().unwrap(), None);
    }
}
