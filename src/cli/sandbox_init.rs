//! `imgbuild sandbox-run` (hidden): run one command in a sandbox, for debugging build hooks and
//! for tests that need a separate imgbuild process (signal forwarding, parent death).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use imgbuild::sandbox::{Limits, Network, Profile, Sandbox};

/// Arguments of `imgbuild sandbox-run`.
#[derive(Args, Debug)]
pub struct SandboxRunArgs {
    /// Use the container profile instead of the build profile.
    #[arg(long)]
    container: bool,
    /// Hostname inside the sandbox.
    #[arg(long)]
    hostname: Option<String>,
    /// Bind mount HOST:TARGET[:ro] (repeatable).
    #[arg(long = "bind", value_name = "HOST:TARGET[:ro]")]
    binds: Vec<String>,
    /// No network (a new namespace with only `lo`).
    #[arg(long)]
    no_network: bool,
    /// Memory limit in bytes.
    #[arg(long)]
    memory: Option<u64>,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// The root tree.
    root: PathBuf,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, required = true)]
    command: Vec<String>,
}

/// Run the command; exit with its code.
pub fn run(args: SandboxRunArgs) -> anyhow::Result<ExitCode> {
    let mut sb = Sandbox::new(&args.root, &args.command)
        .env("PATH", imgbuild::sandbox::DEFAULT_PATH)
        .profile(if args.container {
            Profile::Container
        } else {
            Profile::Build
        })
        .network(if args.no_network {
            Network::None
        } else {
            Network::Host
        })
        .tty(args.tty)
        .limits(Limits {
            memory: args.memory,
            ..Limits::default()
        });
    if let Some(h) = args.hostname {
        sb = sb.hostname(h);
    }
    for spec in &args.binds {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.as_slice() {
            [src, dst] => sb = sb.bind(src, dst, false),
            [src, dst, "ro"] => sb = sb.bind(src, dst, true),
            _ => anyhow::bail!("bad --bind {spec:?}: expected HOST:TARGET[:ro]"),
        }
    }
    let outcome = sb.run()?;
    Ok(ExitCode::from(
        u8::try_from(outcome.code.clamp(0, 255)).unwrap_or(u8::MAX),
    ))
}
