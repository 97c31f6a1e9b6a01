//! drayctl: a docker-like command line for drayd. It is only a client of drayd's API (it never
//! links the manager): every command is a gRPC call plus docker's way of printing the answer.

mod client;
mod commands;
mod credentials;
mod format;
mod progress;
mod terminal;
mod units;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use client::{Client, ConnectError, DEFAULT_HOST};

/// A docker-like command line for drayd.
#[derive(Parser, Debug)]
#[command(name = "drayctl", version, about, disable_help_subcommand = true)]
struct Cli {
    /// Daemon socket to connect to
    #[arg(short = 'H', long, env = "DRAY_HOST", default_value = DEFAULT_HOST, value_name = "ADDRESS")]
    host: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Download an image from a registry
    Pull(commands::images::PullArgs),
    /// Upload an image to a registry
    Push(commands::images::PushArgs),
    /// List images
    Images(commands::images::ListArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(commands::images::TagArgs),
    /// Remove one or more images
    Rmi(commands::images::RmiArgs),
    /// Show the history of an image
    History(commands::images::HistoryArgs),
    /// Return low-level information on containers or images
    Inspect(commands::containers::InspectArgs),
    /// Create and run a new container from an image
    #[command(disable_help_flag = true)]
    Run(commands::containers::RunArgs),
    /// Create a new container
    #[command(disable_help_flag = true)]
    Create(commands::containers::CreateArgs),
    /// Start one or more stopped containers
    Start(commands::containers::StartArgs),
    /// Stop one or more running containers
    Stop(commands::containers::StopArgs),
    /// Restart one or more containers
    Restart(commands::containers::StopArgs),
    /// Kill one or more running containers
    Kill(commands::containers::KillArgs),
    /// Remove one or more containers
    Rm(commands::containers::RmArgs),
    /// List containers
    Ps(commands::containers::PsArgs),
    /// Fetch the logs of a container
    Logs(commands::containers::LogsArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(commands::containers::WaitArgs),
    /// Rename a container
    Rename(commands::containers::RenameArgs),
    /// Pause all processes within one or more containers
    Pause(commands::containers::IdsArgs),
    /// Unpause all processes within one or more containers
    Unpause(commands::containers::IdsArgs),
    /// Display the running processes of a container
    Top(commands::containers::TopArgs),
    /// Execute a command in a running container
    Exec(commands::containers::ExecArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(commands::containers::AttachArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(commands::containers::StatsArgs),
    /// Update configuration of one or more containers
    Update(commands::containers::UpdateArgs),
    /// Get real time events from drayd
    Events(commands::containers::EventsArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(commands::containers::DiffArgs),
    /// List port mappings or a specific mapping for the container
    Port(commands::containers::PortArgs),
    /// Export a container's filesystem as a tar archive
    Export(commands::containers::ExportArgs),
    /// Create a new image from a container's changes
    Commit(commands::containers::CommitArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(commands::copy::CpArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCmd),
    /// Manage volumes
    #[command(subcommand)]
    Volume(commands::volumes::VolumeCmd),
    /// Manage networks
    #[command(subcommand)]
    Network(commands::networks::NetworkCmd),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(commands::archive::SaveArgs),
    /// Load images from a tar archive or STDIN
    Load(commands::archive::LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(commands::archive::ImportArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCmd),
    /// Log in to a registry
    Login(commands::registry::LoginArgs),
    /// Log out from a registry
    Logout(commands::registry::LogoutArgs),
    /// Show the drayctl and drayd version information
    Version(commands::system::VersionArgs),
    /// Display system-wide information
    Info(commands::system::InfoArgs),
    /// Manage drayd
    #[command(subcommand)]
    System(SystemCmd),
    /// Generate a shell completion script (bash, zsh, fish)
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand, Debug)]
enum ImageCmd {
    /// List images
    #[command(alias = "list")]
    Ls(commands::images::ListArgs),
    /// Download an image from a registry
    Pull(commands::images::PullArgs),
    /// Upload an image to a registry
    Push(commands::images::PushArgs),
    /// Display detailed information on one or more images
    Inspect(commands::images::InspectArgs),
    /// Remove one or more images
    #[command(alias = "remove")]
    Rm(commands::images::RmiArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(commands::images::TagArgs),
    /// Show the history of an image
    History(commands::images::HistoryArgs),
    /// Remove unused images
    Prune(commands::system::PruneArgs),
    /// Save one or more images to a tar archive
    Save(commands::archive::SaveArgs),
    /// Load images from a tar archive or STDIN
    Load(commands::archive::LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(commands::archive::ImportArgs),
}

#[derive(Subcommand, Debug)]
enum ContainerCmd {
    /// Create and run a new container from an image
    #[command(disable_help_flag = true)]
    Run(commands::containers::RunArgs),
    /// Create a new container
    #[command(disable_help_flag = true)]
    Create(commands::containers::CreateArgs),
    /// Start one or more stopped containers
    Start(commands::containers::StartArgs),
    /// Stop one or more running containers
    Stop(commands::containers::StopArgs),
    /// Restart one or more containers
    Restart(commands::containers::StopArgs),
    /// Kill one or more running containers
    Kill(commands::containers::KillArgs),
    /// Remove one or more containers
    Rm(commands::containers::RmArgs),
    /// List containers
    #[command(visible_alias = "ps", alias = "list")]
    Ls(commands::containers::PsArgs),
    /// Fetch the logs of a container
    Logs(commands::containers::LogsArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(commands::containers::WaitArgs),
    /// Display detailed information on one or more containers
    Inspect(commands::containers::InspectArgs),
    /// Rename a container
    Rename(commands::containers::RenameArgs),
    /// Pause all processes within one or more containers
    Pause(commands::containers::IdsArgs),
    /// Unpause all processes within one or more containers
    Unpause(commands::containers::IdsArgs),
    /// Display the running processes of a container
    Top(commands::containers::TopArgs),
    /// Execute a command in a running container
    Exec(commands::containers::ExecArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(commands::containers::AttachArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(commands::containers::StatsArgs),
    /// Update configuration of one or more containers
    Update(commands::containers::UpdateArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(commands::containers::DiffArgs),
    /// List port mappings or a specific mapping for the container
    Port(commands::containers::PortArgs),
    /// Export a container's filesystem as a tar archive
    Export(commands::containers::ExportArgs),
    /// Create a new image from a container's changes
    Commit(commands::containers::CommitArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(commands::copy::CpArgs),
}

#[derive(Subcommand, Debug)]
enum SystemCmd {
    /// Get real time events from drayd
    Events(commands::containers::EventsArgs),
    /// Show drayd disk usage
    Df(commands::system::DfArgs),
    /// Remove unused data
    Prune(commands::system::PruneArgs),
    /// Display system-wide information
    Info(commands::system::InfoArgs),
}

/// An error drayd reported (exit 125, as docker).
#[derive(Debug)]
pub struct DaemonError(pub String);

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DaemonError {}

impl From<tonic::Status> for DaemonError {
    fn from(s: tonic::Status) -> Self {
        if s.code() == tonic::Code::Unavailable && s.message().contains("transport") {
            return DaemonError(format!("lost the connection to drayd: {}", s.message()));
        }
        DaemonError(s.message().to_string())
    }
}

/// A failure printed as docker prints it, with docker's exit code.
pub struct Failure {
    pub message: String,
    pub code: u8,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => 125,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if let Cmd::Completion { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "drayctl", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("drayctl: {e}");
            return ExitCode::from(1);
        }
    };
    // docker: a refused `run` or `create` exits 125 (the container never ran, so no exit
    // status of its can be confused with it); any other command's error exits 1.
    let daemon_code = match &cli.command {
        Cmd::Run(_) | Cmd::Create(_) | Cmd::Container(ContainerCmd::Run(_) | ContainerCmd::Create(_)) => 125,
        _ => 1,
    };
    let result = rt.block_on(run(cli));
    // A read of stdin may still be pending on a blocking thread (an attached session whose
    // container ended): do not wait for it.
    rt.shutdown_background();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = if e.downcast_ref::<DaemonError>().is_some() || e.downcast_ref::<ConnectError>().is_some() {
                daemon_code
            } else if let Some(f) = e.downcast_ref::<commands::Exit>() {
                f.0
            } else {
                1
            };
            let msg = format!("{e:#}");
            if !msg.is_empty() {
                eprintln!("Error: {msg}");
            }
            ExitCode::from(code)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    if let Cmd::Logout(a) = &cli.command {
        return commands::registry::logout(a);
    }
    let c = Client::connect(&cli.host).await?;
    use commands::{archive, containers, images, registry, system};
    match cli.command {
        Cmd::Pull(a) | Cmd::Image(ImageCmd::Pull(a)) => images::pull(&c, a).await,
        Cmd::Push(a) | Cmd::Image(ImageCmd::Push(a)) => images::push(&c, a).await,
        Cmd::Images(a) | Cmd::Image(ImageCmd::Ls(a)) => images::list(&c, a).await,
        Cmd::Tag(a) | Cmd::Image(ImageCmd::Tag(a)) => images::tag(&c, a).await,
        Cmd::Rmi(a) | Cmd::Image(ImageCmd::Rm(a)) => images::rmi(&c, a).await,
        Cmd::History(a) | Cmd::Image(ImageCmd::History(a)) => images::history(&c, a).await,
        Cmd::Image(ImageCmd::Inspect(a)) => images::inspect(&c, a).await,
        Cmd::Inspect(a) => containers::inspect(&c, a).await,
        Cmd::Container(ContainerCmd::Inspect(mut a)) => {
            a.kind = Some("container".into());
            containers::inspect(&c, a).await
        }
        Cmd::Run(a) | Cmd::Container(ContainerCmd::Run(a)) => containers::run(&c, a).await,
        Cmd::Create(a) | Cmd::Container(ContainerCmd::Create(a)) => containers::create(&c, a).await,
        Cmd::Start(a) | Cmd::Container(ContainerCmd::Start(a)) => containers::start(&c, a).await,
        Cmd::Stop(a) | Cmd::Container(ContainerCmd::Stop(a)) => containers::stop(&c, a).await,
        Cmd::Restart(a) | Cmd::Container(ContainerCmd::Restart(a)) => containers::restart(&c, a).await,
        Cmd::Kill(a) | Cmd::Container(ContainerCmd::Kill(a)) => containers::kill(&c, a).await,
        Cmd::Rm(a) | Cmd::Container(ContainerCmd::Rm(a)) => containers::rm(&c, a).await,
        Cmd::Ps(a) | Cmd::Container(ContainerCmd::Ls(a)) => containers::ps(&c, a).await,
        Cmd::Logs(a) | Cmd::Container(ContainerCmd::Logs(a)) => containers::logs(&c, a).await,
        Cmd::Wait(a) | Cmd::Container(ContainerCmd::Wait(a)) => containers::wait(&c, a).await,
        Cmd::Rename(a) | Cmd::Container(ContainerCmd::Rename(a)) => containers::rename(&c, a).await,
        Cmd::Pause(a) | Cmd::Container(ContainerCmd::Pause(a)) => containers::pause(&c, a, true).await,
        Cmd::Unpause(a) | Cmd::Container(ContainerCmd::Unpause(a)) => containers::pause(&c, a, false).await,
        Cmd::Top(a) | Cmd::Container(ContainerCmd::Top(a)) => containers::top(&c, a).await,
        Cmd::Exec(a) | Cmd::Container(ContainerCmd::Exec(a)) => containers::exec(&c, a).await,
        Cmd::Volume(v) => commands::volumes::run(&c, v).await,
        Cmd::Network(n) => commands::networks::run(&c, n).await,
        Cmd::Attach(a) | Cmd::Container(ContainerCmd::Attach(a)) => containers::attach(&c, a).await,
        Cmd::Stats(a) | Cmd::Container(ContainerCmd::Stats(a)) => containers::stats(&c, a).await,
        Cmd::Update(a) | Cmd::Container(ContainerCmd::Update(a)) => containers::update(&c, a).await,
        Cmd::Events(a) | Cmd::System(SystemCmd::Events(a)) => containers::events(&c, a).await,
        Cmd::Diff(a) | Cmd::Container(ContainerCmd::Diff(a)) => containers::diff(&c, a).await,
        Cmd::Port(a) | Cmd::Container(ContainerCmd::Port(a)) => containers::port(&c, a).await,
        Cmd::Export(a) | Cmd::Container(ContainerCmd::Export(a)) => containers::export(&c, a).await,
        Cmd::Commit(a) | Cmd::Container(ContainerCmd::Commit(a)) => containers::commit(&c, a).await,
        Cmd::Cp(a) | Cmd::Container(ContainerCmd::Cp(a)) => commands::copy::cp(&c, a).await,
        Cmd::Image(ImageCmd::Prune(a)) => system::image_prune(&c, a).await,
        Cmd::Save(a) | Cmd::Image(ImageCmd::Save(a)) => archive::save(&c, a).await,
        Cmd::Load(a) | Cmd::Image(ImageCmd::Load(a)) => archive::load(&c, a).await,
        Cmd::Import(a) | Cmd::Image(ImageCmd::Import(a)) => archive::import(&c, a).await,
        Cmd::Login(a) => registry::login(&c, a).await,
        Cmd::Version(a) => system::version(&c, a).await,
        Cmd::Info(a) | Cmd::System(SystemCmd::Info(a)) => system::info(&c, a).await,
        Cmd::System(SystemCmd::Df(a)) => system::df(&c, a).await,
        Cmd::System(SystemCmd::Prune(a)) => system::prune(&c, a).await,
        Cmd::Logout(_) | Cmd::Completion { .. } => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn docker_forms_parse() {
        let c = Cli::try_parse_from(["drayctl", "-H", "unix:///x.sock", "history", "-H=false", "img"]).unwrap();
        assert_eq!(c.host, "unix:///x.sock");
        assert!(Cli::try_parse_from([
            "drayctl",
            "images",
            "-a",
            "-q",
            "--no-trunc",
            "--digests",
            "--format",
            "{{.ID}}"
        ])
        .is_ok());
        assert!(Cli::try_parse_from(["drayctl", "image", "ls", "-f", "dangling=true"]).is_ok());
        assert!(Cli::try_parse_from(["drayctl", "rmi", "-f", "a", "b"]).is_ok());
        assert!(Cli::try_parse_from(["drayctl", "rmi"]).is_err());
    }
}
