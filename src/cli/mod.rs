//! Argument parsing and dispatch: one file per subcommand, each a thin wrapper over the library.

use clap::{Parser, Subcommand};

mod sandbox_init;
use std::process::ExitCode;

/// Build Docker/OCI base images from KIWI image descriptions.
#[derive(Parser, Debug)]
#[command(name = "imgbuild", version, about)]
pub struct Cli {
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
}

/// Run the parsed command; the exit code is the command's.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Version => {
            println!("imgbuild {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::SandboxRun(args) => sandbox_init::run(args),
    }
}
