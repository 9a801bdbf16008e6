//! Argument parsing and dispatch: one file per subcommand, each a thin wrapper over the library.

use clap::{Parser, Subcommand};

mod sandbox_init;
use std::path::PathBuf;
use std::process::ExitCode;

pub mod run;
pub mod store;

/// Build Docker/OCI base images from KIWI image descriptions.
#[derive(Parser, Debug)]
#[command(name = "imgbuild", version, about)]
pub struct Cli {
    /// Root directory of the local image store [default: /var/lib/imgbuild].
    #[arg(long, global = true, value_name = "DIR", env = "IMGBUILD_STORAGE_ROOT")]
    pub storage_root: Option<PathBuf>,
    /// Storage driver: vfs, overlay, btrfs or devicemapper [default: the store's own, for a new
    /// store overlay where it mounts, else vfs].
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        env = "IMGBUILD_STORAGE_DRIVER"
    )]
    pub storage_driver: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands; each lives in its own file under `src/cli/`.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the version and the features this build supports.
    Version,
    /// Run a command in a sandbox (debugging aid).
    #[command(name = "sandbox-run", hide = true)]
    SandboxRun(sandbox_init::SandboxRunArgs),
    /// The local image store: images, inspect, rmi, tag.
    #[command(flatten)]
    Store(store::StoreCommand),
    /// Containers: run, ps, rm.
    #[command(flatten)]
    Run(run::RunCommand),
}

/// Run the parsed command; the exit code is the command's.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Version => {
            println!("imgbuild {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::SandboxRun(args) => sandbox_init::run(args),
        Command::Store(cmd) => store::run(
            cmd,
            cli.storage_root.as_deref(),
            cli.storage_driver.as_deref(),
        ),
        Command::Run(cmd) => run::run(
            cmd,
            cli.storage_root.as_deref(),
            cli.storage_driver.as_deref(),
        ),
    }
}
