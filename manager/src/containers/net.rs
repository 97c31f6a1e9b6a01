//! A container's side of networking (docker's NetworkMode and EndpointsConfig): which
//! networks its options name, their setup before its task is created and their teardown after
//! the task is deleted, its /etc/hosts and /etc/resolv.conf, its names in the embedded DNS,
//! published ports, and `network connect`/`disconnect`.
//!
//! Order of phases at start (a bridge-type mode): the plan is checked (networks exist,
//! addresses, aliases, ports) ─► `state.network` records the namespace path and the planned
//! endpoints (persisted: a drayd killed from here on tears down exactly this when it comes
//! back) ─► namespace ─► host ports held ─► CNI ADD per network (loopback first) ─► the
//! endpoints as the plugins answered (persisted) ─► names in DNS ─► hosts and resolv.conf
//! ─► the spec joins the namespace. Teardown runs the other way, to the end, and clears
//! `state.network`.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use super::record::{NetState, NetworkOpt, Options, Record, Status};
use super::{Containers, Ctr};
use crate::error::{Error, IoContext, Result};
use crate::network::{netns, ports, Binding, Endpoint, EndpointPlan, Network};

/// How a container is networked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Host,
    None,
    /// Another container's namespace (`container:NAME|ID`).
    Container(String),
    /// Bridge networks, the first one's published ports.
    Bridge(Vec<EndpointPlan>),
}

/// The network names a container's options join, in order (the mode's, then connected ones).
pub fn joined_networks(o: &Options) -> Vec<NetworkOpt> {
    let mut v = Vec::new();
    match o.network_mode.as_str() {
        "host" | "none" => {}
        m if m.starts_with("container:") => {}
        m => v.push(NetworkOpt {
            name: if m.is_empty() || m == "default" {
                "bridge".into()
            } else {
                m.to_string()
            },
            aliases: o.network_aliases.clone(),
            ip: o.ip.clone(),
        }),
    }
    v.extend(o.extra_networks.iter().cloned());
    v
}

/// The /etc/hosts of a container on bridge networks: docker's defaults, `--add-host`
/// entries, then its own address with its hostname.
fn hosts_file(hostname: &str, extra: &[(String, String)], own: Option<&str>) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for (name, ip) in extra {
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    match own {
        Some(ip) => s.push_str(&format!("{ip}\t{hostname}\n")),
        None => s.push_str(&format!("127.0.1.1\t{hostname}\n")),
    }
    s
}

/// The host's resolv.conf lines: nameservers (loopback ones dropped unless `keep_loopback`,
/// as they mean nothing in another namespace), then the rest. As docker: where the host's only
/// resolver is a local stub (systemd-resolved's 127.0.0.53), the upstream servers it uses
/// (/run/systemd/resolve/resolv.conf), and failing that Google's public resolvers.
fn host_resolv(keep_loopback: bool) -> (Vec<String>, Vec<String>) {
    let (ns, rest) = parse_resolv(
        &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        keep_loopback,
    );
    if !ns.is_empty() || keep_loopback {
        return (ns, rest);
    }
    let (upstream, _) = parse_resolv(
        &std::fs::read_to_string("/run/systemd/resolve/resolv.conf").unwrap_or_default(),
        false,
    );
    if !upstream.is_empty() {
        return (upstream, rest);
    }
    (vec!["8.8.8.8".into(), "8.8.4.4".into()], rest)
}

fn parse_resolv(text: &str, keep_loopback: bool) -> (Vec<String>, Vec<String>) {
    let (mut ns, mut rest) = (Vec::new(), Vec::new());
    for l in text.lines() {
        let mut w = l.split_whitespace();
        match w.next() {
            Some("nameserver") => {
                if let Some(a) = w.next() {
                    if keep_loopback || !(a.starts_with("127.") || a == "::1") {
                        ns.push(a.to_string());
                    }
                }
            }
            Some(_) => rest.push(l.to_string()),
            None => {}
        }
    }
    (ns, rest)
}

/// A container's resolv.conf (docker's rules): `--dns` replaces the nameservers; a
/// user-defined network's resolver (`dns_server`) comes first and alone; `--dns-search` and
/// `--dns-option` replace the host's search and options lines.
fn resolv_file(o: &Options, dns_server: Option<&str>, host_net: bool) -> String {
    let (host_ns, host_rest) = host_resolv(host_net);
    let mut out = String::new();
    let servers: Vec<String> = match dns_server {
        Some(s) => vec![s.to_string()],
        None if !o.dns.is_empty() => o.dns.clone(),
        None => host_ns,
    };
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    for l in host_rest {
        let key = l.split_whitespace().next().unwrap_or_default();
        let replaced = (key == "search" || key == "domain") && !o.dns_search.is_empty()
            || key == "options" && !o.dns_options.is_empty();
        if !replaced && !l.starts_with('#') {
            out.push_str(&l);
            out.push('\n');
        }
    }
    if !o.dns_search.is_empty() {
        out.push_str(&format!("search {}\n", o.dns_search.join(" ")));
    }
    if !o.dns_options.is_empty() {
        out.push_str(&format!("options {}\n", o.dns_options.join(" ")));
    }
    out
}

/// `--add-host NAME:IP` (IP may be `host-gateway`: the default bridge's gateway).
fn extra_hosts(o: &Options, host_gateway: &str) -> Result<Vec<(String, String)>> {
    o.extra_hosts
        .iter()
        .map(|h| {
            let (name, ip) = h
                .split_once(':')
                .filter(|(n, i)| !n.is_empty() && !i.is_empty())
                .ok_or_else(|| {
                    Error::InvalidArgument(format!("invalid argument {h:?} for --add-host: want NAME:IP"))
                })?;
            let ip = if ip == "host-gateway" { host_gateway } else { ip };
            ip.parse::<std::net::IpAddr>()
                .map_err(|_| Error::InvalidArgument(format!("invalid IP address in add-host: {ip:?}")))?;
            Ok((name.to_string(), ip.to_string()))
        })
        .collect()
}

/// The hosts and resolv.conf files of a container that has not started (no address yet).
pub fn default_files(rec: &Record, host_net: bool) -> (String, String) {
    if host_net {
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        return (hosts, resolv_file(&rec.options, None, true));
    }
    (
        hosts_file(&rec.resolved.hostname, &[], None),
        resolv_file(&rec.options, None, false),
    )
}

impl Containers {
    /// The container's network mode, with its networks looked up (at create and at start).
    pub(super) fn network_mode(&self, o: &Options) -> Result<Mode> {
        let m = o.network_mode.as_str();
        let mode = match m {
            "host" => Mode::Host,
            "none" => Mode::None,
            m if m.starts_with("container:") => {
                let target = &m["container:".len()..];
                if target.is_empty() {
                    return Err(Error::InvalidArgument(
                        "--network container: needs a container name or ID".into(),
                    ));
                }
                Mode::Container(target.to_string())
            }
            _ => {
                let mut plans = Vec::new();
                for n in joined_networks(o) {
                    let network = self.networks.get(&n.name)?;
                    if network.driver != "bridge" {
                        return Err(Error::InvalidArgument(format!(
                            "container cannot be connected to network {} (driver {}) and to others",
                            network.name, network.driver
                        )));
                    }
                    plans.push(EndpointPlan {
                        network,
                        aliases: n.aliases,
                        ip: n.ip,
                    });
                }
                self.networks.validate(&plans)?;
                Mode::Bridge(plans)
            }
        };
        let bridged = matches!(mode, Mode::Bridge(_));
        if !bridged && (!o.ports.is_empty() || o.publish_all) {
            return Err(Error::InvalidArgument(
                "conflicting options: port publishing and the container type network mode".into(),
            ));
        }
        if matches!(mode, Mode::Container(_))
            && (!o.dns.is_empty() || !o.extra_hosts.is_empty() || !o.hostname.is_empty())
        {
            return Err(Error::InvalidArgument(
                "conflicting options: dns, add-host or hostname and the network mode container".into(),
            ));
        }
        if !bridged && (!o.network_aliases.is_empty() || !o.ip.is_empty()) {
            return Err(Error::InvalidArgument(
                "network-scoped aliases and fixed addresses need a user-defined network".into(),
            ));
        }
        extra_hosts(o, "0.0.0.0")?;
        for d in &o.dns {
            d.parse::<std::net::IpAddr>()
                .map_err(|_| Error::InvalidArgument(format!("{d} is not an ip address")))?;
        }
        Ok(mode)
    }

    /// The namespace the spec joins: the container's own bridge namespace, or the one of the
    /// container it shares (its netns file, its process's, or drayd's own for a host one).
    pub(super) fn netns_to_join(&self, rec: &Record) -> Option<String> {
        let m = rec.options.network_mode.as_str();
        if let Some(target) = m.strip_prefix("container:") {
            let t = self.find(target).ok()?.record();
            if !t.state.network.netns.is_empty() {
                return Some(t.state.network.netns.clone());
            }
            if t.options.network_mode == "host" {
                return Some(format!("/proc/{}/ns/net", std::process::id()));
            }
            return (t.state.pid > 0).then(|| format!("/proc/{}/ns/net", t.state.pid));
        }
        (!rec.state.network.netns.is_empty()).then(|| rec.state.network.netns.clone())
    }

    /// The published ports a container asks for: `-p` as given, `-P` every exposed port not
    /// published otherwise (to a free host port).
    fn wanted_ports(rec: &Record) -> Result<Vec<Binding>> {
        let mut v = rec.options.ports.clone();
        if rec.options.publish_all {
            for e in &rec.resolved.exposed_ports {
                let (port, proto) = ports::parse_exposed(e)?;
                if !v.iter().any(|b| b.container_port == port && b.proto == proto) {
                    v.push(Binding {
                        container_port: port,
                        proto,
                        ..Binding::default()
                    });
                }
            }
        }
        Ok(v)
    }

    /// Sets up the container's network before its task is created (see the module doc).
    pub(super) async fn setup_network(self: &Arc<Self>, c: &Arc<Ctr>) -> Result<()> {
        let rec = c.record();
        let mode = self.network_mode(&rec.options)?;
        let dir = self.data_dir.join(&rec.id);
        let plans = match mode {
            Mode::Host => {
                let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
                return self.write_net_files(&dir, &hosts, &resolv_file(&rec.options, None, true));
            }
            // A namespace of drayd's with loopback up, as docker's `none`.
            Mode::None => Vec::new(),
            Mode::Container(target) => {
                let t = self.find(&target)?;
                let tr = t.record();
                if !matches!(tr.state.status, Status::Running | Status::Paused) {
                    return Err(Error::Conflict(format!(
                        "cannot join network of a non running container: {target}"
                    )));
                }
                if t.id == c.id {
                    return Err(Error::InvalidArgument("cannot join own network".into()));
                }
                // Its names and resolver are the other container's.
                let tdir = self.data_dir.join(&t.id);
                for f in ["hosts", "resolv.conf", "hostname"] {
                    let _ = std::fs::copy(tdir.join(f), dir.join(f));
                }
                return Ok(());
            }
            Mode::Bridge(plans) => plans,
        };
        let path = self.networks.netns_path(&rec.id);
        // Recorded before anything is made: a restart of drayd tears down exactly this.
        let planned: Vec<Endpoint> = plans
            .iter()
            .enumerate()
            .map(|(i, p)| Endpoint {
                network: p.network.name.clone(),
                network_id: p.network.id.clone(),
                ifname: format!("eth{i}"),
                aliases: p.aliases.clone(),
                ..Endpoint::default()
            })
            .collect();
        c.update(|r| {
            r.state.network = NetState {
                netns: path.display().to_string(),
                endpoints: planned,
                ports: Vec::new(),
            }
        });
        self.persist(c).await?;
        let done = self.setup_bridges(c, &rec, &path, &plans).await;
        if let Err(e) = done {
            self.teardown_network(c).await;
            return Err(e);
        }
        Ok(())
    }

    async fn setup_bridges(
        self: &Arc<Self>,
        c: &Arc<Ctr>,
        rec: &Record,
        path: &Path,
        plans: &[EndpointPlan],
    ) -> Result<()> {
        let _ = netns::remove(path);
        netns::create(path)?;
        let bound = self.networks.ports.reserve(&rec.id, &Self::wanted_ports(rec)?)?;
        let endpoints = self.networks.attach(&rec.id, path, plans, &bound).await?;
        c.update(|r| {
            r.state.network.endpoints = endpoints.clone();
            r.state.network.ports = bound;
        });
        self.persist(c).await?;
        for (ep, p) in endpoints.iter().zip(plans) {
            self.register_names(rec, ep, &p.network)?;
        }
        let dns = endpoints
            .iter()
            .zip(plans)
            .find(|(_, p)| p.network.user_defined())
            .map(|(e, _)| e.gateway.clone());
        let dir = self.data_dir.join(&rec.id);
        let hosts = hosts_file(
            &rec.resolved.hostname,
            &self.add_hosts(rec)?,
            endpoints.first().map(|e| e.address()),
        );
        self.write_net_files(&dir, &hosts, &resolv_file(&rec.options, dns.as_deref(), false))
    }

    fn add_hosts(&self, rec: &Record) -> Result<Vec<(String, String)>> {
        let gw = self.networks.get("bridge").map(|n| n.gateway).unwrap_or_default();
        extra_hosts(&rec.options, &gw)
    }

    fn write_net_files(&self, dir: &Path, hosts: &str, resolv: &str) -> Result<()> {
        // Rewritten in place: they are bind-mounted files.
        std::fs::write(dir.join("hosts"), hosts).ctx(|| "writing hosts".to_string())?;
        std::fs::write(dir.join("resolv.conf"), resolv).ctx(|| "writing resolv.conf".to_string())
    }

    /// The container's names on a user-defined network: its name, short ID and aliases.
    pub(super) fn register_names(&self, rec: &Record, ep: &Endpoint, n: &Network) -> Result<()> {
        if !n.user_defined() {
            return Ok(());
        }
        let gw: Ipv4Addr = n
            .gateway
            .parse()
            .map_err(|_| Error::BadContent(format!("network {}: bad gateway {}", n.name, n.gateway)))?;
        self.networks.dns.listen(
            &n.id,
            crate::network::dns::Scope {
                gateway: gw,
                subnet: crate::network::Cidr::parse(&n.subnet)?,
                internal: n.internal,
            },
        )?;
        let mut names = vec![rec.name.clone(), rec.id[..12].to_string()];
        names.extend(ep.aliases.iter().cloned());
        if let Ok(ip) = ep.address().parse() {
            let upstream = rec.options.dns.iter().filter_map(|s| s.parse().ok()).collect();
            self.networks.dns.register(&n.id, &rec.id, &names, ip, upstream);
        }
        Ok(())
    }

    /// After a restart of drayd: a running container's ports are held again and its names
    /// answered again.
    pub(super) fn restore_network(&self, rec: &Record) {
        if !rec.state.network.ports.is_empty() {
            if let Err(e) = self.networks.ports.reserve(&rec.id, &rec.state.network.ports) {
                tracing::warn!(id = %rec.id, "holding the published ports again: {e}");
            }
        }
        for ep in &rec.state.network.endpoints {
            if let Ok(n) = self.networks.get(&ep.network_id) {
                if let Err(e) = self.register_names(rec, ep, &n) {
                    tracing::warn!(id = %rec.id, "DNS names: {e}");
                }
            }
        }
    }

    /// Tears down what `state.network` records (the task is gone); idempotent.
    pub(super) async fn teardown_network(&self, c: &Ctr) {
        let st = c.record().state.network;
        if st == NetState::default() {
            return;
        }
        self.networks.dns.unregister(&c.id);
        self.networks.ports.release(&c.id);
        let path = Path::new(&st.netns);
        if !st.netns.is_empty() {
            if let Err(e) = self.networks.detach(&c.id, path, &st.endpoints).await {
                tracing::warn!(id = %c.id, "{e}");
            }
            if let Err(e) = netns::remove(path) {
                tracing::warn!(id = %c.id, "{e}");
            }
        }
        c.update(|r| r.state.network = NetState::default());
        if let Err(e) = self.persist(c).await {
            tracing::warn!(id = %c.id, "recording the network teardown: {e}");
        }
    }

    /// The containers with an endpoint on network `id` now.
    pub fn network_users(&self, id: &str) -> Vec<String> {
        self.table_lock()
            .values()
            .filter(|c| c.record().state.network.endpoints.iter().any(|e| e.network_id == id))
            .map(|c| c.id.clone())
            .collect()
    }

    /// `network rm`: refused while a container has an endpoint on it (planned endpoints of a
    /// container being started count).
    pub async fn remove_network(&self, key: &str) -> Result<Network> {
        self.networks
            .remove(key, &|id| !self.network_users(id).is_empty())
            .await
    }

    /// `network connect`: a container joins one more network, at once when it runs.
    pub async fn connect(self: &Arc<Self>, key: &str, network: &str, aliases: Vec<String>, ip: String) -> Result<()> {
        let c = self.find(key)?;
        let _op = c.op.lock().await;
        let rec = c.record();
        let n = self.networks.get(network)?;
        let mode = self.network_mode(&rec.options)?;
        let Mode::Bridge(plans) = mode else {
            return Err(Error::Conflict(
                "container sharing network namespace with another container or host cannot be connected to any other network".into(),
            ));
        };
        if plans.iter().any(|p| p.network.id == n.id) {
            return Err(Error::Conflict(format!(
                "endpoint with name {} already exists in network {}",
                rec.name, n.name
            )));
        }
        let plan = EndpointPlan {
            network: n.clone(),
            aliases: aliases.clone(),
            ip: ip.clone(),
        };
        self.networks.validate(std::slice::from_ref(&plan))?;
        let running =
            matches!(rec.state.status, Status::Running | Status::Paused) && !rec.state.network.netns.is_empty();
        if running {
            let used: Vec<String> = rec.state.network.endpoints.iter().map(|e| e.ifname.clone()).collect();
            let ifname = (0..)
                .map(|i| format!("eth{i}"))
                .find(|f| !used.contains(f))
                .unwrap_or_default();
            let path = std::path::PathBuf::from(&rec.state.network.netns);
            // Recorded before the ADD, as at start: a crash from here on is torn down.
            c.update(|r| {
                r.state.network.endpoints.push(Endpoint {
                    network: n.name.clone(),
                    network_id: n.id.clone(),
                    ifname: ifname.clone(),
                    aliases: aliases.clone(),
                    ..Endpoint::default()
                })
            });
            self.persist(&c).await?;
            match self.networks.attach_one(&rec.id, &path, &ifname, &plan).await {
                Ok(ep) => {
                    c.update(|r| {
                        if let Some(e) = r.state.network.endpoints.iter_mut().find(|e| e.ifname == ifname) {
                            *e = ep.clone();
                        }
                    });
                    if let Err(e) = self.register_names(&rec, &ep, &n) {
                        tracing::warn!(id = %rec.id, network = %n.name, "DNS names: {e}");
                    }
                }
                Err(e) => {
                    c.update(|r| r.state.network.endpoints.retain(|e| e.ifname != ifname));
                    self.persist(&c).await?;
                    return Err(e);
                }
            }
        }
        c.update(|r| {
            r.options.extra_networks.push(NetworkOpt {
                name: n.name.clone(),
                aliases,
                ip,
            })
        });
        self.persist(&c).await?;
        self.network_event(&n, "connect", Some(&c.id));
        Ok(())
    }

    /// `network disconnect`: the container leaves a network, at once when it runs.
    pub async fn disconnect(self: &Arc<Self>, key: &str, network: &str) -> Result<()> {
        let c = self.find(key)?;
        let _op = c.op.lock().await;
        let rec = c.record();
        let n = self.networks.get(network)?;
        let joined = joined_networks(&rec.options);
        if !joined
            .iter()
            .any(|j| self.networks.get(&j.name).is_ok_and(|x| x.id == n.id))
        {
            return Err(Error::Conflict(format!(
                "container {} is not connected to network {}",
                rec.name, n.name
            )));
        }
        if let Some(ep) = rec.state.network.endpoints.iter().find(|e| e.network_id == n.id) {
            let path = std::path::PathBuf::from(&rec.state.network.netns);
            self.networks.detach_one(&rec.id, &path, ep).await?;
            self.networks.dns.unregister_on(&n.id, &rec.id);
            c.update(|r| r.state.network.endpoints.retain(|e| e.network_id != n.id));
        }
        c.update(|r| {
            let primary = joined_networks(&r.options)
                .first()
                .is_some_and(|j| self.networks.get(&j.name).is_ok_and(|x| x.id == n.id));
            r.options
                .extra_networks
                .retain(|e| self.networks.get(&e.name).map_or(true, |x| x.id != n.id));
            if primary {
                // The next network it is on takes the first place (with the published ports);
                // without one it has no network next time (docker keeps no endpoint either).
                match r.options.extra_networks.first().cloned() {
                    Some(next) => {
                        r.options.extra_networks.remove(0);
                        r.options.network_mode = next.name;
                        r.options.network_aliases = next.aliases;
                        r.options.ip = next.ip;
                    }
                    None => {
                        r.options.network_mode = "none".into();
                        r.options.network_aliases.clear();
                        r.options.ip.clear();
                        r.options.ports.clear();
                        r.options.publish_all = false;
                    }
                }
            }
        });
        self.persist(&c).await?;
        self.network_event(&n, "disconnect", Some(&c.id));
        Ok(())
    }
}

impl Containers {
    /// docker's network events (create, destroy, connect, disconnect), with docker's
    /// attributes: name, type, and the container for connect and disconnect.
    pub fn network_event(&self, n: &Network, action: &str, container: Option<&str>) {
        let mut attrs = vec![("name", n.name.as_str()), ("type", n.driver.as_str())];
        if let Some(c) = container {
            attrs.push(("container", c));
        }
        self.store.events.publish("network", action, &n.id, &attrs);
    }

    /// docker's `network inspect` document.
    pub fn network_document(&self, key: &str) -> Result<serde_json::Value> {
        use serde_json::json;
        let n = self.networks.get(key)?;
        let mut containers = serde_json::Map::new();
        for c in self.table_lock().values() {
            let r = c.record();
            for e in r.state.network.endpoints.iter().filter(|e| e.network_id == n.id) {
                containers.insert(
                    r.id.clone(),
                    json!({
                        "Name": r.name,
                        "EndpointID": format!("{}-{}", &r.id[..12], e.ifname),
                        "MacAddress": e.mac,
                        "IPv4Address": e.ip,
                        "IPv6Address": "",
                    }),
                );
            }
        }
        let config = if n.subnet.is_empty() {
            json!([])
        } else {
            json!([{"Subnet": n.subnet, "Gateway": n.gateway}])
        };
        let mut options = serde_json::Map::new();
        if n.driver == "bridge" {
            options.insert("com.docker.network.bridge.name".into(), json!(n.bridge));
        }
        Ok(json!({
            "Name": n.name,
            "Id": n.id,
            "Created": crate::logs::format_time(n.created),
            "Scope": "local",
            "Driver": n.driver,
            "EnableIPv6": false,
            "IPAM": {"Driver": "default", "Options": {}, "Config": config},
            "Internal": n.internal,
            "Attachable": false,
            "Ingress": false,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": false,
            "Containers": containers,
            "Options": options,
            "Labels": n.labels,
        }))
    }

    /// `network prune`: every user-defined network without endpoints that the filters
    /// (docker's `label=`, `label!=`, `until=`) select; their names.
    pub async fn prune_networks(&self, filters: &[String]) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for n in self.networks.list() {
            if n.predefined() || !self.network_users(&n.id).is_empty() || !network_filter(&n, filters)? {
                continue;
            }
            if self.remove_network(&n.id).await.is_ok() {
                removed.push(n.name);
            }
        }
        Ok(removed)
    }
}

/// docker's `until=`: a Go-style duration before now ("90s", "10m", "24h") or Unix seconds.
fn until_nanos(v: &str) -> Option<i64> {
    if let Ok(secs) = v.parse::<f64>() {
        return Some((secs * 1e9) as i64);
    }
    let (num, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit() && c != '.')?);
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Some(crate::meta::now_nanos() - (secs * 1e9) as i64)
}

/// docker's prune filters for networks.
fn network_filter(n: &Network, filters: &[String]) -> Result<bool> {
    for f in filters {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| Error::InvalidArgument(format!("bad format of filter (expected name=value): {f}")))?;
        let label = |spec: &str| match spec.split_once('=') {
            Some((lk, lv)) => n.labels.get(lk).map(String::as_str) == Some(lv),
            None => n.labels.contains_key(spec),
        };
        let ok = match k {
            "label" => label(v),
            "label!" => !label(v),
            "until" => {
                let t = until_nanos(v).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "invalid until filter {v:?}: a duration (10m, 24h) or a Unix time"
                    ))
                })?;
                n.created < t
            }
            other => return Err(Error::InvalidArgument(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_resolv_files() {
        let h = hosts_file("abc", &[("db".into(), "10.0.0.9".into())], Some("172.29.0.2"));
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("10.0.0.9\tdb\n"));
        assert!(h.ends_with("172.29.0.2\tabc\n"), "{h}");
        let o = Options {
            dns: vec!["192.0.2.1".into()],
            dns_search: vec!["example.org".into()],
            dns_options: vec!["ndots:2".into()],
            ..Options::default()
        };
        let r = resolv_file(&o, None, false);
        assert!(r.starts_with("nameserver 192.0.2.1\n"), "{r}");
        assert!(
            r.contains("search example.org\n") && r.contains("options ndots:2\n"),
            "{r}"
        );
        let r = resolv_file(&o, Some("10.91.0.1"), false);
        assert!(
            r.starts_with("nameserver 10.91.0.1\n") && !r.contains("192.0.2.1"),
            "{r}"
        );
        assert!(extra_hosts(
            &Options {
                extra_hosts: vec!["x".into()],
                ..Options::default()
            },
            ""
        )
        .is_err());
        let e = extra_hosts(
            &Options {
                extra_hosts: vec!["gw:host-gateway".into()],
                ..Options::default()
            },
            "172.29.0.1",
        )
        .unwrap();
        assert_eq!(e, [("gw".to_string(), "172.29.0.1".to_string())]);
    }

    #[test]
    fn joined_networks_follow_docker_modes() {
        let names = |mode: &str| {
            joined_networks(&Options {
                network_mode: mode.into(),
                extra_networks: vec![NetworkOpt {
                    name: "x".into(),
                    ..NetworkOpt::default()
                }],
                ..Options::default()
            })
            .into_iter()
            .map(|n| n.name)
            .collect::<Vec<_>>()
        };
        assert_eq!(names(""), ["bridge", "x"]);
        assert_eq!(names("mynet"), ["mynet", "x"]);
        assert_eq!(names("host"), ["x"]);
        assert_eq!(names("container:abc"), ["x"]);
    }
}
