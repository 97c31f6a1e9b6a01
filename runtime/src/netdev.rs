//! `linux.netDevices` (config-linux.md "Network Devices"): moves host network interfaces into
//! the container's network namespace (renamed when `name` is set), with one rtnetlink
//! RTM_NEWLINK request each. The kernel keeps MTU and hardware address; IP configuration is
//! not carried over. When the namespace goes away, physical devices return to the host and
//! virtual ones are destroyed by the kernel.

use crate::error::{Context, Error, Result};
use oci_spec::runtime::LinuxNetDevice;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const RTM_NEWLINK: u16 = 16;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const IFLA_IFNAME: u16 = 3;
const IFLA_NET_NS_FD: u16 = 28;

fn push_attr(buf: &mut Vec<u8>, typ: u16, data: &[u8]) {
    let len = 4 + data.len();
    // Attributes here are a name or an fd: a few bytes.
    buf.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_ne_bytes());
    buf.extend_from_slice(&typ.to_ne_bytes());
    buf.extend_from_slice(data);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

/// The RTM_NEWLINK request that moves interface `index` into the namespace `ns_fd`.
pub fn move_request(index: i32, ns_fd: i32, new_name: Option<&str>, seq: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&[0u8; 16]); // nlmsghdr, filled below
                                     // ifinfomsg: family, pad, type, index, flags, change
    m.extend_from_slice(&[0u8, 0u8]);
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(&index.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    push_attr(&mut m, IFLA_NET_NS_FD, &crate::sys::fd_u32(ns_fd).to_ne_bytes());
    if let Some(n) = new_name {
        let mut name = n.as_bytes().to_vec();
        name.push(0);
        push_attr(&mut m, IFLA_IFNAME, &name);
    }
    let len = u32::try_from(m.len()).unwrap_or(u32::MAX);
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
    m[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    m
}

/// Checks interface names: at most 15 bytes, no '/' or whitespace (the kernel's rules).
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() < 16
        && n != "."
        && n != ".."
        && !n.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
}

/// Moves every configured device into the network namespace of process `pid`.
pub fn move_all(devices: &HashMap<String, LinuxNetDevice>, pid: i32) -> Result<()> {
    if devices.is_empty() {
        return Ok(());
    }
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .ctx(|| "opening the container's network namespace".into())?;
    // SAFETY: socket with constant arguments; the fd is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "opening a netlink socket".into());
    }
    // SAFETY: a new fd owned here.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut names: Vec<_> = devices.iter().collect();
    names.sort_by(|a, b| a.0.cmp(b.0));
    for (seq, (host, dev)) in names.into_iter().enumerate() {
        let target = dev.name().as_deref().unwrap_or(host);
        if !valid_name(host) || !valid_name(target) {
            return Err(Error::msg(format!(
                "invalid network device name {host:?} -> {target:?}"
            )));
        }
        let c = crate::sys::cstr(host)?;
        // SAFETY: if_nametoindex with a valid C string.
        let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
        if index == 0 {
            return Err(Error::msg(format!(
                "network device {host:?} does not exist on the host"
            )));
        }
        let seq = u32::try_from(seq + 1).unwrap_or(u32::MAX);
        let req = move_request(index as i32, ns.as_raw_fd(), dev.name().as_deref(), seq);
        // SAFETY: send of a valid buffer on our socket (the kernel is the default destination).
        if unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
            return Err(std::io::Error::last_os_error()).ctx(|| format!("moving network device {host}"));
        }
        let mut buf = [0u8; 1024];
        // SAFETY: recv into a valid buffer.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 20 {
            return Err(Error::msg(format!("moving network device {host}: no netlink answer")));
        }
        let typ = u16::from_ne_bytes([buf[4], buf[5]]);
        let err = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        if typ == NLMSG_ERROR && err != 0 {
            return Err(Error::Os {
                step: format!("moving network device {host} into the container as {target}"),
                source: std::io::Error::from_raw_os_error(-err),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let r = move_request(7, 5, Some("eth0"), 1);
        // nlmsghdr (16) + ifinfomsg (16) + NET_NS_FD attr (8) + IFNAME attr (4 + 5, padded to 12).
        assert_eq!(r.len(), 16 + 16 + 8 + 12);
        assert_eq!(u32::from_ne_bytes([r[0], r[1], r[2], r[3]]) as usize, r.len());
        assert_eq!(i32::from_ne_bytes([r[20], r[21], r[22], r[23]]), 7);
        assert!(valid_name("eth0") && !valid_name("a/b") && !valid_name("0123456789abcdef"));
    }
}
