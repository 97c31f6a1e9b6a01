//! drayd's own packet filter rules, per network rather than per container (the plugins keep
//! theirs: only `portmap`'s DNAT is per container, and only for one that publishes ports):
//!
//! - isolation between networks, and `--internal` networks without a way in or out (docker's
//!   DOCKER-ISOLATION chains);
//! - masquerade of what leaves a network for elsewhere (docker's `-s SUBNET ! -o BRIDGE -j
//!   MASQUERADE`), so that the bridge plugin runs without `ipMasq` and a container's start and
//!   exit cost no rule changes;
//! - the containers' forwarded traffic accepted where the host's FORWARD policy drops (docker's
//!   DOCKER-FORWARD): what comes from a bridge, and what goes to it when it belongs to a
//!   connection the container made or was DNAT'd to it (a published port).
//!
//! The first two live in one nftables table, `inet dray`, written whole and atomically from
//! the list of bridges each time a network comes or goes (and before the first container is
//! attached): there is no partial state to undo, and a removed network's rules are gone with
//! the next write. Its forward chain runs before iptables' filter FORWARD (priority filter - 1),
//! and a drop there is final. The accepts must be in iptables' own FORWARD chain (an accept in
//! another base chain cannot overrule its drop policy): one chain, `DRAY-FORWARD`, written whole
//! with `iptables-restore --noflush`, jumped to from the top of FORWARD.

use crate::error::{Error, Result};

/// One bridge network as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    pub ifname: String,
    /// IPv4 CIDR.
    pub subnet: String,
    pub internal: bool,
}

/// The nftables table's text for `bridges`.
pub fn ruleset(bridges: &[Bridge]) -> String {
    let mut forward = String::new();
    let mut nat = String::new();
    let quoted = |names: &[&str]| names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ");
    for b in bridges {
        let n = &b.ifname;
        if b.internal {
            // Nothing in or out but between its own containers.
            forward.push_str(&format!("\t\tiifname \"{n}\" oifname != \"{n}\" drop\n"));
            forward.push_str(&format!("\t\toifname \"{n}\" iifname != \"{n}\" drop\n"));
            continue;
        }
        let others: Vec<&str> = bridges
            .iter()
            .filter(|o| o.ifname != *n)
            .map(|o| o.ifname.as_str())
            .collect();
        if !others.is_empty() {
            forward.push_str(&format!("\t\tiifname \"{n}\" oifname {{ {} }} drop\n", quoted(&others)));
        }
        nat.push_str(&format!("\t\toifname != \"{n}\" ip saddr {} masquerade\n", b.subnet));
    }
    // Declared, deleted and made again in one transaction: the whole table is replaced.
    format!(
        "table inet dray\ndelete table inet dray\ntable inet dray {{\n\tchain forward {{\n\t\ttype filter hook forward priority filter - 1; policy accept;\n{forward}\t}}\n\tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n{nat}\t}}\n}}\n"
    )
}

/// The `DRAY-FORWARD` chain for `bridges`, as `iptables-restore --noflush` input (declaring
/// the chain flushes it).
pub fn forward_chain(bridges: &[Bridge]) -> String {
    let mut s = String::from("*filter\n:DRAY-FORWARD - [0:0]\n");
    for b in bridges {
        let n = &b.ifname;
        if b.internal {
            s.push_str(&format!("-A DRAY-FORWARD -i {n} -o {n} -j ACCEPT\n"));
        } else {
            s.push_str(&format!("-A DRAY-FORWARD -i {n} -j ACCEPT\n"));
            s.push_str(&format!(
                "-A DRAY-FORWARD -o {n} -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT\n"
            ));
        }
    }
    s.push_str("COMMIT\n");
    s
}

/// Runs `program args` with `input` on its stdin; its stderr in the error.
async fn feed(program: &str, args: &[&str], input: &str) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::io(format!("running {program}"), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes()).await;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| Error::io(format!("waiting for {program}"), e))?;
    if !out.status.success() {
        return Err(Error::Remote(format!(
            "{program} refused drayd's rules: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Replaces drayd's rules with those for `bridges`.
pub async fn apply(bridges: &[Bridge]) -> Result<()> {
    feed("nft", &["-f", "-"], &ruleset(bridges)).await?;
    feed("iptables-restore", &["-w", "--noflush"], &forward_chain(bridges)).await?;
    let jump = ["-w", "-C", "FORWARD", "-j", "DRAY-FORWARD"];
    let present = tokio::process::Command::new("iptables")
        .args(jump)
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .map_err(|e| Error::io("running iptables", e))?
        .success();
    if !present {
        feed("iptables", &["-w", "-I", "FORWARD", "1", "-j", "DRAY-FORWARD"], "").await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridges() -> Vec<Bridge> {
        vec![
            Bridge {
                ifname: "dray0".into(),
                subnet: "172.29.0.0/16".into(),
                internal: false,
            },
            Bridge {
                ifname: "dray-a".into(),
                subnet: "10.91.0.0/24".into(),
                internal: false,
            },
            Bridge {
                ifname: "dray-i".into(),
                subnet: "10.91.1.0/24".into(),
                internal: true,
            },
        ]
    }

    #[test]
    fn networks_are_isolated_masqueraded_and_internal_ones_closed() {
        let r = ruleset(&bridges());
        assert!(r.starts_with("table inet dray\ndelete table inet dray\n"), "{r}");
        assert!(
            r.contains("iifname \"dray0\" oifname { \"dray-a\", \"dray-i\" } drop"),
            "{r}"
        );
        assert!(
            r.contains("iifname \"dray-a\" oifname { \"dray0\", \"dray-i\" } drop"),
            "{r}"
        );
        assert!(r.contains("iifname \"dray-i\" oifname != \"dray-i\" drop"), "{r}");
        assert!(r.contains("oifname \"dray-i\" iifname != \"dray-i\" drop"), "{r}");
        assert!(r.contains("priority filter - 1"), "{r}");
        assert!(
            r.contains("oifname != \"dray0\" ip saddr 172.29.0.0/16 masquerade"),
            "{r}"
        );
        assert!(!r.contains("10.91.1.0/24 masquerade"), "{r}");
    }

    #[test]
    fn forwarded_traffic_is_accepted_per_bridge() {
        let f = forward_chain(&bridges());
        assert!(
            f.starts_with("*filter\n:DRAY-FORWARD - [0:0]\n") && f.ends_with("COMMIT\n"),
            "{f}"
        );
        assert!(f.contains("-A DRAY-FORWARD -i dray0 -j ACCEPT\n"), "{f}");
        assert!(f.contains("-A DRAY-FORWARD -o dray-a -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT\n"));
        assert!(f.contains("-A DRAY-FORWARD -i dray-i -o dray-i -j ACCEPT\n"), "{f}");
        assert!(!f.contains("-o dray-i -m conntrack"), "{f}");
    }
}
