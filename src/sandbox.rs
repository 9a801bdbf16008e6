//! One way to run a command inside a root tree: namespaces, `/proc` `/dev` `/sys`, `pivot_root`,
//! capabilities and cgroups, torn down when the command ends.
//!
//! ```no_run
//! use imgbuild::sandbox::{Sandbox, Profile, Stdio};
//! let out = Sandbox::new("/srv/root", ["dpkg", "--configure", "-a"])
//!     .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
//!     .profile(Profile::Build)
//!     .stdout(Stdio::Capture)
//!     .run()?;
//! assert_eq!(out.code, 0);
//! # Ok::<(), imgbuild::sandbox::SandboxError>(())
//! ```
//!
//! The command becomes PID 1 of a new pid namespace, in new mount, UTS and IPC namespaces
//! (and a new network namespace with [`Network::None`] and [`Network::Private`], the latter
//! connected to the host by the helper of [`net`]). How it is built:
//!
//! * **No re-exec, no allocation after `clone`.** Everything the child needs (the mount plan
//!   with its `CString`s, argv, envp, the `PATH` candidates) is prepared before `clone`; the
//!   child then makes only raw system calls (see `exec.rs`). This keeps the sandbox a plain
//!   library call usable from any binary and from tests, with no helper executable to find,
//!   and is safe in multi-threaded callers.
//! * **Nothing can stay mounted on the host.** The child first makes every mount a slave of
//!   the host's, so all later mounts exist only in its private mount namespace, which the
//!   kernel frees when the last process in it exits. The command is PID 1: when it exits, the
//!   kernel kills the rest of the namespace. The child has `PR_SET_PDEATHSIG(SIGKILL)`, so if
//!   imgbuild dies, even by SIGKILL, the command dies and its namespaces with it.
//!   (The death signal follows the *thread* that called [`Sandbox::run`], which blocks until
//!   the command ends, so it holds.)
//! * **Signals**: a [`Profile::Container`] sandbox forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT,
//!   SIGUSR1 and SIGUSR2 received while it runs to its command instead of acting on imgbuild.
//!   A [`Profile::Build`] sandbox forwards nothing: when imgbuild is told to stop (see
//!   [`crate::interrupt`]), or a [`Sandbox::timeout`] passes, the command is `SIGKILLed`, and
//!   with it its whole pid namespace.

pub mod caps;
pub mod cgroup;
pub mod devices;
mod exec;
pub mod net;
pub mod plan;
pub mod seccomp;
mod signals;

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub use cgroup::Limits;
pub use plan::{BindMount, Network, Profile};

/// Where one of the command's standard streams goes.
#[derive(Debug, Default)]
pub enum Stdio {
    /// imgbuild's own stream.
    #[default]
    Inherit,
    /// `/dev/null`.
    Null,
    /// Collected into [`Outcome::stdout`] / [`Outcome::stderr`] (not valid for stdin).
    Capture,
    /// This file descriptor.
    Fd(OwnedFd),
}

/// How the command ended, and what it printed when capturing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The exit code, or 128 + signal number when the command was killed by a signal.
    pub code: i32,
    /// The signal that killed the command, if any.
    pub signal: Option<i32>,
    /// Captured standard output (with a tty and [`Stdio::Capture`], the terminal's output).
    pub stdout: Vec<u8>,
    /// Captured standard error.
    pub stderr: Vec<u8>,
}

impl Outcome {
    /// True when the command exited with code 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// Errors of setting up or running a sandbox. Failures of the command itself are not errors:
/// they are its [`Outcome::code`].
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// No command was given.
    #[error("sandbox command is empty")]
    EmptyCommand,
    /// The root tree is missing or unreadable.
    #[error("sandbox root {path}: {source}")]
    Root {
        /// The root directory as given.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A mount point the sandbox needs is a symlink in the root tree.
    #[error("{path} is a symlink; the sandbox mounts its own file system there")]
    SymlinkMountpoint {
        /// The mount point, in the root tree.
        path: PathBuf,
    },
    /// A bind mount source does not exist or cannot be read.
    #[error("bind mount source {path}: {source}")]
    BindSource {
        /// The host path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Capture was requested for stdin.
    #[error("stdin cannot be captured")]
    CaptureStdin,
    /// An environment variable name or value, hostname or argument contains a NUL byte.
    #[error("{what} contains a NUL byte: {value:?}")]
    Nul {
        /// What the value is (`argument`, `hostname`, ...).
        what: &'static str,
        /// The value.
        value: OsString,
    },
    /// The mount plan could not be built.
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    /// Cgroup setup failed.
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    /// The running sandbox to join (`exec`) cannot be entered.
    #[error("cannot enter the sandbox of process {pid}: {source}")]
    Join {
        /// Its command's pid.
        pid: libc::pid_t,
        /// The OS error.
        source: io::Error,
    },
    /// Signal forwarding could not be set up.
    #[error(transparent)]
    Signals(#[from] signals::SignalError),
    /// imgbuild received a stop signal; the command of a build sandbox was killed.
    #[error(transparent)]
    Interrupted(#[from] crate::interrupt::Interrupted),
    /// The command ran longer than [`Sandbox::timeout`] and was killed.
    #[error("the command did not finish within {} s and was killed", .after.as_secs())]
    TimedOut {
        /// The timeout.
        after: std::time::Duration,
    },
    /// The private network could not be set up.
    #[error(transparent)]
    Net(#[from] net::NetError),
    /// A system call in the parent failed.
    #[error("cannot {what}: {source}")]
    Os {
        /// What the call was to do.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A setup step inside the sandbox failed.
    #[error("sandbox setup failed at `{step}` in {root}: {source}")]
    Setup {
        /// The step, as the plan prints it.
        step: String,
        /// The sandbox's root directory.
        root: PathBuf,
        /// The OS error the child reported.
        source: io::Error,
    },
    /// The command could not be executed (not found, not executable, bad interpreter).
    /// Said without the root, which is a work directory the user never named.
    #[error("cannot execute {program:?}: {}", exec_cause(program, error))]
    Exec {
        /// The program, as given.
        program: OsString,
        /// The sandbox's root directory.
        root: PathBuf,
        /// The OS error of `execve` (in the message, not a separate cause).
        error: io::Error,
    },
}

/// Why `execve` failed, in the words of a shell: a bare name is looked up in `$PATH`.
fn exec_cause(program: &OsString, error: &io::Error) -> String {
    let bare = !program.as_encoded_bytes().contains(&b'/');
    match error.kind() {
        io::ErrorKind::NotFound if bare => "executable file not found in $PATH".to_string(),
        io::ErrorKind::NotFound => "no such file (or its interpreter is missing)".to_string(),
        io::ErrorKind::PermissionDenied => {
            "permission denied (a directory, or a file without execute permission)".to_string()
        }
        _ => error.to_string(),
    }
}

fn os(what: &'static str) -> impl FnOnce(io::Error) -> SandboxError {
    move |source| SandboxError::Os { what, source }
}

/// The default `PATH` used to find the command when the environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Soft and hard `RLIMIT_NOFILE` a [`Profile::Container`] asks for (Docker daemon's usual
/// limit); clamped to the host's hard limit, since raising it needs `CAP_SYS_RESOURCE`.
pub const CONTAINER_NOFILE: u64 = 1_048_576;

/// A command to run inside a root tree, and how. Build with [`Sandbox::new`], configure with
/// the chained setters, start with [`Sandbox::run`].
#[derive(Debug)]
pub struct Sandbox {
    root: PathBuf,
    argv: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: PathBuf,
    hostname: Option<String>,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    binds: Vec<BindMount>,
    network: Network,
    publish: Vec<net::PortForward>,
    stdin: Stdio,
    stdout: Stdio,
    stderr: Stdio,
    tty: bool,
    profile: Profile,
    read_only_root: bool,
    resolv_conf: bool,
    limits: Limits,
    rlimits: Vec<(u32, u64, u64)>,
    timeout: Option<std::time::Duration>,
    stop_on_interrupt: bool,
    join: Option<libc::pid_t>,
    on_start: Option<StartHook>,
    caps: Option<u64>,
    tmpfs: Vec<(PathBuf, String)>,
    shm_size: Option<u64>,
    init: bool,
    settle_network: bool,
}

/// Called with the command's pid once it has been executed.
struct StartHook(Box<dyn FnOnce(libc::pid_t) + Send>);

impl std::fmt::Debug for StartHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StartHook")
    }
}

impl Sandbox {
    /// Run `argv` inside `root`. Defaults: [`Profile::Build`], [`Network::Host`], uid/gid 0,
    /// cwd `/`, empty environment, inherited stdio, no tty, the host's `resolv.conf` shown
    /// when the root has `/etc/resolv.conf`, no limits.
    pub fn new<I, S>(root: impl Into<PathBuf>, argv: I) -> Sandbox
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Sandbox {
            root: root.into(),
            argv: argv.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            cwd: PathBuf::from("/"),
            hostname: None,
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            binds: Vec::new(),
            network: Network::Host,
            publish: Vec::new(),
            stdin: Stdio::Inherit,
            stdout: Stdio::Inherit,
            stderr: Stdio::Inherit,
            tty: false,
            profile: Profile::Build,
            read_only_root: false,
            resolv_conf: true,
            limits: Limits::default(),
            rlimits: Vec::new(),
            timeout: None,
            join: None,
            on_start: None,
            caps: None,
            tmpfs: Vec::new(),
            shm_size: None,
            init: false,
            settle_network: false,
            stop_on_interrupt: false,
        }
    }

    /// Set an environment variable (replacing an earlier value of the same name).
    #[must_use]
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        let key = key.into();
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, value.into()));
        self
    }

    /// Copy imgbuild's own environment (variables set with [`Sandbox::env`] win).
    #[must_use]
    pub fn inherit_env(mut self) -> Self {
        let explicit = std::mem::take(&mut self.env);
        self.env = std::env::vars_os().collect();
        for (k, v) in explicit {
            self = self.env(k, v);
        }
        self
    }

    /// Working directory inside the root (must exist).
    #[must_use]
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = dir.into();
        self
    }

    /// Hostname in the new UTS namespace (default: a copy of the host's).
    #[must_use]
    pub fn hostname(mut self, name: impl Into<String>) -> Self {
        self.hostname = Some(name.into());
        self
    }

    /// User and group ids to run as, and supplementary groups.
    #[must_use]
    pub fn user(mut self, uid: u32, gid: u32, groups: Vec<u32>) -> Self {
        self.uid = uid;
        self.gid = gid;
        self.groups = groups;
        self
    }

    /// Make a host path visible inside the root.
    #[must_use]
    pub fn bind(
        mut self,
        source: impl Into<PathBuf>,
        target: impl Into<PathBuf>,
        read_only: bool,
    ) -> Self {
        self.binds.push(BindMount {
            source: source.into(),
            target: target.into(),
            read_only,
        });
        self
    }

    /// The network namespace.
    #[must_use]
    pub fn network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    /// Ports to publish from the host into a [`Network::Private`] sandbox.
    #[must_use]
    pub fn publish(mut self, ports: Vec<net::PortForward>) -> Self {
        self.publish = ports;
        self
    }

    /// Where stdin comes from.
    #[must_use]
    pub fn stdin(mut self, s: Stdio) -> Self {
        self.stdin = s;
        self
    }

    /// Where stdout goes.
    #[must_use]
    pub fn stdout(mut self, s: Stdio) -> Self {
        self.stdout = s;
        self
    }

    /// Where stderr goes.
    #[must_use]
    pub fn stderr(mut self, s: Stdio) -> Self {
        self.stderr = s;
        self
    }

    /// Give the command a pseudo-terminal: it becomes its controlling terminal and stdio;
    /// imgbuild relays it to its stdin (raw mode when that is a terminal) and stdout, and
    /// copies the window size, also on SIGWINCH.
    #[must_use]
    pub fn tty(mut self, tty: bool) -> Self {
        self.tty = tty;
        self
    }

    /// The isolation profile.
    #[must_use]
    pub fn profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }

    /// Mount the root read-only (bind mounts keep their own mode).
    #[must_use]
    pub fn read_only_root(mut self, ro: bool) -> Self {
        self.read_only_root = ro;
        self
    }

    /// Whether to bind the host's `/etc/resolv.conf` over the root's (default true; only
    /// done when the root has that file, and read-only, so the root never changes).
    #[must_use]
    pub fn resolv_conf(mut self, on: bool) -> Self {
        self.resolv_conf = on;
        self
    }

    /// Cgroup limits (memory, pids, cpus).
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Set a resource limit (`libc::RLIMIT_*`); clamped to the host's hard limit.
    #[must_use]
    pub fn rlimit(mut self, resource: u32, soft: u64, hard: u64) -> Self {
        self.rlimits.retain(|r| r.0 != resource);
        self.rlimits.push((resource, soft, hard));
        self
    }

    /// Kill the command (and its whole pid namespace) when it has not ended after `after`;
    /// [`Sandbox::run`] then fails with [`SandboxError::TimedOut`]. Default: no limit.
    #[must_use]
    pub fn timeout(mut self, after: std::time::Duration) -> Self {
        self.timeout = Some(after);
        self
    }

    /// Keep these capabilities (one bit per number) instead of the profile's set.
    #[must_use]
    pub fn capabilities(mut self, caps: u64) -> Self {
        self.caps = Some(caps);
        self
    }

    /// Mount a tmpfs at `target` inside the root with `--tmpfs` style options
    /// (see [`plan::tmpfs_options`]).
    #[must_use]
    pub fn tmpfs(mut self, target: impl Into<PathBuf>, options: impl Into<String>) -> Self {
        self.tmpfs.push((target.into(), options.into()));
        self
    }

    /// The size of `/dev/shm` in bytes.
    #[must_use]
    pub fn shm_size(mut self, bytes: u64) -> Self {
        self.shm_size = Some(bytes);
        self
    }

    /// Return from [`Sandbox::run`] only once the network helper of [`Network::Private`] has
    /// ended, not just been killed (for a supervisor that reports the end of a container and
    /// must leave no process behind by then; a one-shot run leaves the reaping to a thread).
    #[must_use]
    pub fn settle_network(mut self, on: bool) -> Self {
        self.settle_network = on;
        self
    }

    /// Run a minimal init as PID 1 that starts the command as its child, forwards signals
    /// to it, reaps every orphan, and exits as the command does (`--init`).
    #[must_use]
    pub fn init(mut self, on: bool) -> Self {
        self.init = on;
        self
    }

    /// Run the command in the namespaces and cgroups of the running sandbox whose command has
    /// the host pid `pid`, instead of new ones (`exec`): no mount is made, the root, network,
    /// hostname and limits are that sandbox's. The command gets this sandbox's identity (user,
    /// capabilities and seccomp of its profile, rlimits, working directory), in that sandbox's
    /// pid namespace, so it ends when that sandbox's command does.
    #[must_use]
    pub fn join(mut self, pid: libc::pid_t) -> Self {
        self.join = Some(pid);
        self
    }

    /// Call `hook` with the command's pid (as the host sees it) once the command has been
    /// executed, before waiting for it: a supervisor records it there.
    #[must_use]
    pub fn on_start(mut self, hook: impl FnOnce(libc::pid_t) + Send + 'static) -> Self {
        self.on_start = Some(StartHook(Box::new(hook)));
        self
    }

    /// Kill the command when imgbuild is told to stop (see [`crate::interrupt`]), as a build
    /// sandbox does, instead of forwarding the signal to it: for a container whose command is a
    /// check imgbuild runs (`imgbuild test`), not the user's program. [`Sandbox::run`] then
    /// fails with [`SandboxError::Interrupted`].
    #[must_use]
    pub fn stop_on_interrupt(mut self, on: bool) -> Self {
        self.stop_on_interrupt = on;
        self
    }

    /// Run the command and wait for it. Every mount, cgroup and fd the sandbox made is gone
    /// when this returns, whatever the outcome.
    pub fn run(self) -> Result<Outcome, SandboxError> {
        run(self)
    }
}

fn cstr(what: &'static str, s: &OsStr) -> Result<CString, SandboxError> {
    CString::new(s.as_bytes()).map_err(|_| SandboxError::Nul {
        what,
        value: s.to_os_string(),
    })
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the array with two new fds that we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(SandboxError::Os {
            what: "create a pipe",
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: both fds are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn host_hard_limit(resource: u32) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills `lim`.
    if unsafe { libc::getrlimit(resource as _, &raw mut lim) } == 0 {
        lim.rlim_max
    } else {
        u64::MAX
    }
}

/// Clamp requested limits to what the host allows without `CAP_SYS_RESOURCE`.
pub fn clamp_rlimits(
    requested: &[(u32, u64, u64)],
    host_hard: impl Fn(u32) -> u64,
) -> Vec<(u32, u64, u64)> {
    requested
        .iter()
        .map(|&(res, soft, hard)| {
            let hard = hard.min(host_hard(res));
            (res, soft.min(hard), hard)
        })
        .collect()
}

/// The `ro`, `nosuid` and `noexec` flags of the mount holding `path`, as mount flags.
fn mount_flags(path: &Path) -> Result<plan::MountFlags, SandboxError> {
    use nix::sys::statvfs::FsFlags;
    let st = nix::sys::statvfs::statvfs(path).map_err(|e| SandboxError::Root {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    let f = st.flags();
    let mut out = 0;
    for (fs, ms) in [
        (FsFlags::ST_RDONLY, libc::MS_RDONLY),
        (FsFlags::ST_NOSUID, libc::MS_NOSUID),
        (FsFlags::ST_NOEXEC, libc::MS_NOEXEC),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    Ok(out)
}

fn check_mountpoint(root: &Path, name: &str) -> Result<(), SandboxError> {
    let p = root.join(name);
    match std::fs::symlink_metadata(&p) {
        Ok(m) if m.file_type().is_symlink() => Err(SandboxError::SymlinkMountpoint { path: p }),
        _ => Ok(()),
    }
}

/// Exec candidates: the program itself if it has a slash, else each `PATH` entry joined.
fn exec_candidates(program: &OsStr, path: Option<&OsStr>) -> Result<Vec<CString>, SandboxError> {
    if program.as_bytes().contains(&b'/') {
        return Ok(vec![cstr("program", program)?]);
    }
    let path = path.unwrap_or(OsStr::new(DEFAULT_PATH));
    path.as_bytes()
        .split(|&b| b == b':')
        .map(|dir| {
            let dir = if dir.is_empty() { b"." as &[u8] } else { dir };
            let mut full = dir.to_vec();
            full.push(b'/');
            full.extend_from_slice(program.as_bytes());
            cstr("PATH entry", OsStr::from_bytes(&full))
        })
        .collect()
}

struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
    slave_path: PathBuf,
}

fn open_pty() -> Result<Pty, SandboxError> {
    use nix::fcntl::OFlag;
    let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let master =
        nix::pty::posix_openpt(flags).map_err(|e| os("open a pseudo-terminal")(e.into()))?;
    nix::pty::grantpt(&master)
        .and_then(|()| nix::pty::unlockpt(&master))
        .map_err(|e| os("set up a pseudo-terminal")(e.into()))?;
    let slave_path = PathBuf::from(
        nix::pty::ptsname_r(&master).map_err(|e| os("name the pseudo-terminal")(e.into()))?,
    );
    let slave = nix::fcntl::open(&slave_path, flags, nix::sys::stat::Mode::empty())
        .map_err(|e| os("open the pseudo-terminal slave")(e.into()))?;
    Ok(Pty {
        master: master.into(),
        slave,
        slave_path,
    })
}

/// The rlimits the command gets: those asked for, a container's `RLIMIT_NOFILE` default, all
/// clamped to the host's hard limits.
fn rlimits(sb: &Sandbox) -> Vec<(u32, u64, u64)> {
    let mut rlimits = sb.rlimits.clone();
    if sb.profile == Profile::Container && !rlimits.iter().any(|r| r.0 == libc::RLIMIT_NOFILE) {
        rlimits.push((libc::RLIMIT_NOFILE, CONTAINER_NOFILE, CONTAINER_NOFILE));
    }
    clamp_rlimits(&rlimits, host_hard_limit)
}

/// The setup plan for `sb`: the inputs checked and resolved inside the root, then the steps.
fn prepare(
    sb: &Sandbox,
    pty: Option<&Pty>,
    host: &cgroup::Host,
) -> Result<(PathBuf, Vec<plan::Step>), SandboxError> {
    if matches!(sb.stdin, Stdio::Capture) {
        return Err(SandboxError::CaptureStdin);
    }
    let root = std::fs::canonicalize(&sb.root).map_err(|source| SandboxError::Root {
        path: sb.root.clone(),
        source,
    })?;
    if !root.is_dir() {
        return Err(SandboxError::Root {
            path: root,
            source: io::Error::from_raw_os_error(libc::ENOTDIR),
        });
    }
    for name in ["proc", "sys", "dev"] {
        check_mountpoint(&root, name)?;
    }

    let mut binds = Vec::new();
    for b in &sb.binds {
        let meta = std::fs::metadata(&b.source).map_err(|source| SandboxError::BindSource {
            path: b.source.clone(),
            source,
        })?;
        let target = plan::resolve_in_root(&root, &b.target)?;
        binds.push((b.clone(), target, meta.is_dir()));
    }
    let resolv_conf = if sb.resolv_conf && Path::new("/etc/resolv.conf").exists() {
        let target = plan::resolve_in_root(&root, Path::new("/etc/resolv.conf"))?;
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.is_file() => Some((PathBuf::from("/etc/resolv.conf"), target)),
            _ => None,
        }
    } else {
        None
    };

    let mut tmpfs = Vec::new();
    for (target, options) in &sb.tmpfs {
        let (flags, data) = plan::tmpfs_options(options);
        tmpfs.push((plan::resolve_in_root(&root, target)?, flags, data));
    }
    let input = plan::PlanInput {
        root: root.clone(),
        profile: sb.profile,
        network: sb.network,
        hostname: sb.hostname.clone(),
        binds,
        resolv_conf,
        console: pty.map(|p| p.slave_path.clone()),
        read_only_root: sb.read_only_root,
        cwd: sb.cwd.clone(),
        uid: sb.uid,
        gid: sb.gid,
        groups: sb.groups.clone(),
        rlimits: rlimits(sb),
        last_cap: caps::last_cap(),
        root_flags: mount_flags(&root)?,
        cgroup_view: host.view(),
        caps: sb.caps,
        tmpfs,
        shm_size: sb.shm_size,
    };
    let steps = plan::build(&input)?;
    Ok((root, steps))
}

/// argv, envp and the `PATH` search as C data, made before `clone` (the child may not
/// allocate). The pointer arrays point into the `CString`s kept beside them.
struct ExecArgs {
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    candidates: Vec<CString>,
}

fn exec_args(sb: &Sandbox, program: &OsStr) -> Result<ExecArgs, SandboxError> {
    let argv_c: Vec<CString> = sb
        .argv
        .iter()
        .map(|a| cstr("argument", a))
        .collect::<Result<_, _>>()?;
    let envp_c: Vec<CString> = sb
        .env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstr("environment variable", OsStr::from_bytes(&kv))
        })
        .collect::<Result<_, _>>()?;
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = envp_c.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());
    let path_var = sb
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_os_str());
    Ok(ExecArgs {
        candidates: exec_candidates(program, path_var)?,
        _argv: argv_c,
        _envp: envp_c,
        argv,
        envp,
    })
}

/// The standard streams: what the child dup2s onto 0–2, and what the parent keeps.
struct Wiring {
    /// Child ends, closed in the parent after clone.
    child_ends: Vec<OwnedFd>,
    /// Read ends of captured stdout and stderr.
    captures: [Option<OwnedFd>; 2],
    stdio: [RawFd; 3],
    tty_input: Option<RawFd>,
    tty_output: TtyOut,
    /// Caller-given fds, kept open until the command ends.
    user_fds: Vec<OwnedFd>,
}

fn wire_stdio(streams: [Stdio; 3], tty: bool) -> Result<Wiring, SandboxError> {
    let mut w = Wiring {
        child_ends: Vec::new(),
        captures: [None, None],
        stdio: [-1; 3],
        tty_input: None,
        tty_output: TtyOut::Discard,
        user_fds: Vec::new(),
    };
    for (i, s) in streams.into_iter().enumerate() {
        match s {
            Stdio::Inherit => {
                if tty {
                    match i {
                        0 => w.tty_input = Some(0),
                        1 => w.tty_output = TtyOut::Fd(1),
                        _ => {}
                    }
                }
            }
            Stdio::Null => {
                if !tty {
                    let f = std::fs::OpenOptions::new()
                        .read(i == 0)
                        .write(i != 0)
                        .open("/dev/null")
                        .map_err(os("open /dev/null"))?;
                    w.stdio[i] = f.as_raw_fd();
                    w.child_ends.push(f.into());
                }
            }
            Stdio::Capture => {
                if tty {
                    if i == 1 {
                        w.tty_output = TtyOut::Capture;
                    }
                } else {
                    let (r, wr) = pipe()?;
                    w.stdio[i] = wr.as_raw_fd();
                    w.child_ends.push(wr);
                    w.captures[i - 1] = Some(r);
                }
            }
            Stdio::Fd(fd) => {
                if tty {
                    match i {
                        0 => w.tty_input = Some(fd.as_raw_fd()),
                        1 => w.tty_output = TtyOut::Fd(fd.as_raw_fd()),
                        _ => {}
                    }
                } else {
                    w.stdio[i] = fd.as_raw_fd();
                }
                w.user_fds.push(fd);
            }
        }
    }
    Ok(w)
}

/// Reads the child's setup report: `None` at EOF (the command was executed), else the failing
/// step's index and errno.
fn read_report(err_r: &OwnedFd) -> Option<(usize, i32)> {
    let mut report = [0u8; 12];
    let mut got = 0;
    while got < report.len() {
        // SAFETY: reading into the rest of a stack buffer.
        let n = unsafe {
            libc::read(
                err_r.as_raw_fd(),
                report[got..].as_mut_ptr().cast(),
                report.len() - got,
            )
        };
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        let Ok(n @ 1..) = usize::try_from(n) else {
            break;
        };
        got += n;
    }
    if got < report.len() {
        return None;
    }
    let mut idx = [0u8; 8];
    idx.copy_from_slice(&report[..8]);
    let mut e = [0u8; 4];
    e.copy_from_slice(&report[8..]);
    Some((
        usize::try_from(u64::from_le_bytes(idx)).ok()?,
        i32::from_le_bytes(e),
    ))
}

/// The error for a setup failure the child reported at step `index` (`steps.len()`: execve).
fn setup_error(
    index: usize,
    errno: i32,
    steps: &[plan::Step],
    program: OsString,
    root: PathBuf,
) -> SandboxError {
    let source = io::Error::from_raw_os_error(errno);
    if index == steps.len() {
        SandboxError::Exec {
            program,
            root,
            error: source,
        }
    } else {
        SandboxError::Setup {
            step: steps.get(index).map_or(
                "prepare stdio and session".to_string(),
                std::string::ToString::to_string,
            ),
            root,
            source,
        }
    }
}

fn run(sb: Sandbox) -> Result<Outcome, SandboxError> {
    let Some(program) = sb.argv.first().cloned() else {
        return Err(SandboxError::EmptyCommand);
    };
    // Refused before anything is made when the helper is missing.
    let helper_program = match sb.network {
        Network::Private => Some(net::find_helper()?),
        Network::Host | Network::None => None,
    };
    let pty = if sb.tty { Some(open_pty()?) } else { None };
    let cgroup_host = cgroup::Host::detect()?;
    let target = sb
        .join
        .map(|pid| Target::open(pid, &cgroup_host))
        .transpose()?;
    let (root, steps) = match &target {
        Some(t) => (sb.root.clone(), t.steps(&sb)?),
        None => prepare(&sb, pty.as_ref(), &cgroup_host)?,
    };
    let exec = exec_args(&sb, &program)?;
    let Sandbox {
        stdin,
        stdout,
        stderr,
        profile,
        network,
        publish,
        limits,
        timeout,
        on_start,
        init,
        stop_on_interrupt,
        settle_network,
        ..
    } = sb;
    let wiring = wire_stdio([stdin, stdout, stderr], pty.is_some())?;
    if let Some(p) = &pty {
        // Sized before the command starts, so its first look at the terminal is right.
        let sources = supervise::size_sources(wiring.tty_input, wiring.tty_output);
        supervise::copy_winsize(&sources, p.master.as_raw_fd());
    }

    // Always: the device policy lives in the sandbox's cgroup, and the cgroup namespace shows
    // the command its own cgroup. A joining process goes into the joined sandbox's instead.
    let cgroups = match &target {
        Some(_) => None,
        None => Some(cgroup::setup(&limits, &cgroup_host)?),
    };
    // Opened before clone: the child is created inside its v2 cgroup.
    let v2_cgroup = cgroups
        .as_ref()
        .and_then(cgroup::Cgroups::v2_dir)
        .map(|d| {
            std::fs::File::open(d).map_err(|source| {
                SandboxError::Cgroup(cgroup::CgroupError::Io {
                    path: d.to_path_buf(),
                    source,
                })
            })
        })
        .transpose()?;

    let (start_r, start_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let forwarding =
        signals::Forwarding::start(profile == Profile::Container && !stop_on_interrupt)?;
    let spec = exec::ChildSpec {
        steps: &steps,
        start_fd: start_r.as_raw_fd(),
        parent_end: start_w.as_raw_fd(),
        net_wait: helper_program.is_some(),
        error_fd: err_w.as_raw_fd(),
        io: exec::ChildIo {
            stdio: wiring.stdio,
            tty_slave: pty.as_ref().map_or(-1, |p| p.slave.as_raw_fd()),
        },
        exec_candidates: &exec.candidates,
        init: init && target.is_none(),
        argv: &exec.argv,
        envp: &exec.envp,
    };
    let (pid, born_in_v2) = match &target {
        Some(t) => t.spawn()?,
        None => spawn(plan::clone_flags(network), v2_cgroup.as_ref()),
    };
    if pid < 0 {
        return Err(os("clone the sandbox process")(io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: we are the fresh child.
        unsafe { exec::child_main(&spec) }
    }
    // A pid the kernel returned: it fits `pid_t`, the type it has in the kernel.
    #[allow(clippy::cast_possible_truncation)]
    let pid = pid as libc::pid_t;
    let child = ChildGuard { pid, reaped: false };

    let Wiring {
        child_ends,
        captures,
        tty_input,
        tty_output,
        user_fds,
        ..
    } = wiring;
    drop(child_ends);
    drop(start_r);
    drop(err_w);
    // The slave stays open only in the child, so reading the master ends when the
    // sandbox's last process is gone.
    let pty_master = pty.map(|p| {
        drop(p.slave);
        p.master
    });

    match (&cgroups, &target) {
        (Some(c), _) => c.attach(pid, born_in_v2)?,
        (None, Some(t)) => t.attach(pid)?,
        (None, None) => {}
    }
    // Go. The write end stays open until the command is reaped: its closing tells a child
    // still in setup that we died.
    // SAFETY: writing one byte from the stack.
    if unsafe { libc::write(start_w.as_raw_fd(), [1u8].as_ptr().cast(), 1) } != 1 {
        return Err(os("start the sandbox process")(io::Error::last_os_error()));
    }
    // The helper configures the namespace while the child sets up its mounts; the child
    // waits for a second byte before it executes the command.
    let helper = match helper_program {
        Some(helper_path) => {
            let started =
                net::Helper::start(&helper_path, pid, !publish.is_empty()).and_then(|mut h| {
                    h.wait_ready(&publish)?;
                    Ok(h)
                });
            match started {
                Ok(mut h) => {
                    h.wait_on_drop = settle_network;
                    // A failed write means the child is gone: its report below says why.
                    // SAFETY: writing one byte from the stack.
                    unsafe { libc::write(start_w.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
                    Some(h)
                }
                Err(e) => {
                    // A setup failure of the child (which may be why the helper failed) is
                    // the better report.
                    drop(child);
                    drop(start_w);
                    return Err(match read_report(&err_r) {
                        Some((index, errno)) => setup_error(index, errno, &steps, program, root),
                        None => e.into(),
                    });
                }
            }
        }
        None => None,
    };
    // Setup errors arrive on the error pipe; EOF means execve succeeded.
    if let Some((index, errno)) = read_report(&err_r) {
        drop(child);
        return Err(setup_error(index, errno, &steps, program, root));
    }
    drop(target);
    if let Some(hook) = on_start {
        (hook.0)(pid);
    }

    let stop = supervise::Stop {
        timeout,
        on_interrupt: profile == Profile::Build || stop_on_interrupt,
    };
    let result = supervise::wait(
        child,
        &forwarding,
        stop,
        captures,
        pty_master,
        tty_input,
        tty_output,
    );
    // Killed now; reaped by a thread of its own (see `net::Helper`'s drop).
    drop(helper);
    drop(start_w);
    drop(cgroups);
    drop(user_fds);
    result
}

/// A running sandbox a command joins (`exec`): its namespaces, opened before `clone` and kept
/// open until the child has entered them, and its cgroups.
struct Target {
    pid: libc::pid_t,
    /// cgroup, ipc, uts, net, mnt: entered by the child in this order (the cgroup namespace
    /// after the parent moved it into the cgroups; the mount namespace last, since it moves the
    /// root).
    ns: Vec<(OwnedFd, libc::c_int)>,
    /// Entered by the parent's thread for the clone: a pid namespace applies to children only.
    pid_ns: OwnedFd,
    cgroups: Vec<PathBuf>,
}

impl Target {
    fn open(pid: libc::pid_t, host: &cgroup::Host) -> Result<Target, SandboxError> {
        let open = |name: &str| -> Result<OwnedFd, SandboxError> {
            let path = format!("/proc/{pid}/ns/{name}");
            std::fs::File::open(&path)
                .map(OwnedFd::from)
                .map_err(|source| SandboxError::Join { pid, source })
        };
        let mut ns = Vec::new();
        for t in [
            libc::CLONE_NEWCGROUP,
            libc::CLONE_NEWIPC,
            libc::CLONE_NEWUTS,
            libc::CLONE_NEWNET,
            libc::CLONE_NEWNS,
        ] {
            ns.push((open(plan::ns_name(t))?, t));
        }
        Ok(Target {
            pid,
            pid_ns: open("pid")?,
            cgroups: cgroup::dirs_of(pid, host)?,
            ns,
        })
    }

    fn steps(&self, sb: &Sandbox) -> Result<Vec<plan::Step>, SandboxError> {
        let who = plan::Identity {
            profile: sb.profile,
            rlimits: rlimits(sb),
            last_cap: caps::last_cap(),
            uid: sb.uid,
            gid: sb.gid,
            groups: sb.groups.clone(),
            caps: sb.caps.unwrap_or_else(|| plan::kept_caps(sb.profile)),
        };
        let ns: Vec<(RawFd, libc::c_int)> =
            self.ns.iter().map(|(fd, t)| (fd.as_raw_fd(), *t)).collect();
        Ok(plan::build_join(&ns, &sb.cwd, &who)?)
    }

    /// Clone the child into the target's pid namespace (this thread enters it for the clone
    /// and returns to its own right after).
    fn spawn(&self) -> Result<(libc::c_long, bool), SandboxError> {
        let own = std::fs::File::open("/proc/thread-self/ns/pid").map_err(|source| {
            SandboxError::Join {
                pid: self.pid,
                source,
            }
        })?;
        // SAFETY: setns on an fd we hold; affects only this thread's future children.
        if unsafe { libc::setns(self.pid_ns.as_raw_fd(), libc::CLONE_NEWPID) } != 0 {
            return Err(SandboxError::Join {
                pid: self.pid,
                source: io::Error::last_os_error(),
            });
        }
        let (pid, born) = spawn(0, None);
        if pid == 0 {
            return Ok((0, born));
        }
        let e = io::Error::last_os_error();
        // SAFETY: as above, back to our own pid namespace for later children.
        unsafe { libc::setns(own.as_raw_fd(), libc::CLONE_NEWPID) };
        if pid < 0 {
            return Err(os("clone into the container")(e));
        }
        Ok((pid, born))
    }

    fn attach(&self, pid: libc::pid_t) -> Result<(), SandboxError> {
        for d in &self.cgroups {
            let f = d.join("cgroup.procs");
            std::fs::write(&f, pid.to_string()).map_err(|source| {
                SandboxError::Cgroup(cgroup::CgroupError::Io { path: f, source })
            })?;
        }
        Ok(())
    }
}

/// `clone3(2)`'s arguments (the fields up to `cgroup`, kernel 5.7).
#[repr(C)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Fork-like clone with the namespace `flags`: with `cgroup`, `clone3` creating the child
/// inside that v2 cgroup (no migration later, which on cgroup v1 costs an RCU grace period),
/// falling back to `clone` where the kernel lacks it. Returns the pid (0 in the child, which is
/// sent to `child_main` by the caller; -1 with errno on failure) and whether the child was
/// born in the cgroup.
// `clone3` takes flags, a signal and an fd as u64 fields: non-negative values, widened.
#[allow(clippy::cast_sign_loss)]
fn spawn(flags: libc::c_int, cgroup: Option<&std::fs::File>) -> (libc::c_long, bool) {
    if let Some(cg) = cgroup {
        let args = CloneArgs {
            flags: flags as u64 | CLONE_INTO_CGROUP,
            pidfd: 0,
            child_tid: 0,
            parent_tid: 0,
            exit_signal: libc::SIGCHLD as u64,
            stack: 0,
            stack_size: 0,
            tls: 0,
            set_tid: 0,
            set_tid_size: 0,
            cgroup: cg.as_raw_fd() as u64,
        };
        // SAFETY: fork-like (no CLONE_VM, no stack): the child gets a copy of this stack and
        // the caller sends it straight to `child_main`, which never returns or allocates.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &raw const args,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        let e = io::Error::last_os_error().raw_os_error();
        if pid >= 0 || !matches!(e, Some(libc::ENOSYS | libc::E2BIG | libc::EINVAL)) {
            return (pid, true);
        }
    }
    let flags = libc::c_long::from(flags) | libc::c_long::from(libc::SIGCHLD);
    // SAFETY: as above, with the classic clone.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    (pid, false)
}

/// Where a tty's output goes.
#[derive(Clone, Copy)]
enum TtyOut {
    Discard,
    Capture,
    Fd(RawFd),
}

/// Kills and reaps the child if the parent leaves early.
struct ChildGuard {
    pid: libc::pid_t,
    reaped: bool,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: signalling and reaping our own child.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                let mut status = 0;
                while libc::waitpid(self.pid, &raw mut status, libc::__WALL) < 0
                    && *libc::__errno_location() == libc::EINTR
                {}
            }
        }
    }
}

mod supervise;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_search_candidates() {
        let c = exec_candidates(OsStr::new("sh"), Some(OsStr::new("/bin:/usr/bin"))).unwrap();
        assert_eq!(
            c,
            vec![
                CString::new("/bin/sh").unwrap(),
                CString::new("/usr/bin/sh").unwrap()
            ]
        );
        let c = exec_candidates(OsStr::new("./x"), None).unwrap();
        assert_eq!(c, vec![CString::new("./x").unwrap()]);
        let c = exec_candidates(OsStr::new("true"), None).unwrap();
        assert_eq!(c.len(), DEFAULT_PATH.split(':').count());
    }

    #[test]
    fn rlimits_never_exceed_host_hard_limit() {
        let nofile = libc::RLIMIT_NOFILE;
        let got = clamp_rlimits(
            &[(nofile, CONTAINER_NOFILE, CONTAINER_NOFILE), (3, 10, 20)],
            |r| {
                if r == nofile { 20000 } else { u64::MAX }
            },
        );
        assert_eq!(got, vec![(nofile, 20000, 20000), (3, 10, 20)]);
    }

    #[test]
    fn env_replaces_and_orders() {
        let sb = Sandbox::new("/", ["true"])
            .env("A", "1")
            .env("B", "2")
            .env("A", "3");
        assert_eq!(
            sb.env,
            vec![
                (OsString::from("B"), OsString::from("2")),
                (OsString::from("A"), OsString::from("3"))
            ]
        );
    }

    #[test]
    fn config_errors_before_anything_runs() {
        assert!(matches!(
            Sandbox::new("/", Vec::<String>::new()).run(),
            Err(SandboxError::EmptyCommand)
        ));
        assert!(matches!(
            Sandbox::new("/nonexistent-root-dir", ["true"]).run(),
            Err(SandboxError::Root { .. })
        ));
        assert!(matches!(
            Sandbox::new("/", ["true"]).stdin(Stdio::Capture).run(),
            Err(SandboxError::CaptureStdin)
        ));
    }
}
