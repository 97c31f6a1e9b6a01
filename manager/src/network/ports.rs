//! Published ports: docker's `-p` syntax, `-P`, and the host ports drayd holds.
//!
//! A published port is held by a socket drayd binds (and never accepts on): another process
//! of the host, or another container, cannot take it, and a port already in use is found
//! before anything is set up (docker's "port is already allocated"). The traffic itself goes
//! through the portmap plugin's DNAT rules, which come before any socket.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One published port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Binding {
    /// "" or "0.0.0.0": every address of the host.
    pub host_ip: String,
    /// 0: a free port chosen when the container starts.
    pub host_port: u16,
    /// Above `host_port`: the first free port of `host_port..=host_port_end` is chosen
    /// (docker's `-p 8000-8010:80`).
    #[serde(default)]
    pub host_port_end: u16,
    pub container_port: u16,
    /// "tcp", "udp" or "sctp".
    pub proto: String,
}

fn parse_range(s: &str, what: &str, spec: &str) -> Result<(u16, u16)> {
    let bad = || Error::InvalidArgument(format!("invalid {what} {s:?} in {spec:?}"));
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if a == 0 && what == "containerPort" || b < a {
        return Err(bad());
    }
    Ok((a, b))
}

/// docker's `-p [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]` (ranges on both sides, of the
/// same length when the host's is given), as moby's `nat.ParsePortSpec`.
pub fn parse(spec: &str) -> Result<Vec<Binding>> {
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(Error::InvalidArgument(format!("invalid proto {proto:?} in {spec:?}")));
    }
    // An IPv6 host address is bracketed: [::1]:80:80.
    let (ip, rest) = if let Some(r) = rest.strip_prefix('[') {
        let (ip, r) = r
            .split_once("]:")
            .ok_or_else(|| Error::InvalidArgument(format!("invalid IP address in {spec:?}")))?;
        (ip.to_string(), r.to_string())
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.len() {
            1 | 2 => (String::new(), rest.to_string()),
            3 => (parts[0].to_string(), format!("{}:{}", parts[1], parts[2])),
            _ => return Err(Error::InvalidArgument(format!("invalid port format {spec:?}"))),
        }
    };
    if !ip.is_empty() {
        let addr: std::net::IpAddr = ip
            .parse()
            .map_err(|_| Error::InvalidArgument(format!("invalid IP address {ip:?} in {spec:?}")))?;
        if addr.is_ipv6() {
            return Err(Error::Unsupported(format!(
                "{spec}: publishing on IPv6 addresses is not supported yet"
            )));
        }
    }
    let (host, ctr) = match rest.split_once(':') {
        Some((h, c)) => (h, c),
        None => ("", rest.as_str()),
    };
    let (cs, ce) = parse_range(ctr, "containerPort", spec)?;
    let (hs, he) = if host.is_empty() {
        (0, 0)
    } else {
        parse_range(host, "hostPort", spec)?
    };
    // moby's rule: ranges of the same length map port to port; a host range with one
    // container port is where a free host port is chosen; anything else is an error.
    if hs != 0 && he - hs != ce - cs && ce != cs {
        return Err(Error::InvalidArgument(format!(
            "invalid ranges specified for container and host Ports: {ctr} and {host}"
        )));
    }
    if hs != 0 && ce == cs && he != hs {
        return Ok(vec![Binding {
            host_ip: ip,
            host_port: hs,
            host_port_end: he,
            container_port: cs,
            proto,
        }]);
    }
    Ok((cs..=ce)
        .enumerate()
        .map(|(i, c)| Binding {
            host_ip: ip.clone(),
            host_port: if hs == 0 { 0 } else { hs + i as u16 },
            host_port_end: 0,
            container_port: c,
            proto: proto.clone(),
        })
        .collect())
}

/// docker's "80/tcp" form of an exposed port.
pub fn parse_exposed(p: &str) -> Result<(u16, String)> {
    let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| Error::InvalidArgument(format!("invalid exposed port {p:?}")))?;
    Ok((port, proto.to_ascii_lowercase()))
}

enum Held {
    Tcp(#[allow(dead_code)] TcpListener),
    Udp(#[allow(dead_code)] UdpSocket),
    /// SCTP: not held (std has no SCTP sockets); the rules alone publish it.
    None,
}

/// The host ports held for containers.
#[derive(Default)]
pub struct Ports {
    held: Mutex<HashMap<String, Vec<(Binding, Held)>>>,
}

fn addr(b: &Binding) -> Result<Ipv4Addr> {
    if b.host_ip.is_empty() {
        return Ok(Ipv4Addr::UNSPECIFIED);
    }
    b.host_ip
        .parse()
        .map_err(|_| Error::InvalidArgument(format!("invalid host IP {:?}", b.host_ip)))
}

impl Ports {
    /// Holds every binding's host port for `owner` (a free one where it is 0) and returns
    /// them with their ports; all or none.
    pub fn reserve(&self, owner: &str, wanted: &[Binding]) -> Result<Vec<Binding>> {
        let mut got: Vec<(Binding, Held)> = Vec::new();
        for b in wanted {
            if b.host_port_end > b.host_port {
                // The first free port of the range; the last refusal when none is.
                let mut last = Err(Error::InvalidArgument("an empty host port range".into()));
                for port in b.host_port..=b.host_port_end {
                    last = self.hold(&Binding {
                        host_port: port,
                        host_port_end: 0,
                        ..b.clone()
                    });
                    if last.is_ok() {
                        break;
                    }
                }
                got.push(last?);
                continue;
            }
            got.push(self.hold(b)?);
        }
        let out: Vec<Binding> = got.iter().map(|(b, _)| b.clone()).collect();
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(owner.to_string())
            .or_default()
            .extend(got);
        Ok(out)
    }

    /// Binds one host port (a free one where it is 0).
    fn hold(&self, b: &Binding) -> Result<(Binding, Held)> {
        {
            let ip = addr(b)?;
            let sa = SocketAddrV4::new(ip, b.host_port);
            let taken = |e: std::io::Error| {
                Error::Conflict(format!(
                    "Bind for {}:{} failed: port is already allocated ({e})",
                    if b.host_ip.is_empty() { "0.0.0.0" } else { &b.host_ip },
                    b.host_port
                ))
            };
            let (held, port) = match b.proto.as_str() {
                "udp" => {
                    let s = UdpSocket::bind(sa).map_err(taken)?;
                    let port = s.local_addr().map(|a| a.port()).unwrap_or(b.host_port);
                    (Held::Udp(s), port)
                }
                "sctp" => {
                    if b.host_port == 0 {
                        return Err(Error::Unsupported("a free host port for SCTP: give one".into()));
                    }
                    (Held::None, b.host_port)
                }
                _ => {
                    let s = TcpListener::bind(sa).map_err(taken)?;
                    let port = s.local_addr().map(|a| a.port()).unwrap_or(b.host_port);
                    (Held::Tcp(s), port)
                }
            };
            let mut b = b.clone();
            b.host_port = port;
            Ok((b, held))
        }
    }

    /// Lets go of `owner`'s ports.
    pub fn release(&self, owner: &str) {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).remove(owner);
    }
}

/// The portmap plugin's `portMappings` runtime values.
pub fn port_mappings(bindings: &[Binding]) -> serde_json::Value {
    serde_json::Value::Array(
        bindings
            .iter()
            .map(|b| {
                let mut m = serde_json::json!({
                    "hostPort": b.host_port,
                    "containerPort": b.container_port,
                    "protocol": b.proto,
                });
                if !b.host_ip.is_empty() && b.host_ip != "0.0.0.0" {
                    m["hostIP"] = serde_json::json!(b.host_ip);
                }
                m
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(ip: &str, h: u16, c: u16, p: &str) -> Binding {
        Binding {
            host_ip: ip.into(),
            host_port: h,
            host_port_end: 0,
            container_port: c,
            proto: p.into(),
        }
    }

    #[test]
    fn docker_port_specs() {
        assert_eq!(parse("80").unwrap(), [b("", 0, 80, "tcp")]);
        assert_eq!(parse("8080:80").unwrap(), [b("", 8080, 80, "tcp")]);
        assert_eq!(
            parse("127.0.0.1:8080:80/udp").unwrap(),
            [b("127.0.0.1", 8080, 80, "udp")]
        );
        assert_eq!(parse("127.0.0.1::80").unwrap(), [b("127.0.0.1", 0, 80, "tcp")]);
        assert_eq!(
            parse("8000-8001:80-81").unwrap(),
            [b("", 8000, 80, "tcp"), b("", 8001, 81, "tcp")]
        );
        assert_eq!(parse("90-91").unwrap(), [b("", 0, 90, "tcp"), b("", 0, 91, "tcp")]);
        let mut ranged = b("", 8000, 80, "tcp");
        ranged.host_port_end = 8010;
        assert_eq!(parse("8000-8010:80").unwrap(), [ranged]);
        for bad in [
            "",
            "x",
            "0",
            "8080:80/icmp",
            "1:2:3:4",
            "8000-8002:80-81",
            "8080:80-81",
            "300.0.0.1:80:80",
            "70000:80",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(parse("[::1]:80:80"), Err(Error::Unsupported(_))));
        assert_eq!(parse_exposed("80/tcp").unwrap(), (80, "tcp".into()));
        assert_eq!(parse_exposed("53/UDP").unwrap(), (53, "udp".into()));
    }

    #[test]
    fn held_ports_are_refused_to_others_and_free_ones_are_chosen() {
        let p = Ports::default();
        let got = p.reserve("a", &[b("127.0.0.1", 0, 80, "tcp")]).unwrap();
        assert_ne!(got[0].host_port, 0);
        let again = p.reserve("b", &[b("127.0.0.1", got[0].host_port, 80, "tcp")]);
        assert!(matches!(again, Err(Error::Conflict(m)) if m.contains("port is already allocated")));
        // A host range: its first free port.
        let mut ranged = b("127.0.0.1", got[0].host_port, 81, "tcp");
        ranged.host_port_end = got[0].host_port.saturating_add(5);
        let r = p.reserve("c", &[ranged]).unwrap();
        assert!(r[0].host_port > got[0].host_port && r[0].host_port_end == 0, "{r:?}");
        p.release("a");
        p.reserve("b", &[b("127.0.0.1", got[0].host_port, 80, "tcp")]).unwrap();
        assert_eq!(
            port_mappings(&got)[0],
            serde_json::json!({"hostPort": got[0].host_port, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"})
        );
    }
}
