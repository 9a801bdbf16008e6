//! Argument parsing and dispatch: one file per subcommand, each a thin wrapper over the library.

pub mod info;
pub mod validate;

use clap::{Parser, Subcommand};
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
    /// Check descriptions: exit 0 if valid, non-zero with every error found otherwise.
    Validate(validate::ValidateArgs),
    /// Show a description resolved for profiles, type and architecture (json, yaml or xml).
    Info(info::InfoArgs),
}

/// Run the parsed command; the exit code is the command's.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Version => {
            println!("imgbuild {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate(args) => validate::run(args),
        Command::Info(args) => info::run(args),
    }
}
