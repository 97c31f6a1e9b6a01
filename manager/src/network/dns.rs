//! The embedded resolver of user-defined networks (docker's embedded DNS): containers on a
//! user-defined network find each other by name, network alias and short ID.
//!
//! drayd answers on each such network's gateway address, port 53 (UDP), which the containers'
//! resolv.conf names; the socket is bound with IP_FREEBIND, so it can be opened before the
//! bridge (and its address) exists. A query for a name of the network is answered from the
//! table (A records; an empty answer for other types of a known name); any other query is
//! relayed unchanged to the host's own resolvers (from drayd's /etc/resolv.conf, where a
//! loopback resolver is reachable, unlike from inside a container) and its answer relayed
//! back. The table changes as containers come and go.
//!
//! Queries come from containers: [`parse_query`] is a parser of outside input, fuzzed.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};

/// One question of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    /// Lowercase, without the final dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// The end of the question section in the packet.
    pub question_end: usize,
    /// The RD flag.
    pub recursion_desired: bool,
}

const TYPE_A: u16 = 1;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;

/// Parses a standard query with one question (RFC 1035 4.1). Compressed names are not valid
/// in a question of a query and are refused, as are responses and other opcodes.
pub fn parse_query(p: &[u8]) -> Option<Query> {
    if p.len() < 12 || p.len() > 512 {
        return None;
    }
    let id = u16::from_be_bytes([p[0], p[1]]);
    let flags = u16::from_be_bytes([p[2], p[3]]);
    let qr = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    let qdcount = u16::from_be_bytes([p[4], p[5]]);
    if qr || opcode != 0 || qdcount != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels: Vec<String> = Vec::new();
    let mut total = 0usize;
    loop {
        let len = *p.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        let label = p.get(i..i + len)?;
        total += len + 1;
        if total > 255 {
            return None;
        }
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*p.get(i)?, *p.get(i + 1)?]);
    let qclass = u16::from_be_bytes([*p.get(i + 2)?, *p.get(i + 3)?]);
    Some(Query {
        id,
        name: labels.join("."),
        qtype,
        qclass,
        question_end: i + 4,
        recursion_desired: flags & 0x0100 != 0,
    })
}

/// The answer to `q` (asked as `packet`) with the addresses `ips` of its name: every A record
/// for an A or ANY question, none for another type (the name exists, NOERROR).
pub fn answer(packet: &[u8], q: &Query, ips: &[Ipv4Addr]) -> Vec<u8> {
    let mut out = Vec::with_capacity(q.question_end + 16 * ips.len());
    out.extend_from_slice(&q.id.to_be_bytes());
    // QR, AA, RD as asked, RA; NOERROR.
    let flags: u16 = 0x8000 | 0x0400 | if q.recursion_desired { 0x0100 } else { 0 } | 0x0080;
    out.extend_from_slice(&flags.to_be_bytes());
    let give = q.qclass == CLASS_IN && matches!(q.qtype, TYPE_A | TYPE_ANY);
    let an = if give { ips.len() as u16 } else { 0 };
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&an.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&packet[12..q.question_end]);
    if give {
        for ip in ips {
            // The name as a pointer to the question's (offset 12).
            out.extend_from_slice(&[0xc0, 0x0c]);
            out.extend_from_slice(&TYPE_A.to_be_bytes());
            out.extend_from_slice(&CLASS_IN.to_be_bytes());
            out.extend_from_slice(&600u32.to_be_bytes());
            out.extend_from_slice(&4u16.to_be_bytes());
            out.extend_from_slice(&ip.octets());
        }
    }
    out
}

/// An answer without records and with `rcode` (2: SERVFAIL, no resolver upstream answered;
/// 3: NXDOMAIN, a name an internal network cannot look up outside).
fn failure(packet: &[u8], q: &Query, rcode: u8) -> Vec<u8> {
    let mut out = answer(packet, q, &[]);
    out[3] = (out[3] & 0xf0) | rcode;
    out
}

/// Queries relayed upstream at once, per resolver: a container flooding names it does not
/// own gets SERVFAIL beyond this, not drayd's descriptors.
const MAX_RELAYS: usize = 64;

/// One container's names on one network.
#[derive(Debug, Clone)]
struct Entry {
    container: String,
    names: Vec<String>,
    ip: Ipv4Addr,
    /// The container's own resolvers (`--dns`), used for the names it asks that are not
    /// the network's; empty: the host's.
    upstream: Vec<std::net::IpAddr>,
}

/// Where one network's listener answers, and for whom.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    pub gateway: Ipv4Addr,
    /// Only queries from the network's own addresses are answered (the listener is on the
    /// host, reachable from other networks too).
    pub subnet: super::Cidr,
    /// No relaying of other names (the network has no way out).
    pub internal: bool,
}

/// The resolver: names per network and one listener per network.
pub struct Resolver {
    table: Mutex<HashMap<String, Vec<Entry>>>,
    listeners: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    relays: Arc<tokio::sync::Semaphore>,
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver {
            table: Mutex::default(),
            listeners: Mutex::default(),
            relays: Arc::new(tokio::sync::Semaphore::new(MAX_RELAYS)),
        }
    }
}

/// The host's resolvers, from drayd's /etc/resolv.conf.
fn upstreams() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next()).flatten()
        })
        .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// A UDP socket on `addr`:53 that may be bound before the address exists (IP_FREEBIND).
fn bind_freely(addr: Ipv4Addr) -> Result<std::net::UdpSocket> {
    // SAFETY: plain socket(2); the result is checked and owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(Error::io("a DNS socket", std::io::Error::last_os_error()));
    }
    // SAFETY: socket returned a new descriptor that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SAFETY: a valid descriptor and a pointer to an int of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_FREEBIND,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(Error::io("IP_FREEBIND", std::io::Error::last_os_error()));
    }
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 53u16.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: a valid descriptor and a sockaddr_in of the size passed.
    let r = unsafe {
        libc::bind(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(Error::io(
            format!("binding DNS on {addr}:53"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(std::net::UdpSocket::from(owned))
}

impl Resolver {
    /// Adds container `container`'s `names` with `ip` on `network`.
    pub fn register(
        &self,
        network: &str,
        container: &str,
        names: &[String],
        ip: Ipv4Addr,
        upstream: Vec<std::net::IpAddr>,
    ) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let entries = t.entry(network.to_string()).or_default();
        entries.retain(|e| e.container != container);
        entries.push(Entry {
            container: container.to_string(),
            names: names.iter().map(|n| n.to_ascii_lowercase()).collect(),
            ip,
            upstream,
        });
    }

    /// The resolvers the container at `from` on `network` relays through (its `--dns`, else
    /// the host's).
    fn upstream_of(&self, network: &str, from: Ipv4Addr) -> Vec<SocketAddr> {
        let own: Vec<std::net::IpAddr> = self
            .table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(network)
            .and_then(|es| es.iter().find(|e| e.ip == from))
            .map(|e| e.upstream.clone())
            .unwrap_or_default();
        if own.is_empty() {
            upstreams()
        } else {
            own.into_iter().map(|ip| SocketAddr::new(ip, 53)).collect()
        }
    }

    /// Removes container `container` from every network.
    pub fn unregister(&self, container: &str) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        for entries in t.values_mut() {
            entries.retain(|e| e.container != container);
        }
    }

    /// Removes container `container` from `network`.
    pub fn unregister_on(&self, network: &str, container: &str) {
        if let Some(entries) = self.table.lock().unwrap_or_else(|p| p.into_inner()).get_mut(network) {
            entries.retain(|e| e.container != container);
        }
    }

    /// The addresses of `name` on `network` (None: not a name of the network).
    pub fn lookup(&self, network: &str, name: &str) -> Option<Vec<Ipv4Addr>> {
        let t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let ips: Vec<Ipv4Addr> = t
            .get(network)?
            .iter()
            .filter(|e| e.names.iter().any(|n| n == name))
            .map(|e| e.ip)
            .collect();
        (!ips.is_empty()).then_some(ips)
    }

    /// `name` as the container at `from` on `network` sees it: on that network first, then on
    /// every other user-defined network the container is on (docker's embedded DNS answers
    /// for all of a container's networks).
    pub fn lookup_for(&self, network: &str, from: Ipv4Addr, name: &str) -> Option<Vec<Ipv4Addr>> {
        if let Some(ips) = self.lookup(network, name) {
            return Some(ips);
        }
        let others: Vec<String> = {
            let t = self.table.lock().unwrap_or_else(|p| p.into_inner());
            let asker = t.get(network)?.iter().find(|e| e.ip == from)?.container.clone();
            t.iter()
                .filter(|(n, entries)| *n != network && entries.iter().any(|e| e.container == asker))
                .map(|(n, _)| n.clone())
                .collect()
        };
        others.iter().find_map(|n| self.lookup(n, name))
    }

    /// Starts answering for `network` within `scope`, unless it does already.
    pub fn listen(self: &Arc<Self>, network: &str, scope: Scope) -> Result<()> {
        let mut l = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        if l.get(network).is_some_and(|h| !h.is_finished()) {
            return Ok(());
        }
        let sock =
            tokio::net::UdpSocket::from_std(bind_freely(scope.gateway)?).map_err(|e| Error::io("a DNS socket", e))?;
        let me = self.clone();
        let net = network.to_string();
        l.insert(
            network.to_string(),
            tokio::spawn(async move { me.serve(net, scope, Arc::new(sock)).await }),
        );
        Ok(())
    }

    /// Stops answering for `network`.
    pub fn stop(&self, network: &str) {
        if let Some(h) = self.listeners.lock().unwrap_or_else(|p| p.into_inner()).remove(network) {
            h.abort();
        }
        self.table.lock().unwrap_or_else(|p| p.into_inner()).remove(network);
    }

    async fn serve(self: Arc<Self>, network: String, scope: Scope, sock: Arc<tokio::net::UdpSocket>) {
        let mut buf = vec![0u8; 512];
        loop {
            let (n, from) = match sock.recv_from(&mut buf).await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(%network, "DNS: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let SocketAddr::V4(from4) = from else { continue };
            if !scope.subnet.contains(u32::from(*from4.ip())) {
                continue;
            }
            let packet = buf[..n].to_vec();
            let Some(q) = parse_query(&packet) else { continue };
            let name = q.name.trim_end_matches('.');
            if let Some(ips) = self.lookup_for(&network, *from4.ip(), name) {
                let _ = sock.send_to(&answer(&packet, &q, &ips), from).await;
                continue;
            }
            if scope.internal {
                let _ = sock.send_to(&failure(&packet, &q, 3), from).await;
                continue;
            }
            let Ok(permit) = self.relays.clone().try_acquire_owned() else {
                let _ = sock.send_to(&failure(&packet, &q, 2), from).await;
                continue;
            };
            // The relay holds the socket weakly: a network removed meanwhile closes it at once.
            let weak = Arc::downgrade(&sock);
            let servers = self.upstream_of(&network, *from4.ip());
            tokio::spawn(async move {
                let reply = relay(&packet, servers).await.unwrap_or_else(|| failure(&packet, &q, 2));
                drop(permit);
                if let Some(sock) = weak.upgrade() {
                    let _ = sock.send_to(&reply, from).await;
                }
            });
        }
    }
}

/// Relays a query to the host's resolvers in turn; the first answer that is one: from the
/// resolver asked (a connected socket), with the query's ID.
async fn relay(packet: &[u8], servers: Vec<SocketAddr>) -> Option<Vec<u8>> {
    for up in servers {
        let bind: SocketAddr = if up.is_ipv4() {
            SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            "[::]:0".parse().ok()?
        };
        let Ok(s) = tokio::net::UdpSocket::bind(bind).await else {
            continue;
        };
        if s.connect(up).await.is_err() || s.send(packet).await.is_err() {
            continue;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let mut buf = vec![0u8; 4096];
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, s.recv(&mut buf)).await {
            if n >= 12 && buf[..2] == packet[..2] {
                buf.truncate(n);
                return Some(buf);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            p.push(l.len() as u8);
            p.extend_from_slice(l.as_bytes());
        }
        p.push(0);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes());
        p
    }

    #[test]
    fn queries_parse_and_answers_carry_every_address() {
        let p = query("Web.Example", TYPE_A);
        let q = parse_query(&p).unwrap();
        assert_eq!((q.id, q.name.as_str(), q.qtype), (0x1234, "web.example", TYPE_A));
        let a = answer(&p, &q, &[Ipv4Addr::new(10, 91, 0, 2), Ipv4Addr::new(10, 91, 0, 3)]);
        assert_eq!(&a[..2], &[0x12, 0x34]);
        assert_eq!(a[3] & 0x0f, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 2);
        assert_eq!(&a[a.len() - 4..], &[10, 91, 0, 3]);
        // AAAA of a known name: the name exists, no records.
        let p6 = query("web", 28);
        let a6 = answer(&p6, &parse_query(&p6).unwrap(), &[Ipv4Addr::new(1, 2, 3, 4)]);
        assert_eq!(u16::from_be_bytes([a6[6], a6[7]]), 0);
        let sf = failure(&p6, &parse_query(&p6).unwrap(), 2);
        assert_eq!(sf[3] & 0x0f, 2);
    }

    #[test]
    fn malformed_queries_are_ignored() {
        assert!(parse_query(&[0; 11]).is_none());
        let mut p = query("web", TYPE_A);
        p[2] |= 0x80; // a response
        assert!(parse_query(&p).is_none());
        let mut p = query("web", TYPE_A);
        p[12] = 0xc0; // a compression pointer in a question
        assert!(parse_query(&p).is_none());
        let p = query("web", TYPE_A);
        assert!(parse_query(&p[..p.len() - 1]).is_none());
    }

    #[test]
    fn the_table_follows_containers() {
        let r = Resolver::default();
        r.register(
            "n1",
            "c1",
            &["web".into(), "Alias".into()],
            Ipv4Addr::new(10, 91, 0, 2),
            vec![],
        );
        r.register("n2", "c1", &["web".into()], Ipv4Addr::new(10, 91, 1, 2), vec![]);
        assert_eq!(r.lookup("n1", "alias"), Some(vec![Ipv4Addr::new(10, 91, 0, 2)]));
        assert_eq!(r.lookup("n2", "web"), Some(vec![Ipv4Addr::new(10, 91, 1, 2)]));
        assert_eq!(r.lookup("n2", "alias"), None);
        // c2, on n2 only, does not see n1's names; c1 sees them from n2 too.
        r.register("n2", "c2", &["db".into()], Ipv4Addr::new(10, 91, 1, 3), vec![]);
        assert_eq!(r.lookup_for("n2", Ipv4Addr::new(10, 91, 1, 3), "alias"), None);
        assert_eq!(
            r.lookup_for("n2", Ipv4Addr::new(10, 91, 1, 2), "alias"),
            Some(vec![Ipv4Addr::new(10, 91, 0, 2)])
        );
        r.unregister("c1");
        assert_eq!(r.lookup("n1", "web"), None);
    }
}
