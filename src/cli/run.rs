//! `run`, `ps` and `rm`: containers from the local image store.

use super::store::open_store;
use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use imgbuild::runtime::{
    ContainerRecord, RunOptions, Runtime, RuntimeError, State, UserSpec, Volume, parse_env,
    parse_env_file, parse_size,
};
use imgbuild::sandbox::{Limits, Network, SandboxError};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `--network` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum NetworkArg {
    /// A network namespace of its own with only loopback (the default).
    None,
    /// The host's network.
    Host,
}

/// Output formats of `ps`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PsFormat {
    /// Aligned columns.
    Table,
    /// The container records as a JSON array.
    Json,
}

/// Options of `run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Remove the container when the command ends, however it ends.
    #[arg(long)]
    rm: bool,
    /// The container's name (default: generated).
    #[arg(long)]
    name: Option<String>,
    /// Set an environment variable (`KEY=VALUE`; `KEY` alone passes imgbuild's own).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Read environment variables from a file (one `KEY=VALUE` per line).
    #[arg(long = "env-file", value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// Working directory inside the container (absolute; created when missing).
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<String>,
    /// User and group: names (from the container's /etc/passwd and /etc/group) or ids.
    #[arg(short = 'u', long = "user", value_name = "USER[:GROUP]")]
    user: Option<String>,
    /// Bind-mount a host path (`HOST:CONTAINER[:ro]`).
    #[arg(short = 'v', long = "volume", value_name = "HOST:CTR[:ro]", value_parser = parse_volume)]
    volumes: Vec<Volume>,
    /// `none` (only loopback; the default) or `host` (the host's network).
    #[arg(long, value_enum, default_value = "none")]
    network: NetworkArg,
    /// The container's hostname (default: the first 12 digits of its id; the host's with
    /// --network host).
    #[arg(long)]
    hostname: Option<String>,
    /// Memory limit (`64m`, `1g`, bytes).
    #[arg(short = 'm', long, value_name = "SIZE", value_parser = parse_memory)]
    memory: Option<u64>,
    /// Maximum number of processes.
    #[arg(long = "pids-limit", value_name = "N")]
    pids_limit: Option<u64>,
    /// CPU time as a number of CPUs (`0.5`, `2`).
    #[arg(long, value_name = "N")]
    cpus: Option<f64>,
    /// Mount the container's root read-only.
    #[arg(long = "read-only")]
    read_only: bool,
    /// Keep stdin attached.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// The image: `name[:tag]`, id, id prefix or manifest digest; or an archive (docker-archive,
    /// oci-archive, OCI layout directory) to load first.
    image: String,
    /// The command and its arguments (default: the image's).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn parse_volume(s: &str) -> Result<Volume, String> {
    s.parse().map_err(|e: RuntimeError| e.to_string())
}

fn parse_memory(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

/// The container subcommands.
#[derive(Subcommand, Debug)]
pub enum RunCommand {
    /// Run a command in a new container made from an image.
    Run(Box<RunArgs>),
    /// List containers.
    Ps {
        /// Show all containers (default: only running ones).
        #[arg(short = 'a', long)]
        all: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: PsFormat,
    },
    /// Remove containers.
    Rm {
        /// Kill a running container first.
        #[arg(short = 'f', long)]
        force: bool,
        /// Names, ids or id prefixes.
        #[arg(required = true)]
        containers: Vec<String>,
    },
}

fn options(args: RunArgs) -> anyhow::Result<RunOptions> {
    let lookup = |k: &str| std::env::var(k).ok();
    let mut env = Vec::new();
    for f in &args.env_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading env file {}", f.display()))?;
        env.extend(parse_env_file(f, &text, &lookup)?);
    }
    for e in &args.env {
        env.extend(parse_env(e, &lookup)?);
    }
    Ok(RunOptions {
        image: args.image,
        command: args.command,
        name: args.name,
        env,
        workdir: args.workdir,
        user: args.user.as_deref().map(UserSpec::parse).transpose()?,
        volumes: args.volumes,
        network: match args.network {
            NetworkArg::None => Network::None,
            NetworkArg::Host => Network::Host,
        },
        hostname: args.hostname,
        limits: Limits {
            memory: args.memory,
            pids: args.pids_limit,
            cpus: args.cpus,
        },
        read_only: args.read_only,
        interactive: args.interactive,
        tty: args.tty,
        remove: args.rm,
    })
}

fn ago(then: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let s = now.saturating_sub(then);
    match s {
        0..=59 => format!("{s} seconds ago"),
        60..=3599 => format!("{} minutes ago", s / 60),
        3600..=86399 => format!("{} hours ago", s / 3600),
        _ => format!("{} days ago", s / 86400),
    }
}

fn status(c: &ContainerRecord) -> String {
    match c.state {
        State::Created => "Created".to_string(),
        State::Running => "Up".to_string(),
        State::Exited => format!(
            "Exited ({}) {}",
            c.exit_code.unwrap_or(-1),
            c.finished.map(ago).unwrap_or_default()
        )
        .trim_end()
        .to_string(),
        State::Dead => "Dead".to_string(),
    }
}

fn ps_table(containers: &[ContainerRecord]) -> String {
    let mut rows = vec![[
        "CONTAINER ID".to_string(),
        "IMAGE".to_string(),
        "COMMAND".to_string(),
        "CREATED".to_string(),
        "STATUS".to_string(),
        "NAMES".to_string(),
    ]];
    for c in containers {
        let mut cmd = c.command.join(" ");
        if cmd.chars().count() > 20 {
            cmd = cmd.chars().take(19).collect::<String>() + "…";
        }
        rows.push([
            c.id[..12.min(c.id.len())].to_string(),
            c.image_ref.clone(),
            format!("\"{cmd}\""),
            ago(c.created),
            status(c),
            c.name.clone(),
        ]);
    }
    super::columns(&rows)
}

static DEFERRED_SIGNAL: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn defer_signal(sig: libc::c_int) {
    DEFERRED_SIGNAL.store(sig, std::sync::atomic::Ordering::Relaxed);
}

/// Keep SIGINT, SIGTERM, SIGHUP and SIGQUIT from killing imgbuild between making a container
/// and removing it (`--rm`): outside the command's lifetime they are only noted. While the
/// command runs, the sandbox installs its own handlers over these (forwarding the signals to
/// the command) and puts these back afterwards. Only the binary does this: it runs one
/// container per process, so no other sandbox's handlers can be overwritten.
fn defer_termination_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: a plain sigaction with a handler that only stores to an atomic.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = defer_signal as *const () as libc::sighandler_t;
            act.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&raw mut act.sa_mask);
            libc::sigaction(sig, &raw const act, std::ptr::null_mut());
        }
    }
}

/// Whether `run`'s IMAGE names an archive to load rather than an image of the store: an
/// existing file or directory written as a path (with a `/`) or named with an archive's suffix.
/// Requiring one of the two keeps a stray file called like an image from being taken for it.
fn archive_path(image: &str) -> Option<PathBuf> {
    let p = Path::new(image);
    let suffix = [".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.xz", ".oci"]
        .iter()
        .any(|s| image.ends_with(s));
    ((image.contains('/') || suffix) && p.exists()).then(|| p.to_path_buf())
}

/// What `run` can refuse before any work: a container name Docker would refuse.
fn early_checks(args: &RunArgs) -> anyhow::Result<()> {
    if let Some(name) = &args.name
        && !imgbuild::runtime::valid_name(name)
    {
        anyhow::bail!(RuntimeError::InvalidName(name.clone()));
    }
    Ok(())
}

/// Load the archive `run` was given and return the loaded image's id.
fn load_for_run(store: &imgbuild::storage::Store, archive: &Path) -> anyhow::Result<String> {
    let record = imgbuild::storage::archive::load_archive(store, archive, &[])?.record;
    // stderr: the command's own output is stdout.
    eprintln!(
        "imgbuild: loaded {} as {}",
        archive.display(),
        record.tags.first().unwrap_or(&record.id)
    );
    Ok(record.id)
}

/// Run a container command against the store the global options name.
pub fn run(
    command: RunCommand,
    root: Option<&Path>,
    driver: Option<&str>,
) -> anyhow::Result<ExitCode> {
    match command {
        RunCommand::Run(args) => {
            // As `docker run`: 125 when imgbuild itself fails, 126 when the command cannot be
            // executed, 127 when it is not found, else the command's own code.
            defer_termination_signals();
            let mut args = args;
            // The name is checked before the store is opened or an archive loaded.
            let result = early_checks(&args)
                .and_then(|()| open_store(root, driver))
                .and_then(|s| {
                    if let Some(archive) = archive_path(&args.image) {
                        args.image = load_for_run(&s, &archive)?;
                    }
                    Ok(s)
                })
                .and_then(|s| Ok(Runtime::new(s)?))
                .and_then(|rt| Ok((options(*args)?, rt)))
                .and_then(|(opts, rt)| Ok(rt.run(&opts)?));
            match result {
                Ok(outcome) => Ok(ExitCode::from(
                    u8::try_from(outcome.code.clamp(0, 255)).unwrap_or(u8::MAX),
                )),
                Err(e) => {
                    eprintln!("imgbuild: error: {}", super::error::text(&e));
                    let code = match e.downcast_ref::<RuntimeError>() {
                        Some(RuntimeError::Sandbox {
                            source: SandboxError::Exec { error: source, .. },
                            ..
                        }) if source.kind() == std::io::ErrorKind::NotFound => 127,
                        Some(RuntimeError::Sandbox {
                            source: SandboxError::Exec { .. },
                            ..
                        }) => 126,
                        _ => 125,
                    };
                    Ok(ExitCode::from(code))
                }
            }
        }
        RunCommand::Ps { all, format } => {
            let rt = Runtime::new(open_store(root, driver)?)?;
            let containers = rt.containers(all)?;
            match format {
                PsFormat::Table => print!("{}", ps_table(&containers)),
                PsFormat::Json => println!("{}", serde_json::to_string_pretty(&containers)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        RunCommand::Rm { force, containers } => {
            let rt = Runtime::new(open_store(root, driver)?)?;
            let mut failed = false;
            for c in containers {
                match rt.remove(&c, force) {
                    Ok(_) => println!("{c}"),
                    Err(e) => {
                        eprintln!("imgbuild: error: {e}");
                        failed = true;
                    }
                }
            }
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn archives_are_told_from_image_names() {
        let t = tempfile::tempdir().unwrap();
        let tar = t.path().join("img.tar");
        std::fs::write(&tar, b"").unwrap();
        let plain = t.path().join("busybox");
        std::fs::write(&plain, b"").unwrap();
        let path = |p: &Path| p.to_str().unwrap().to_string();
        assert_eq!(archive_path(&path(&tar)), Some(tar.clone()));
        // A path with a `/` counts whatever its name; a missing file never does.
        assert_eq!(archive_path(&path(&plain)), Some(plain.clone()));
        assert_eq!(archive_path(&path(&t.path().join("gone.tar"))), None);
        // Image names are not archives unless such a file exists under an archive's name.
        assert_eq!(archive_path("busybox"), None);
        assert_eq!(archive_path("localhost/deb:12"), None);
    }

    #[test]
    fn command_after_the_image_keeps_its_flags() {
        let cli = crate::cli::Cli::try_parse_from([
            "imgbuild",
            "run",
            "--rm",
            "-e",
            "A=1",
            "-v",
            "/a:/b:ro",
            "--memory",
            "64m",
            "img",
            "sh",
            "-c",
            "echo --rm -v",
        ])
        .unwrap();
        let crate::cli::Command::Run(RunCommand::Run(args)) = cli.command else {
            panic!("not run");
        };
        assert!(args.rm);
        assert_eq!(args.memory, Some(64 << 20));
        assert_eq!(args.image, "img");
        assert_eq!(args.command, ["sh", "-c", "echo --rm -v"]);
        assert!(args.volumes[0].read_only);
    }

    #[test]
    fn bad_sizes_and_volumes_are_parse_errors() {
        let err = crate::cli::Cli::try_parse_from(["imgbuild", "run", "--memory", "64x", "img"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("64x") && err.contains("unit"), "{err}");
        let err = crate::cli::Cli::try_parse_from(["imgbuild", "run", "-v", "rel:/x", "img"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("rel:/x"), "{err}");
    }
}
