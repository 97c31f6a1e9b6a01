//! The gRPC services: translation between wire types (`dray_proto`) and the domain, and one
//! mapping from domain errors to status codes. No logic lives here.

pub mod containers;
pub mod events;
pub mod images;
pub mod networks;
pub mod stream;
pub mod system;
pub mod volumes;

use tonic::{Code, Status};

use crate::error::Error;

/// The one mapping from domain errors to gRPC status codes.
pub fn status(e: Error) -> Status {
    let code = match &e {
        Error::NotFound(_) => Code::NotFound,
        Error::InvalidArgument(_) => Code::InvalidArgument,
        Error::AlreadyExists(_) => Code::AlreadyExists,
        Error::Conflict(_) => Code::FailedPrecondition,
        Error::BadContent(_) => Code::DataLoss,
        Error::Unauthorized(_) => Code::Unauthenticated,
        Error::Remote(_) => Code::Unavailable,
        Error::Unsupported(_) => Code::Unimplemented,
        Error::Cancelled => Code::Cancelled,
        Error::Io { .. } | Error::Db(_) => Code::Internal,
    };
    Status::new(code, e.to_string())
}

/// Runs blocking store work off the reactor and maps its error.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> crate::Result<T> + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("task failed: {e}")))?
        .map_err(status)
}
