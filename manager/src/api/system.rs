//! `dray.v1.System`.

use std::sync::Arc;

use dray_proto::v1 as pb;
use dray_proto::v1::system_server::System;
use tonic::{Request, Response, Status};

use super::blocking;
use crate::images::Store;

/// The system service.
pub struct SystemApi {
    pub store: Arc<Store>,
    pub containers: Arc<crate::containers::Containers>,
    /// A random ID made when the data root was first used (docker's `ID`).
    pub daemon_id: String,
}

fn uname() -> (String, String) {
    nix::sys::utsname::uname()
        .map(|u| {
            (
                u.release().to_string_lossy().into_owned(),
                u.nodename().to_string_lossy().into_owned(),
            )
        })
        .unwrap_or_default()
}

fn os_release() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string()))
        })
        .unwrap_or_else(|| "Linux".into())
}

fn cgroup_version() -> &'static str {
    match nix::sys::statfs::statfs("/sys/fs/cgroup") {
        Ok(s) if s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC => "2",
        _ => "1",
    }
}

fn mem_total() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .map(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            })
        })
        .flatten()
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// The version line drayd and drayctl print.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[tonic::async_trait]
impl System for SystemApi {
    async fn version(&self, _req: Request<pb::VersionRequest>) -> Result<Response<pb::VersionResponse>, Status> {
        Ok(Response::new(pb::VersionResponse {
            version: VERSION.into(),
            api_version: dray_proto::API_VERSION.into(),
            git_commit: option_env!("DRAY_GIT_COMMIT").unwrap_or("").into(),
            os: std::env::consts::OS.into(),
            arch: crate::images::types::Platform::host().architecture,
            kernel_version: uname().0,
            rust_version: option_env!("DRAY_RUSTC_VERSION").unwrap_or("").into(),
        }))
    }

    async fn info(&self, _req: Request<pb::InfoRequest>) -> Result<Response<pb::InfoResponse>, Status> {
        let store = self.store.clone();
        let images = blocking(move || store.meta.images()).await?.len() as i64;
        let all = self.containers.list();
        let (kernel, name) = uname();
        let cfg = &self.store.config;
        let mut driver_status = std::collections::HashMap::new();
        driver_status.insert("Backing Filesystem".to_string(), backing_fs(&cfg.data_root));
        Ok(Response::new(pb::InfoResponse {
            id: self.daemon_id.clone(),
            name,
            server_version: VERSION.into(),
            data_root: cfg.data_root.display().to_string(),
            exec_root: cfg.exec_root.display().to_string(),
            storage_driver: self.store.snapshots.name().into(),
            driver_status,
            cgroup_driver: "cgroupfs".into(),
            cgroup_version: cgroup_version().into(),
            kernel_version: kernel,
            operating_system: os_release(),
            os_type: "linux".into(),
            architecture: std::env::consts::ARCH.into(),
            ncpu: std::thread::available_parallelism()
                .map(|n| n.get() as i64)
                .unwrap_or(1),
            mem_total: mem_total(),
            images,
            containers: all.len() as i64,
            containers_running: all.iter().filter(|r| r.state.status.as_str() == "running").count() as i64,
            containers_paused: all.iter().filter(|r| r.state.status.as_str() == "paused").count() as i64,
            containers_stopped: all
                .iter()
                .filter(|r| !matches!(r.state.status.as_str(), "running" | "paused"))
                .count() as i64,
            insecure_registries: {
                let mut v = self.store.registries.insecure_hosts();
                v.push("127.0.0.0/8".into());
                v
            },
            registry_mirrors: self.store.registries.mirrors().into_iter().collect(),
            log_level: cfg.log_level.clone(),
            default_runtime: "io.containerd.dray.v2".into(),
        }))
    }

    async fn disk_usage(&self, _req: Request<pb::DiskUsageRequest>) -> Result<Response<pb::DiskUsageResponse>, Status> {
        let store = self.store.clone();
        let ctrs = self.containers.clone();
        let resp = blocking(move || {
            let records = ctrs.list();
            let containers: Vec<pb::ContainerUsage> = records
                .iter()
                .map(|r| {
                    let log = ctrs
                        .log_file(&r.id)
                        .map(|p| {
                            crate::logs::files(&p, 100)
                                .iter()
                                .filter_map(|f| std::fs::metadata(f).ok())
                                .map(|m| m.len() as i64)
                                .sum()
                        })
                        .unwrap_or(0);
                    pb::ContainerUsage {
                        id: r.id.clone(),
                        name: r.name.clone(),
                        image: r.image.clone(),
                        state: r.state.status.as_str().into(),
                        size_rw: ctrs.size_rw(r),
                        log_size: log,
                    }
                })
                .collect();
            let volumes: Vec<pb::VolumeUsage> = ctrs
                .volumes
                .list()?
                .into_iter()
                .map(|v| pb::VolumeUsage {
                    links: ctrs.volume_users(&v.name).len() as i64,
                    size: ctrs.volumes.size(&v.name),
                    name: v.name,
                })
                .collect();
            let images = store.list()?;
            let snaps = store.snapshots.list()?;
            let mut users: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
            for img in &images {
                for l in &img.record.layers {
                    *users.entry(l.chain_id.to_string()).or_default() += 1;
                }
            }
            let size_of = |k: &str| snaps.iter().find(|s| s.key == k).map(|s| s.size).unwrap_or(0);
            let mut out_images = Vec::new();
            for img in &images {
                let mut s = super::images::summary(img);
                s.shared_size = img
                    .record
                    .layers
                    .iter()
                    .filter(|l| users.get(&l.chain_id.to_string()).copied().unwrap_or(0) > 1)
                    .map(|l| size_of(&l.chain_id.to_string()))
                    .sum();
                out_images.push(s);
            }
            let layers: Vec<pb::LayerUsage> = snaps
                .iter()
                .filter(|s| s.committed)
                .map(|s| pb::LayerUsage {
                    chain_id: s.key.clone(),
                    size: s.size,
                    images: users.get(&s.key).copied().unwrap_or(0),
                })
                .collect();
            let (_, dead_blobs) = crate::gc::unreferenced(&store)?;
            let content_size: u64 = store.content.list()?.iter().map(|(_, s)| s).sum();
            for s in out_images.iter_mut() {
                s.containers = records.iter().filter(|r| r.image_id == s.id).count() as i64;
            }
            Ok(pb::DiskUsageResponse {
                containers,
                volumes,
                images: out_images,
                layers_size: layers.iter().map(|l| l.size).sum(),
                layers,
                content_size: content_size as i64,
                content_reclaimable: dead_blobs.iter().map(|(_, s)| *s as i64).sum(),
            })
        })
        .await?;
        Ok(Response::new(resp))
    }

    async fn prune(&self, req: Request<pb::PruneRequest>) -> Result<Response<pb::PruneResponse>, Status> {
        let req = req.into_inner();
        let store = self.store.clone();
        let resp = blocking(move || {
            let mut untagged = Vec::new();
            let mut deleted = Vec::new();
            for img in store.list()? {
                // Dangling images go, with `all` every unused one; an image a container was
                // made from stays (docker's image prune).
                let used = !store.meta.containers_of_image(&img.record.id.to_string())?.is_empty();
                if !used && (img.tags.is_empty() || req.all) {
                    if req.dry_run {
                        deleted.push(img.record.id.to_string());
                        continue;
                    }
                    let (u, d) = store.remove(&img.record.id.to_string(), true, false)?;
                    untagged.extend(u);
                    deleted.extend(d);
                }
            }
            let reclaimed = if req.dry_run {
                0
            } else {
                let report = crate::gc::collect(&store)?;
                deleted.extend(report.snapshots);
                // Partial downloads nobody resumed for a day (a pull's lease lasts as long).
                let ingests = store.content.prune_ingests(std::time::Duration::from_secs(24 * 3600))?;
                (report.bytes + ingests) as i64
            };
            Ok(pb::PruneResponse {
                deleted_images: deleted,
                untagged,
                space_reclaimed: reclaimed,
            })
        })
        .await?;
        Ok(Response::new(resp))
    }
}

fn backing_fs(p: &std::path::Path) -> String {
    use nix::sys::statfs::*;
    match statfs(p) {
        Ok(s) => match s.filesystem_type() {
            EXT4_SUPER_MAGIC => "extfs".into(),
            TMPFS_MAGIC => "tmpfs".into(),
            XFS_SUPER_MAGIC => "xfs".into(),
            BTRFS_SUPER_MAGIC => "btrfs".into(),
            OVERLAYFS_SUPER_MAGIC => "overlayfs".into(),
            t => format!("{:#x}", t.0),
        },
        Err(_) => "unknown".into(),
    }
}
