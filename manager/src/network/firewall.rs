//! drayd's own packet filter rules (the plugins keep theirs): isolation between networks and
//! `--internal` networks without a way out, as docker's DOCKER-ISOLATION chains do.
//!
//! Everything lives in one nftables table, `inet dray`, written whole and atomically from the
//! list of bridges each time a network comes or goes (and when drayd starts): there is no
//! partial state to undo, and a removed network's rules are gone with the next write. The
//! table's forward chain runs before iptables' filter FORWARD (priority filter - 1), where the
//! CNI firewall plugin accepts the containers' traffic, and a drop there is final.

use crate::error::{Error, Result};

/// One bridge network as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    pub ifname: String,
    pub internal: bool,
}

/// The table's text (nft's syntax) for `bridges`.
pub fn ruleset(bridges: &[Bridge]) -> String {
    let mut rules = String::new();
    let quoted = |names: &[&str]| names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ");
    for b in bridges {
        let n = &b.ifname;
        if b.internal {
            // Nothing in or out but between its own containers.
            rules.push_str(&format!("\t\tiifname \"{n}\" oifname != \"{n}\" drop\n"));
            rules.push_str(&format!("\t\toifname \"{n}\" iifname != \"{n}\" drop\n"));
            continue;
        }
        let others: Vec<&str> = bridges
            .iter()
            .filter(|o| o.ifname != *n)
            .map(|o| o.ifname.as_str())
            .collect();
        if !others.is_empty() {
            rules.push_str(&format!("\t\tiifname \"{n}\" oifname {{ {} }} drop\n", quoted(&others)));
        }
    }
    // Declared, deleted and made again in one transaction: the whole table is replaced.
    format!(
        "table inet dray\ndelete table inet dray\ntable inet dray {{\n\tchain forward {{\n\t\ttype filter hook forward priority filter - 1; policy accept;\n{rules}\t}}\n}}\n"
    )
}

/// Replaces the table with the rules for `bridges`.
pub async fn apply(bridges: &[Bridge]) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let text = ruleset(bridges);
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::io("running nft (install nftables)", e))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(text.as_bytes()).await;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| Error::io("waiting for nft", e))?;
    if !out.status.success() {
        return Err(Error::Remote(format!(
            "nft refused drayd's rules: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_isolated_and_internal_ones_closed() {
        let r = ruleset(&[
            Bridge {
                ifname: "dray0".into(),
                internal: false,
            },
            Bridge {
                ifname: "dray-a".into(),
                internal: false,
            },
            Bridge {
                ifname: "dray-i".into(),
                internal: true,
            },
        ]);
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
    }
}
