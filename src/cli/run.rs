//! `run`, `ps` and `rm`: containers from the local image store.

use super::report::{self, Format};
use super::store::open_store;
use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use imgbuild::runtime::{
    ContainerRecord, DnsOptions, HostEntry, PortSpec, RunOptions, Runtime, RuntimeError, State,
    UserSpec, Volume, parse_env, parse_env_file, parse_size, ports_text,
};
use imgbuild::sandbox::{Limits, Network, SandboxError};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `--network` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum NetworkArg {
    /// A network namespace of its own with outbound access and DNS through slirp4netns (the
    /// default).
    Private,
    /// A network namespace of its own with only loopback.
    None,
    /// The host's network.
    Host,
}

/// Options of `run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Remove the container when the command ends, however it ends.
    #[arg(long)]
    rm: bool,
    /// Run the container in the background and print its id; its output goes to its log.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Replace the image's entrypoint (`""` clears it; the image's command is dropped too).
    #[arg(long, value_name = "COMMAND")]
    entrypoint: Option<String>,
    /// The signal `stop` sends first (default: the image's `StopSignal`, else SIGTERM).
    #[arg(long = "stop-signal", value_name = "SIGNAL", value_parser = parse_signal_arg)]
    stop_signal: Option<i32>,
    /// Seconds `stop` waits for the command before SIGKILL.
    #[arg(long = "stop-timeout", value_name = "SECONDS", default_value_t = imgbuild::runtime::DEFAULT_STOP_TIMEOUT)]
    stop_timeout: u64,
    /// Log options of a detached container: `max-size=SIZE` caps one log file (two are kept).
    #[arg(long = "log-opt", value_name = "max-size=SIZE", value_parser = parse_log_opt)]
    log_opt: Vec<u64>,
    /// Add a capability to Docker's default set (`NET_ADMIN`, `ALL`).
    #[arg(long = "cap-add", value_name = "CAP")]
    cap_add: Vec<String>,
    /// Drop a capability from the set (`MKNOD`, `ALL`).
    #[arg(long = "cap-drop", value_name = "CAP")]
    cap_drop: Vec<String>,
    /// Mount a tmpfs (`PATH[:OPTIONS]`, options as mount's: `size=64m,mode=1777,exec`).
    #[arg(long, value_name = "PATH[:OPTIONS]")]
    tmpfs: Vec<String>,
    /// With --read-only, mount tmpfs on /tmp, /var/tmp and /run.
    #[arg(long = "read-only-tmpfs", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    read_only_tmpfs: bool,
    /// Run a minimal init as PID 1 that forwards signals and reaps orphans.
    #[arg(long)]
    init: bool,
    /// A resource limit (`nofile=1024:2048`, `core=-1`).
    #[arg(long, value_name = "NAME=SOFT[:HARD]", value_parser = parse_ulimit_arg)]
    ulimit: Vec<(u32, u64, u64)>,
    /// Size of /dev/shm (`64m`).
    #[arg(long = "shm-size", value_name = "SIZE", value_parser = parse_memory)]
    shm_size: Option<u64>,
    /// Set a label on the container (`KEY=VALUE`).
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// The platform of the image, `OS/ARCH[/VARIANT]`: chosen when pulling, checked against a
    /// stored image; a foreign one runs through `binfmt_misc` (qemu-user-static).
    #[arg(long, value_name = "OS/ARCH")]
    platform: Option<String>,
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
    /// `private` (a network of its own with outbound access and DNS; the default), `none`
    /// (only loopback) or `host` (the host's network).
    #[arg(long = "network", alias = "net", value_enum, default_value = "private")]
    network: NetworkArg,
    /// Publish a container's port, or a range of ports, to the host.
    #[arg(short = 'p', long = "publish", value_name = "[IP:][HOST:]CTR[/PROTO]", value_parser = parse_port)]
    publish: Vec<PortSpec>,
    /// Publish all exposed ports to random ports on the host.
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// Set a custom DNS server (repeatable).
    #[arg(long = "dns", value_name = "IP")]
    dns: Vec<std::net::IpAddr>,
    /// Set a custom DNS search domain (repeatable; `.` for none).
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    dns_search: Vec<String>,
    /// Set a custom DNS option (repeatable).
    #[arg(long = "dns-option", value_name = "OPTION")]
    dns_option: Vec<String>,
    /// Add a custom host-to-IP mapping to /etc/hosts (repeatable).
    #[arg(long = "add-host", value_name = "HOST:IP", value_parser = parse_add_host)]
    add_host: Vec<HostEntry>,
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
    /// When to pull a registry image: `missing` (not in the store), `always`, `never`.
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = super::pull::PullPolicy::Missing)]
    pull: super::pull::PullPolicy,
    /// How to reach the registry of a registry image.
    #[command(flatten)]
    registry: super::registry_args::RegistryArgs,
    /// The image: `name[:tag]`, id, id prefix or manifest digest; a registry reference
    /// `HOST[:PORT]/REPOSITORY[:TAG|@DIGEST]` (pulled as `--pull` says); or an archive
    /// (docker-archive, oci-archive, OCI layout directory) to load first.
    image: String,
    /// The command and its arguments (default: the image's).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// A signal name or number, for clap.
pub(super) fn parse_signal_arg(s: &str) -> Result<i32, String> {
    imgbuild::runtime::parse_signal(s).map_err(|e| e.to_string())
}

fn parse_ulimit_arg(s: &str) -> Result<(u32, u64, u64), String> {
    imgbuild::runtime::parse_ulimit(s).map_err(|e| e.to_string())
}

fn parse_log_opt(s: &str) -> Result<u64, String> {
    match s.split_once('=') {
        Some(("max-size", v)) => parse_size(v).map_err(|e| e.to_string()),
        _ => Err(format!("'{s}': only max-size=SIZE is supported")),
    }
}

/// Split `--entrypoint` as Docker does for a string: on whitespace (a JSON array is taken
/// as the list it is).
fn entrypoint_list(text: &str) -> anyhow::Result<Vec<String>> {
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(text)
            .with_context(|| format!("--entrypoint '{text}': not a JSON list of strings"));
    }
    Ok(text.split_whitespace().map(str::to_string).collect())
}

fn parse_port(s: &str) -> Result<PortSpec, String> {
    s.parse().map_err(|e: RuntimeError| e.to_string())
}

fn parse_add_host(s: &str) -> Result<HostEntry, String> {
    s.parse().map_err(|e: RuntimeError| e.to_string())
}

fn parse_volume(s: &str) -> Result<Volume, String> {
    s.parse().map_err(|e: RuntimeError| e.to_string())
}

/// A size as Docker reads `--memory` (`512m`, `4g`, `1073741824`), for clap.
pub(super) fn parse_memory(s: &str) -> Result<u64, String> {
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
        /// `table` (the default), `json`, a Go template (`{{.ID}} {{.Names}}`) or `table` and
        /// a template (`table {{.ID}}\t{{.Status}}`).
        #[arg(long, value_name = "FORMAT")]
        format: Option<String>,
        /// Print no header line.
        #[arg(long = "noheading", short = 'n')]
        noheading: bool,
        /// Print only the container ids.
        #[arg(short, long)]
        quiet: bool,
        /// Print full ids and commands.
        #[arg(long)]
        no_trunc: bool,
    },
    /// Remove containers.
    Rm {
        /// Kill a running container first.
        #[arg(short = 'f', long)]
        force: bool,
        /// Remove all containers (running ones only with -f).
        #[arg(short = 'a', long, conflicts_with = "containers")]
        all: bool,
        /// Names, ids or id prefixes.
        #[arg(required_unless_present = "all")]
        containers: Vec<String>,
    },
    /// Print a detached container's output.
    Logs(super::container::LogsArgs),
    /// Stop running containers: their stop signal, then SIGKILL after the timeout.
    Stop(super::container::StopArgs),
    /// Send a signal to running containers.
    Kill(super::container::KillArgs),
    /// Start created or stopped containers again, in the background.
    Start(super::container::NamesArgs),
    /// Stop and start containers.
    Restart(super::container::StopArgs),
    /// Wait for containers to stop and print their exit codes.
    Wait(super::container::NamesArgs),
    /// Run a command in a running container.
    Exec(super::container::ExecArgs),
    /// Containers: prune, inspect, ls.
    #[command(subcommand)]
    Container(super::container::ContainerCommand),
    /// The monitor of a detached container (started by run -d and start).
    #[command(name = "container-monitor", hide = true)]
    ContainerMonitor {
        /// The container's full id.
        id: String,
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
            NetworkArg::Private => Network::Private,
            NetworkArg::None => Network::None,
            NetworkArg::Host => Network::Host,
        },
        publish: args.publish,
        publish_all: args.publish_all,
        add_hosts: args.add_host,
        dns: DnsOptions {
            servers: args.dns,
            search: args.dns_search,
            options: args.dns_option,
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
        detach: args.detach,
        entrypoint: args
            .entrypoint
            .as_deref()
            .map(entrypoint_list)
            .transpose()?,
        stop_signal: args.stop_signal,
        stop_timeout: Some(args.stop_timeout),
        log_max: args.log_opt.last().copied(),
        cap_add: args.cap_add,
        cap_drop: args.cap_drop,
        tmpfs: args
            .tmpfs
            .iter()
            .map(|t| match t.split_once(':') {
                Some((p, o)) => (p.to_string(), o.to_string()),
                None => (t.clone(), String::new()),
            })
            .collect(),
        read_only_tmpfs: args.read_only_tmpfs,
        init: args.init,
        ulimits: args.ulimit,
        shm_size: args.shm_size,
        labels: args
            .label
            .iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (l.clone(), String::new()),
            })
            .collect(),
    })
}

/// `ps`'s STATUS, as podman words it: `Up 5 minutes`, `Exited (0) 2 hours ago`.
fn status(c: &ContainerRecord, now: u64) -> String {
    match c.state {
        State::Created => "Created".to_string(),
        State::Running => format!(
            "Up {}",
            report::human_duration(now.saturating_sub(c.started.unwrap_or(c.created)))
        ),
        State::Exited => format!(
            "Exited ({}) {}",
            c.exit_code.unwrap_or(-1),
            c.finished.map(|t| report::ago(t, now)).unwrap_or_default()
        )
        .trim_end()
        .to_string(),
        State::Dead => "Dead".to_string(),
    }
}

/// The template fields of a `ps` row, as podman's.
const PS_FIELDS: [&str; 17] = [
    "ID",
    "Image",
    "ImageID",
    "Command",
    "CreatedHuman",
    "Created",
    "CreatedAt",
    "RunningFor",
    "Status",
    "State",
    "Names",
    "Ports",
    "Pid",
    "ExitCode",
    "Exited",
    "AutoRemove",
    "Networks",
];
const PS_HEADERS: [(&str, &str); 2] = [("ID", "CONTAINER ID"), ("CreatedHuman", "CREATED")];
const PS_TABLE: &str =
    "{{.ID}}\t{{.Image}}\t{{.Command}}\t{{.CreatedHuman}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

/// The rows of `ps`, one per container.
fn ps_rows(
    containers: &[ContainerRecord],
    now: u64,
    full: bool,
) -> Vec<serde_json::Map<String, serde_json::Value>> {
    containers
        .iter()
        .filter_map(|c| {
            let mut cmd = c.command.join(" ");
            // podman cuts a command longer than 20 characters to 17 and `...`.
            if !full && cmd.chars().count() > 20 {
                cmd = cmd.chars().take(17).collect::<String>() + "...";
            }
            let id = if full {
                c.id.clone()
            } else {
                c.id.chars().take(12).collect()
            };
            let created = report::ago(c.created, now);
            let networks: Vec<&str> = Vec::new();
            let row = serde_json::json!({
                "ID": id,
                "Image": c.image_ref,
                "ImageID": c.image.trim_start_matches("sha256:"),
                "Command": cmd,
                "CreatedHuman": created,
                "Created": report::go_time(c.created),
                "CreatedAt": report::go_time(c.created),
                "RunningFor": created,
                "Status": status(c, now),
                "State": c.state.to_string(),
                "Names": c.name,
                "Ports": ports_text(&c.ports),
                "Pid": c.pid.unwrap_or(0),
                "ExitCode": c.exit_code.unwrap_or(0),
                "Exited": c.state == State::Exited,
                "AutoRemove": c.auto_remove,
                "Networks": networks,
            });
            match row {
                serde_json::Value::Object(m) => Some(m),
                _ => None,
            }
        })
        .collect()
}

/// `ps --format json`: podman's container summaries.
fn ps_json(containers: &[ContainerRecord], now: u64) -> serde_json::Value {
    serde_json::Value::Array(
        containers
            .iter()
            .map(|c| {
                serde_json::json!({
                    "AutoRemove": c.auto_remove,
                    "Command": c.command,
                    "CreatedAt": report::ago(c.created, now),
                    "Exited": c.state == State::Exited,
                    "ExitedAt": c.finished,
                    "ExitCode": c.exit_code.unwrap_or(0),
                    "Id": c.id,
                    "Image": c.image_ref,
                    "ImageID": c.image.trim_start_matches("sha256:"),
                    "Names": [c.name],
                    "Pid": c.pid.unwrap_or(0),
                    "State": c.state.to_string(),
                    "Status": status(c, now),
                    "Created": c.created,
                    "StartedAt": c.started.unwrap_or(c.created),
                    "Ports": c.ports.iter().map(|p| serde_json::json!({
                        "host_ip": p.host_ip,
                        "container_port": p.container_port,
                        "host_port": p.host_port,
                        "range": 1,
                        "protocol": p.protocol,
                    })).collect::<Vec<_>>(),
                    // Not podman's: where the container's root tree lives.
                    "Driver": c.driver.name(),
                })
            })
            .collect(),
    )
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
pub(super) fn archive_path(image: &str) -> Option<PathBuf> {
    let p = Path::new(image);
    let suffix = [".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.xz", ".oci"]
        .iter()
        .any(|s| image.ends_with(s));
    ((image.contains('/') || suffix) && p.exists()).then(|| p.to_path_buf())
}

/// `--platform`: the stored image must be of that platform, and a foreign architecture needs
/// a `binfmt_misc` handler to execute.
fn check_platform(
    store: &imgbuild::storage::Store,
    image: &str,
    wanted: &str,
) -> anyhow::Result<()> {
    let want = imgbuild::registry::Platform::parse(wanted).context("--platform")?;
    let config = store.inspect(image)?.config;
    let arch = config["architecture"].as_str().unwrap_or_default();
    let os = config["os"].as_str().unwrap_or("linux");
    if arch != want.architecture || os != want.os {
        anyhow::bail!(
            "image {image} is for {os}/{arch}, not {wanted}: pull it with --platform {wanted} \
             under another name, or build it with that target architecture"
        );
    }
    let host = imgbuild::registry::Platform::host();
    if want.architecture != host.architecture {
        imgbuild::runtime::check_binfmt(&want.architecture)?;
    }
    Ok(())
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
pub(super) fn load_for_run(
    store: &imgbuild::storage::Store,
    archive: &Path,
) -> anyhow::Result<String> {
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
                    } else {
                        let platform = args
                            .platform
                            .as_deref()
                            .map(imgbuild::registry::Platform::parse)
                            .transpose()
                            .context("--platform")?;
                        let opts = imgbuild::registry::PullOptions {
                            platform,
                            all_platforms: false,
                        };
                        args.image = super::pull::ensure_image_for(
                            &s,
                            &args.image,
                            args.pull,
                            &args.registry,
                            &opts,
                        )?;
                    }
                    if let Some(p) = &args.platform {
                        check_platform(&s, &args.image, p)?;
                    }
                    Ok(s)
                })
                .and_then(super::container::runtime)
                .and_then(|rt| Ok((options(*args)?, rt)))
                .and_then(|(opts, rt)| Ok((rt.run(&opts)?, opts.detach)));
            match result {
                Ok((outcome, true)) => {
                    println!("{}", outcome.id);
                    Ok(ExitCode::SUCCESS)
                }
                Ok((outcome, false)) => Ok(ExitCode::from(
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
                        Some(RuntimeError::Start { code, .. }) => {
                            u8::try_from(*code).unwrap_or(125)
                        }
                        _ => 125,
                    };
                    Ok(ExitCode::from(code))
                }
            }
        }
        RunCommand::Ps {
            all,
            format,
            noheading,
            quiet,
            no_trunc,
        } => {
            let format = if quiet {
                Format::Template("{{.ID}}\n".to_string())
            } else {
                Format::parse(format.as_deref(), PS_TABLE)
            };
            let rt = Runtime::new(open_store(root, driver)?)?;
            let containers = rt.containers(all)?;
            let now = report::now();
            print!(
                "{}",
                report::render(
                    &format,
                    &ps_rows(&containers, now, no_trunc),
                    &PS_FIELDS,
                    &PS_HEADERS,
                    noheading,
                    &ps_json(&containers, now),
                )?
            );
            Ok(ExitCode::SUCCESS)
        }
        RunCommand::Rm {
            force,
            all,
            containers,
        } => {
            let rt = Runtime::new(open_store(root, driver)?)?;
            let containers = if all {
                rt.containers(true)?
                    .into_iter()
                    .filter(|c| force || c.state != State::Running)
                    .map(|c| c.id)
                    .collect()
            } else {
                containers
            };
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
        other => super::container::run(other, root, driver),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn container(state: State, command: &[&str]) -> ContainerRecord {
        ContainerRecord {
            id: "0123456789ab".repeat(5) + "cdef",
            name: "writer".into(),
            image: format!("sha256:{}", "ab".repeat(32)),
            image_ref: "localhost/deb:12".into(),
            command: command.iter().map(ToString::to_string).collect(),
            hostname: String::new(),
            created: 1000,
            state,
            exit_code: (state == State::Exited).then_some(3),
            finished: (state == State::Exited).then_some(1000 + 60),
            pid: None,
            pid_start: None,
            monitor_pid: None,
            monitor_start: None,
            started: Some(1000),
            stop_signal: libc::SIGTERM,
            stop_timeout: 10,
            driver: imgbuild::storage::DriverKind::Vfs,
            rootfs: PathBuf::new(),
            auto_remove: false,
            ports: Vec::new(),
        }
    }

    #[test]
    fn ps_prints_as_podman() {
        let cs = [
            container(State::Exited, &["/bin/busybox", "sleep", "600"]),
            container(State::Running, &["sh"]),
        ];
        let now = 1000 + 7200;
        let t = report::render(
            &Format::parse(None, PS_TABLE),
            &ps_rows(&cs, now, false),
            &PS_FIELDS,
            &PS_HEADERS,
            false,
            &serde_json::Value::Null,
        )
        .unwrap();
        assert_eq!(
            t,
            "CONTAINER ID  IMAGE             COMMAND               CREATED      STATUS                  PORTS       NAMES\n\
             0123456789ab  localhost/deb:12  /bin/busybox slee...  2 hours ago  Exited (3) 2 hours ago              writer\n\
             0123456789ab  localhost/deb:12  sh                    2 hours ago  Up 2 hours                          writer\n"
        );
        let j = ps_json(&cs, now);
        assert_eq!(j[0]["Names"], serde_json::json!(["writer"]));
        assert_eq!(j[0]["State"], "exited");
        assert_eq!(j[0]["ExitCode"], 3);
        assert_eq!(j[1]["Id"].as_str().unwrap().len(), 64);
        let q = report::render(
            &Format::parse(Some("table {{.ID}}\\t{{.Names}} {{.State}}"), ""),
            &ps_rows(&cs, now, true),
            &PS_FIELDS,
            &PS_HEADERS,
            true,
            &serde_json::Value::Null,
        )
        .unwrap();
        assert_eq!(
            q.lines().next(),
            Some(format!("{}  writer      exited", cs[0].id).as_str())
        );
    }

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

    #[test]
    fn network_flags_parse_and_bad_specs_are_refused() {
        let cli = crate::cli::Cli::try_parse_from([
            "imgbuild",
            "run",
            "-p",
            "127.0.0.1:8080:80",
            "-p",
            "53/udp",
            "-P",
            "--dns",
            "192.0.2.1",
            "--dns-search",
            "example.org",
            "--dns-option",
            "ndots:2",
            "--add-host",
            "db:10.0.0.9",
            "img",
        ])
        .unwrap();
        let crate::cli::Command::Run(RunCommand::Run(args)) = cli.command else {
            panic!("not run");
        };
        assert!(matches!(args.network, NetworkArg::Private));
        let opts = options(*args).unwrap();
        assert_eq!(opts.network, Network::Private);
        assert_eq!(opts.publish.len(), 2);
        assert!(opts.publish_all);
        assert_eq!(
            opts.dns.servers,
            ["192.0.2.1".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(opts.add_hosts[0].name, "db");
        for (flag, spec) in [
            ("-p", "8080:80/sctp"),
            ("-p", "1.2.3.4.5:1:2"),
            ("--add-host", "nocolon"),
            ("--dns", "not-an-ip"),
        ] {
            let err = crate::cli::Cli::try_parse_from(["imgbuild", "run", flag, spec, "img"])
                .unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains(spec), "{err}");
        }
    }
}
