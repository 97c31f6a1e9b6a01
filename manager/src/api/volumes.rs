//! `dray.v1.Volumes`: wire types ↔ the volume store (through `containers`, which knows
//! which containers use a volume).

use std::collections::HashMap;
use std::sync::Arc;

use dray_proto::v1 as pb;
use dray_proto::v1::volumes_server::Volumes as VolumesService;
use tonic::{Request, Response, Status};

use super::status;
use crate::containers::Containers;
use crate::error::Error;
use crate::volumes::Volume;

/// The volumes service.
pub struct VolumesApi {
    pub containers: Arc<Containers>,
}

fn info(c: &Containers, v: &Volume, size: bool) -> pb::VolumeInfo {
    pb::VolumeInfo {
        name: v.name.clone(),
        driver: "local".into(),
        mountpoint: c.volumes.mountpoint(&v.name),
        labels: v.labels.clone().into_iter().collect(),
        scope: "local".into(),
        created: v.created,
        anonymous: v.anonymous,
        ref_count: c.volume_users(&v.name).len() as i64,
        size: if size { c.volumes.size(&v.name) } else { -1 },
    }
}

/// docker's volume filters: dangling, name (substring), label (key or key=value), driver.
fn wanted(c: &Containers, v: &Volume, filters: &HashMap<String, pb::FilterValues>) -> Result<bool, String> {
    for (k, vals) in filters {
        let vals = &vals.values;
        if vals.is_empty() {
            continue;
        }
        let ok = match k.as_str() {
            "dangling" => vals.iter().any(|d| {
                let dangling = c.volume_users(&v.name).is_empty();
                matches!(d.as_str(), "true" | "1") == dangling
            }),
            "name" => vals.iter().any(|n| v.name.contains(n.as_str())),
            "driver" => vals.iter().any(|d| d == "local"),
            "label" => vals.iter().all(|l| match l.split_once('=') {
                Some((k, val)) => v.labels.get(k).map(String::as_str) == Some(val),
                None => v.labels.contains_key(l.as_str()),
            }),
            other => return Err(format!("invalid filter '{other}'")),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

#[tonic::async_trait]
impl VolumesService for VolumesApi {
    async fn create(&self, req: Request<pb::CreateVolumeRequest>) -> Result<Response<pb::VolumeInfo>, Status> {
        let r = req.into_inner();
        if !(r.driver.is_empty() || r.driver == "local") {
            return Err(status(Error::Unsupported(format!(
                "volume driver {:?} is not supported: drayd has the local driver",
                r.driver
            ))));
        }
        if !r.driver_opts.is_empty() {
            return Err(status(Error::Unsupported(
                "driver options (-o) of the local driver are not supported yet".into(),
            )));
        }
        let me = self.containers.clone();
        let v = tokio::task::spawn_blocking(move || -> crate::Result<pb::VolumeInfo> {
            let (anonymous, name) = if r.name.is_empty() {
                (true, crate::containers::random_hex(32)?)
            } else {
                (false, r.name)
            };
            let (v, new) = me.volumes.create(&name, r.labels.into_iter().collect(), anonymous)?;
            if new {
                me.events().publish("volume", "create", &v.name, &[("driver", "local")]);
            }
            Ok(info(&me, &v, false))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(status)?;
        Ok(Response::new(v))
    }

    async fn list(&self, req: Request<pb::ListVolumesRequest>) -> Result<Response<pb::ListVolumesResponse>, Status> {
        let r = req.into_inner();
        let me = self.containers.clone();
        let volumes = tokio::task::spawn_blocking(move || -> Result<Vec<pb::VolumeInfo>, Error> {
            let mut out = Vec::new();
            for v in me.volumes.list()? {
                if wanted(&me, &v, &r.filters).map_err(Error::InvalidArgument)? {
                    out.push(info(&me, &v, false));
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(status)?;
        Ok(Response::new(pb::ListVolumesResponse { volumes }))
    }

    async fn inspect(&self, req: Request<pb::InspectVolumeRequest>) -> Result<Response<pb::VolumeInfo>, Status> {
        let name = req.into_inner().name;
        let v = self
            .containers
            .volumes
            .get(&name)
            .map_err(status)?
            .ok_or_else(|| Status::not_found(format!("get {name}: no such volume")))?;
        Ok(Response::new(info(&self.containers, &v, false)))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveVolumeRequest>,
    ) -> Result<Response<pb::RemoveVolumeResponse>, Status> {
        let r = req.into_inner();
        let me = self.containers.clone();
        let res = tokio::task::spawn_blocking(move || {
            me.volume_remove(&r.name).map(|_| ()).or_else(|e| match e {
                // docker: -f ignores a missing volume.
                Error::NotFound(_) if r.force => Ok(()),
                e => Err(e),
            })
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        res.map_err(status)?;
        Ok(Response::new(pb::RemoveVolumeResponse {}))
    }

    async fn prune(&self, req: Request<pb::PruneVolumesRequest>) -> Result<Response<pb::PruneVolumesResponse>, Status> {
        let r = req.into_inner();
        let me = self.containers.clone();
        let (deleted, space) = tokio::task::spawn_blocking(move || {
            let me2 = me.clone();
            me.volume_prune(move |v| !wanted(&me2, v, &r.filters).unwrap_or(false))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(status)?;
        Ok(Response::new(pb::PruneVolumesResponse {
            deleted,
            space_reclaimed: space,
        }))
    }
}
