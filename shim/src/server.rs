//! The long-lived shim server: a subreaper running the task service over ttrpc on the
//! socket `start` handed it (fd 3), on a single-threaded tokio runtime (one small process
//! per container group: few threads, little memory).

use crate::args::Flags;
use crate::events::Publisher;
use crate::reaper::Reaper;
use crate::task::{Service, Shared};
use anyhow::{Context, Result};
use containerd_shim_protos::shim_async::create_task;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// The fd on which `start` passes the listening socket.
pub const LISTENER_FD: i32 = 3;

/// The bundle's `log` FIFO, where containerd reads shim logs. containerd may open its read end
/// only after the shim started, so the FIFO is opened on the first line that finds a reader.
/// Never blocking (a dead containerd must not stall the shim): lines nobody reads are dropped.
struct LogFifo(Option<std::fs::File>);

impl std::io::Write for LogFifo {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.is_none() {
            self.0 = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open("log")
                .ok();
        }
        if let Some(f) = &mut self.0 {
            let _ = f.write(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Logs in runc's logrus text format, at debug level with `-debug`.
fn init_logging(debug: bool) {
    let level = if debug {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    dray_runtime::logging::init_writer(Box::new(LogFifo(None)), dray_runtime::logging::Format::Text, level);
}

/// Serves until Shutdown finds no task left.
pub fn serve(flags: &Flags) -> Result<()> {
    init_logging(flags.debug);
    dray_runtime::sys::set_child_subreaper()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async {
        let reaper = Arc::new(Reaper::default());
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(reaper.clone().run(tx));
        let publisher = Publisher::start(
            flags.namespace.clone(),
            std::env::var("TTRPC_ADDRESS").ok().filter(|s| !s.is_empty()),
            flags.address.clone(),
            flags.publish_binary.clone(),
            reaper.clone(),
        );
        let shutdown = Arc::new(Notify::new());
        let shared = Shared::new(
            publisher.clone(),
            reaper,
            flags.namespace.clone(),
            flags.debug,
            shutdown.clone(),
        );
        tokio::spawn(shared.clone().exit_loop(rx));
        tokio::spawn(shared.clone().trim_loop());
        let service = Arc::new(Service(shared));
        // containerd 1.6/1.7 (and 2.x with a plain address) call task v2, newer ones v3:
        // the messages are the same, so one service answers under both names.
        let mut services = create_task(service.clone());
        for (name, svc) in create_task(service) {
            services.insert(name.replace(".v3.", ".v2."), svc);
        }
        // SAFETY: fd 3 is the listening socket `start` passed to this process; nothing else
        // in the process uses or closes it.
        let server = unsafe { ttrpc::r#async::Server::new().add_unix_listener(LISTENER_FD) }
            .context("listen on the shim socket")?;
        let mut server = server.register_service(services);
        server.start().await.context("start the ttrpc server")?;
        tracing::info!("shim {} serving", flags.id);
        shutdown.notified().await;
        tracing::info!("shim {} shutting down", flags.id);
        publisher.flush(Duration::from_secs(5)).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), server.shutdown()).await;
        Ok::<(), anyhow::Error>(())
    })?;
    if let Ok(a) = std::fs::read_to_string("address") {
        if let Some(p) = a.trim().strip_prefix("unix://") {
            let _ = std::fs::remove_file(p);
        }
    }
    Ok(())
}
