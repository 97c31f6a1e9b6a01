//! `volume create|ls|inspect|rm|prune`, as docker prints them.

use std::collections::HashMap;

use anyhow::Result;
use clap::{Args, Subcommand};
use dray_proto::v1 as pb;
use serde_json::{json, Value};

use super::Exit;
use crate::client::Client;
use crate::format::{print, Format};
use crate::units::human_size;
use crate::DaemonError;

#[derive(Subcommand, Debug)]
pub enum VolumeCmd {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// Remove one or more volumes
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove all unused local volumes
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Specify volume driver name
    #[arg(short, long, default_value = "local")]
    pub driver: String,
    /// Set metadata for a volume
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    pub name: Option<String>,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short, long)]
    pub quiet: bool,
    /// Provide filter values (e.g. 'dangling=true')
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Pretty-print volumes using a Go template
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format the output using the given Go template
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Force the removal of one or more volumes
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. 'label=<label>')
    #[arg(long)]
    pub filter: Vec<String>,
}

fn kv(list: &[String]) -> HashMap<String, String> {
    list.iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect()
}

fn filters(list: &[String]) -> Result<HashMap<String, pb::FilterValues>> {
    let mut out: HashMap<String, pb::FilterValues> = HashMap::new();
    for f in list {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| DaemonError(format!("bad format of filter (expected name=value): {f}")))?;
        out.entry(k.to_string()).or_default().values.push(v.to_string());
    }
    Ok(out)
}

fn doc(v: &pb::VolumeInfo) -> Value {
    let created = chrono::DateTime::from_timestamp(v.created / 1_000_000_000, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let mut labels: Vec<(&String, &String)> = v.labels.iter().collect();
    labels.sort();
    json!({
        "CreatedAt": created,
        "Driver": v.driver,
        "Labels": if labels.is_empty() { Value::Null } else { json!(labels.into_iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>()) },
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Options": Value::Null,
        "Scope": v.scope,
    })
}

pub async fn run(c: &Client, cmd: VolumeCmd) -> Result<u8> {
    match cmd {
        VolumeCmd::Create(a) => {
            let v = c
                .volumes()
                .create(pb::CreateVolumeRequest {
                    name: a.name.unwrap_or_default(),
                    driver: a.driver,
                    labels: kv(&a.label),
                    driver_opts: kv(&a.opt),
                })
                .await
                .map_err(DaemonError::from)?
                .into_inner();
            println!("{}", v.name);
            Ok(0)
        }
        VolumeCmd::Ls(a) => {
            let list = c
                .volumes()
                .list(pb::ListVolumesRequest {
                    filters: filters(&a.filter)?,
                })
                .await
                .map_err(DaemonError::from)?
                .into_inner()
                .volumes;
            if a.quiet {
                for v in &list {
                    println!("{}", v.name);
                }
                return Ok(0);
            }
            let objs: Vec<Value> = list
                .iter()
                .map(|v| {
                    let mut d = doc(v);
                    d["Labels"] = json!(v
                        .labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(","));
                    d["Links"] = json!(v.ref_count.to_string());
                    d["Size"] = json!("N/A");
                    d
                })
                .collect();
            print(
                &Format::parse(a.format.as_deref()),
                &[("DRIVER", "Driver"), ("VOLUME NAME", "Name")],
                &objs,
            )?;
            Ok(0)
        }
        VolumeCmd::Inspect(a) => {
            let mut out = Vec::new();
            let mut failed = false;
            for n in &a.names {
                match c.volumes().inspect(pb::InspectVolumeRequest { name: n.clone() }).await {
                    Ok(v) => out.push(doc(&v.into_inner())),
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
        VolumeCmd::Rm(a) => {
            let mut failed = false;
            for n in &a.names {
                match c
                    .volumes()
                    .remove(pb::RemoveVolumeRequest {
                        name: n.clone(),
                        force: a.force,
                    })
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
        VolumeCmd::Prune(a) => {
            if !a.force
                && !super::confirm("WARNING! This will remove all local volumes not used by at least one container.")?
            {
                return Ok(0);
            }
            let r = c
                .volumes()
                .prune(pb::PruneVolumesRequest {
                    filters: filters(&a.filter)?,
                })
                .await
                .map_err(DaemonError::from)?
                .into_inner();
            if !r.deleted.is_empty() {
                println!("Deleted Volumes:");
                for d in &r.deleted {
                    println!("{d}");
                }
                println!();
            }
            println!("Total reclaimed space: {}", human_size(r.space_reclaimed));
            Ok(0)
        }
    }
}
