//! drayd's CNI caller (CNI spec 1.0, "Section 4: Plugin Delegation" and "Section 5: Execution
//! of Network Configurations"): it runs the plugins of a network configuration list for one
//! attachment (a container's network namespace and interface), and keeps what they answered.
//!
//! - ADD runs the plugins in order, each given the previous one's result as `prevResult`;
//!   the last result is the attachment's.
//! - DEL runs them in reverse with the cached ADD result, to the end even when one fails
//!   (errors are collected), so that what later plugins undo is not left behind.
//! - CHECK runs them in order with the cached result.
//! - Each plugin sees only the runtime values (`runtimeConfig`) of the capabilities its own
//!   configuration declares (`portMappings`, `ips`, ...).
//!
//! The result cache (`<cache>/results/<network>-<container>-<ifname>`, as libcni keeps it)
//! holds the configuration list, the arguments and the result of every ADD, written before
//! ADD returns and removed after a successful DEL: a DEL after a drayd restart, or after the
//! network itself was removed, runs with exactly what the ADD had. The same caller serves the
//! Kubernetes CRI with the configurations of a CNI conf dir.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, IoContext, Result};

/// How long one plugin may run before it is killed.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A network configuration list (`.conflist`): a name, a version and plugins in order.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfList {
    pub name: String,
    pub cni_version: String,
    /// Each plugin's configuration as given (with `type`).
    pub plugins: Vec<Value>,
    /// The list as read, kept verbatim in the cache.
    pub bytes: Vec<u8>,
}

impl ConfList {
    /// Parses a configuration list (CNI spec "Section 1: Network configuration format").
    pub fn parse(bytes: &[u8]) -> Result<ConfList> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::InvalidArgument(format!("CNI configuration list: {e}")))?;
        let name = v["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Error::InvalidArgument("CNI configuration list without a name".into()))?
            .to_string();
        let cni_version = v["cniVersion"].as_str().unwrap_or("1.0.0").to_string();
        let plugins: Vec<Value> = v["plugins"]
            .as_array()
            .cloned()
            .ok_or_else(|| Error::InvalidArgument(format!("CNI configuration list {name}: no plugins")))?;
        for p in &plugins {
            if p["type"].as_str().is_none_or(|t| t.is_empty() || t.contains('/')) {
                return Err(Error::InvalidArgument(format!(
                    "CNI configuration list {name}: a plugin without a valid type"
                )));
            }
        }
        if plugins.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "CNI configuration list {name}: no plugins"
            )));
        }
        Ok(ConfList {
            name,
            cni_version,
            plugins,
            bytes: bytes.to_vec(),
        })
    }
}

/// The configurations of a CNI conf dir (as libcni reads one for kubelet's CRI): `*.conflist`
/// lists, and `*.conf`/`*.json` single plugin configurations wrapped into a list of one, in
/// lexical order of their file names. Files that do not parse are skipped with a warning, as
/// the CRI runtimes do.
pub fn load_dir(dir: &Path) -> Result<Vec<ConfList>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ctx(|| format!("reading CNI conf dir {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("conflist") | Some("conf") | Some("json")
            )
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let bytes = std::fs::read(&f).ctx(|| format!("reading {}", f.display()))?;
        let parsed = if f.extension().is_some_and(|e| e == "conflist") {
            ConfList::parse(&bytes)
        } else {
            serde_json::from_slice::<Value>(&bytes)
                .map_err(|e| Error::InvalidArgument(format!("{}: {e}", f.display())))
                .and_then(|conf| {
                    let list = json!({
                        "cniVersion": conf["cniVersion"].as_str().unwrap_or("1.0.0"),
                        "name": conf["name"],
                        "plugins": [conf],
                    });
                    ConfList::parse(&serde_json::to_vec(&list).unwrap_or_default())
                })
        };
        match parsed {
            Ok(l) => out.push(l),
            Err(e) => tracing::warn!(file = %f.display(), "skipping a CNI configuration: {e}"),
        }
    }
    Ok(out)
}

/// One attachment: what the runtime tells every plugin about the container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Runtime {
    pub container_id: String,
    /// The path of the network namespace (empty on a DEL whose namespace is gone).
    pub netns: String,
    pub ifname: String,
    /// `CNI_ARGS`: `K=V` pairs.
    pub args: Vec<(String, String)>,
    /// Runtime values by capability name (`portMappings`, `ips`, `dns`, ...).
    pub capability_args: BTreeMap<String, Value>,
}

/// What an ADD answered, in the parts drayd uses (the whole result is kept in the cache).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addresses {
    /// The container's interface's IPs as CIDRs ("172.29.0.5/16").
    pub ips: Vec<String>,
    pub gateways: Vec<String>,
    /// The container side interface's MAC.
    pub mac: String,
}

/// Reads the addresses of the container's interface `ifname` from a 1.0 result.
pub fn addresses(result: &Value, ifname: &str) -> Addresses {
    let ifaces = result["interfaces"].as_array().cloned().unwrap_or_default();
    let ours: Vec<usize> = ifaces
        .iter()
        .enumerate()
        .filter(|(_, i)| i["name"] == ifname && i["sandbox"].as_str().is_some_and(|s| !s.is_empty()))
        .map(|(n, _)| n)
        .collect();
    let mut a = Addresses {
        mac: ours
            .first()
            .and_then(|n| ifaces[*n]["mac"].as_str())
            .unwrap_or_default()
            .to_string(),
        ..Addresses::default()
    };
    for ip in result["ips"].as_array().into_iter().flatten() {
        let on_ours = match ip["interface"].as_u64() {
            Some(i) => ours.contains(&(i as usize)),
            None => true,
        };
        if !on_ours {
            continue;
        }
        if let Some(addr) = ip["address"].as_str() {
            a.ips.push(addr.to_string());
        }
        if let Some(gw) = ip["gateway"].as_str() {
            a.gateways.push(gw.to_string());
        }
    }
    a
}

/// What the cache keeps per attachment (libcni's `cniCacheV1` fields).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cached {
    kind: String,
    #[serde(rename = "containerId")]
    container_id: String,
    /// The configuration list as the ADD ran it.
    config: String,
    #[serde(rename = "ifName")]
    ifname: String,
    #[serde(rename = "networkName")]
    network_name: String,
    #[serde(rename = "cniArgs", default)]
    args: Vec<(String, String)>,
    #[serde(rename = "capabilityArgs", default)]
    capability_args: BTreeMap<String, Value>,
    #[serde(default)]
    result: Value,
}

/// The caller: where plugins are found and where results are cached.
#[derive(Debug, Clone)]
pub struct Cni {
    /// Directories searched for plugin binaries (`CNI_PATH`).
    pub plugin_dirs: Vec<PathBuf>,
    pub cache_dir: PathBuf,
}

/// A plugin's error answer (CNI spec "Section 7: Error").
fn plugin_error(plugin: &str, command: &str, code: Option<i32>, stdout: &[u8], stderr: &[u8]) -> Error {
    let parsed: Option<Value> = serde_json::from_slice(stdout).ok();
    let msg = parsed
        .as_ref()
        .and_then(|v| {
            let msg = v["msg"].as_str()?;
            Some(match v["details"].as_str().filter(|d| !d.is_empty()) {
                Some(d) => format!("{msg}: {d}"),
                None => msg.to_string(),
            })
        })
        .unwrap_or_else(|| {
            let e = String::from_utf8_lossy(stderr).trim().to_string();
            if e.is_empty() {
                format!("exit status {}", code.unwrap_or(-1))
            } else {
                e
            }
        });
    Error::Remote(format!("CNI plugin {plugin} ({command}): {msg}"))
}

impl Cni {
    pub fn new(plugin_dirs: Vec<PathBuf>, cache_dir: PathBuf) -> Cni {
        Cni { plugin_dirs, cache_dir }
    }

    fn find(&self, plugin: &str) -> Result<PathBuf> {
        self.plugin_dirs
            .iter()
            .map(|d| d.join(plugin))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "CNI plugin {plugin} not found in {} (install containernetworking-plugins)",
                    self.plugin_dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(":")
                ))
            })
    }

    fn cache_path(&self, network: &str, rt: &Runtime) -> PathBuf {
        self.cache_dir
            .join("results")
            .join(format!("{network}-{}-{}", rt.container_id, rt.ifname))
    }

    /// The stdin of one plugin: its configuration with the list's name and version, the
    /// runtime values of the capabilities it declares, and the previous result.
    fn plugin_input(list: &ConfList, plugin: &Value, rt: &Runtime, prev: Option<&Value>) -> Value {
        let mut conf = plugin.clone();
        conf["name"] = json!(list.name);
        conf["cniVersion"] = json!(list.cni_version);
        let mut runtime = serde_json::Map::new();
        if let Some(caps) = plugin["capabilities"].as_object() {
            for (cap, on) in caps {
                if on.as_bool() == Some(true) {
                    if let Some(v) = rt.capability_args.get(cap) {
                        runtime.insert(cap.clone(), v.clone());
                    }
                }
            }
        }
        if !runtime.is_empty() {
            conf["runtimeConfig"] = Value::Object(runtime);
        }
        if let Some(p) = prev {
            conf["prevResult"] = p.clone();
        }
        conf
    }

    /// Runs one plugin; its stdout on success.
    async fn exec(&self, command: &str, plugin: &Value, input: &Value, rt: &Runtime) -> Result<Vec<u8>> {
        let ty = plugin["type"].as_str().unwrap_or_default();
        let bin = self.find(ty)?;
        let path = std::env::join_paths(&self.plugin_dirs)
            .map_err(|e| Error::InvalidArgument(format!("CNI plugin path: {e}")))?;
        let args = rt
            .args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";");
        let mut cmd = tokio::process::Command::new(&bin);
        cmd.env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &rt.container_id)
            .env("CNI_NETNS", &rt.netns)
            .env("CNI_IFNAME", &rt.ifname)
            .env("CNI_ARGS", args)
            .env("CNI_PATH", path)
            // Plugins run iptables, ip and sysctl helpers.
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let started = std::time::Instant::now();
        let mut child = cmd.spawn().ctx(|| format!("running CNI plugin {}", bin.display()))?;
        let data = serde_json::to_vec(input).map_err(|e| Error::io("CNI input", std::io::Error::other(e)))?;
        if let Some(mut stdin) = child.stdin.take() {
            use tokio::io::AsyncWriteExt;
            // A plugin that exits without reading its input fails below with its own error.
            let _ = stdin.write_all(&data).await;
        }
        let out = match tokio::time::timeout(PLUGIN_TIMEOUT, child.wait_with_output()).await {
            Ok(o) => o.ctx(|| format!("waiting for CNI plugin {ty}"))?,
            Err(_) => {
                return Err(Error::Remote(format!(
                    "CNI plugin {ty} ({command}) did not finish in {} s",
                    PLUGIN_TIMEOUT.as_secs()
                )))
            }
        };
        tracing::debug!(plugin = ty, command, ifname = %rt.ifname, ms = started.elapsed().as_millis() as u64, "CNI plugin");
        if !out.status.success() {
            return Err(plugin_error(ty, command, out.status.code(), &out.stdout, &out.stderr));
        }
        Ok(out.stdout)
    }

    /// ADD of every plugin in order; the result is cached, then returned. The list and the
    /// runtime values are cached before the first plugin runs, so that a failure or a crash
    /// half-way leaves what a DEL needs (portmap, for one, removes nothing without them).
    pub async fn add(&self, list: &ConfList, rt: &Runtime) -> Result<Value> {
        self.save(list, rt, &Value::Null)?;
        let mut prev: Option<Value> = None;
        for plugin in &list.plugins {
            let input = Self::plugin_input(list, plugin, rt, prev.as_ref());
            let out = self.exec("ADD", plugin, &input, rt).await?;
            let ty = plugin["type"].as_str().unwrap_or_default();
            let result: Value = serde_json::from_slice(&out)
                .map_err(|e| Error::Remote(format!("CNI plugin {ty} (ADD) answered no valid result: {e}")))?;
            prev = Some(result);
        }
        let result = prev.unwrap_or(Value::Null);
        self.save(list, rt, &result)?;
        Ok(result)
    }

    fn save(&self, list: &ConfList, rt: &Runtime, result: &Value) -> Result<()> {
        use base64::Engine;
        let c = Cached {
            kind: "cniCacheV1".into(),
            container_id: rt.container_id.clone(),
            config: base64::engine::general_purpose::STANDARD.encode(&list.bytes),
            ifname: rt.ifname.clone(),
            network_name: list.name.clone(),
            args: rt.args.clone(),
            capability_args: rt.capability_args.clone(),
            result: result.clone(),
        };
        let path = self.cache_path(&list.name, rt);
        let data = serde_json::to_vec(&c).map_err(|e| Error::io("CNI cache", std::io::Error::other(e)))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        }
        crate::content::write_atomic(&path, &data)
    }

    /// The cached configuration list, runtime and result of an attachment, if any.
    pub fn cached(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<(ConfList, Runtime, Value)>> {
        use base64::Engine;
        let rt = Runtime {
            container_id: container_id.into(),
            ifname: ifname.into(),
            ..Runtime::default()
        };
        let path = self.cache_path(network, &rt);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let c: Cached = serde_json::from_slice(&data)
            .map_err(|e| Error::BadContent(format!("CNI cache {}: {e}", path.display())))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&c.config)
            .map_err(|e| Error::BadContent(format!("CNI cache {}: {e}", path.display())))?;
        let list = ConfList::parse(&bytes)?;
        let rt = Runtime {
            container_id: c.container_id,
            netns: String::new(),
            ifname: c.ifname,
            args: c.args,
            capability_args: c.capability_args,
        };
        Ok(Some((list, rt, c.result)))
    }

    /// DEL of every plugin in reverse order, with the cached result as `prevResult`; every
    /// plugin runs even when one fails. The cache entry goes when all succeeded.
    pub async fn del(&self, list: &ConfList, rt: &Runtime) -> Result<()> {
        let prev = self
            .cached(&list.name, &rt.container_id, &rt.ifname)?
            .map(|(_, _, r)| r)
            .filter(|r| !r.is_null());
        let mut errors = Vec::new();
        for plugin in list.plugins.iter().rev() {
            let input = Self::plugin_input(list, plugin, rt, prev.as_ref());
            if let Err(e) = self.exec("DEL", plugin, &input, rt).await {
                errors.push(e.to_string());
            }
        }
        if !errors.is_empty() {
            return Err(Error::Remote(errors.join("; ")));
        }
        let path = self.cache_path(&list.name, rt);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
        }
    }

    /// CHECK of every plugin in order with the cached result.
    pub async fn check(&self, list: &ConfList, rt: &Runtime) -> Result<()> {
        let prev = self
            .cached(&list.name, &rt.container_id, &rt.ifname)?
            .map(|(_, _, r)| r)
            .ok_or_else(|| Error::NotFound(format!("no cached CNI result for {} on {}", rt.container_id, list.name)))?;
        for plugin in &list.plugins {
            let input = Self::plugin_input(list, plugin, rt, Some(&prev));
            self.exec("CHECK", plugin, &input, rt).await?;
        }
        Ok(())
    }

    /// The attachments in the cache (network, container, ifname): what a restart must check.
    pub fn cached_attachments(&self) -> Vec<(String, String, String)> {
        let dir = self.cache_dir.join("results");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(data) = std::fs::read(e.path()) else { continue };
            if let Ok(c) = serde_json::from_slice::<Cached>(&data) {
                out.push((c.network_name, c.container_id, c.ifname));
            }
        }
        out
    }
}

/// Where the cache lives under drayd's data root.
pub fn cache_dir(data_root: &Path) -> PathBuf {
    data_root.join("network").join("cni-cache")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A plugin that logs its command and stdin, and answers with an IP on its interface.
    fn fake_plugin(dir: &Path, name: &str, fail_on: &str) {
        let log = dir.join("calls");
        let script = format!(
            r#"#!/bin/sh
input=$(cat)
echo "{name} $CNI_COMMAND $CNI_IFNAME $CNI_ARGS $input" >> {log}
if [ "$CNI_COMMAND" = "{fail_on}" ]; then
  echo '{{"cniVersion":"1.0.0","code":11,"msg":"try again","details":"{name} refused"}}'
  exit 1
fi
echo '{{"cniVersion":"1.0.0","interfaces":[{{"name":"br0"}},{{"name":"eth0","mac":"aa:bb:cc:dd:ee:ff","sandbox":"/x"}}],"ips":[{{"address":"10.9.0.5/24","gateway":"10.9.0.1","interface":1}}]}}'
"#,
            log = log.display()
        );
        let p = dir.join(name);
        std::fs::write(&p, script).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn calls(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("calls"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    #[tokio::test]
    async fn add_chains_results_and_del_runs_in_reverse_from_the_cache() {
        let d = tempfile::tempdir().unwrap();
        fake_plugin(d.path(), "one", "");
        fake_plugin(d.path(), "two", "");
        let cni = Cni::new(vec![d.path().to_path_buf()], d.path().join("cache"));
        let list = ConfList::parse(
            br#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"one"},{"type":"two","capabilities":{"portMappings":true}}]}"#,
        )
        .unwrap();
        let mut rt = Runtime {
            container_id: "c1".into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            args: vec![("IgnoreUnknown".into(), "1".into())],
            ..Runtime::default()
        };
        rt.capability_args
            .insert("portMappings".into(), json!([{"hostPort": 8080}]));
        rt.capability_args.insert("ips".into(), json!(["10.9.0.9/24"]));
        let r = cni.add(&list, &rt).await.unwrap();
        let a = addresses(&r, "eth0");
        assert_eq!(a.ips, ["10.9.0.5/24"]);
        assert_eq!(a.gateways, ["10.9.0.1"]);
        assert_eq!(a.mac, "aa:bb:cc:dd:ee:ff");
        let c = calls(d.path());
        assert_eq!(c.len(), 2);
        // Only the capability a plugin declares reaches it; the second gets the first's result.
        assert!(c[0].starts_with("one ADD eth0 IgnoreUnknown=1 "), "{}", c[0]);
        assert!(
            !c[0].contains("runtimeConfig") && !c[0].contains("prevResult"),
            "{}",
            c[0]
        );
        assert!(
            c[1].contains(r#""runtimeConfig":{"portMappings":[{"hostPort":8080}]}"#),
            "{}",
            c[1]
        );
        assert!(
            c[1].contains(r#""prevResult""#) && c[1].contains(r#""name":"net""#),
            "{}",
            c[1]
        );
        assert_eq!(cni.cached_attachments(), [("net".into(), "c1".into(), "eth0".into())]);

        // After a "restart": DEL from the cache alone, in reverse, with the cached result.
        let (list2, rt2, _) = cni.cached("net", "c1", "eth0").unwrap().unwrap();
        assert_eq!(list2, list);
        cni.del(&list2, &rt2).await.unwrap();
        let c = calls(d.path());
        assert!(c[2].starts_with("two DEL") && c[3].starts_with("one DEL"), "{c:?}");
        assert!(c[3].contains("prevResult"), "{}", c[3]);
        assert!(cni.cached("net", "c1", "eth0").unwrap().is_none());
    }

    #[tokio::test]
    async fn del_runs_every_plugin_and_reports_each_failure() {
        let d = tempfile::tempdir().unwrap();
        fake_plugin(d.path(), "one", "");
        fake_plugin(d.path(), "two", "DEL");
        let cni = Cni::new(vec![d.path().to_path_buf()], d.path().join("cache"));
        let list = ConfList::parse(br#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"one"},{"type":"two"}]}"#)
            .unwrap();
        let rt = Runtime {
            container_id: "c1".into(),
            ifname: "eth0".into(),
            ..Runtime::default()
        };
        cni.add(&list, &rt).await.unwrap();
        let e = cni.del(&list, &rt).await.unwrap_err().to_string();
        assert!(e.contains("CNI plugin two (DEL): try again: two refused"), "{e}");
        // "one" still ran, and the cache stays for a retry.
        assert!(calls(d.path()).last().unwrap().starts_with("one DEL"));
        assert!(cni.cached("net", "c1", "eth0").unwrap().is_some());
    }

    #[test]
    fn conf_dirs_are_read_in_order_with_single_configs_wrapped() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("20-b.conflist"),
            br#"{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
        )
        .unwrap();
        std::fs::write(
            d.path().join("10-a.conf"),
            br#"{"cniVersion":"0.4.0","name":"a","type":"ptp"}"#,
        )
        .unwrap();
        std::fs::write(d.path().join("30-bad.conflist"), b"{").unwrap();
        std::fs::write(d.path().join("README"), b"not a config").unwrap();
        let lists = load_dir(d.path()).unwrap();
        let names: Vec<(&str, usize, &str)> = lists
            .iter()
            .map(|l| (l.name.as_str(), l.plugins.len(), l.cni_version.as_str()))
            .collect();
        assert_eq!(names, [("a", 1, "0.4.0"), ("b", 2, "1.0.0")]);
    }

    #[test]
    fn bad_lists_are_refused() {
        assert!(ConfList::parse(b"{}").is_err());
        assert!(ConfList::parse(br#"{"name":"x","plugins":[]}"#).is_err());
        assert!(ConfList::parse(br#"{"name":"x","plugins":[{"type":"../../bin/sh"}]}"#).is_err());
    }

    #[tokio::test]
    async fn a_missing_plugin_says_what_to_install() {
        let d = tempfile::tempdir().unwrap();
        let cni = Cni::new(vec![d.path().to_path_buf()], d.path().join("cache"));
        let list = ConfList::parse(br#"{"name":"x","plugins":[{"type":"bridge"}]}"#).unwrap();
        let e = cni.add(&list, &Runtime::default()).await.unwrap_err().to_string();
        assert!(e.contains("containernetworking-plugins"), "{e}");
    }
}
