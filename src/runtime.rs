//! `run`: a container from an image in the store — its root tree from the storage driver, the
//! image config applied (entrypoint, command, environment, user, working directory), the
//! sandbox started with the container profile, the exit code and signals passed through.
//!
//! Container records live beside the store (`<store>/runtime/<id>/`), together with the
//! `hostname`, `hosts` and `resolv.conf` files bind-mounted into the container. A lock
//! (`<store>/runtime/lock`) keeps names unique and record updates whole.

pub mod etc;
mod lifecycle;
pub mod logs;
mod net;
mod platform;
mod spec;
mod state;
mod user;

pub use lifecycle::{ExecOptions, LogOptions, MonitorCommand, REPORT_FD};
pub use net::{DnsOptions, HostEntry, PortSpec, PublishedPort, ports_text};
pub use platform::{binfmt_enabled, check_binfmt};
pub use spec::{
    UserSpec, Volume, parse_env, parse_env_file, parse_signal, parse_size, parse_ulimit,
};
pub use state::{ContainerRecord, DEFAULT_STOP_TIMEOUT, State, generate_name, valid_name};
pub use user::{ExecUser, resolve as resolve_user, resolve_in as resolve_user_in};

use crate::confine::Root;
use crate::sandbox::{Limits, Network, Profile, Sandbox, SandboxError, Stdio};
use crate::storage::{StorageError, Store};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// The smallest memory limit accepted, as Docker's (smaller ones leave no room to start).
pub const MIN_MEMORY: u64 = 6 << 20;

/// The first 12 hex digits of a container id, as podman and docker print it.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Errors of the run mode; each names the container, image, path or option involved.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The image or container store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A memory or size option is not a size.
    #[error("invalid size '{value}': {reason}")]
    InvalidSize {
        /// The value as given.
        value: String,
        /// Why it is not a size.
        reason: String,
    },
    /// A `--volume` spec is malformed.
    #[error("invalid volume spec '{spec}': {reason}")]
    InvalidVolume {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `--publish` spec is malformed.
    #[error("invalid port spec '{spec}': {reason}")]
    InvalidPort {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The private network cannot be had (its helper is missing).
    #[error(transparent)]
    Network(#[from] crate::sandbox::net::NetError),
    /// A volume's host path cannot be used.
    #[error("volume source {path}: {source}")]
    VolumeSource {
        /// The host path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An `--env` spec is malformed.
    #[error("invalid environment variable '{spec}': {reason}")]
    InvalidEnv {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A line of an `--env-file` is malformed.
    #[error("{}:{line}: {reason}", path.display())]
    EnvFile {
        /// The env file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with the line.
        reason: String,
    },
    /// A `--user` spec is malformed.
    #[error("invalid user '{spec}': {reason}")]
    InvalidUser {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A user or group name is not in the container's passwd or group file.
    #[error("unable to find user or group '{name}': no matching entry in the container's {file}")]
    UnknownUser {
        /// The name looked up.
        name: String,
        /// The file searched (`/etc/passwd` or `/etc/group`).
        file: &'static str,
    },
    /// An option has an invalid value or conflicts with another.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The option, as spelled on the command line.
        option: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// The image's config cannot be run.
    #[error("image {image}: invalid config: {reason}")]
    ImageConfig {
        /// The image reference.
        image: String,
        /// What is wrong with its config.
        reason: String,
    },
    /// Neither the image nor the command line gives a command.
    #[error("image {image} has no command: give one after the image name")]
    NoCommand {
        /// The image reference.
        image: String,
    },
    /// A `--name` does not match the allowed pattern; holds the name.
    #[error("invalid container name '{0}': only [a-zA-Z0-9][a-zA-Z0-9_.-]+ is allowed")]
    InvalidName(String),
    /// A `--name` is taken.
    #[error("the container name '{name}' is already in use by container {id}")]
    NameInUse {
        /// The name asked for.
        name: String,
        /// The id of the container that has it.
        id: String,
    },
    /// No container matches a reference; holds the reference.
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    /// A reference (an id prefix) matches more than one container.
    #[error("container reference '{reference}' is ambiguous: it matches {count} containers")]
    AmbiguousContainer {
        /// The reference as given.
        reference: String,
        /// How many containers it matches.
        count: usize,
    },
    /// The command of a detached container could not be started; `code` is what `run` exits
    /// with (125, or 126/127 as for a command that cannot be executed or is not found).
    #[error("container {}: {message}", short(id))]
    Start {
        /// The container's id.
        id: String,
        /// The exit code `docker run` gives for this failure.
        code: i32,
        /// What went wrong, as the monitor reported it.
        message: String,
    },
    /// The operation needs a running container.
    #[error("container {name} ({}) is not running", short(id))]
    NotRunning {
        /// The container's name.
        name: String,
        /// The container's id.
        id: String,
    },
    /// Detached containers need a monitor program, and none was given.
    #[error("no container monitor program is set (Runtime::with_monitor)")]
    NoMonitor,
    /// A running container cannot be removed without force.
    #[error("container {name} ({id}) is running: stop it first, or remove it with -f")]
    Running {
        /// The container's name.
        name: String,
        /// The container's id.
        id: String,
    },
    /// A file the container is given (hosts, resolv.conf, ...) could not be written.
    #[error("container {}: {what} {}: {source}", short(id), path.display())]
    ContainerFile {
        /// The container's id.
        id: String,
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A confined operation in the container's root failed.
    #[error("container {}: {source}", short(id))]
    Root {
        /// The container's id.
        id: String,
        /// The confined operation's error.
        #[source]
        source: crate::confine::ConfineError,
    },
    /// The sandbox could not run the container.
    #[error("container {}: {source}", short(id))]
    Sandbox {
        /// The container's id.
        id: String,
        /// The sandbox's error.
        #[source]
        source: SandboxError,
    },
    /// A file of the container state could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A container state file is not valid JSON.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

/// Result alias for the runtime module.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What `imgbuild run` asks for. The default network is `Private`: a namespace of its own
/// with outbound access and DNS through the user-mode networking helper. Kept with the
/// container (`options.json`), so `start` runs it again as it was made.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RunOptions {
    /// The image: `name[:tag]`, id, unique id prefix or manifest digest.
    pub image: String,
    /// Replaces the image's `Cmd` when not empty (the `Entrypoint` stays).
    pub command: Vec<String>,
    /// The container's name (generated when `None`).
    pub name: Option<String>,
    /// Variables set over the image's `Env`, in order (later wins).
    pub env: Vec<(String, String)>,
    /// Working directory (absolute), over the image's `WorkingDir`.
    pub workdir: Option<String>,
    /// `USER[:GROUP]`, over the image's `User`.
    pub user: Option<UserSpec>,
    /// Bind mounts.
    pub volumes: Vec<Volume>,
    /// `Private` (the default: outbound access, DNS, published ports), `None` (only
    /// loopback) or `Host`.
    pub network: Network,
    /// `-p` specs (private network only).
    pub publish: Vec<PortSpec>,
    /// `-P`: publish the image's `ExposedPorts` on free host ports.
    pub publish_all: bool,
    /// `--add-host` entries for `/etc/hosts`.
    pub add_hosts: Vec<HostEntry>,
    /// `--dns`, `--dns-search`, `--dns-option` for `/etc/resolv.conf`.
    pub dns: DnsOptions,
    /// Hostname (default: the id's first 12 digits; the host's with `Network::Host`).
    pub hostname: Option<String>,
    /// Memory, pids and CPU limits.
    pub limits: Limits,
    /// Mount the root tree read-only.
    pub read_only: bool,
    /// Keep stdin attached (`-i`); otherwise the command reads `/dev/null`.
    pub interactive: bool,
    /// Allocate a pseudo-terminal (`-t`).
    pub tty: bool,
    /// Remove the container when the command ends, however it ends (`--rm`).
    pub remove: bool,
    /// Start it in the background under a monitor (`-d`); its output goes to its log.
    pub detach: bool,
    /// Replaces the image's `Entrypoint` (`--entrypoint`; an empty list clears it).
    pub entrypoint: Option<Vec<String>>,
    /// The signal `stop` sends first, over the image's `StopSignal`.
    pub stop_signal: Option<i32>,
    /// Seconds `stop` waits before SIGKILL (default 10).
    pub stop_timeout: Option<u64>,
    /// The cap of one log file of a detached container (two are kept).
    pub log_max: Option<u64>,
    /// Capabilities added to Docker's default set (`--cap-add`; `ALL` for every one).
    pub cap_add: Vec<String>,
    /// Capabilities removed from it (`--cap-drop`; `ALL` for every one).
    pub cap_drop: Vec<String>,
    /// tmpfs mounts: the container path and `--tmpfs` style options.
    pub tmpfs: Vec<(String, String)>,
    /// With `read_only`: tmpfs on `/tmp`, `/var/tmp` and `/run`, as podman's default.
    pub read_only_tmpfs: bool,
    /// A minimal init as PID 1 (`--init`).
    pub init: bool,
    /// `(RLIMIT_*, soft, hard)` limits (`--ulimit`).
    pub ulimits: Vec<(u32, u64, u64)>,
    /// Size of `/dev/shm` in bytes.
    pub shm_size: Option<u64>,
    /// Labels of the container (`--label`).
    pub labels: Vec<(String, String)>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            image: String::new(),
            command: Vec::new(),
            name: None,
            env: Vec::new(),
            workdir: None,
            user: None,
            volumes: Vec::new(),
            network: Network::Private,
            publish: Vec::new(),
            publish_all: false,
            add_hosts: Vec::new(),
            dns: DnsOptions::default(),
            hostname: None,
            limits: Limits::default(),
            read_only: false,
            interactive: false,
            tty: false,
            remove: false,
            detach: false,
            entrypoint: None,
            stop_signal: None,
            stop_timeout: None,
            log_max: None,
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            tmpfs: Vec::new(),
            read_only_tmpfs: true,
            init: false,
            ulimits: Vec::new(),
            shm_size: None,
            labels: Vec::new(),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// The container's id.
    pub id: String,
    /// The container's name.
    pub name: String,
    /// The command's exit code, 128 + signal when it was killed.
    pub code: i32,
}

/// The image config fields the runtime uses (OCI `config` object, Docker's names).
#[derive(Debug, Default, serde::Deserialize)]
struct ExecConfig {
    #[serde(rename = "Entrypoint", default)]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    env: Option<Vec<String>>,
    #[serde(rename = "User", default)]
    user: Option<String>,
    #[serde(rename = "WorkingDir", default)]
    working_dir: Option<String>,
    #[serde(rename = "StopSignal", default)]
    stop_signal: Option<String>,
    #[serde(rename = "ExposedPorts", default)]
    exposed_ports: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

/// The PATH a container gets when its image sets none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The `/etc/hosts` of a container with its own network namespace.
pub fn hosts_file(hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n127.0.1.1\t{hostname}\n"
    )
}

/// A `--workdir` must be absolute.
fn check_workdir(workdir: Option<&str>) -> Result<()> {
    match workdir {
        Some(w) if !w.starts_with('/') => Err(RuntimeError::InvalidOption {
            option: "--workdir",
            reason: format!("'{w}' is not an absolute path"),
        }),
        _ => Ok(()),
    }
}

/// The container's environment: Docker's `PATH` and `HOSTNAME`, the image's `Env`, `HOME`
/// from the user's entry and `TERM` with a tty unless set, then the user's variables.
pub fn environment(
    image_env: &[String],
    hostname: &str,
    home: &str,
    tty: bool,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOSTNAME".into(), hostname.into()),
    ];
    let set = |env: &mut Vec<(String, String)>, k: &str, v: &str| {
        env.retain(|(ek, _)| ek != k);
        env.push((k.to_string(), v.to_string()));
    };
    for kv in image_env {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        if !k.is_empty() {
            set(&mut env, k, v);
        }
    }
    for (k, v) in extra {
        set(&mut env, k, v);
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".into(), home.into()));
    }
    if tty && !env.iter().any(|(k, _)| k == "TERM") {
        env.push(("TERM".into(), "xterm".into()));
    }
    env
}

/// The command line: the entrypoint followed by the given command, or the image's `Cmd`.
fn command_line(entrypoint: &[String], image_cmd: &[String], given: &[String]) -> Vec<String> {
    let cmd = if given.is_empty() { image_cmd } else { given };
    entrypoint.iter().chain(cmd).cloned().collect()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn host_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Take the runtime lock of the records under `dir` (`<store>/runtime`).
fn lock_dir(dir: &Path, exclusive: bool) -> Result<Lock> {
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io_at(&path))?;
    if exclusive {
        fs4::FileExt::lock(&file)
    } else {
        fs4::FileExt::lock_shared(&file)
    }
    .map_err(io_at(&path))?;
    Ok(Lock { _file: file })
}

/// Write `rec` whole as `<dir>/<id>/state.json` (the caller holds the lock).
fn write_record_in(dir: &Path, rec: &ContainerRecord) -> Result<()> {
    let path = dir.join(&rec.id).join("state.json");
    let mut bytes = serde_json::to_vec_pretty(rec).map_err(|source| RuntimeError::Json {
        path: path.clone(),
        source,
    })?;
    bytes.push(b'\n');
    crate::atomic::write(&path, &bytes).map_err(io_at(&path))
}

/// A held runtime lock, released on drop.
struct Lock {
    _file: File,
}

/// Containers of one store.
#[derive(Debug)]
pub struct Runtime {
    store: Store,
    dir: PathBuf,
    monitor: Option<MonitorCommand>,
}

impl Runtime {
    /// The runtime over `store`; its records live in `<store root>/runtime`.
    pub fn new(store: Store) -> Result<Runtime> {
        let dir = store.root().join("runtime");
        std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        Ok(Runtime {
            store,
            dir,
            monitor: None,
        })
    }

    /// The program that becomes a detached container's monitor (see [`MonitorCommand`]).
    #[must_use]
    pub fn with_monitor(mut self, monitor: MonitorCommand) -> Runtime {
        self.monitor = Some(monitor);
        self
    }

    /// The store containers are made from.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn lock(&self, exclusive: bool) -> Result<Lock> {
        lock_dir(&self.dir, exclusive)
    }

    /// The directory of container `id` (full id): its record, options, log and the
    /// `/etc` files it is given.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn write_record(&self, rec: &ContainerRecord) -> Result<()> {
        write_record_in(&self.dir, rec)
    }

    fn read_records(&self) -> Result<Vec<ContainerRecord>> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(io_at(&self.dir))?
            .filter_map(std::result::Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path().join("state.json"))
            .collect();
        names.sort();
        let mut out = Vec::new();
        for path in names {
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                // A directory without a record is a container being set up or torn down.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_at(&path)(e)),
            };
            let rec = serde_json::from_slice(&bytes)
                .map_err(|source| RuntimeError::Json { path, source })?;
            out.push(rec);
        }
        Ok(out)
    }

    /// All containers (`all`) or only running ones, newest first.
    pub fn containers(&self, all: bool) -> Result<Vec<ContainerRecord>> {
        let _lock = self.lock(false)?;
        let mut recs: Vec<ContainerRecord> = self
            .read_records()?
            .into_iter()
            .map(|mut r| {
                r.state = r.live_state();
                r
            })
            .filter(|r| all || r.state == State::Running)
            .collect();
        recs.sort_by(|a, b| (b.created, &a.id).cmp(&(a.created, &b.id)));
        Ok(recs)
    }

    fn find(recs: &[ContainerRecord], reference: &str) -> Result<ContainerRecord> {
        if let Some(r) = recs
            .iter()
            .find(|r| r.name == reference || r.id == reference)
        {
            return Ok(r.clone());
        }
        let is_hex = !reference.is_empty() && reference.bytes().all(|b| b.is_ascii_hexdigit());
        let found: Vec<&ContainerRecord> = if is_hex {
            recs.iter()
                .filter(|r| r.id.starts_with(&reference.to_ascii_lowercase()))
                .collect()
        } else {
            Vec::new()
        };
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(RuntimeError::NoSuchContainer(reference.to_string())),
            many => Err(RuntimeError::AmbiguousContainer {
                reference: reference.to_string(),
                count: many.len(),
            }),
        }
    }

    /// The container `reference` names: its name, full id or a unique id prefix.
    pub fn container(&self, reference: &str) -> Result<ContainerRecord> {
        let _lock = self.lock(false)?;
        let mut rec = Self::find(&self.read_records()?, reference)?;
        rec.state = rec.live_state();
        Ok(rec)
    }

    /// Remove a container: its root tree (writable layer), its record and log. A running one
    /// is refused unless `force`, which kills its command first and waits for its supervisor
    /// to record the end.
    pub fn remove(&self, reference: &str, force: bool) -> Result<ContainerRecord> {
        let rec = self.container(reference)?;
        if rec.state == State::Running {
            if !force {
                return Err(RuntimeError::Running {
                    name: rec.name,
                    id: rec.id,
                });
            }
            Self::kill_and_wait(&rec);
        }
        let _lock = self.lock(true)?;
        // Gone already when it was `--rm` and its supervisor removed it.
        if Self::find(&self.read_records()?, &rec.id).is_ok() {
            self.discard(&rec.id)?;
        }
        Ok(rec)
    }

    /// Release the root tree and delete the runtime directory of container `id`.
    fn discard(&self, id: &str) -> Result<()> {
        match self.store.release_container(id) {
            Ok(()) | Err(StorageError::ContainerNotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let dir = self.container_dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_at(&dir)(e)),
        }
    }

    fn check_options(opts: &RunOptions) -> Result<()> {
        if let Some(m) = opts.limits.memory
            && m < MIN_MEMORY
        {
            return Err(RuntimeError::InvalidOption {
                option: "--memory",
                reason: format!("{m} bytes is below the minimum of 6 MiB"),
            });
        }
        if let Some(c) = opts.limits.cpus {
            let n = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
            let n = f64::from(u32::try_from(n).unwrap_or(u32::MAX));
            if !(c >= 0.01 && c <= n) {
                return Err(RuntimeError::InvalidOption {
                    option: "--cpus",
                    reason: format!("{c} is outside the range 0.01 to {n} (the host's CPUs)"),
                });
            }
        }
        if opts.limits.pids == Some(0) {
            return Err(RuntimeError::InvalidOption {
                option: "--pids-limit",
                reason: "must be at least 1".into(),
            });
        }
        check_workdir(opts.workdir.as_deref())?;
        if let Some(name) = &opts.name
            && !valid_name(name)
        {
            return Err(RuntimeError::InvalidName(name.clone()));
        }
        if let Some(h) = &opts.hostname
            && (h.is_empty() || h.len() > 64 || h.contains(['/', '\0', ' ']))
        {
            return Err(RuntimeError::InvalidOption {
                option: "--hostname",
                reason: format!("'{h}' is not a valid hostname"),
            });
        }
        crate::sandbox::caps::adjust(0, &opts.cap_add, &opts.cap_drop, 63).map_err(|name| {
            RuntimeError::InvalidOption {
                option: "--cap-add/--cap-drop",
                reason: format!("unknown capability '{name}'"),
            }
        })?;
        for (target, _) in &opts.tmpfs {
            if !target.starts_with('/') {
                return Err(RuntimeError::InvalidOption {
                    option: "--tmpfs",
                    reason: format!("'{target}' is not an absolute path"),
                });
            }
        }
        if opts.network == Network::Private {
            crate::sandbox::net::find_helper()?;
        } else if !opts.publish.is_empty() || opts.publish_all {
            return Err(RuntimeError::InvalidOption {
                option: "--publish",
                reason: "ports can only be published with the private network".into(),
            });
        }
        for v in &opts.volumes {
            std::fs::metadata(&v.host).map_err(|source| RuntimeError::VolumeSource {
                path: v.host.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Run a container and wait for its command. Every check that needs no container is
    /// made before one is created; a container whose command never started is removed again,
    /// and with `remove` the container goes however the command ends.
    pub fn run(&self, opts: &RunOptions) -> Result<RunOutcome> {
        Self::check_options(opts)?;
        let (image_id, exec) = self.image_config(&opts.image)?;
        // As Docker: a new entrypoint also drops the image's `Cmd`.
        let argv = match &opts.entrypoint {
            Some(ep) => command_line(ep, &[], &opts.command),
            None => command_line(
                exec.entrypoint.as_deref().unwrap_or_default(),
                exec.cmd.as_deref().unwrap_or_default(),
                &opts.command,
            ),
        };
        if argv.is_empty() {
            return Err(RuntimeError::NoCommand {
                image: opts.image.clone(),
            });
        }
        let user_spec = Self::user_spec(opts.user.as_ref(), &exec)?;

        let stop_signal = match (opts.stop_signal, exec.stop_signal.as_deref()) {
            (Some(s), _) => s,
            (None, Some(s)) if !s.is_empty() => parse_signal(s)?,
            _ => libc::SIGTERM,
        };
        let exposed: Vec<String> = exec
            .exposed_ports
            .as_ref()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let ports = net::published_ports(&opts.publish, &exposed, opts.publish_all)?;

        let mut rec = self.create(opts, &image_id, argv, stop_signal)?;
        rec.ports = ports;
        let id = rec.id.clone();
        let kept = self.write_options(&id, opts).and_then(|()| {
            // The ports too, for the monitor and later starts to publish the same ones.
            let _lock = self.lock(true)?;
            self.write_record(&rec)
        });
        if let Err(e) = kept {
            let _lock = self.lock(true);
            let _ = self.discard(&id);
            return Err(e);
        }
        if opts.detach {
            return match self.start_monitor(&rec) {
                Ok(()) => Ok(RunOutcome {
                    id,
                    name: rec.name,
                    code: 0,
                }),
                Err(e) => {
                    let _lock = self.lock(true);
                    let _ = self.discard(&id);
                    Err(e)
                }
            };
        }
        let prepared = self.prepare(opts, &exec, user_spec.as_ref(), &rec);
        let sandbox = match prepared {
            Ok(sb) => sb,
            Err(e) => {
                // Nothing ran: leave nothing behind.
                let _lock = self.lock(true);
                let _ = self.discard(&id);
                return Err(e);
            }
        };

        rec.state = State::Running;
        rec.monitor_pid = Some(std::process::id());
        rec.monitor_start = state::process_start(std::process::id());
        rec.started = Some(now());
        {
            let _lock = self.lock(true)?;
            self.write_record(&rec)?;
        }
        let result = sandbox.on_start(self.pid_recorder(&rec)).run();
        let code = match &result {
            Ok(o) => o.code,
            // As Docker: 127 when the command is not found, 126 when it cannot be executed.
            Err(SandboxError::Exec { error: source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                127
            }
            Err(SandboxError::Exec { .. }) => 126,
            Err(_) => 125,
        };
        rec.mark_exited(code, now());
        let _lock = self.lock(true)?;
        let recorded = if opts.remove {
            self.discard(&id)
        } else {
            // A stopped container keeps its writable layer but no mount.
            self.write_record(&rec)
                .and_then(|()| Ok(self.store.unmount_container(&id)?))
        };
        let outcome = result.map_err(|source| RuntimeError::Sandbox {
            id: id.clone(),
            source,
        })?;
        recorded?;
        Ok(RunOutcome {
            id,
            name: rec.name,
            code: outcome.code,
        })
    }

    /// Create the container: root tree from the store, a unique name, the record.
    fn create(
        &self,
        opts: &RunOptions,
        image_id: &str,
        command: Vec<String>,
        stop_signal: i32,
    ) -> Result<ContainerRecord> {
        let _lock = self.lock(true)?;
        let existing = self.read_records()?;
        if let Some(name) = &opts.name
            && let Some(other) = existing.iter().find(|r| &r.name == name)
        {
            return Err(RuntimeError::NameInUse {
                name: name.clone(),
                id: other.id.clone(),
            });
        }
        let container = self.store.create_container(image_id)?;
        let id = container.id.clone();
        let name = opts
            .name
            .clone()
            .unwrap_or_else(|| generate_name(&id, &|n| existing.iter().any(|r| r.name == n)));
        let hostname = match (&opts.hostname, opts.network) {
            (Some(h), _) => h.clone(),
            (None, Network::Host) => host_hostname(),
            (None, Network::None | Network::Private) => id[..12].to_string(),
        };
        let rec = ContainerRecord {
            id: id.clone(),
            name,
            image: image_id.to_string(),
            image_ref: opts.image.clone(),
            command,
            hostname,
            created: now(),
            state: State::Created,
            exit_code: None,
            finished: None,
            pid: None,
            pid_start: None,
            monitor_pid: None,
            monitor_start: None,
            started: None,
            stop_signal,
            stop_timeout: opts.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT),
            driver: container.driver,
            rootfs: container.rootfs,
            auto_remove: opts.remove,
            ports: Vec::new(),
        };
        let dir = self.container_dir(&id);
        let written = std::fs::create_dir_all(&dir)
            .map_err(io_at(&dir))
            .and_then(|()| self.write_etc_files(&rec, opts))
            .and_then(|()| self.write_record(&rec));
        if let Err(e) = written {
            let _ = self.discard(&id);
            return Err(e);
        }
        Ok(rec)
    }

    /// Write the container's `hostname`, `hosts` and `resolv.conf` in its directory.
    fn write_etc_files(&self, rec: &ContainerRecord, opts: &RunOptions) -> Result<()> {
        let dir = self.container_dir(&rec.id);
        let file_err = |what: &'static str, path: &Path| {
            let id = rec.id.clone();
            let path = path.to_path_buf();
            move |source| RuntimeError::ContainerFile {
                id,
                what,
                path,
                source,
            }
        };
        let host_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let input = etc::EtcInput {
            network: opts.network,
            hostname: &rec.hostname,
            name: &rec.name,
            add_hosts: &opts.add_hosts,
            dns: &opts.dns,
            host_hosts: &host_hosts,
            host_resolv: &host_resolv,
            host_ip: if opts.network == Network::Private {
                etc::host_address()
            } else {
                None
            },
        };
        for (name, content) in [
            ("hostname", format!("{}\n", rec.hostname)),
            ("hosts", etc::hosts(&input)),
            ("resolv.conf", etc::resolv_conf(&input)),
        ] {
            let path = dir.join(name);
            crate::atomic::write(&path, content.as_bytes()).map_err(file_err("writing", &path))?;
        }
        Ok(())
    }

    /// The capabilities and rlimits of the container's processes (its command and `exec`s).
    fn privileges(mut sb: Sandbox, opts: &RunOptions) -> Result<Sandbox> {
        if !opts.cap_add.is_empty() || !opts.cap_drop.is_empty() {
            let caps = crate::sandbox::caps::adjust(
                crate::sandbox::caps::DOCKER_DEFAULT,
                &opts.cap_add,
                &opts.cap_drop,
                crate::sandbox::caps::last_cap(),
            )
            .map_err(|name| RuntimeError::InvalidOption {
                option: "--cap-add/--cap-drop",
                reason: format!("unknown capability '{name}'"),
            })?;
            sb = sb.capabilities(caps);
        }
        for &(resource, soft, hard) in &opts.ulimits {
            sb = sb.rlimit(resource, soft, hard);
        }
        Ok(sb)
    }

    /// Resolve the user and working directory in the container's root and build the sandbox.
    fn prepare(
        &self,
        opts: &RunOptions,
        exec: &ExecConfig,
        user_spec: Option<&UserSpec>,
        rec: &ContainerRecord,
    ) -> Result<Sandbox> {
        let root_err = |source| RuntimeError::Root {
            id: rec.id.clone(),
            source,
        };
        let root = Root::open(&rec.rootfs).map_err(root_err)?;
        let user = user::resolve_in(&rec.id, &rec.rootfs, user_spec)?;
        let workdir = opts
            .workdir
            .clone()
            .or_else(|| exec.working_dir.clone().filter(|w| !w.is_empty()))
            .unwrap_or_else(|| "/".to_string());
        let rel = workdir.trim_start_matches('/');
        if !rel.is_empty() {
            // Docker creates a missing working directory.
            root.create_dir_all(rel, 0o755).map_err(root_err)?;
        }
        let env = environment(
            exec.env.as_deref().unwrap_or_default(),
            &rec.hostname,
            &user.home,
            opts.tty,
            &opts.env,
        );
        let dir = self.container_dir(&rec.id);
        let mut sb = Sandbox::new(&rec.rootfs, rec.command.clone())
            .profile(Profile::Container)
            .network(opts.network)
            .publish(
                rec.ports
                    .iter()
                    .filter_map(PublishedPort::forward)
                    .collect(),
            )
            .hostname(rec.hostname.clone())
            .user(user.uid, user.gid, user.groups)
            .cwd(&workdir)
            .limits(opts.limits)
            .read_only_root(opts.read_only)
            .resolv_conf(false)
            .tty(opts.tty)
            .stdin(if opts.interactive {
                Stdio::Inherit
            } else {
                Stdio::Null
            });
        for (k, v) in env {
            sb = sb.env(k, v);
        }
        for name in ["hostname", "hosts", "resolv.conf"] {
            sb = sb.bind(dir.join(name), Path::new("/etc").join(name), false);
        }
        for v in &opts.volumes {
            sb = sb.bind(&v.host, &v.container, v.read_only);
        }
        sb = Self::privileges(sb, opts)?;
        if opts.read_only && opts.read_only_tmpfs {
            // podman's defaults for a read-only root: scratch space stays writable.
            for (dir, mode) in [("/tmp", "1777"), ("/var/tmp", "1777"), ("/run", "755")] {
                if !opts.tmpfs.iter().any(|(t, _)| t == dir) {
                    sb = sb.tmpfs(dir, format!("rw,exec,mode={mode}"));
                }
            }
        }
        for (target, options) in &opts.tmpfs {
            sb = sb.tmpfs(target, options);
        }
        if let Some(size) = opts.shm_size {
            sb = sb.shm_size(size);
        }
        Ok(sb.init(opts.init))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(std::string::ToString::to_string).collect()
    }

    #[test]
    fn command_overrides_cmd_and_keeps_entrypoint() {
        assert_eq!(
            command_line(&s(&["/entry"]), &s(&["a", "b"]), &[]),
            s(&["/entry", "a", "b"])
        );
        assert_eq!(
            command_line(&s(&["/entry"]), &s(&["a"]), &s(&["x"])),
            s(&["/entry", "x"])
        );
        assert_eq!(
            command_line(&[], &s(&["sh"]), &s(&["ls", "-l"])),
            s(&["ls", "-l"])
        );
        assert!(command_line(&[], &[], &[]).is_empty());
    }

    #[test]
    fn environment_layers_like_docker() {
        let env = environment(
            &s(&["PATH=/opt/bin:/bin", "LANG=C.UTF-8", "EMPTY=", "NOEQ"]),
            "abc",
            "/root",
            true,
            &[("LANG".into(), "de_DE".into()), ("X".into(), "1".into())],
        );
        let get = |k: &str| env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PATH"), Some("/opt/bin:/bin"));
        assert_eq!(get("HOSTNAME"), Some("abc"));
        assert_eq!(get("LANG"), Some("de_DE"));
        assert_eq!(get("EMPTY"), Some(""));
        assert_eq!(get("NOEQ"), Some(""));
        assert_eq!(get("HOME"), Some("/root"));
        assert_eq!(get("TERM"), Some("xterm"));
        assert_eq!(get("X"), Some("1"));
        assert_eq!(env.iter().filter(|(k, _)| k == "LANG").count(), 1);
        let env = environment(&[], "h", "/", false, &[("HOME".into(), "/x".into())]);
        let get = |k: &str| env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PATH"), Some(DEFAULT_PATH));
        assert_eq!(get("HOME"), Some("/x"));
        assert_eq!(get("TERM"), None);
    }

    #[test]
    fn hosts_file_names_the_container() {
        let h = hosts_file("c0ffee123456");
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("127.0.1.1\tc0ffee123456\n"));
    }
}
