//! The `dray` command line: runc 1.1's commands, flags, output and exit codes, as a thin layer
//! over [`crate::container::Runtime`].

use crate::container::{CreateOptions, Runtime};
use crate::error::{Error, Result};
use crate::logging::Format;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "dray",
    about = "dray: a runc-compatible OCI container runtime",
    disable_version_flag = true
)]
pub struct Cli {
    /// Root directory for container state.
    #[arg(long, global = true, default_value = "/run/dray")]
    pub root: PathBuf,
    /// Log file (default: stderr).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format.
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Debug logging.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use the systemd cgroup driver (not supported: gives an error).
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// With `spec`: write a spec for an unprivileged user. As a global flag (runc's
    /// `--rootless auto|true|false`) it is accepted and dray decides by itself.
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
    /// Accepted for compatibility with runc (checkpointing is not supported).
    #[arg(long, global = true, hide = true)]
    pub criu: Option<String>,
    /// Print the version.
    #[arg(short = 'v', long)]
    pub version: bool,
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(clap::Args, Debug, Clone)]
pub struct CreateArgs {
    /// Path to the bundle (default: current directory).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the pty master when process.terminal is set.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// File to write the init's pid to.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root (for a rootfs on a ramdisk).
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not create a new session keyring (dray never creates one).
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass this many fds above stdio (3, 4, ...) into the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: i32,
    /// Container id.
    pub id: String,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create a container; its process waits for `start`.
    Create(CreateArgs),
    /// Run the process of a created container.
    Start { id: String },
    /// Create and start a container; wait for it unless --detach.
    Run {
        #[command(flatten)]
        args: CreateArgs,
        /// Return once the container runs.
        #[arg(short, long)]
        detach: bool,
    },
    /// Print the state of a container as JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to a container's init.
    Kill {
        id: String,
        signal: Option<String>,
        /// Signal every process of the container.
        #[arg(short, long)]
        all: bool,
    },
    /// Delete a container.
    Delete {
        id: String,
        /// Kill the container first if it is running.
        #[arg(short, long)]
        force: bool,
    },
    /// List containers.
    #[command(alias = "ls")]
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        format: ListFormat,
        /// Only print ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Write a default config.json.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
}

impl CreateArgs {
    fn options(&self) -> CreateOptions {
        CreateOptions {
            id: self.id.clone(),
            bundle: self.bundle.clone(),
            console_socket: self.console_socket.clone(),
            pid_file: self.pid_file.clone(),
            no_pivot: self.no_pivot,
            no_new_keyring: self.no_new_keyring,
            preserve_fds: self.preserve_fds,
        }
    }
}

/// Runs the CLI; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    if cli.version {
        println!("dray version {}\nspec: {}", crate::VERSION, crate::OCI_VERSION);
        return 0;
    }
    let format = if cli.log_format == LogFormat::Json {
        Format::Json
    } else {
        Format::Text
    };
    if let Err(e) = crate::logging::init(cli.log.as_deref(), format, cli.debug) {
        eprintln!("dray: opening log file: {e}");
        return 1;
    }
    let Some(cmd) = &cli.cmd else {
        eprintln!("dray: a command is required (see dray --help)");
        return 1;
    };
    match dispatch(&cli, cmd) {
        Ok(code) => code,
        Err(e) => {
            let msg = match cmd_id(cmd) {
                Some((verb, id)) => format!("{verb} {id}: {e}"),
                None => e.to_string(),
            };
            tracing::error!("{msg}");
            if cli.log.is_some() {
                eprintln!("dray: {msg}");
            }
            1
        }
    }
}

fn cmd_id(cmd: &Cmd) -> Option<(&'static str, &str)> {
    Some(match cmd {
        Cmd::Create(a) => ("create", a.id.as_str()),
        Cmd::Run { args, .. } => ("run", args.id.as_str()),
        Cmd::Start { id } => ("start", id),
        Cmd::State { id } => ("state", id),
        Cmd::Kill { id, .. } => ("kill", id),
        Cmd::Delete { id, .. } => ("delete", id),
        Cmd::List { .. } | Cmd::Spec { .. } => return None,
    })
}

fn dispatch(cli: &Cli, cmd: &Cmd) -> Result<i32> {
    let rt = Runtime::new(&cli.root);
    let no_systemd = || {
        if cli.systemd_cgroup {
            Err(Error::msg(
                "--systemd-cgroup: the systemd cgroup driver is not supported by dray; use cgroupfs",
            ))
        } else {
            Ok(())
        }
    };
    match cmd {
        Cmd::Create(a) => {
            no_systemd()?;
            rt.create(&a.options())?;
        }
        Cmd::Run { args, detach } => {
            no_systemd()?;
            return rt.run(&args.options(), *detach);
        }
        Cmd::Start { id } => rt.start(id)?,
        Cmd::State { id } => {
            let s = rt.state(id)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&s).map_err(|e| Error::msg(e.to_string()))?
            );
        }
        Cmd::Kill { id, signal, all } => {
            let sig = crate::signals::parse(signal.as_deref().unwrap_or("SIGTERM"))?;
            rt.kill(id, sig, *all)?;
        }
        Cmd::Delete { id, force } => rt.delete(id, *force)?,
        Cmd::List { format, quiet } => {
            let list = rt.list()?;
            if *quiet {
                for s in &list {
                    println!("{}", s.id);
                }
            } else if *format == ListFormat::Json {
                println!(
                    "{}",
                    serde_json::to_string(&list).map_err(|e| Error::msg(e.to_string()))?
                );
            } else {
                print!("{}", table(&list));
            }
        }
        Cmd::Spec { bundle } => {
            let rootless = cli.rootless.as_deref().is_some_and(|v| v != "false");
            let path = bundle.join("config.json");
            if path.exists() {
                return Err(Error::msg(format!("{} exists; remove it first", path.display())));
            }
            let v = crate::spec::default_spec(rootless, nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
            let text = serde_json::to_string_pretty(&v).map_err(|e| Error::msg(e.to_string()))?;
            crate::sys::write_file(&path, text + "\n")?;
        }
    }
    Ok(0)
}

/// `list` as runc prints it (Go's tabwriter: min width 12, padding 3).
pub fn table(list: &[crate::state::OciState]) -> String {
    let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
        .map(String::from)
        .to_vec()];
    for s in list {
        rows.push(vec![
            s.id.clone(),
            s.pid.to_string(),
            s.status.to_string(),
            s.bundle.display().to_string(),
            s.created.clone(),
            s.owner.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].len() + 3).max().unwrap_or(0).max(12))
        .collect();
    let mut out = String::new();
    for r in &rows {
        for (c, cell) in r.iter().enumerate() {
            if c == 5 {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}", w = widths[c]));
            }
        }
        out.push('\n');
    }
    out
}
