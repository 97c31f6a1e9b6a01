//! version, info, system df, system prune, image prune.

use anyhow::Result;
use clap::Args;
use dray_proto::v1 as pb;
use serde_json::json;

use crate::client::Client;
use crate::format::{print, render, table, Format};
use crate::units::{human_size, since};
use crate::DaemonError;

#[derive(Args, Debug)]
pub struct VersionArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
}

pub async fn version(c: &Client, a: VersionArgs) -> Result<u8> {
    let client = json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": dray_proto::API_VERSION,
        "Os": std::env::consts::OS,
        "Arch": std::env::consts::ARCH,
    });
    let server = c
        .system()
        .version(pb::VersionRequest {})
        .await
        .map_err(DaemonError::from);
    let server = match server {
        Ok(s) => {
            let s = s.into_inner();
            Some(json!({
                "Version": s.version, "ApiVersion": s.api_version, "GitCommit": s.git_commit,
                "Os": s.os, "Arch": s.arch, "KernelVersion": s.kernel_version,
            }))
        }
        Err(e) => {
            if a.format.is_none() {
                print_client(&client);
            }
            return Err(e.into());
        }
    };
    let all = json!({ "Client": client, "Server": server });
    if let Some(f) = a.format {
        println!("{}", render(&f, &all)?);
        return Ok(0);
    }
    print_client(&client);
    if let Some(s) = server {
        println!();
        println!("Server: drayd");
        println!(" Version:          {}", s["Version"].as_str().unwrap_or(""));
        println!(" API version:      {}", s["ApiVersion"].as_str().unwrap_or(""));
        println!(
            " OS/Arch:          {}/{}",
            s["Os"].as_str().unwrap_or(""),
            s["Arch"].as_str().unwrap_or("")
        );
        println!(" Kernel version:   {}", s["KernelVersion"].as_str().unwrap_or(""));
    }
    Ok(0)
}

fn print_client(c: &serde_json::Value) {
    println!("Client: drayctl");
    println!(" Version:          {}", c["Version"].as_str().unwrap_or(""));
    println!(" API version:      {}", c["ApiVersion"].as_str().unwrap_or(""));
    println!(
        " OS/Arch:          {}/{}",
        c["Os"].as_str().unwrap_or(""),
        c["Arch"].as_str().unwrap_or("")
    );
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
}

pub async fn info(c: &Client, a: InfoArgs) -> Result<u8> {
    let i = c
        .system()
        .info(pb::InfoRequest {})
        .await
        .map_err(DaemonError::from)?
        .into_inner();
    let mut ds: Vec<_> = i.driver_status.iter().collect();
    ds.sort();
    let v = json!({
        "ID": i.id, "Name": i.name, "ServerVersion": i.server_version, "DockerRootDir": i.data_root,
        "ExecRoot": i.exec_root, "Driver": i.storage_driver, "DriverStatus": ds.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        "CgroupDriver": i.cgroup_driver, "CgroupVersion": i.cgroup_version, "KernelVersion": i.kernel_version,
        "OperatingSystem": i.operating_system, "OSType": i.os_type, "Architecture": i.architecture,
        "NCPU": i.ncpu, "MemTotal": i.mem_total, "Images": i.images, "Containers": i.containers,
        "ContainersRunning": i.containers_running, "ContainersPaused": i.containers_paused,
        "ContainersStopped": i.containers_stopped, "LoggingDriver": "json-file", "DefaultRuntime": i.default_runtime,
        "RegistryConfig": { "InsecureRegistryCIDRs": i.insecure_registries, "Mirrors": i.registry_mirrors },
    });
    if let Some(f) = a.format {
        println!("{}", render(&f, &v)?);
        return Ok(0);
    }
    println!("Server:");
    println!(" Containers: {}", i.containers);
    println!("  Running: {}", i.containers_running);
    println!("  Paused: {}", i.containers_paused);
    println!("  Stopped: {}", i.containers_stopped);
    println!(" Images: {}", i.images);
    println!(" Server Version: {}", i.server_version);
    println!(" Storage Driver: {}", i.storage_driver);
    for (k, v) in ds {
        println!("  {k}: {v}");
    }
    println!(" Logging Driver: json-file");
    println!(" Cgroup Driver: {}", i.cgroup_driver);
    println!(" Cgroup Version: {}", i.cgroup_version);
    println!(" Default Runtime: {}", i.default_runtime);
    println!(" Kernel Version: {}", i.kernel_version);
    println!(" Operating System: {}", i.operating_system);
    println!(" OSType: {}", i.os_type);
    println!(" Architecture: {}", i.architecture);
    println!(" CPUs: {}", i.ncpu);
    println!(" Total Memory: {:.4}GiB", i.mem_total as f64 / (1u64 << 30) as f64);
    println!(" Name: {}", i.name);
    println!(" ID: {}", i.id);
    println!(" Docker Root Dir: {}", i.data_root);
    println!(" Exec Root: {}", i.exec_root);
    println!(" Debug Mode: {}", i.log_level == "debug" || i.log_level == "trace");
    println!(" Insecure Registries:");
    for r in &i.insecure_registries {
        println!("  {r}");
    }
    if !i.registry_mirrors.is_empty() {
        println!(" Registry Mirrors:");
        for (h, m) in &i.registry_mirrors {
            println!("  {h}: {m}");
        }
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short, long)]
    pub verbose: bool,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
}

pub async fn df(c: &Client, a: DfArgs) -> Result<u8> {
    let d = c
        .system()
        .disk_usage(pb::DiskUsageRequest {})
        .await
        .map_err(DaemonError::from)?
        .into_inner();
    let active = d.images.iter().filter(|i| i.containers > 0).count();
    let unused_layers: i64 = d.layers.iter().filter(|l| l.images == 0).map(|l| l.size).sum();
    let total = d.layers_size;
    let pct = |part: i64, whole: i64| if whole > 0 { part * 100 / whole } else { 0 };
    let rows = vec![
        json!({"Type": "Images", "TotalCount": d.images.len().to_string(), "Active": active.to_string(),
               "Size": human_size(total), "Reclaimable": format!("{} ({}%)", human_size(unused_layers + if active == 0 { total - unused_layers } else { 0 }), pct(if active == 0 { total } else { unused_layers }, total))}),
        {
            // docker: a container's size is its writable layer; drayd adds its logs.
            let size: i64 = d.containers.iter().map(|c| c.size_rw + c.log_size).sum();
            let running = d
                .containers
                .iter()
                .filter(|c| c.state == "running" || c.state == "paused")
                .count();
            let idle: i64 = d
                .containers
                .iter()
                .filter(|c| c.state != "running" && c.state != "paused")
                .map(|c| c.size_rw + c.log_size)
                .sum();
            json!({"Type": "Containers", "TotalCount": d.containers.len().to_string(), "Active": running.to_string(),
                   "Size": human_size(size), "Reclaimable": format!("{} ({}%)", human_size(idle), pct(idle, size))})
        },
        {
            let size: i64 = d.volumes.iter().map(|v| v.size).sum();
            let active = d.volumes.iter().filter(|v| v.links > 0).count();
            let idle: i64 = d.volumes.iter().filter(|v| v.links == 0).map(|v| v.size).sum();
            json!({"Type": "Local Volumes", "TotalCount": d.volumes.len().to_string(), "Active": active.to_string(),
                   "Size": human_size(size), "Reclaimable": format!("{} ({}%)", human_size(idle), pct(idle, size))})
        },
        json!({"Type": "Build Cache", "TotalCount": "0", "Active": "0", "Size": "0B", "Reclaimable": "0B"}),
        json!({"Type": "Content store (compressed layers)", "TotalCount": "", "Active": "",
               "Size": human_size(d.content_size), "Reclaimable": human_size(d.content_reclaimable)}),
    ];
    let cols = [
        ("TYPE", "Type"),
        ("TOTAL", "TotalCount"),
        ("ACTIVE", "Active"),
        ("SIZE", "Size"),
        ("RECLAIMABLE", "Reclaimable"),
    ];
    print(&Format::parse(a.format.as_deref()), &cols, &rows)?;
    if a.verbose {
        println!("\nImages space usage:\n");
        let rows: Vec<Vec<String>> = d
            .images
            .iter()
            .map(|i| {
                let (repo, tag) = i
                    .repo_tags
                    .first()
                    .and_then(|t| t.rsplit_once(':'))
                    .map(|(r, t)| (r.to_string(), t.to_string()))
                    .unwrap_or(("<none>".into(), "<none>".into()));
                vec![
                    repo,
                    tag,
                    i.id.trim_start_matches("sha256:").chars().take(12).collect(),
                    since(&i.created),
                    human_size(i.size),
                    human_size(i.shared_size.max(0)),
                    human_size(i.size - i.shared_size.max(0)),
                    i.containers.to_string(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &[
                    "REPOSITORY",
                    "TAG",
                    "IMAGE ID",
                    "CREATED",
                    "SIZE",
                    "SHARED SIZE",
                    "UNIQUE SIZE",
                    "CONTAINERS"
                ],
                &rows
            )
        );
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

async fn do_prune(c: &Client, all: bool) -> Result<u8> {
    let r = c
        .system()
        .prune(pb::PruneRequest { all, dry_run: false })
        .await
        .map_err(DaemonError::from)?
        .into_inner();
    if !r.untagged.is_empty() || !r.deleted_images.is_empty() {
        println!("Deleted Images:");
        for u in &r.untagged {
            println!("untagged: {u}");
        }
        for d in &r.deleted_images {
            println!("deleted: {d}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", human_size(r.space_reclaimed));
    Ok(0)
}

pub async fn image_prune(c: &Client, a: PruneArgs) -> Result<u8> {
    let msg = if a.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !a.force && !super::confirm(msg)? {
        return Ok(0);
    }
    do_prune(c, a.all).await
}

pub async fn prune(c: &Client, a: PruneArgs) -> Result<u8> {
    let msg = if a.all {
        "WARNING! This will remove:\n  - all images without at least one container associated to them\n  - unreferenced layers and blobs"
    } else {
        "WARNING! This will remove:\n  - all dangling images\n  - unreferenced layers and blobs"
    };
    if !a.force && !super::confirm(msg)? {
        return Ok(0);
    }
    do_prune(c, a.all).await
}
