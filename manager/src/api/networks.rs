//! `dray.v1.Networks`: wire types ↔ the network store (through `containers`, which knows
//! which containers have endpoints on a network).

use std::sync::Arc;

use dray_proto::v1 as pb;
use dray_proto::v1::networks_server::Networks as NetworksService;
use tonic::{Request, Response, Status};

use super::status;
use crate::containers::Containers;
use crate::network::Network;

/// The networks service.
pub struct NetworksApi {
    pub containers: Arc<Containers>,
}

fn info(c: &Containers, n: &Network) -> pb::Network {
    pb::Network {
        id: n.id.clone(),
        name: n.name.clone(),
        driver: n.driver.clone(),
        subnet: n.subnet.clone(),
        gateway: n.gateway.clone(),
        internal: n.internal,
        labels: n.labels.clone().into_iter().collect(),
        created: n.created,
        bridge: n.bridge.clone(),
        containers: c.network_users(&n.id).len() as u32,
    }
}

#[tonic::async_trait]
impl NetworksService for NetworksApi {
    async fn create(
        &self,
        req: Request<pb::CreateNetworkRequest>,
    ) -> Result<Response<pb::CreateNetworkResponse>, Status> {
        let r = req.into_inner();
        let n = self
            .containers
            .networks
            .create(
                &r.name,
                &r.driver,
                &r.subnet,
                &r.gateway,
                r.internal,
                r.labels.into_iter().collect(),
            )
            .await
            .map_err(status)?;
        self.containers.network_event(&n, "create", None);
        Ok(Response::new(pb::CreateNetworkResponse { id: n.id }))
    }

    async fn list(&self, _req: Request<pb::ListNetworksRequest>) -> Result<Response<pb::ListNetworksResponse>, Status> {
        let networks = self
            .containers
            .networks
            .list()
            .iter()
            .map(|n| info(&self.containers, n))
            .collect();
        Ok(Response::new(pb::ListNetworksResponse { networks }))
    }

    async fn inspect(
        &self,
        req: Request<pb::InspectNetworkRequest>,
    ) -> Result<Response<pb::InspectNetworkResponse>, Status> {
        let doc = self
            .containers
            .network_document(&req.into_inner().network)
            .map_err(status)?;
        Ok(Response::new(pb::InspectNetworkResponse { json: doc.to_string() }))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveNetworkRequest>,
    ) -> Result<Response<pb::RemoveNetworkResponse>, Status> {
        let n = self
            .containers
            .remove_network(&req.into_inner().network)
            .await
            .map_err(status)?;
        self.containers.network_event(&n, "destroy", None);
        Ok(Response::new(pb::RemoveNetworkResponse {}))
    }

    async fn prune(
        &self,
        req: Request<pb::PruneNetworksRequest>,
    ) -> Result<Response<pb::PruneNetworksResponse>, Status> {
        let removed = self
            .containers
            .prune_networks(&req.into_inner().filters)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::PruneNetworksResponse { removed }))
    }

    async fn connect_container(
        &self,
        req: Request<pb::ConnectNetworkRequest>,
    ) -> Result<Response<pb::ConnectNetworkResponse>, Status> {
        let r = req.into_inner();
        self.containers
            .connect(&r.container, &r.network, r.aliases, r.ipv4_address)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ConnectNetworkResponse {}))
    }

    async fn disconnect_container(
        &self,
        req: Request<pb::DisconnectNetworkRequest>,
    ) -> Result<Response<pb::DisconnectNetworkResponse>, Status> {
        let r = req.into_inner();
        self.containers
            .disconnect(&r.container, &r.network)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DisconnectNetworkResponse {}))
    }
}
