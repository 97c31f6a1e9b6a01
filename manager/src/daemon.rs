//! The drayd process: one instance per data root (an exclusive lock), the API on a unix socket
//! (mode 0660, root), and a clean shutdown on SIGTERM or SIGINT.
//!
//! Start order: config → locks (data root, exec root) → overlayfs check → store (database
//! migrations, crash recovery of snapshots) → socket → serve. Stop order: stop accepting,
//! finish or cancel requests, remove the socket; the locks go with the process.

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use dray_proto::v1::containers_server::ContainersServer;
use dray_proto::v1::events_server::EventsServer;
use dray_proto::v1::images_server::ImagesServer;
use dray_proto::v1::system_server::SystemServer;
use dray_proto::v1::volumes_server::VolumesServer;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use crate::api::images::ImagesApi;
use crate::api::system::SystemApi;
use crate::config::{Config, SnapshotterKind};
use crate::error::{Error, IoContext, Result};
use crate::images::Store;

/// Takes an exclusive, non-blocking lock on `path` (kept while the file stays open).
fn lock(path: &Path, what: &str) -> Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .ctx(|| format!("opening lock file {}", path.display()))?;
    // SAFETY: flock on an fd we own; no memory is involved.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let pid = fs::read_to_string(path).unwrap_or_default();
            return Err(Error::Conflict(format!(
                "another drayd (pid {}) is using the {what} {}: stop it or choose another --{what}",
                pid.trim(),
                path.parent().map(|p| p.display().to_string()).unwrap_or_default()
            )));
        }
        return Err(Error::io(format!("locking {}", path.display()), e));
    }
    let _ = f.set_len(0);
    let _ = std::io::Write::write_all(&mut &f, std::process::id().to_string().as_bytes());
    Ok(f)
}

/// The daemon's ID, made once per data root.
fn daemon_id(root: &Path) -> Result<String> {
    let p = root.join("engine-id");
    if let Ok(s) = fs::read_to_string(&p) {
        if !s.trim().is_empty() {
            return Ok(s.trim().to_string());
        }
    }
    let mut b = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .ctx(|| "reading /dev/urandom".into())?;
    let id = hex::encode(b);
    crate::content::write_atomic(&p, id.as_bytes())?;
    Ok(id)
}

/// Gives freed heap memory back to the system after a large operation (a pull's buffers are
/// spread over the blocking threads' malloc arenas, which glibc otherwise keeps).
pub fn release_memory() {
    // SAFETY: malloc_trim only walks glibc's own heap structures under their locks.
    unsafe { libc::malloc_trim(0) };
}

/// Runs drayd until SIGTERM/SIGINT.
pub async fn run(config: Config) -> Result<()> {
    fs::create_dir_all(&config.data_root).ctx(|| format!("creating {}", config.data_root.display()))?;
    fs::set_permissions(&config.data_root, fs::Permissions::from_mode(0o711))
        .ctx(|| format!("chmod {}", config.data_root.display()))?;
    fs::create_dir_all(&config.exec_root).ctx(|| format!("creating {}", config.exec_root.display()))?;
    fs::set_permissions(&config.exec_root, fs::Permissions::from_mode(0o700))
        .ctx(|| format!("chmod {}", config.exec_root.display()))?;
    let _data_lock = lock(&config.data_root.join("drayd.lock"), "data-root")?;
    let _exec_lock = lock(&config.exec_root.join("drayd.lock"), "exec-root")?;
    let mut config = config;
    match config.snapshotter {
        Some(SnapshotterKind::Overlay) if !crate::snapshots::overlay_supported(&config.data_root) => {
            return Err(Error::Unsupported(format!(
                "overlayfs cannot be mounted on {}: choose another --data-root, or snapshotter = \"native\" in the config",
                config.data_root.display()
            )));
        }
        None if !crate::snapshots::overlay_supported(&config.data_root) => {
            tracing::warn!(data_root = %config.data_root.display(), "overlayfs cannot be mounted here: using the native (copying) snapshotter");
            config.snapshotter = Some(SnapshotterKind::Native);
        }
        _ => {}
    }
    // A data root keeps the snapshotter it was made with.
    let kind_file = config.data_root.join("snapshotter");
    let chosen = match config.snapshotter {
        Some(SnapshotterKind::Native) => "native",
        _ => "overlayfs",
    };
    match fs::read_to_string(&kind_file) {
        Ok(prev) if prev.trim() != chosen => {
            return Err(Error::Conflict(format!(
                "{} holds {} snapshots, and this drayd would use {chosen}: use the same snapshotter or another --data-root",
                config.data_root.display(),
                prev.trim()
            )));
        }
        Ok(_) => {}
        Err(_) => crate::content::write_atomic(&kind_file, chosen.as_bytes())?,
    }
    let socket = config.socket.clone();
    let id = daemon_id(&config.data_root)?;
    let store = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || Store::open(config))
            .await
            .map_err(|e| Error::io("opening the store", std::io::Error::other(e.to_string())))??
    };
    if let Some(dir) = socket.parent() {
        fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
    }
    // The locks are ours, so a socket file left there is stale.
    let _ = fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).ctx(|| format!("listening on {}", socket.display()))?;
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o660)).ctx(|| format!("chmod {}", socket.display()))?;
    tracing::info!(socket = %socket.display(), data_root = %config.data_root.display(), "drayd is serving");
    // Shims publish to this socket; it must exist before any shim starts (recovery below).
    let events_socket = config.exec_root.join("events.sock");
    let (events_tx, _) = tokio::sync::broadcast::channel(1024);
    let events = crate::shims::events::EventsServer::start(&events_socket, events_tx.clone()).await?;
    let launcher = crate::shims::Launcher {
        address: socket.display().to_string(),
        ttrpc_address: events_socket.clone(),
        publish_binary: std::env::current_exe().map_err(|e| Error::io("own executable", e))?,
    };
    let settings = crate::containers::Settings {
        default_runtime: config.default_runtime.clone(),
        init_binary: config.init_path.clone(),
    };
    let containers = crate::containers::Containers::open(store.clone(), launcher, settings).await?;
    containers.watch_shim_events(events_tx.subscribe());
    let images = ImagesApi { store: store.clone() };
    let system = SystemApi {
        store: store.clone(),
        containers: containers.clone(),
        daemon_id: id,
    };
    let served = tonic::transport::Server::builder()
        .add_service(ImagesServer::new(images))
        .add_service(SystemServer::new(system))
        .add_service(ContainersServer::new(crate::api::containers::ContainersApi {
            containers: containers.clone(),
        }))
        .add_service(VolumesServer::new(crate::api::volumes::VolumesApi {
            containers: containers.clone(),
        }))
        .add_service(dray_proto::v1::networks_server::NetworksServer::new(
            crate::api::networks::NetworksApi {
                containers: containers.clone(),
            },
        ))
        .add_service(EventsServer::new(crate::api::events::EventsApi {
            containers: containers.clone(),
        }))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown_signal())
        .await;
    let _ = fs::remove_file(&socket);
    // Containers keep running: their shims outlive drayd, which reconnects when it starts.
    containers.shutdown();
    events.stop().await;
    let _ = fs::remove_file(&events_socket);
    drop(store);
    served.map_err(|e| Error::io("serving the API", std::io::Error::other(e.to_string())))?;
    tracing::info!("drayd stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without signal handlers drayd still serves; it is then stopped by SIGKILL.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}
