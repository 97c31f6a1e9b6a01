//! drayd: dray's daemon. Flags as dockerd names them; see `drayd --help` and
//! `dray_manager::config` for the config file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dray_manager::config::{Config, Flags};

/// dray's daemon: images, snapshots (containers, volumes and networks come next).
#[derive(Parser, Debug)]
#[command(name = "drayd", version, about)]
struct Args {
    /// Root of persistent state (blobs, snapshots, database)
    #[arg(long, value_name = "DIR")]
    data_root: Option<PathBuf>,
    /// Root of run-time state (socket, locks)
    #[arg(long, value_name = "DIR")]
    exec_root: Option<PathBuf>,
    /// Socket to listen on (unix:///PATH; default <exec-root>/drayd.sock)
    #[arg(short = 'H', long, value_name = "ADDRESS")]
    host: Option<String>,
    /// TOML config file (every key optional)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log level: error, warn, info, debug, trace
    #[arg(short = 'l', long, value_name = "LEVEL")]
    log_level: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let flags = Flags {
        data_root: args.data_root,
        exec_root: args.exec_root,
        host: args.host,
        config: args.config,
        log_level: args.log_level,
    };
    let config = match Config::load(flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("drayd: {e}");
            return ExitCode::from(1);
        }
    };
    let filter = tracing_subscriber::EnvFilter::new(format!("warn,dray_manager={0},drayd={0}", config.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(32)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("drayd: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(dray_manager::daemon::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("drayd: {e}");
            ExitCode::from(1)
        }
    }
}
