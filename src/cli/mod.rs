//! Argument parsing and dispatch: one file per subcommand, each a thin wrapper over the library.

// First, so that its print macros replace std's in every module after it.
#[macro_use]
pub(crate) mod out;

pub mod build;
pub mod error;
pub mod info;
pub mod log;
pub mod prepare;
pub mod run;
mod sandbox_init;
pub mod store;
pub mod validate;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Print no stage lines and no download progress, only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Also print the output of maintainer scripts and hooks (`-v` before the subcommand).
    #[arg(long, global = true)]
    pub verbose: bool,
    /// Same as --verbose.
    #[arg(short = 'v', hide = true)]
    pub verbose_short: bool,
    /// Stage log format on stderr: text, or json (one object per line, for CI logs).
    #[arg(long, global = true, value_enum, default_value_t = log::LogFormat::Text)]
    pub log_format: log::LogFormat,
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
    /// Build an image from a description (KIWI's `system build`).
    Build(build::BuildArgs),
    /// Write the image files of a prepared root (KIWI's `system create`).
    Create(build::CreateArgs),
    /// Build the root tree of a description (KIWI's `system prepare`).
    Prepare(prepare::PrepareArgs),
    /// Resolve a description's packages and write its lock file.
    Lock(prepare::LockArgs),
    /// Check descriptions: exit 0 if valid, non-zero with every error found otherwise.
    Validate(validate::ValidateArgs),
    /// Show a description resolved for profiles, type and architecture (json, yaml or xml).
    Info(info::InfoArgs),
    /// Containers: run, ps, rm.
    #[command(flatten)]
    Run(run::RunCommand),
}

/// Rows as `docker images`/`docker ps` print them: columns three spaces apart, each as wide as its
/// widest cell in characters, trailing blanks trimmed.
fn columns<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, w) in r.iter().zip(widths) {
            line.push_str(&format!("{c:<w$}   "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Run the parsed command; the exit code is the command's.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = log::LogSettings {
        quiet: cli.quiet,
        verbose: cli.verbose || cli.verbose_short,
        format: cli.log_format,
    };
    // The commands that build stop cleanly on SIGINT, SIGTERM and SIGHUP (see
    // `imgbuild::interrupt`); `run` forwards them to its container instead.
    if matches!(
        cli.command,
        Command::Build(_) | Command::Create(_) | Command::Prepare(_) | Command::Lock(_)
    ) {
        imgbuild::interrupt::install().context("installing the signal handlers")?;
        out::stop_on_closed_stderr();
        if settings.format == log::LogFormat::Json {
            imgbuild::interrupt::set_exit_line(log::json_stopped_line);
        }
    }
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
        Command::Build(args) => build::exec(
            args,
            settings,
            cli.storage_root.as_deref(),
            cli.storage_driver.as_deref(),
        ),
        Command::Create(args) => build::exec_create(args, settings),
        Command::Prepare(args) => prepare::exec(args, settings),
        Command::Lock(args) => prepare::exec_lock(args, settings),
        Command::Validate(args) => Ok(validate::run(&args)),
        Command::Info(args) => info::run(args),
        Command::Run(cmd) => run::run(
            cmd,
            cli.storage_root.as_deref(),
            cli.storage_driver.as_deref(),
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align_by_characters_and_trim_line_ends() {
        let rows = [
            ["ID".to_string(), "COMMAND".to_string(), "NAMES".to_string()],
            ["1".to_string(), "\"sleep…\"".to_string(), String::new()],
        ];
        assert_eq!(
            super::columns(&rows),
            "ID   COMMAND    NAMES\n1    \"sleep…\"\n"
        );
    }
}
