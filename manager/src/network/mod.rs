//! Networks: docker's model (a default `bridge`, `host`, `none`, user-defined bridge networks)
//! built from the standard CNI plugins.
//!
//! - [`cni`]: the CNI caller (ADD/DEL/CHECK, chains, `prevResult`, the result cache);
//! - [`netns`]: the named network namespace each container gets;
//! - [`ports`]: `-p`/`-P` and the host ports drayd holds;
//! - [`firewall`]: drayd's own rules (isolation between networks, `--internal`);
//! - [`dns`]: the embedded resolver of user-defined networks.
//!
//! A bridge network is one configuration list: `bridge` (the Linux bridge and its gateway
//! address) with `host-local` addresses kept under the data root, and `portmap` for an
//! endpoint that publishes ports (reachable from the host's loopback too). What is per
//! network rather than per container is drayd's own ([`firewall`]): isolation, masquerade,
//! and the FORWARD accepts, so that a container's start and exit change no rules unless it
//! publishes ports. The namespace's loopback is brought up by drayd as it makes it. A container's
//! attachment is validated first (names, addresses, ports), then set up in order (namespace
//! with loopback up, each network, its names in DNS) and torn down in reverse, to the end, from what
//! was recorded; a failure half-way tears down what was done.

pub mod cni;
pub mod dns;
pub mod firewall;
pub mod netns;
pub mod ports;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{Error, Result};
use crate::meta::Meta;

pub use ports::Binding;

/// A network's record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Network {
    pub id: String,
    pub name: String,
    /// docker's drivers: "bridge", "host", "null".
    pub driver: String,
    /// IPv4 CIDR (bridge networks).
    pub subnet: String,
    pub gateway: String,
    /// The Linux bridge.
    pub bridge: String,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    /// Unix nanoseconds.
    pub created: i64,
}

impl Network {
    /// The pre-defined networks (`bridge`, `host`, `none`) cannot be removed.
    pub fn predefined(&self) -> bool {
        matches!(self.name.as_str(), "bridge" | "host" | "none")
    }

    /// A user-defined bridge network: its containers find each other by name.
    pub fn user_defined(&self) -> bool {
        self.driver == "bridge" && self.name != "bridge"
    }
}

/// One of a container's network attachments, as recorded in its state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Endpoint {
    pub network: String,
    pub network_id: String,
    pub ifname: String,
    /// CIDR ("172.29.0.2/16").
    pub ip: String,
    pub gateway: String,
    pub mac: String,
    /// Names the container answers to on this network (user-defined networks).
    pub aliases: Vec<String>,
}

impl Endpoint {
    /// The address without its prefix length.
    pub fn address(&self) -> &str {
        self.ip.split('/').next().unwrap_or_default()
    }

    pub fn prefix_len(&self) -> u8 {
        self.ip.split_once('/').and_then(|(_, p)| p.parse().ok()).unwrap_or(0)
    }
}

/// What a container asks of one network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointPlan {
    pub network: Network,
    pub aliases: Vec<String>,
    /// A fixed address (`--ip`), without prefix.
    pub ip: String,
}

/// drayd's network settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The default network's Linux bridge.
    pub bridge_name: String,
    /// The default network's subnet.
    pub bridge_subnet: String,
    /// Where the CNI plugins are.
    pub plugin_dirs: Vec<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            bridge_name: "dray0".into(),
            bridge_subnet: "172.29.0.0/16".into(),
            plugin_dirs: vec![
                PathBuf::from("/usr/lib/cni"),
                PathBuf::from("/opt/cni/bin"),
                PathBuf::from("/usr/libexec/cni"),
            ],
        }
    }
}

/// An IPv4 network: address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: u32,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr> {
        let bad = || Error::InvalidArgument(format!("invalid subnet {s:?}: want an IPv4 CIDR such as 10.1.0.0/24"));
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| {
            if a.contains(':') {
                Error::Unsupported(format!("{s}: IPv6 networks are not supported yet"))
            } else {
                bad()
            }
        })?;
        let prefix: u8 = p.parse().ok().filter(|p| (8..=30).contains(p)).ok_or_else(bad)?;
        Ok(Cidr {
            addr: u32::from(addr),
            prefix,
        })
    }

    fn mask(&self) -> u32 {
        u32::MAX << (32 - self.prefix)
    }

    /// The network address.
    pub fn network(&self) -> u32 {
        self.addr & self.mask()
    }

    pub fn contains(&self, ip: u32) -> bool {
        ip & self.mask() == self.network()
    }

    pub fn overlaps(&self, o: &Cidr) -> bool {
        let p = self.prefix.min(o.prefix);
        let m = u32::MAX << (32 - p);
        self.addr & m == o.addr & m
    }

    /// The `n`th address of the network.
    pub fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.network() + n)
    }

    /// A usable host address: neither the network's nor the broadcast address.
    pub fn usable(&self, ip: u32) -> bool {
        self.contains(ip) && ip != self.network() && ip != self.network() | !self.mask()
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network()), self.prefix)
    }
}

/// The IPv4 routes of drayd's network namespace (destination networks), from
/// /proc/net/route: an automatic subnet never overlaps one.
fn host_routes() -> Vec<Cidr> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dst = u32::from_str_radix(f.get(1)?, 16).ok()?.swap_bytes();
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?.swap_bytes();
            (mask != 0).then(|| Cidr {
                addr: dst,
                prefix: mask.count_ones() as u8,
            })
        })
        .collect()
}

/// The pool of automatic subnets for user-defined networks: /24s of 10.91.0.0/16.
const POOL: (u32, u32) = (0x0a5b_0000, 256);

/// docker's network names.
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
        && n.as_bytes()[0].is_ascii_alphanumeric()
}

/// The network store and the attachments of containers.
pub struct Networks {
    meta: Meta,
    cni: cni::Cni,
    ipam_dir: PathBuf,
    netns_dir: PathBuf,
    settings: Settings,
    nets: Mutex<BTreeMap<String, Network>>,
    /// Network creation and removal (and the firewall writes) take it exclusively, attaching
    /// containers shared: a network is never removed while a container is being attached to
    /// it.
    change: tokio::sync::RwLock<()>,
    /// drayd's rules were written since it started: they are written before the first
    /// attachment (or network change), so that a drayd that never runs a bridged container
    /// leaves the host's packet filter alone.
    firewall_ready: std::sync::atomic::AtomicBool,
    pub ports: ports::Ports,
    pub dns: Arc<dns::Resolver>,
}

impl Networks {
    /// Opens the store and makes the pre-defined networks (the default bridge follows the
    /// settings).
    pub fn open(meta: Meta, data_root: &Path, exec_root: &Path, settings: Settings) -> Result<Networks> {
        let mut nets = BTreeMap::new();
        for r in meta.networks()? {
            let n: Network =
                serde_json::from_str(&r).map_err(|e| Error::BadContent(format!("a network record: {e}")))?;
            nets.insert(n.id.clone(), n);
        }
        let me = Networks {
            meta,
            cni: cni::Cni::new(settings.plugin_dirs.clone(), cni::cache_dir(data_root)),
            ipam_dir: data_root.join("network").join("ipam"),
            netns_dir: exec_root.join("netns"),
            settings,
            nets: Mutex::new(nets),
            change: tokio::sync::RwLock::new(()),
            firewall_ready: std::sync::atomic::AtomicBool::new(false),
            ports: ports::Ports::default(),
            dns: Arc::new(dns::Resolver::default()),
        };
        me.predefine()?;
        Ok(me)
    }

    fn nets(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Network>> {
        self.nets.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn store(&self, n: &Network, new: bool) -> Result<()> {
        let rec = serde_json::to_string(n).map_err(|e| Error::io("encoding a network", std::io::Error::other(e)))?;
        if new {
            if !self.meta.insert_network(&n.id, &n.name, &rec)? {
                return Err(Error::Conflict(format!("network with name {} already exists", n.name)));
            }
        } else {
            self.meta.update_network(&n.id, &rec)?;
        }
        self.nets().insert(n.id.clone(), n.clone());
        Ok(())
    }

    fn predefine(&self) -> Result<()> {
        let subnet = Cidr::parse(&self.settings.bridge_subnet)?;
        let gateway = subnet.host(1).to_string();
        let existing = self.nets().values().find(|n| n.name == "bridge").cloned();
        match existing {
            Some(mut n) => {
                if n.subnet != subnet.to_string() || n.bridge != self.settings.bridge_name {
                    n.subnet = subnet.to_string();
                    n.gateway = gateway;
                    n.bridge = self.settings.bridge_name.clone();
                    self.store(&n, false)?;
                }
            }
            None => self.store(
                &Network {
                    id: crate::containers::random_hex(32)?,
                    name: "bridge".into(),
                    driver: "bridge".into(),
                    subnet: subnet.to_string(),
                    gateway,
                    bridge: self.settings.bridge_name.clone(),
                    created: crate::meta::now_nanos(),
                    ..Network::default()
                },
                true,
            )?,
        }
        for (name, driver) in [("host", "host"), ("none", "null")] {
            if !self.nets().values().any(|n| n.name == name) {
                self.store(
                    &Network {
                        id: crate::containers::random_hex(32)?,
                        name: name.into(),
                        driver: driver.into(),
                        created: crate::meta::now_nanos(),
                        ..Network::default()
                    },
                    true,
                )?;
            }
        }
        Ok(())
    }

    /// Writes drayd's rules for the current bridges (before the first attachment, and after
    /// each change of networks).
    pub async fn apply_firewall(&self) -> Result<()> {
        let bridges: Vec<firewall::Bridge> = self
            .nets()
            .values()
            .filter(|n| n.driver == "bridge")
            .map(|n| firewall::Bridge {
                ifname: n.bridge.clone(),
                subnet: n.subnet.clone(),
                internal: n.internal,
            })
            .collect();
        firewall::apply(&bridges).await?;
        self.firewall_ready.store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Every network, by name.
    pub fn list(&self) -> Vec<Network> {
        let mut v: Vec<Network> = self.nets().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// A network by name, full ID or unique ID prefix (docker's lookup order).
    pub fn get(&self, key: &str) -> Result<Network> {
        let nets = self.nets();
        if let Some(n) = nets.values().find(|n| n.name == key || n.id == key) {
            return Ok(n.clone());
        }
        let by_prefix: Vec<&Network> = nets
            .values()
            .filter(|n| !key.is_empty() && n.id.starts_with(key))
            .collect();
        match by_prefix.as_slice() {
            [n] => Ok((*n).clone()),
            [] => Err(Error::NotFound(format!("network {key} not found"))),
            _ => Err(Error::InvalidArgument(format!(
                "network {key} is ambiguous ({} matches found based on ID prefix)",
                by_prefix.len()
            ))),
        }
    }

    /// `network create`: a user-defined bridge network.
    pub async fn create(
        &self,
        name: &str,
        driver: &str,
        subnet: &str,
        gateway: &str,
        internal: bool,
        labels: BTreeMap<String, String>,
    ) -> Result<Network> {
        if !valid_name(name) {
            return Err(Error::InvalidArgument(format!(
                "invalid network name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        if !driver.is_empty() && driver != "bridge" {
            return Err(Error::Unsupported(format!(
                "network driver {driver:?} is not supported: only bridge networks can be created"
            )));
        }
        let _g = self.change.write().await;
        if self.nets().values().any(|n| n.name == name) {
            return Err(Error::Conflict(format!("network with name {name} already exists")));
        }
        let taken: Vec<Cidr> = self
            .nets()
            .values()
            .filter(|n| !n.subnet.is_empty())
            .filter_map(|n| Cidr::parse(&n.subnet).ok())
            .collect();
        let cidr = if subnet.is_empty() {
            if !gateway.is_empty() {
                return Err(Error::InvalidArgument("--gateway needs --subnet".into()));
            }
            let routes = host_routes();
            (0..POOL.1)
                .map(|i| Cidr {
                    addr: POOL.0 + (i << 8),
                    prefix: 24,
                })
                .find(|c| !taken.iter().chain(routes.iter()).any(|t| t.overlaps(c)))
                .ok_or_else(|| {
                    Error::Conflict("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network".into())
                })?
        } else {
            let c = Cidr::parse(subnet)?;
            if let Some(t) = taken.iter().find(|t| t.overlaps(&c)) {
                return Err(Error::Conflict(format!(
                    "invalid pool request: Pool overlaps with other one on this address space ({c} and {t})"
                )));
            }
            c
        };
        let gw = if gateway.is_empty() {
            cidr.host(1)
        } else {
            let g: Ipv4Addr = gateway
                .parse()
                .map_err(|_| Error::InvalidArgument(format!("invalid gateway {gateway:?}")))?;
            if !cidr.usable(u32::from(g)) {
                return Err(Error::InvalidArgument(format!(
                    "gateway {gateway} is not a usable address of subnet {cidr}"
                )));
            }
            g
        };
        let id = crate::containers::random_hex(32)?;
        let n = Network {
            bridge: format!("dray-{}", &id[..10]),
            id,
            name: name.to_string(),
            driver: "bridge".into(),
            subnet: cidr.to_string(),
            gateway: gw.to_string(),
            internal,
            labels,
            created: crate::meta::now_nanos(),
        };
        self.store(&n, true)?;
        if let Err(e) = self.apply_firewall().await {
            self.nets().remove(&n.id);
            let _ = self.meta.remove_network(&n.id);
            return Err(e);
        }
        Ok(n)
    }

    /// `network rm`: the record, its bridge, its addresses and its rules; refused while
    /// `in_use` says a container has (or is getting) an endpoint on it.
    pub async fn remove(&self, key: &str, in_use: &(dyn Fn(&str) -> bool + Send + Sync)) -> Result<Network> {
        let _g = self.change.write().await;
        let n = self.get(key)?;
        if n.predefined() {
            return Err(Error::Conflict(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        if in_use(&n.id) {
            return Err(Error::Conflict(format!(
                "error while removing network: network {} id {} has active endpoints",
                n.name, n.id
            )));
        }
        self.dns.stop(&n.id);
        self.meta.remove_network(&n.id)?;
        self.nets().remove(&n.id);
        let fw = self.apply_firewall().await;
        // The bridge plugin never removes bridges: the network's goes with it.
        let _ = tokio::process::Command::new("ip")
            .args(["link", "delete", &n.bridge, "type", "bridge"])
            .stderr(std::process::Stdio::null())
            .status()
            .await;
        let _ = std::fs::remove_dir_all(self.ipam_dir.join(&n.name));
        fw?;
        Ok(n)
    }

    /// The configuration list of a bridge network; `portmap` only for an endpoint that
    /// publishes ports (its DEL scans the whole nat table: a cost every other container
    /// would pay for nothing). The cache keeps the list each ADD ran, for its DEL.
    pub fn conflist(&self, n: &Network, publishes: bool) -> cni::ConfList {
        let mut ipam = json!({
            "type": "host-local",
            "ranges": [[{"subnet": n.subnet, "gateway": n.gateway}]],
            "dataDir": self.ipam_dir,
        });
        if !n.internal {
            ipam["routes"] = json!([{"dst": "0.0.0.0/0"}]);
        }
        // Masquerade and the FORWARD accepts are drayd's, per network (`firewall`).
        let mut plugins = vec![json!({
            "type": "bridge",
            "bridge": n.bridge,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "capabilities": {"ips": true},
            "ipam": ipam,
        })];
        if !n.internal && publishes {
            plugins.push(json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}));
        }
        let v = json!({"cniVersion": "1.0.0", "name": n.name, "plugins": plugins});
        let bytes = serde_json::to_vec(&v).unwrap_or_default();
        cni::ConfList {
            name: n.name.clone(),
            cni_version: "1.0.0".into(),
            plugins: v["plugins"].as_array().cloned().unwrap_or_default(),
            bytes,
        }
    }

    /// Where container `id`'s network namespace is kept.
    pub fn netns_path(&self, id: &str) -> PathBuf {
        self.netns_dir.join(id)
    }

    /// Checks a container's plan before anything is set up: fixed addresses inside their
    /// subnets, on user-defined networks only, and aliases only where names resolve.
    pub fn validate(&self, plans: &[EndpointPlan]) -> Result<()> {
        for p in plans {
            if p.network.driver != "bridge" {
                return Err(Error::InvalidArgument(format!(
                    "container cannot be connected to network {} of driver {} together with others",
                    p.network.name, p.network.driver
                )));
            }
            if !p.ip.is_empty() {
                if !p.network.user_defined() {
                    return Err(Error::InvalidArgument(
                        "user specified IP address is supported on user defined networks only".into(),
                    ));
                }
                let ip: Ipv4Addr =
                    p.ip.parse()
                        .map_err(|_| Error::InvalidArgument(format!("invalid IPv4 address: {}", p.ip)))?;
                let c = Cidr::parse(&p.network.subnet)?;
                if !c.usable(u32::from(ip)) || p.ip == p.network.gateway {
                    return Err(Error::InvalidArgument(format!(
                        "invalid IP address {} for network {}: it is not a free host address of {c}",
                        p.ip, p.network.name
                    )));
                }
            }
            if !p.aliases.is_empty() && !p.network.user_defined() {
                return Err(Error::InvalidArgument(
                    "network-scoped aliases are only supported for user-defined networks".into(),
                ));
            }
        }
        Ok(())
    }

    /// Sets up container `id`'s networks in the namespace at `netns` (each plan in order as
    /// eth0, eth1, ...; the published ports on the first). On a failure, what was set up is
    /// torn down again.
    pub async fn attach(
        &self,
        id: &str,
        netns: &Path,
        plans: &[EndpointPlan],
        published: &[Binding],
    ) -> Result<Vec<Endpoint>> {
        if !plans.is_empty() && !self.firewall_ready.load(std::sync::atomic::Ordering::Acquire) {
            let _g = self.change.write().await;
            self.apply_firewall().await?;
        }
        let _attaching = self.change.read().await;
        for p in plans {
            // Removed since the plan was made.
            self.get(&p.network.id)?;
        }
        let ns = netns.display().to_string();
        let mut done: Vec<Endpoint> = Vec::new();
        for (i, p) in plans.iter().enumerate() {
            let ifname = format!("eth{i}");
            match self
                .add_one(id, &ns, &ifname, p, if i == 0 { published } else { &[] })
                .await
            {
                Ok(ep) => done.push(ep),
                Err(e) => {
                    // What this ADD may have done half-way is undone with the rest.
                    done.push(Endpoint {
                        network: p.network.name.clone(),
                        network_id: p.network.id.clone(),
                        ifname,
                        ..Endpoint::default()
                    });
                    if let Err(d) = self.detach(id, netns, &done).await {
                        tracing::warn!(%id, "tearing down after a failed attach: {d}");
                    }
                    return Err(e);
                }
            }
        }
        Ok(done)
    }

    async fn add_one(
        &self,
        id: &str,
        ns: &str,
        ifname: &str,
        p: &EndpointPlan,
        published: &[Binding],
    ) -> Result<Endpoint> {
        let mut rt = cni::Runtime {
            container_id: id.into(),
            netns: ns.into(),
            ifname: ifname.into(),
            ..cni::Runtime::default()
        };
        if !p.ip.is_empty() {
            let prefix = Cidr::parse(&p.network.subnet)?.prefix;
            rt.capability_args
                .insert("ips".into(), json!([format!("{}/{prefix}", p.ip)]));
        }
        if !published.is_empty() {
            rt.capability_args
                .insert("portMappings".into(), ports::port_mappings(published));
        }
        let result = self
            .cni
            .add(&self.conflist(&p.network, !published.is_empty()), &rt)
            .await?;
        let a = cni::addresses(&result, ifname);
        let ip =
            a.ips.first().cloned().ok_or_else(|| {
                Error::Remote(format!("the CNI plugins gave no address on network {}", p.network.name))
            })?;
        Ok(Endpoint {
            network: p.network.name.clone(),
            network_id: p.network.id.clone(),
            ifname: ifname.into(),
            ip,
            gateway: a.gateways.first().cloned().unwrap_or_else(|| p.network.gateway.clone()),
            mac: a.mac,
            aliases: p.aliases.clone(),
        })
    }

    /// One more network for a running container (`network connect`) as `ifname`; undone
    /// again when it fails.
    pub async fn attach_one(&self, id: &str, netns: &Path, ifname: &str, p: &EndpointPlan) -> Result<Endpoint> {
        let _attaching = self.change.read().await;
        self.get(&p.network.id)?;
        match self.add_one(id, &netns.display().to_string(), ifname, p, &[]).await {
            Ok(ep) => Ok(ep),
            Err(e) => {
                let ep = Endpoint {
                    network: p.network.name.clone(),
                    network_id: p.network.id.clone(),
                    ifname: ifname.into(),
                    ..Endpoint::default()
                };
                if let Err(d) = self.detach_one(id, netns, &ep).await {
                    tracing::warn!(%id, "tearing down after a failed connect: {d}");
                }
                Err(e)
            }
        }
    }

    /// Tears down one endpoint from what its ADD cached, or from the network's current
    /// configuration when there is no cache (an ADD that failed half-way).
    pub async fn detach_one(&self, id: &str, netns: &Path, ep: &Endpoint) -> Result<()> {
        self.del_endpoint(id, &Self::netns_arg(netns), ep).await
    }

    /// CNI_NETNS for a DEL: empty once the namespace is gone (the plugins then clean up what
    /// lives outside it).
    fn netns_arg(netns: &Path) -> String {
        if netns::exists(netns) {
            netns.display().to_string()
        } else {
            String::new()
        }
    }

    async fn del_endpoint(&self, id: &str, ns: &str, ep: &Endpoint) -> Result<()> {
        let cached = self.cni.cached(&ep.network, id, &ep.ifname)?;
        let (list, mut rt) = match cached {
            Some((l, rt, _)) => (l, rt),
            None => match self.get(&ep.network_id).or_else(|_| self.get(&ep.network)) {
                Ok(n) if n.driver == "bridge" => (
                    self.conflist(&n, true),
                    cni::Runtime {
                        container_id: id.into(),
                        ifname: ep.ifname.clone(),
                        ..cni::Runtime::default()
                    },
                ),
                // Nothing was added, and the network is gone: nothing to undo.
                _ => return Ok(()),
            },
        };
        rt.netns = ns.to_string();
        self.cni.del(&list, &rt).await
    }

    /// Tears down container `id`'s networks (reverse order). Runs to the end; the errors are
    /// collected.
    pub async fn detach(&self, id: &str, netns: &Path, endpoints: &[Endpoint]) -> Result<()> {
        let mut errors = Vec::new();
        let ns = Self::netns_arg(netns);
        for ep in endpoints.iter().rev() {
            if let Err(e) = self.del_endpoint(id, &ns, ep).await {
                errors.push(e.to_string());
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Remote(format!(
                "tearing down the network of {id}: {}",
                errors.join("; ")
            )))
        }
    }

    /// The attachments the CNI cache still holds for containers that `live` does not name:
    /// left by a drayd that died while tearing down. They are torn down now.
    pub async fn sweep(&self, live: &dyn Fn(&str) -> bool) {
        let mut by_container: BTreeMap<String, Vec<Endpoint>> = BTreeMap::new();
        for (network, container, ifname) in self.cni.cached_attachments() {
            if live(&container) {
                continue;
            }
            by_container.entry(container).or_default().push(Endpoint {
                network,
                ifname,
                ..Endpoint::default()
            });
        }
        for (id, eps) in by_container {
            let path = self.netns_path(&id);
            if let Err(e) = self.detach(&id, &path, &eps).await {
                tracing::warn!(%id, "sweeping a left network attachment: {e}");
            }
            let _ = netns::remove(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c = Cidr::parse("172.29.3.4/16").unwrap();
        assert_eq!(c.to_string(), "172.29.0.0/16");
        assert_eq!(c.host(1).to_string(), "172.29.0.1");
        assert!(c.contains(u32::from(Ipv4Addr::new(172, 29, 255, 1))));
        assert!(!c.usable(u32::from(Ipv4Addr::new(172, 29, 255, 255))));
        assert!(c.overlaps(&Cidr::parse("172.29.5.0/24").unwrap()));
        assert!(!c.overlaps(&Cidr::parse("172.30.0.0/24").unwrap()));
        assert!(Cidr::parse("10.0.0.0").is_err());
        assert!(Cidr::parse("10.0.0.0/31").is_err());
        assert!(matches!(Cidr::parse("fd00::/64"), Err(Error::Unsupported(_))));
        assert!(valid_name("my-net_1.x") && !valid_name("-x") && !valid_name("a b"));
    }

    #[tokio::test]
    async fn create_validates_and_allocates_without_overlap() {
        let d = tempfile::tempdir().unwrap();
        let meta = Meta::open(&d.path().join("meta.db")).unwrap();
        let nets = Networks::open(meta, d.path(), d.path(), Settings::default()).unwrap();
        let names: Vec<String> = nets.list().into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["bridge", "host", "none"]);
        assert_eq!(nets.get("bridge").unwrap().subnet, "172.29.0.0/16");
        // Bad input is refused before anything is stored (no nft needed for that).
        for (name, subnet, gw) in [
            ("bad name", "", ""),
            ("n1", "172.29.1.0/24", ""),
            ("n1", "10.5.0.0/24", "10.6.0.1"),
            ("n1", "", "10.6.0.1"),
            ("bridge", "", ""),
        ] {
            assert!(
                nets.create(name, "", subnet, gw, false, BTreeMap::new()).await.is_err(),
                "{name} {subnet} {gw}"
            );
        }
        assert!(matches!(
            nets.create("n1", "macvlan", "", "", false, BTreeMap::new()).await,
            Err(Error::Unsupported(_))
        ));
        assert_eq!(nets.list().len(), 3);
        assert!(matches!(nets.remove("host", &|_| false).await, Err(Error::Conflict(_))));
        let plan = |ip: &str, net: &str| EndpointPlan {
            network: nets.get(net).unwrap(),
            aliases: vec![],
            ip: ip.into(),
        };
        assert!(nets.validate(&[plan("172.29.0.9", "bridge")]).is_err());
        assert!(nets.validate(&[plan("", "bridge")]).is_ok());
    }
}
