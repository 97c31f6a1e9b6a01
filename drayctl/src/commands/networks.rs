//! `network create|ls|inspect|rm|prune|connect|disconnect`, as docker prints them.

use anyhow::Result;
use clap::{Args, Subcommand};
use dray_proto::v1 as pb;
use serde_json::{json, Value};

use super::Exit;
use crate::client::Client;
use crate::format::{print, Format};
use crate::DaemonError;

#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// Remove one or more networks
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Driver to manage the Network (bridge)
    #[arg(short, long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    pub subnet: Option<String>,
    /// IPv4 Gateway for the master subnet
    #[arg(long)]
    pub gateway: Option<String>,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    /// Set metadata on a network
    #[arg(long)]
    pub label: Vec<String>,
    pub name: String,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Only display network IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Provide filter values (e.g. 'driver=bridge')
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Pretty-print networks using a Go template
    #[arg(long)]
    pub format: Option<String>,
    /// Do not truncate the output
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format the output using the given Go template
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub networks: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    #[arg(required = true)]
    pub networks: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. 'until=<timestamp>')
    #[arg(long)]
    pub filter: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long)]
    pub alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    pub ip: Option<String>,
    pub network: String,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short, long)]
    pub force: bool,
    pub network: String,
    pub container: String,
}

/// docker's `network ls` filters: driver, id, label, name, scope, type (custom|builtin),
/// dangling.
fn wanted(n: &pb::Network, filters: &[String]) -> Result<bool> {
    for f in filters {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| DaemonError(format!("bad format of filter (expected name=value): {f}")))?;
        let builtin = matches!(n.name.as_str(), "bridge" | "host" | "none");
        let ok = match k {
            "driver" => n.driver == v,
            "id" => n.id.starts_with(v),
            "name" => n.name.contains(v),
            "scope" => v == "local",
            "type" => match v {
                "custom" => !builtin,
                "builtin" => builtin,
                _ => return Err(DaemonError(format!("invalid filter: 'type'='{v}'")).into()),
            },
            "dangling" => matches!(v, "true" | "1") == (n.containers == 0 && !builtin),
            "label" => match v.split_once('=') {
                Some((lk, lv)) => n.labels.get(lk).map(String::as_str) == Some(lv),
                None => n.labels.contains_key(v),
            },
            other => return Err(DaemonError(format!("invalid filter '{other}'")).into()),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn kv(list: &[String]) -> std::collections::HashMap<String, String> {
    list.iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect()
}

pub async fn run(c: &Client, cmd: NetworkCmd) -> Result<u8> {
    match cmd {
        NetworkCmd::Create(a) => {
            let r = c
                .networks()
                .create(pb::CreateNetworkRequest {
                    name: a.name,
                    driver: a.driver,
                    subnet: a.subnet.unwrap_or_default(),
                    gateway: a.gateway.unwrap_or_default(),
                    internal: a.internal,
                    labels: kv(&a.label),
                })
                .await
                .map_err(DaemonError::from)?
                .into_inner();
            println!("{}", r.id);
            Ok(0)
        }
        NetworkCmd::Ls(a) => {
            let list = c
                .networks()
                .list(pb::ListNetworksRequest {})
                .await
                .map_err(DaemonError::from)?
                .into_inner()
                .networks;
            let mut shown = Vec::new();
            for n in list {
                if wanted(&n, &a.filter)? {
                    shown.push(n);
                }
            }
            let id = |n: &pb::Network| {
                if a.no_trunc {
                    n.id.clone()
                } else {
                    n.id[..12].to_string()
                }
            };
            if a.quiet {
                for n in &shown {
                    println!("{}", id(n));
                }
                return Ok(0);
            }
            let objs: Vec<Value> = shown
                .iter()
                .map(|n| {
                    let mut labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    labels.sort();
                    json!({
                        "ID": id(n),
                        "Name": n.name,
                        "Driver": n.driver,
                        "Scope": "local",
                        "IPv6": "false",
                        "Internal": n.internal.to_string(),
                        "Labels": labels.join(","),
                        "CreatedAt": super::containers::format_nanos(n.created),
                    })
                })
                .collect();
            print(
                &Format::parse(a.format.as_deref()),
                &[
                    ("NETWORK ID", "ID"),
                    ("NAME", "Name"),
                    ("DRIVER", "Driver"),
                    ("SCOPE", "Scope"),
                ],
                &objs,
            )?;
            Ok(0)
        }
        NetworkCmd::Inspect(a) => {
            let mut out = Vec::new();
            let mut failed = false;
            for n in &a.networks {
                match c
                    .networks()
                    .inspect(pb::InspectNetworkRequest { network: n.clone() })
                    .await
                {
                    Ok(r) => out.push(serde_json::from_str::<Value>(&r.into_inner().json)?),
                    Err(s) => {
                        eprintln!("Error: {}", s.message());
                        failed = true;
                    }
                }
            }
            super::print_documents(out, a.format.as_deref())?;
            if failed {
                return Err(Exit(1).into());
            }
            Ok(0)
        }
        NetworkCmd::Rm(a) => {
            let mut failed = false;
            for n in &a.networks {
                match c
                    .networks()
                    .remove(pb::RemoveNetworkRequest { network: n.clone() })
                    .await
                {
                    Ok(_) => println!("{n}"),
                    Err(s) => {
                        eprintln!("Error response from daemon: {}", s.message());
                        failed = true;
                    }
                }
            }
            if failed {
                return Err(Exit(1).into());
            }
            Ok(0)
        }
        NetworkCmd::Prune(a) => {
            if !a.force
                && !super::confirm("WARNING! This will remove all custom networks not used by at least one container.")?
            {
                return Ok(0);
            }
            let r = c
                .networks()
                .prune(pb::PruneNetworksRequest { filters: a.filter })
                .await
                .map_err(DaemonError::from)?
                .into_inner();
            if !r.removed.is_empty() {
                println!("Deleted Networks:");
                for n in &r.removed {
                    println!("{n}");
                }
            }
            Ok(0)
        }
        NetworkCmd::Connect(a) => {
            c.networks()
                .connect_container(pb::ConnectNetworkRequest {
                    network: a.network,
                    container: a.container,
                    aliases: a.alias,
                    ipv4_address: a.ip.unwrap_or_default(),
                })
                .await
                .map_err(DaemonError::from)?;
            Ok(0)
        }
        NetworkCmd::Disconnect(a) => {
            c.networks()
                .disconnect_container(pb::DisconnectNetworkRequest {
                    network: a.network,
                    container: a.container,
                    force: a.force,
                })
                .await
                .map_err(DaemonError::from)?;
            Ok(0)
        }
    }
}
