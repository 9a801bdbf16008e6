//! Containers that outlive the command that started them: the monitor (`run -d`, `start`),
//! and what acts on a container while or after it runs — `stop`, `kill`, `wait`, `exec`,
//! `logs`, `prune`.
//!
//! A detached container is supervised by a small process of its own, the monitor: imgbuild
//! started again as the caller's [`MonitorCommand`] says, in a session of its own. It runs the
//! sandbox (the command is its child and dies with it), copies the command's output into the
//! container's log ([`super::logs`]), and records the exit code when the command ends. The
//! caller waits on a pipe (fd 3 of the monitor) until the monitor reports the command started
//! (or why it could not), so `run -d` returns only once the container runs. If the monitor is
//! killed, the command dies with it and the record says `dead`; nothing else depends on it, so
//! the state stays readable and `rm` cleans it, also after a reboot.

use super::logs::{self, Stream};
use super::state::process_start;
use super::{
    ContainerRecord, ExecConfig, Result, RunOptions, Runtime, RuntimeError, State, UserSpec,
    environment, io_at, now,
};
use crate::sandbox::{Profile, SandboxError, Stdio};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How to start a container's monitor: given the container id, the command that runs
/// [`Runtime::monitor`] for it in a process of its own (for imgbuild, the binary itself with a
/// hidden subcommand). The monitor finds its report pipe as fd 3.
pub struct MonitorCommand(Box<dyn Fn(&str) -> std::process::Command + Send + Sync>);

impl MonitorCommand {
    /// A monitor command made by `make`.
    pub fn new(make: impl Fn(&str) -> std::process::Command + Send + Sync + 'static) -> Self {
        MonitorCommand(Box::new(make))
    }
}

impl std::fmt::Debug for MonitorCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MonitorCommand")
    }
}

/// The fd a monitor reports on.
pub const REPORT_FD: RawFd = 3;

/// What `exec` asks for; `None`s take the container's values.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Variables set over the container's environment.
    pub env: Vec<(String, String)>,
    /// `USER[:GROUP]`.
    pub user: Option<UserSpec>,
    /// Working directory (absolute).
    pub workdir: Option<String>,
    /// Keep stdin attached.
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    pub tty: bool,
}

/// What `logs` prints.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogOptions {
    /// Keep printing new output until the container stops.
    pub follow: bool,
    /// Only the last this many lines.
    pub tail: Option<usize>,
    /// Prefix each line with its RFC 3339 time.
    pub timestamps: bool,
}

fn report(fd: &Mutex<Option<OwnedFd>>, message: &str) {
    if let Some(fd) = fd
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        let mut f = std::fs::File::from(fd);
        let _ = f.write_all(message.as_bytes());
    }
}

/// The exit code `docker run` gives for a sandbox error.
fn error_code(e: &SandboxError) -> i32 {
    match e {
        SandboxError::Exec { error, .. } if error.kind() == std::io::ErrorKind::NotFound => 127,
        SandboxError::Exec { .. } => 126,
        _ => 125,
    }
}

/// Wait until process `pid` (started at `start`) has exited, at most `timeout`; true when it
/// has. Waits on a pidfd, so no polling.
fn wait_exit(pid: u32, start: Option<u64>, timeout: Option<Duration>) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return true;
    };
    // SAFETY: pidfd_open returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw, 0) };
    let Ok(fd) = RawFd::try_from(fd) else {
        return true;
    };
    if fd < 0 {
        return true;
    }
    // SAFETY: a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // The pid may have been reused between reading the record and opening the pidfd.
    if process_start(pid) != start {
        return true;
    }
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let ms = deadline.map_or(-1, |d| {
            let left = d.saturating_duration_since(Instant::now());
            libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX)
        });
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd on the stack.
        let n = unsafe { libc::poll(&raw mut pfd, 1, ms) };
        if n > 0 {
            return true;
        }
        if n == 0 && deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the array with two new fds that we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn send(pid: u32, sig: i32) -> bool {
    libc::pid_t::try_from(pid)
        // SAFETY: sending a signal has no memory effects.
        .is_ok_and(|p| unsafe { libc::kill(p, sig) } == 0)
}

impl Runtime {
    pub(super) fn write_options(&self, id: &str, opts: &RunOptions) -> Result<()> {
        let path = self.container_dir(id).join("options.json");
        let bytes = serde_json::to_vec_pretty(opts).map_err(|source| RuntimeError::Json {
            path: path.clone(),
            source,
        })?;
        crate::atomic::write(&path, &bytes).map_err(io_at(&path))
    }

    /// The options container `id` (full id) was made with.
    pub fn options(&self, id: &str) -> Result<RunOptions> {
        let path = self.container_dir(id).join("options.json");
        let bytes = std::fs::read(&path).map_err(io_at(&path))?;
        serde_json::from_slice(&bytes).map_err(|source| RuntimeError::Json { path, source })
    }

    /// The image `image` names: its id and the config fields the runtime uses.
    pub(super) fn image_config(&self, image: &str) -> Result<(String, ExecConfig)> {
        let details = self.store.inspect(image)?;
        let id = details.record.id.clone();
        let exec = match details.config.get("config") {
            Some(c) if !c.is_null() => {
                serde_json::from_value(c.clone()).map_err(|e| RuntimeError::ImageConfig {
                    image: id.clone(),
                    reason: e.to_string(),
                })?
            }
            _ => ExecConfig::default(),
        };
        Ok((id, exec))
    }

    /// The user to run as: the one asked for, else the image's `User`, else none (root).
    pub(super) fn user_spec(
        opts_user: Option<&UserSpec>,
        exec: &ExecConfig,
    ) -> Result<Option<UserSpec>> {
        Ok(match (opts_user, exec.user.as_deref()) {
            (Some(u), _) => Some(u.clone()),
            (None, Some(u)) if !u.is_empty() => Some(UserSpec::parse(u)?),
            _ => None,
        })
    }

    /// The hook that records the command's pid once it runs.
    pub(super) fn pid_recorder(&self, rec: &ContainerRecord) -> impl FnOnce(i32) + Send + use<> {
        let dir = self.dir.clone();
        let mut rec = rec.clone();
        move |pid| {
            let Ok(pid) = u32::try_from(pid) else { return };
            rec.pid = Some(pid);
            rec.pid_start = process_start(pid);
            let Ok(_lock) = super::lock_dir(&dir, true) else {
                return;
            };
            // Removed meanwhile (rm -f): nothing to record.
            if dir.join(&rec.id).join("state.json").exists() {
                let _ = super::write_record_in(&dir, &rec);
            }
        }
    }

    /// Start the monitor of container `rec` and wait until it reports the command running.
    pub(super) fn start_monitor(&self, rec: &ContainerRecord) -> Result<()> {
        let monitor = self.monitor.as_ref().ok_or(RuntimeError::NoMonitor)?;
        let dir = self.container_dir(&rec.id);
        let (r, w) = pipe().map_err(io_at(&dir))?;
        let err_path = dir.join("monitor.err");
        let err_file = std::fs::File::create(&err_path).map_err(io_at(&err_path))?;
        let mut cmd = (monitor.0)(&rec.id);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(err_file);
        let wfd = w.as_raw_fd();
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if wfd == REPORT_FD {
                    let flags = libc::fcntl(wfd, libc::F_GETFD);
                    libc::fcntl(wfd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
                } else if libc::dup2(wfd, REPORT_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(io_at(&dir))?;
        drop(w);
        let mut message = String::new();
        let read = std::fs::File::from(r).read_to_string(&mut message);
        // The monitor lives on; reap it when it ends should this process outlive it.
        std::thread::spawn(move || child.wait());
        read.map_err(io_at(&dir))?;
        if message.trim_end() == "started" {
            return Ok(());
        }
        if let Some(rest) = message.strip_prefix("error ")
            && let Some((code, text)) = rest.split_once(' ')
        {
            return Err(RuntimeError::Start {
                id: rec.id.clone(),
                code: code.parse().unwrap_or(125),
                message: text.trim_end().to_string(),
            });
        }
        let why = std::fs::read_to_string(&err_path).unwrap_or_default();
        Err(RuntimeError::Start {
            id: rec.id.clone(),
            code: 125,
            message: format!(
                "the container monitor ended before the command started{}{}",
                if why.trim().is_empty() { "" } else { ": " },
                why.trim()
            ),
        })
    }

    /// Be container `id`'s monitor (the process [`MonitorCommand`] starts): run its command
    /// with the output going to its log, report on `report_fd` when it started (or why not),
    /// record how it ended. Returns when the command has ended.
    pub fn monitor(&self, id: &str, report_fd: OwnedFd) -> Result<()> {
        // Only this process reports; the container's processes must not hold the pipe open.
        // SAFETY: fcntl on an fd we own.
        unsafe { libc::fcntl(report_fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        let reporter = Arc::new(Mutex::new(Some(report_fd)));
        let result = self.monitor_inner(id, &reporter);
        if let Err(e) = &result {
            let code = match e {
                RuntimeError::Sandbox { source, .. } => error_code(source),
                _ => 125,
            };
            report(&reporter, &format!("error {code} {e}\n"));
        }
        result
    }

    fn monitor_inner(&self, id: &str, reporter: &Arc<Mutex<Option<OwnedFd>>>) -> Result<()> {
        let mut rec = self.container(id)?;
        let first_start = rec.started.is_none();
        let opts = self.options(&rec.id)?;
        let (_, exec) = self.image_config(&rec.image)?;
        let user = Self::user_spec(opts.user.as_ref(), &exec)?;
        let dir = self.container_dir(&rec.id);
        let forget = |rt: &Runtime| {
            if first_start {
                let _lock = rt.lock(true);
                let _ = rt.discard(id);
            }
        };
        let sandbox = match self.prepare(&opts, &exec, user.as_ref(), &rec) {
            Ok(sb) => sb,
            Err(e) => {
                forget(self);
                return Err(e);
            }
        };
        let writer = logs::Writer::open(&dir, opts.log_max.unwrap_or(logs::DEFAULT_MAX_SIZE))
            .map_err(io_at(&dir))?;
        let writer = Arc::new(Mutex::new(writer));
        let (out_r, out_w) = pipe().map_err(io_at(&dir))?;
        let (err_r, err_w) = pipe().map_err(io_at(&dir))?;
        let copiers: Vec<_> = [(out_r, Stream::Stdout), (err_r, Stream::Stderr)]
            .into_iter()
            .map(|(fd, stream)| {
                let writer = Arc::clone(&writer);
                std::thread::spawn(move || {
                    let mut f = std::fs::File::from(fd);
                    let mut buf = vec![0u8; 64 << 10];
                    loop {
                        match f.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                let mut w = writer
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                                let _ = w.write(stream, &buf[..n]);
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(_) => break,
                        }
                    }
                })
            })
            .collect();

        rec.state = State::Running;
        rec.monitor_pid = Some(std::process::id());
        rec.monitor_start = process_start(std::process::id());
        rec.started = Some(now());
        rec.exit_code = None;
        rec.finished = None;
        {
            let _lock = self.lock(true)?;
            self.write_record(&rec)?;
        }
        let record_pid = self.pid_recorder(&rec);
        let started_report = Arc::clone(reporter);
        let result = sandbox
            .settle_network(true)
            .stdin(Stdio::Null)
            .stdout(Stdio::Fd(out_w))
            .stderr(Stdio::Fd(err_w))
            .on_start(move |pid| {
                record_pid(pid);
                report(&started_report, "started\n");
            })
            .run();
        for c in copiers {
            let _ = c.join();
        }
        let code = match &result {
            Ok(o) => o.code,
            Err(e) => error_code(e),
        };
        let started = result.is_ok()
            || !matches!(
                &result,
                Err(SandboxError::Exec { .. } | SandboxError::Setup { .. })
            );
        if !started && first_start {
            forget(self);
            return result.map(|_| ()).map_err(|source| RuntimeError::Sandbox {
                id: id.to_string(),
                source,
            });
        }
        let mut rec = self.container(id)?;
        rec.mark_exited(code, now());
        let _lock = self.lock(true)?;
        if rec.auto_remove {
            self.discard(id)?;
        } else {
            self.write_record(&rec)?;
            self.store.unmount_container(id)?;
        }
        result.map(|_| ()).map_err(|source| RuntimeError::Sandbox {
            id: id.to_string(),
            source,
        })
    }

    /// Start a created or stopped container again, detached, with the command and options it
    /// was made with. Starting a running container does nothing.
    pub fn start(&self, reference: &str) -> Result<ContainerRecord> {
        let rec = self.container(reference)?;
        if rec.state == State::Running {
            return Ok(rec);
        }
        {
            let _lock = self.lock(true)?;
            self.store.mount_container(&rec.id)?;
        }
        self.start_monitor(&rec)?;
        self.container(&rec.id)
    }

    /// Stop a running container: its stop signal, then SIGKILL after `timeout` seconds (the
    /// container's own when `None`); returns once its end is recorded. A container that is
    /// not running is left as it is.
    pub fn stop(&self, reference: &str, timeout: Option<u64>) -> Result<ContainerRecord> {
        let rec = self.container(reference)?;
        if rec.state != State::Running {
            return Ok(rec);
        }
        let timeout = Duration::from_secs(timeout.unwrap_or(rec.stop_timeout));
        Self::signal(&rec, rec.stop_signal);
        let monitor = rec.monitor_pid.unwrap_or(0);
        if !wait_exit(monitor, rec.monitor_start, Some(timeout)) {
            Self::kill_and_wait(&rec);
        }
        self.container_or_removed(rec)
    }

    /// The container's record now, or `rec` as it ended when its `--rm` removed it.
    fn container_or_removed(&self, mut rec: ContainerRecord) -> Result<ContainerRecord> {
        match self.container(&rec.id) {
            Ok(r) => Ok(r),
            Err(RuntimeError::NoSuchContainer(_)) => {
                rec.state = State::Exited;
                Ok(rec)
            }
            Err(e) => Err(e),
        }
    }

    /// Send `sig` to the container's command (to its supervisor, which forwards the usual
    /// termination signals, while the command's pid is not recorded yet).
    fn signal(rec: &ContainerRecord, sig: i32) -> bool {
        match rec.command_pid() {
            Some(pid) => send(pid, sig),
            None => rec
                .monitor_pid
                .filter(|_| rec.supervisor_alive())
                .is_some_and(|m| send(m, sig)),
        }
    }

    /// SIGKILL the command and wait until its supervisor has recorded the end.
    pub(super) fn kill_and_wait(rec: &ContainerRecord) {
        if !Self::signal(rec, libc::SIGKILL) {
            // No command to kill: the supervisor itself goes, and the command with it.
            if let Some(m) = rec.monitor_pid.filter(|_| rec.supervisor_alive()) {
                send(m, libc::SIGKILL);
            }
        }
        wait_exit(rec.monitor_pid.unwrap_or(0), rec.monitor_start, None);
    }

    /// Send `sig` to a running container's command.
    pub fn kill(&self, reference: &str, sig: i32) -> Result<ContainerRecord> {
        let rec = self.container(reference)?;
        if rec.state != State::Running || !Self::signal(&rec, sig) {
            return Err(RuntimeError::NotRunning {
                name: rec.name,
                id: rec.id,
            });
        }
        Ok(rec)
    }

    /// Wait until the container is no longer running; its exit code (-1 when it died with its
    /// supervisor and has none).
    pub fn wait(&self, reference: &str) -> Result<i32> {
        let rec = self.container(reference)?;
        if rec.state == State::Running {
            wait_exit(rec.monitor_pid.unwrap_or(0), rec.monitor_start, None);
        }
        let rec = self.container_or_removed(rec)?;
        Ok(match rec.state {
            State::Exited => rec.exit_code.unwrap_or(-1),
            _ => -1,
        })
    }

    /// Run a command in a running container: its namespaces, cgroup, root and environment,
    /// the same capabilities, seccomp profile and rlimits as its command. Returns the
    /// command's exit code.
    pub fn exec(&self, reference: &str, eo: &ExecOptions) -> Result<i32> {
        let rec = self.container(reference)?;
        let (State::Running, Some(pid)) = (rec.state, rec.command_pid()) else {
            return Err(RuntimeError::NotRunning {
                name: rec.name,
                id: rec.id,
            });
        };
        if eo.command.is_empty() {
            return Err(RuntimeError::InvalidOption {
                option: "exec",
                reason: "no command given".into(),
            });
        }
        super::check_workdir(eo.workdir.as_deref())?;
        let opts = self.options(&rec.id)?;
        let (_, exec) = self.image_config(&rec.image)?;
        let spec = match &eo.user {
            Some(u) => Some(u.clone()),
            None => Self::user_spec(opts.user.as_ref(), &exec)?,
        };
        let user = super::user::resolve_in(&rec.id, &rec.rootfs, spec.as_ref())?;
        let workdir = eo
            .workdir
            .clone()
            .or_else(|| opts.workdir.clone())
            .or_else(|| exec.working_dir.clone().filter(|w| !w.is_empty()))
            .unwrap_or_else(|| "/".to_string());
        let mut extra = opts.env.clone();
        extra.extend(eo.env.iter().cloned());
        let env = environment(
            exec.env.as_deref().unwrap_or_default(),
            &rec.hostname,
            &user.home,
            eo.tty,
            &extra,
        );
        let mut sb = crate::sandbox::Sandbox::new(&rec.rootfs, eo.command.clone())
            .profile(Profile::Container)
            .join(i32::try_from(pid).unwrap_or(0))
            .user(user.uid, user.gid, user.groups)
            .cwd(&workdir)
            .tty(eo.tty)
            .stdin(if eo.interactive {
                Stdio::Inherit
            } else {
                Stdio::Null
            });
        for (k, v) in env {
            sb = sb.env(k, v);
        }
        let sb = Self::privileges(sb, &opts)?;
        let out = sb.run().map_err(|source| RuntimeError::Sandbox {
            id: rec.id.clone(),
            source,
        })?;
        Ok(out.code)
    }

    /// Print a detached container's log to `out` (stdout lines) and `err` (stderr lines).
    pub fn logs(
        &self,
        reference: &str,
        lo: LogOptions,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<()> {
        let rec = self.container(reference)?;
        let dir = self.container_dir(&rec.id);
        let print = |recs: &[logs::Record],
                     out: &mut dyn Write,
                     err: &mut dyn Write,
                     tail: Option<usize>|
         -> std::io::Result<()> {
            let lines = logs::lines(recs);
            let skip = tail.map_or(0, |t| lines.len().saturating_sub(t));
            for (time, stream, text) in lines.into_iter().skip(skip) {
                let w: &mut dyn Write = match stream {
                    Stream::Stdout => &mut *out,
                    Stream::Stderr => &mut *err,
                };
                if lo.timestamps {
                    write!(w, "{time} ")?;
                }
                w.write_all(&text)?;
            }
            out.flush()?;
            err.flush()
        };
        let log = dir.join(logs::LOG_FILE);
        let old = logs::read_from(&dir.join(logs::ROTATED_FILE), 0)
            .map_err(io_at(&dir))?
            .0;
        let (mut recs, mut offset) = logs::read_from(&log, 0).map_err(io_at(&log))?;
        recs.splice(0..0, old);
        print(&recs, out, err, lo.tail).map_err(io_at(&log))?;
        if !lo.follow || rec.state != State::Running {
            return Ok(());
        }
        let follower = Follower::new(&dir, rec.monitor_pid.unwrap_or(0))?;
        let mut inode = inode_of(&log);
        loop {
            let alive = follower.wait();
            // Rotated: the rest of the old file, then the new one from its start.
            let now_inode = inode_of(&log);
            if now_inode != inode {
                let rotated = dir.join(logs::ROTATED_FILE);
                let (r, _) = logs::read_from(&rotated, offset).map_err(io_at(&rotated))?;
                print(&r, out, err, None).map_err(io_at(&log))?;
                offset = 0;
                inode = now_inode;
            }
            let (r, at) = logs::read_from(&log, offset).map_err(io_at(&log))?;
            offset = at;
            print(&r, out, err, None).map_err(io_at(&log))?;
            if !alive {
                return Ok(());
            }
        }
    }

    /// Remove every container that is not running; the removed ones.
    pub fn prune(&self) -> Result<Vec<ContainerRecord>> {
        let mut out = Vec::new();
        for rec in self.containers(true)? {
            if rec.state != State::Running {
                let _lock = self.lock(true)?;
                self.discard(&rec.id)?;
                out.push(rec);
            }
        }
        Ok(out)
    }
}

fn inode_of(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Wakes `logs -f` when the log directory changes or the monitor ends.
struct Follower {
    inotify: OwnedFd,
    pidfd: Option<OwnedFd>,
}

impl Follower {
    fn new(dir: &Path, monitor: u32) -> Result<Follower> {
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: inotify_init1 returns a new fd or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io_at(dir)(std::io::Error::last_os_error()));
        }
        // SAFETY: a fresh fd we own.
        let inotify = unsafe { OwnedFd::from_raw_fd(fd) };
        let cdir = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap_or_default();
        // SAFETY: a valid C string and our fd.
        let wd = unsafe {
            libc::inotify_add_watch(
                inotify.as_raw_fd(),
                cdir.as_ptr(),
                libc::IN_MODIFY | libc::IN_CREATE | libc::IN_MOVED_TO,
            )
        };
        if wd < 0 {
            return Err(io_at(dir)(std::io::Error::last_os_error()));
        }
        let pidfd = libc::pid_t::try_from(monitor).ok().and_then(|p| {
            // SAFETY: pidfd_open returns a new fd or -1.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, p, 0) };
            // SAFETY: a fresh fd we own, when non-negative.
            RawFd::try_from(fd)
                .ok()
                .filter(|&f| f >= 0)
                .map(|f| unsafe { OwnedFd::from_raw_fd(f) })
        });
        Ok(Follower { inotify, pidfd })
    }

    /// Block until the log changes or the monitor ends; false once the monitor has ended.
    fn wait(&self) -> bool {
        let Some(pidfd) = &self.pidfd else {
            return false;
        };
        let mut fds = [
            libc::pollfd {
                fd: self.inotify.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two pollfds on the stack.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n > 0 && fds[0].revents & libc::POLLIN != 0 {
            let mut buf = [0u8; 4096];
            // SAFETY: draining the inotify events into a stack buffer.
            unsafe { libc::read(self.inotify.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        }
        !(n > 0 && fds[1].revents != 0)
    }
}
