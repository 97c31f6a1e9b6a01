//! Registries: references, per-host configuration, authentication and the OCI distribution
//! client (fetch with HTTP Range resume, push with cross-repository mounts).

pub mod auth;
pub mod client;
pub mod reference;

pub use auth::Credentials;
pub use client::{Registries, Session};
pub use reference::Reference;
