//! The `dray` binary: runc 1.1's commands, flags, output and exit codes, as a thin layer over
//! [`dray_runtime::container::Runtime`]. The command line lives here, not in the library, so
//! that the library (and the shim that links it) never compiles clap.

// Casts that truncate or lose the sign, and public types without Debug, are errors here (as
// firecracker has them): a pid, an fd or a size that silently wraps is a bug.
#![warn(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    missing_debug_implementations
)]

mod fast;

use clap::{Parser, Subcommand, ValueEnum};
use dray_runtime::container::{CreateOptions, Runtime};
use dray_runtime::error::{Error, Result};
use dray_runtime::logging::Format;
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
        /// Do not delete the container after it exits (its state and cgroup stay until `delete`).
        #[arg(long)]
        keep: bool,
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
    /// Run a new process in a running container.
    Exec(ExecArgs),
    /// Change the resource limits of a running container.
    Update(UpdateArgs),
    /// Suspend every process of a container.
    Pause { id: String },
    /// Resume a paused container.
    Resume { id: String },
    /// List the processes of a container (`ps` options after the id; default -ef).
    Ps {
        #[arg(short, long, value_enum, default_value = "table")]
        format: ListFormat,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Print container events: statistics every interval and OOM kills, as JSON lines.
    Events {
        /// Print one statistics event and exit.
        #[arg(long)]
        stats: bool,
        /// Interval between statistics (e.g. 5s, 500ms, 1m).
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
    /// Print the features of this runtime (runtime-spec features.md) as JSON.
    Features,
    /// Write a default config.json.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct ExecArgs {
    /// A process.json with the whole process (args, env, user, capabilities, ...).
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Unix socket that receives the pty master.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Return once the process runs.
    #[arg(short, long)]
    pub detach: bool,
    /// File to write the process's pid to.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Working directory in the container.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Extra environment variables (KEY=VALUE).
    #[arg(short, long)]
    pub env: Vec<String>,
    /// User as uid[:gid].
    #[arg(short, long)]
    pub user: Option<String>,
    /// Additional group ids.
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// Capabilities to add (all sets).
    #[arg(short, long)]
    pub cap: Vec<String>,
    /// Set noNewPrivileges for the process.
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// Pass this many fds above stdio into the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: i32,
    /// AppArmor profile (not available on this runtime: refused if set).
    #[arg(long)]
    pub apparmor: Option<String>,
    /// SELinux label (not available on this runtime: refused if set).
    #[arg(long = "process-label")]
    pub process_label: Option<String>,
    /// Allow exec in a paused container (the process starts when it is resumed).
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
    /// Run the process in a sub-cgroup of the container: PATH, or CONTROLLER[,...]:PATH on
    /// cgroup v1 (repeatable).
    #[arg(long = "cgroup", value_name = "[CONTROLLERS:]PATH")]
    pub cgroup: Vec<String>,
    /// Container id.
    pub id: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

impl ExecArgs {
    /// The process to run: `--process`, or the container's process with the CLI's overrides
    /// (runc's rules: args replaced, env appended, terminal from --tty, ...).
    pub fn process(&self, rt: &Runtime) -> Result<oci_spec::runtime::Process> {
        if self.apparmor.as_deref().is_some_and(|s| !s.is_empty())
            || self.process_label.as_deref().is_some_and(|s| !s.is_empty())
        {
            return Err(Error::msg(
                "--apparmor/--process-label: this runtime has no AppArmor or SELinux support",
            ));
        }
        if let Some(path) = &self.process {
            let data = std::fs::read(path).map_err(|e| Error::msg(format!("reading {}: {e}", path.display())))?;
            let p: oci_spec::runtime::Process =
                serde_json::from_slice(&data).map_err(|e| Error::msg(format!("parsing {}: {e}", path.display())))?;
            // Checked by Runtime::exec (crate validate), as every exec's process is.
            return Ok(p);
        }
        if self.command.is_empty() {
            return Err(Error::msg("exec needs a command (or --process)"));
        }
        let mut p = rt.container_process(&self.id)?;
        p.set_args(Some(self.command.clone()));
        p.set_terminal(Some(self.tty));
        if let Some(cwd) = &self.cwd {
            p.set_cwd(cwd.clone());
        }
        let mut env = p.env().clone().unwrap_or_default();
        env.extend(self.env.iter().cloned());
        p.set_env(Some(env));
        if self.no_new_privs {
            p.set_no_new_privileges(Some(true));
        }
        let mut user = p.user().clone();
        if let Some(u) = &self.user {
            let (uid, gid) = match u.split_once(':') {
                Some((a, b)) => (a, Some(b)),
                None => (u.as_str(), None),
            };
            user.set_uid(
                uid.parse()
                    .map_err(|_| Error::msg(format!("invalid --user {u:?}: uid[:gid] must be numbers")))?,
            );
            if let Some(g) = gid {
                user.set_gid(
                    g.parse()
                        .map_err(|_| Error::msg(format!("invalid --user {u:?}: uid[:gid] must be numbers")))?,
                );
            }
        }
        if !self.additional_gids.is_empty() {
            let mut g = user.additional_gids().clone().unwrap_or_default();
            g.extend(self.additional_gids.iter().copied());
            user.set_additional_gids(Some(g));
        }
        p.set_user(user);
        if !self.cap.is_empty() {
            // runc 1.1.2+ (CVE-2022-29162): bounding, effective and permitted; ambient only when
            // the process already has inheritable capabilities; never inheritable.
            let mut caps = p
                .capabilities()
                .clone()
                .unwrap_or_else(dray_runtime::capabilities::none);
            let has_inheritable = caps.inheritable().as_ref().is_some_and(|i| !i.is_empty());
            for name in &self.cap {
                let c = dray_runtime::capabilities::parse(name)?;
                let add = |set: &Option<oci_spec::runtime::Capabilities>| {
                    let mut s = set.clone().unwrap_or_default();
                    s.insert(c);
                    Some(s)
                };
                let (b, e, pm, a) = (
                    add(caps.bounding()),
                    add(caps.effective()),
                    add(caps.permitted()),
                    add(caps.ambient()),
                );
                caps.set_bounding(b);
                caps.set_effective(e);
                caps.set_permitted(pm);
                if has_inheritable {
                    caps.set_ambient(a);
                }
            }
            p.set_capabilities(Some(caps));
        }
        Ok(p)
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct UpdateArgs {
    /// A resources JSON file (linux.resources), or "-" for stdin.
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    #[arg(long = "cpu-share")]
    pub cpu_share: Option<u64>,
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<u64>,
    #[arg(long = "cpu-rt-runtime", allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    #[arg(long = "cpu-idle", allow_hyphen_values = true)]
    pub cpu_idle: Option<i64>,
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Kernel memory limit (ignored with a warning, as runc on current kernels).
    #[arg(long = "kernel-memory")]
    pub kernel_memory: Option<String>,
    #[arg(long = "kernel-memory-tcp")]
    pub kernel_memory_tcp: Option<String>,
    /// Memory limit in bytes (suffixes k, m, g, t), -1 for unlimited.
    #[arg(long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    #[arg(long = "memory-reservation", allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit, -1 for unlimited swap.
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Intel RDT (not available: refused).
    #[arg(long = "l3-cache-schema")]
    pub l3_cache_schema: Option<String>,
    #[arg(long = "mem-bw-schema")]
    pub mem_bw_schema: Option<String>,
    pub id: String,
}

/// Parses a byte size like docker and runc do: 1024, 512k, 64m, 2g (binary units); -1.
pub fn parse_bytes(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (digits, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    // Whole and fractional digits in integers ("1.5g"), so that no float is cast.
    let bad = || Error::msg(format!("invalid size {s:?}"));
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !all_digits(whole) || !all_digits(frac) || frac.len() > 18 {
        return Err(bad());
    }
    let whole: i128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let frac_value: i128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| bad())?
    };
    let scale = 10i128.pow(u32::try_from(frac.len()).map_err(|_| bad())?);
    let bytes = whole
        .checked_mul(i128::from(mult))
        .and_then(|w| w.checked_add(frac_value * i128::from(mult) / scale))
        .ok_or_else(bad)?;
    i64::try_from(bytes).map_err(|_| bad())
}

impl UpdateArgs {
    /// The resources to apply: the file's, then each flag on top.
    pub fn resources(&self) -> Result<oci_spec::runtime::LinuxResources> {
        use oci_spec::runtime::{LinuxMemory, LinuxPids, LinuxResources};
        if self.l3_cache_schema.is_some() || self.mem_bw_schema.is_some() {
            return Err(Error::msg(
                "Intel RDT (--l3-cache-schema, --mem-bw-schema) is not available on this host",
            ));
        }
        let mut r: LinuxResources = match &self.resources {
            Some(p) => {
                let data = if p.as_os_str() == "-" {
                    let mut v = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)
                        .map_err(|e| Error::msg(format!("reading stdin: {e}")))?;
                    v
                } else {
                    std::fs::read(p).map_err(|e| Error::msg(format!("reading {}: {e}", p.display())))?
                };
                serde_json::from_slice(&data).map_err(|e| Error::msg(format!("invalid resources JSON: {e}")))?
            }
            None => LinuxResources::default(),
        };
        let mut mem = (*r.memory()).unwrap_or_default();
        let mut mem_set = r.memory().is_some();
        for (v, f) in [
            (
                &self.memory,
                LinuxMemory::set_limit as fn(&mut LinuxMemory, Option<i64>) -> &mut LinuxMemory,
            ),
            (&self.memory_reservation, LinuxMemory::set_reservation),
            (&self.memory_swap, LinuxMemory::set_swap),
            (&self.kernel_memory, LinuxMemory::set_kernel),
            (&self.kernel_memory_tcp, LinuxMemory::set_kernel_tcp),
        ] {
            if let Some(s) = v {
                f(&mut mem, Some(parse_bytes(s)?));
                mem_set = true;
            }
        }
        if mem_set {
            r.set_memory(Some(mem));
        }
        let mut cpu = r.cpu().clone().unwrap_or_default();
        let before = cpu.clone();
        if let Some(v) = self.cpu_period {
            cpu.set_period(Some(v));
        }
        if let Some(v) = self.cpu_quota {
            cpu.set_quota(Some(v));
        }
        if let Some(v) = self.cpu_share {
            cpu.set_shares(Some(v));
        }
        if let Some(v) = self.cpu_rt_period {
            cpu.set_realtime_period(Some(v));
        }
        if let Some(v) = self.cpu_rt_runtime {
            cpu.set_realtime_runtime(Some(v));
        }
        if let Some(v) = self.cpu_idle {
            cpu.set_idle(Some(v));
        }
        if let Some(v) = &self.cpuset_cpus {
            cpu.set_cpus(Some(v.clone()));
        }
        if let Some(v) = &self.cpuset_mems {
            cpu.set_mems(Some(v.clone()));
        }
        if cpu != before || r.cpu().is_some() {
            r.set_cpu(Some(cpu));
        }
        if let Some(l) = self.pids_limit {
            let mut p = LinuxPids::default();
            p.set_limit(l);
            r.set_pids(Some(p));
        }
        if let Some(w) = self.blkio_weight {
            let mut b = r.block_io().clone().unwrap_or_default();
            b.set_weight(Some(w));
            r.set_block_io(Some(b));
        }
        Ok(r)
    }
}

impl CreateArgs {
    fn options(&self, inherited: &[i32]) -> CreateOptions {
        CreateOptions {
            id: self.id.clone(),
            bundle: self.bundle.clone(),
            console_socket: self.console_socket.clone(),
            pid_file: self.pid_file.clone(),
            no_pivot: self.no_pivot,
            no_new_keyring: self.no_new_keyring,
            preserve_fds: self.preserve_fds,
            inherited_fds: Some(inherited.to_vec()),
        }
    }
}

/// `--version`, in runc's layout (`runc version …`, `commit: …`, `spec: …`).
pub fn version_text() -> String {
    format!(
        "dray version {}\ncommit: {}\nspec: {}",
        dray_runtime::VERSION,
        option_env!("DRAY_GIT_COMMIT").unwrap_or("unknown"),
        dray_runtime::OCI_VERSION
    )
}

/// A line on stderr in runc's log format (what runc prints for usage errors).
fn runc_error_line(msg: &str) -> String {
    let now = dray_runtime::time::now();
    format!("time=\"{now}\" level=error msg={:?}", msg)
}

/// What runc 1.1 (urfave/cli) does with a command line it cannot parse: help and version go
/// to stdout with status 0; an unknown command is "No help topic for 'X'" with status 3; any
/// other usage error prints "Incorrect Usage." and the command's help on stdout, the reason on
/// stderr, with status 1.
fn usage_error(e: &clap::Error, args: &[String]) -> i32 {
    use clap::error::ErrorKind;
    use clap::CommandFactory;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            0
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            println!("{}", Cli::command().render_help());
            0
        }
        ErrorKind::InvalidSubcommand => {
            let name = args
                .iter()
                .skip(1)
                .find(|a| !a.starts_with('-'))
                .cloned()
                .unwrap_or_default();
            eprintln!("{}", runc_error_line(&format!("No help topic for '{name}'")));
            3
        }
        _ => {
            let mut cmd = Cli::command();
            // Built, so that a command's usage line names `dray` too.
            cmd.build();
            let names: Vec<String> = cmd.get_subcommands().map(|c| c.get_name().to_string()).collect();
            let sub = args.iter().skip(1).find(|a| names.contains(a)).cloned();
            let help = match sub.as_deref().and_then(|n| cmd.find_subcommand_mut(n)) {
                Some(c) => c.render_help(),
                None => cmd.render_help(),
            };
            println!("Incorrect Usage.\n\n{help}");
            // clap's message up to its usage block, on one line.
            let detail = e.to_string();
            let reason: Vec<&str> = detail
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(|l| l.trim().trim_start_matches("error: "))
                .collect();
            eprintln!("{}", runc_error_line(&reason.join(" ")));
            1
        }
    }
}

fn main() {
    std::process::exit(run_cli());
}

/// Runs the CLI; returns the process exit code.
fn run_cli() -> i32 {
    // The common command lines take the fast path; clap parses the rest (and prints help and
    // errors).
    let args: Option<Vec<String>> = std::env::args_os().map(|a| a.into_string().ok()).collect();
    let cli = match args.as_deref().and_then(fast::parse) {
        Some(c) => c,
        None => match Cli::try_parse() {
            Ok(c) => c,
            Err(e) => return usage_error(&e, args.as_deref().unwrap_or_default()),
        },
    };
    if cli.version {
        println!("{}", version_text());
        return 0;
    }
    // Which of the fds to preserve the caller really passed: looked up before dray opens any
    // fd of its own (the log file), so that none of those can be passed by mistake.
    let inherited = match &cli.cmd {
        Some(Cmd::Create(a)) | Some(Cmd::Run { args: a, .. }) => dray_runtime::sys::open_fds(3, a.preserve_fds),
        Some(Cmd::Exec(a)) => dray_runtime::sys::open_fds(3, a.preserve_fds),
        _ => Vec::new(),
    };
    let format = if cli.log_format == LogFormat::Json {
        Format::Json
    } else {
        Format::Text
    };
    if let Err(e) = dray_runtime::logging::init(cli.log.as_deref(), format, cli.debug) {
        eprintln!("dray: opening log file: {e}");
        return 1;
    }
    let Some(cmd) = &cli.cmd else {
        // runc without a command prints its help and succeeds.
        use clap::CommandFactory;
        println!("{}", Cli::command().render_help());
        return 0;
    };
    tracing::debug!(
        "dray {} (spec {}): {}",
        env!("CARGO_PKG_VERSION"),
        dray_runtime::OCI_VERSION,
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    match dispatch(&cli, cmd, &inherited) {
        Ok(code) => code,
        Err(e) => {
            // runc: a failed exec exits 255 with "exec failed:" (exit codes below belong to the
            // exec'd process).
            let (e, code) = match cmd {
                Cmd::Exec(_) => (Error::msg(format!("exec failed: {e}")), 255),
                _ => (e, 1),
            };
            let msg = match cmd_id(cmd) {
                Some((verb, id)) => format!("{verb} {id}: {e}"),
                None => e.to_string(),
            };
            tracing::error!("{msg}");
            if cli.log.is_some() {
                eprintln!("dray: {msg}");
            }
            code
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
        Cmd::Exec(a) => ("exec", a.id.as_str()),
        Cmd::Update(a) => ("update", a.id.as_str()),
        Cmd::Events { id, .. } => ("events", id),
        Cmd::Pause { id } => ("pause", id),
        Cmd::Resume { id } => ("resume", id),
        Cmd::Ps { id, .. } => ("ps", id),
        Cmd::List { .. } | Cmd::Spec { .. } | Cmd::Features => return None,
    })
}

fn dispatch(cli: &Cli, cmd: &Cmd, inherited: &[i32]) -> Result<i32> {
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
            rt.create(&a.options(inherited))?;
        }
        Cmd::Run { args, detach, keep } => {
            no_systemd()?;
            return rt.run(&args.options(inherited), *detach, *keep);
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
            let sig = dray_runtime::signals::parse(signal.as_deref().unwrap_or("SIGTERM"))?;
            rt.kill(id, sig, *all)?;
        }
        Cmd::Delete { id, force } => rt.delete(id, *force)?,
        Cmd::Exec(a) => {
            let process = a.process(&rt)?;
            let opts = dray_runtime::container::ExecOptions {
                process,
                console_socket: a.console_socket.clone(),
                detach: a.detach,
                pid_file: a.pid_file.clone(),
                preserve_fds: a.preserve_fds,
                inherited_fds: Some(inherited.to_vec()),
                ignore_paused: a.ignore_paused,
                sub_cgroups: a.cgroup.clone(),
            };
            return rt.exec(&a.id, &opts);
        }
        Cmd::Update(a) => {
            let r = a.resources()?;
            rt.update(&a.id, &r)?;
        }
        Cmd::Events { stats, interval, id } => {
            if *stats {
                println!("{}", rt.stats_event(id)?.to_json());
            } else {
                let d = parse_duration(interval)?;
                rt.events(id, d, &mut |e| {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{}", e.to_json());
                    let _ = out.flush();
                })?;
            }
        }
        Cmd::Features => {
            let v = dray_runtime::features::features();
            println!(
                "{}",
                serde_json::to_string_pretty(&v).map_err(|e| Error::msg(e.to_string()))?
            );
        }
        Cmd::Pause { id } => rt.pause(id)?,
        Cmd::Resume { id } => rt.resume(id)?,
        Cmd::Ps { format, id, ps_args } => {
            let pids = rt.pids(id)?;
            if *format == ListFormat::Json {
                println!(
                    "{}",
                    serde_json::to_string(&pids).map_err(|e| Error::msg(e.to_string()))?
                );
            } else {
                print!("{}", ps_table(&pids, ps_args)?);
            }
        }

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
            let v = dray_runtime::spec::default_spec(
                rootless,
                nix::unistd::getuid().as_raw(),
                nix::unistd::getgid().as_raw(),
            );
            let text = serde_json::to_string_pretty(&v).map_err(|e| Error::msg(e.to_string()))?;
            dray_runtime::sys::write_file(&path, text + "\n")?;
        }
    }
    Ok(0)
}

/// `list` as runc prints it (Go's tabwriter: min width 12, padding 3).
pub fn table(list: &[dray_runtime::state::OciState]) -> String {
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

/// `ps` as runc prints it: the host's `ps` output (default `-ef`), keeping the header and the
/// lines whose PID column is one of the container's processes.
fn ps_table(pids: &[i32], args: &[String]) -> Result<String> {
    let args: Vec<String> = if args.is_empty() {
        vec!["-ef".into()]
    } else {
        args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| Error::msg(format!("running ps: {e}")))?;
    if !out.status.success() {
        return Err(Error::msg(format!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| Error::msg("ps output has no PID column"))?;
    let mut res = format!("{header}\n");
    for l in lines {
        if l.split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok())
            .is_some_and(|p| pids.contains(&p))
        {
            res.push_str(l);
            res.push('\n');
        }
    }
    Ok(res)
}

/// Parses a Go-style duration: `5s`, `500ms`, `1m`, `1.5s`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration> {
    let bad = || Error::msg(format!("invalid duration {s:?} (use e.g. 5s, 500ms, 1m)"));
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| s.split_at(i))
        .ok_or_else(bad)?;
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(bad());
    }
    std::time::Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn byte_sizes_parse_like_runc() {
        for (s, want) in [
            ("1024", 1024),
            ("512k", 512 << 10),
            ("64M", 64 << 20),
            ("2gb", 2 << 30),
            ("1.5g", 3 << 29),
            (".5k", 512),
            ("1t", 1 << 40),
            ("-1", -1),
        ] {
            assert_eq!(parse_bytes(s).unwrap(), want, "{s}");
        }
        for s in ["", "k", "abc", "1.2.3", "-5", "1e3", "99999999999999999999t"] {
            assert!(parse_bytes(s).is_err(), "{s:?}");
        }
    }
}
