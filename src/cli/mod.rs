//! Argument parsing and dispatch: one file per subcommand, each a thin wrapper over the library.

// First, so that its print macros replace std's in every module after it.
#[macro_use]
pub(crate) mod out;

pub mod build;
pub mod cache;
pub mod container;
pub mod error;
pub mod info;
pub mod kiwi;
pub mod log;
pub mod login;
pub mod manifest;
mod meta;
pub mod prepare;
pub mod pull;
pub mod push;
pub mod registry_args;
mod report;
pub mod run;
mod sandbox_init;
pub mod store;
pub mod test;
pub mod transfer;
pub mod validate;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// The help heading of the options every subcommand takes.
const GLOBAL: &str = "Global options";

/// Build Docker/OCI base images from KIWI image descriptions.
#[derive(Parser, Debug)]
#[command(name = "imgbuild", version, about)]
pub struct Cli {
    /// Root directory of the local image store [default: /var/lib/imgbuild].
    #[arg(long, global = true, value_name = "DIR", env = "IMGBUILD_STORAGE_ROOT", help_heading = GLOBAL)]
    pub storage_root: Option<PathBuf>,
    /// Storage driver: vfs, overlay, btrfs or devicemapper [default: the store's own, for a new
    /// store overlay where it mounts, else vfs].
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        env = "IMGBUILD_STORAGE_DRIVER",
        help_heading = GLOBAL
    )]
    pub storage_driver: Option<String>,
    /// Print no stage lines and no download progress, only errors.
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    pub quiet: bool,
    /// Also print the output of maintainer scripts and hooks (`-v` before the subcommand).
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub verbose: bool,
    /// Same as --verbose.
    #[arg(short = 'v', hide = true)]
    pub verbose_short: bool,
    /// Stage log format on stderr: text, or json (one object per line, for CI logs).
    #[arg(long, global = true, value_enum, default_value_t = log::LogFormat::Text, help_heading = GLOBAL)]
    pub log_format: log::LogFormat,
    #[command(flatten)]
    pub kiwi: kiwi::GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands; each lives in its own file under `src/cli/`.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the version and the features this build supports.
    Version,
    /// Print a shell completion script (bash, zsh or fish).
    Completion(meta::CompletionArgs),
    /// Write a man page per command into a directory (for packaging).
    #[command(name = "generate-man", hide = true)]
    GenerateMan(meta::ManArgs),
    /// Run a command in a sandbox (debugging aid).
    #[command(name = "sandbox-run", hide = true)]
    SandboxRun(sandbox_init::SandboxRunArgs),
    /// The local image store: images, inspect, rmi, tag.
    #[command(flatten)]
    Store(store::StoreCommand),
    /// Build an image from a description (KIWI's `system build`).
    Build(build::BuildArgs),
    /// The package-stage snapshots in the cache directory: ls, prune.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
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
    /// Push an image of the store, or an archive or OCI layout, to a registry.
    Push(push::PushArgs),
    /// Check credentials against a registry and keep them in the auth file.
    Login(login::LoginArgs),
    /// Remove the credentials of a registry (or all) from the auth file.
    Logout(login::LogoutArgs),
    /// Pull an image from a registry into the local store.
    Pull(pull::PullArgs),
    /// Multi-platform image indexes (manifest lists): create, add, push, inspect, rm.
    #[command(subcommand)]
    Manifest(manifest::ManifestCommand),
    /// Containers: run, ps, rm, logs, stop, kill, start, restart, wait, exec, container.
    #[command(flatten)]
    Run(run::RunCommand),
    /// Check an image with container-structure-test configs (commands, files, metadata).
    Test(test::TestArgs),
    /// KIWI's `system build|prepare|create`, with KIWI's options.
    #[command(subcommand)]
    System(kiwi::SystemCommand),
    /// KIWI's `image info`, with KIWI's options.
    #[command(subcommand)]
    Image(kiwi::ImageCommand),
    /// KIWI's `result list|bundle`, reading kiwi.result.json.
    #[command(subcommand, name = "result")]
    KiwiResult(kiwi::ResultCommand),
}

/// Run the parsed command; the exit code is the command's.
pub fn run(mut cli: Cli) -> anyhow::Result<ExitCode> {
    cli.kiwi.apply(&mut cli.command);
    let settings = cli.kiwi.log_settings(log::LogSettings {
        quiet: cli.quiet,
        verbose: cli.verbose || cli.verbose_short,
        format: cli.log_format,
    });
    // The commands that build stop cleanly on SIGINT, SIGTERM and SIGHUP (see
    // `imgbuild::interrupt`); `run` forwards them to its container instead.
    if matches!(
        cli.command,
        Command::Build(_)
            | Command::Create(_)
            | Command::Prepare(_)
            | Command::Lock(_)
            | Command::System(_)
            | Command::Pull(_)
            | Command::Test(_)
    ) {
        imgbuild::interrupt::install().context("installing the signal handlers")?;
        out::stop_on_closed_stderr();
        if settings.format == log::LogFormat::Json {
            imgbuild::interrupt::set_exit_line(log::json_stopped_line);
        }
    }
    match cli.command {
        Command::Version => Ok(meta::version()),
        Command::Completion(args) => meta::completion(&args),
        Command::GenerateMan(args) => meta::generate_man(&args),
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
        Command::Cache(cmd) => cache::run(cmd),
        Command::Prepare(args) => prepare::exec(
            args,
            settings,
            cli.storage_root.as_deref(),
            cli.storage_driver.as_deref(),
        ),
        Command::Lock(args) => prepare::exec_lock(
            args,
            settings,
            cli.storage_root.as_deref(),
            cli.storage_driver.as_deref(),
        ),
        Command::Validate(args) => Ok(validate::run(&args)),
        Command::Info(args) => info::run(args),
        Command::Push(args) => push::run(
            &args,
            cli.storage_root.as_deref(),
            cli.storage_driver.as_deref(),
        ),
        Command::Login(args) => login::run_login(&args),
        Command::Manifest(cmd) => manifest::run(cmd, cli.storage_root.as_deref()),
        Command::Logout(args) => login::run_logout(&args),
        Command::Pull(args) => pull::run(
            &args,
            cli.storage_root.as_deref(),
            cli.storage_driver.as_deref(),
            cli.quiet,
        ),
        Command::Run(cmd) => run::run(
            cmd,
            cli.storage_root.as_deref(),
            cli.storage_driver.as_deref(),
        ),
        Command::Test(args) => Ok(test::run(
            &args,
            cli.storage_root.as_deref(),
            cli.storage_driver.as_deref(),
        )),
        Command::System(cmd) => kiwi::system(
            cmd,
            &cli.kiwi,
            settings,
            cli.storage_root.as_deref(),
            cli.storage_driver.as_deref(),
        ),
        Command::Image(cmd) => kiwi::image(cmd, &cli.kiwi, settings),
        Command::KiwiResult(cmd) => kiwi::result(cmd),
    }
}
