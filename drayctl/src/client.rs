//! The connection to drayd: gRPC over its unix socket, chosen by `-H`/`DRAY_HOST`.

use anyhow::Result;
use dray_proto::v1::containers_client::ContainersClient;
use dray_proto::v1::events_client::EventsClient;
use dray_proto::v1::images_client::ImagesClient;
use dray_proto::v1::system_client::SystemClient;
use dray_proto::v1::volumes_client::VolumesClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

/// The default socket (drayd's default exec root).
pub const DEFAULT_HOST: &str = "unix:///run/drayd/drayd.sock";

/// A connected client.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
}

/// drayd could not be reached: the message docker users know.
#[derive(Debug)]
pub struct ConnectError(pub String);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cannot connect to drayd at unix://{}. Is drayd running? (start it with `drayd`, or choose another daemon with -H or DRAY_HOST)", self.0)
    }
}

impl std::error::Error for ConnectError {}

impl Client {
    /// Connects to `host` (`unix:///PATH` or a path).
    pub async fn connect(host: &str) -> Result<Client> {
        let path = host.strip_prefix("unix://").unwrap_or(host).to_string();
        if !path.starts_with('/') {
            anyhow::bail!("invalid host {host:?}: expected unix:///ABSOLUTE/PATH");
        }
        let p = path.clone();
        let channel = Endpoint::try_from("http://drayd.sock")?
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let p = p.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(p).await?)) }
            }))
            .await
            .map_err(|_| ConnectError(path))?;
        Ok(Client { channel })
    }

    pub fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone()).max_decoding_message_size(64 << 20)
    }

    pub fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone()).max_decoding_message_size(64 << 20)
    }

    pub fn events(&self) -> EventsClient<Channel> {
        EventsClient::new(self.channel.clone())
    }

    pub fn networks(&self) -> dray_proto::v1::networks_client::NetworksClient<Channel> {
        dray_proto::v1::networks_client::NetworksClient::new(self.channel.clone())
    }

    pub fn volumes(&self) -> VolumesClient<Channel> {
        VolumesClient::new(self.channel.clone())
    }

    pub fn system(&self) -> SystemClient<Channel> {
        SystemClient::new(self.channel.clone())
    }
}
