//! dray's manager: the library behind `drayd`.
//!
//! One module per responsibility (docs/architecture.md, "The manager"):
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | drayd's flags and TOML config, with their defaults |
//! | [`meta`] | the metadata database (SQLite): the only code that runs queries |
//! | [`content`] | blobs by digest; resumable ingests; verify, fsync, rename |
//! | [`remote`] | references, per-host registry config, auth, the distribution client |
//! | [`images`] | manifests and configs, platform selection, pull orchestration |
//! | [`unpack`] | decompression and the diff ID check around `dray_archive`'s layer applier |
//! | [`snapshots`] | the overlay snapshotter (directories and the mounts that use them) |
//! | [`gc`] | mark and sweep over images, leases, blobs and snapshots |
//! | [`shims`] | runtime-v2 shims: launch, the ttrpc Task client, the events service |
//! | [`containers`] | container records, OCI spec generation, lifecycle, restart, recovery |
//! | [`logs`] | json-file logs: writer with rotation, reader, follow |
//! | [`volumes`] | docker's local volume driver: directories and their records |
//! | [`network`] | networks (CNI caller, namespaces, ports, firewall table, DNS) and attachments |
//! | [`events`] | the event bus (containers, volumes) behind `events` |
//! | [`api`] | gRPC services: translation between wire and domain types only |
//! | [`daemon`] | the process: lock, socket, serve, shutdown |
//!
//! The manager never links the runtime library and never reaches a container except through a
//! shim's Task API.

pub mod api;
pub mod config;
pub mod containers;
pub mod content;
pub mod daemon;
pub mod digest;
pub mod error;
pub mod events;
pub mod gc;
pub mod images;
pub mod logs;
pub mod meta;
pub mod network;
pub mod remote;
pub mod shims;
pub mod snapshots;
pub mod unpack;
pub mod volumes;

pub use error::{Error, Result};
