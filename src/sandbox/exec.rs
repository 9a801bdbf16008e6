//! The executor: applies a [`Step`] list through the [`Sys`] seam, and the child's code path
//! between `clone` and `execve`.
//!
//! Everything here after `clone` runs in a copy of a possibly multi-threaded process, where
//! another thread may have held the allocator's lock at the moment of the copy. So the child
//! path only makes raw system calls on data prepared before `clone`: no allocation, no
//! locks, no panics that unwind (every `CString` and pointer array is built by the parent).
// Kernel ABI: syscall arguments and struct fields (fds, flags, BPF fields) are converted
// between the widths the ABI gives them; each value's range is fixed by the kernel or checked
// where it is produced. (In the cloned child, errors cannot be handled as in the parent.)
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use std::ffi::{CStr, CString};
use std::os::fd::RawFd;

use super::plan::Step;
use super::seccomp::Insn;

/// The system calls the executor needs. [`RealSys`] makes them; tests record them.
/// Errors are raw `errno` values so the child never allocates.
pub trait Sys {
    fn mount(
        &mut self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: libc::c_ulong,
        data: Option<&CStr>,
    ) -> Result<(), i32>;
    /// `Ok(Some(is_dir))`, or `Ok(None)` when the path does not exist.
    fn kind(&mut self, path: &CStr) -> Result<Option<bool>, i32>;
    fn mkdir(&mut self, path: &CStr, mode: u32) -> Result<(), i32>;
    fn create_file(&mut self, path: &CStr, mode: u32) -> Result<(), i32>;
    fn symlink(&mut self, target: &CStr, link: &CStr) -> Result<(), i32>;
    fn pivot_root(&mut self, new_root: &CStr, put_old: &CStr) -> Result<(), i32>;
    fn umount_detach(&mut self, target: &CStr) -> Result<(), i32>;
    fn chroot(&mut self, path: &CStr) -> Result<(), i32>;
    fn chdir(&mut self, path: &CStr) -> Result<(), i32>;
    fn sethostname(&mut self, name: &CStr) -> Result<(), i32>;
    fn loopback_up(&mut self) -> Result<(), i32>;
    fn setrlimit(&mut self, resource: u32, soft: u64, hard: u64) -> Result<(), i32>;
    fn drop_bounding(&mut self, cap: u32) -> Result<(), i32>;
    fn setgroups(&mut self, groups: &[libc::gid_t]) -> Result<(), i32>;
    fn setgid(&mut self, gid: libc::gid_t) -> Result<(), i32>;
    fn setuid(&mut self, uid: libc::uid_t) -> Result<(), i32>;
    fn capset(&mut self, permitted: u64, effective: u64, inheritable: u64) -> Result<(), i32>;
    fn no_new_privs(&mut self) -> Result<(), i32>;
    /// Install one seccomp filter program.
    fn seccomp(&mut self, filter: &[Insn]) -> Result<(), i32>;
    /// `unshare(2)` with these `CLONE_NEW*` flags.
    fn unshare(&mut self, flags: libc::c_int) -> Result<(), i32>;
    /// `setns(2)`: join the namespace `fd` refers to, of type `nstype`.
    fn setns(&mut self, fd: RawFd, nstype: libc::c_int) -> Result<(), i32>;
}

const DOT: &CStr = c".";
const SLASH: &CStr = c"/";
const TMPFS: &CStr = c"tmpfs";

/// Apply `steps` in order; on failure, the index of the failing step and its errno.
pub fn execute<S: Sys>(steps: &[Step], sys: &mut S) -> Result<(), (usize, i32)> {
    for (i, step) in steps.iter().enumerate() {
        apply(step, sys).map_err(|e| (i, e))?;
    }
    Ok(())
}

fn ok_if_exists(r: Result<(), i32>) -> Result<(), i32> {
    match r {
        Err(libc::EEXIST) => Ok(()),
        other => other,
    }
}

fn apply<S: Sys>(step: &Step, sys: &mut S) -> Result<(), i32> {
    match step {
        Step::SetHostname(h) => sys.sethostname(h),
        Step::LoopbackUp => sys.loopback_up(),
        Step::Mount {
            source,
            target,
            fstype,
            flags,
            data,
        } => sys.mount(
            source.as_deref(),
            target,
            fstype.as_deref(),
            *flags,
            data.as_deref(),
        ),
        Step::Mkdir { path, mode } => ok_if_exists(sys.mkdir(path, *mode)),
        Step::CreateFile { path, mode } => ok_if_exists(sys.create_file(path, *mode)),
        Step::Symlink { target, link } => sys.symlink(target, link),
        Step::MaskPath { path, null_device } => match sys.kind(path)? {
            None => Ok(()),
            Some(true) => sys.mount(
                Some(TMPFS),
                path,
                Some(TMPFS),
                libc::MS_RDONLY,
                Some(c"size=0"),
            ),
            Some(false) => sys.mount(Some(null_device), path, None, libc::MS_BIND, None),
        },
        Step::ReadonlyPath { path } => {
            if sys.kind(path)?.is_none() {
                Ok(())
            } else {
                sys.mount(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None)?;
                sys.mount(
                    None,
                    path,
                    None,
                    libc::MS_BIND
                        | libc::MS_REMOUNT
                        | libc::MS_RDONLY
                        | libc::MS_NOSUID
                        | libc::MS_NODEV
                        | libc::MS_NOEXEC,
                    None,
                )
            }
        }
        Step::PivotRoot { new_root } => {
            sys.chdir(new_root)?;
            // pivot_root(".", ".") stacks the old root on top of the new one, so no directory
            // for it is needed in the root tree; detaching it leaves only the new root.
            match sys.pivot_root(DOT, DOT) {
                Ok(()) => {
                    sys.umount_detach(DOT)?;
                    sys.chdir(SLASH)
                }
                // The current root is the initramfs `rootfs`, which can never be pivoted
                // away from: move the new root over `/` and chroot into it instead.
                Err(libc::EINVAL) => {
                    sys.mount(Some(DOT), SLASH, None, libc::MS_MOVE, None)?;
                    sys.chroot(DOT)?;
                    sys.chdir(SLASH)
                }
                Err(e) => Err(e),
            }
        }
        Step::RemountRootReadonly { flags } => sys.mount(
            None,
            SLASH,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | flags,
            None,
        ),
        Step::Chdir(p) => sys.chdir(p),
        Step::SetRlimit {
            resource,
            soft,
            hard,
        } => sys.setrlimit(*resource, *soft, *hard),
        Step::DropBounding { keep, last_cap } => {
            for cap in 0..=*last_cap {
                if cap < 64 && keep & (1u64 << cap) == 0 {
                    sys.drop_bounding(cap)?;
                }
            }
            Ok(())
        }
        Step::SetGroups(g) => sys.setgroups(g),
        Step::SetGid(g) => sys.setgid(*g),
        Step::SetUid(u) => sys.setuid(*u),
        Step::SetCaps {
            permitted,
            effective,
            inheritable,
        } => sys.capset(*permitted, *effective, *inheritable),
        Step::NoNewPrivs => sys.no_new_privs(),
        Step::Seccomp(filters) => {
            for f in filters {
                sys.seccomp(f)?;
            }
            Ok(())
        }
        Step::NewCgroupNamespace => sys.unshare(libc::CLONE_NEWCGROUP),
        Step::Setns { fd, nstype } => sys.setns(*fd, *nstype),
        Step::MountCgroup {
            target,
            fstype,
            data,
        } => {
            // Informational only: a hierarchy this host cannot mount again leaves an empty
            // directory.
            let _ = sys.mount(
                Some(fstype),
                target,
                Some(fstype),
                libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                data.as_deref(),
            );
            Ok(())
        }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn check(rc: libc::c_int) -> Result<(), i32> {
    if rc < 0 { Err(errno()) } else { Ok(()) }
}

fn opt_ptr(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(std::ptr::null(), CStr::as_ptr)
}

/// The real system calls. Allocation-free.
pub struct RealSys;

impl Sys for RealSys {
    fn mount(
        &mut self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: libc::c_ulong,
        data: Option<&CStr>,
    ) -> Result<(), i32> {
        // SAFETY: all pointers are NUL-terminated strings or null, as mount(2) accepts.
        check(unsafe {
            libc::mount(
                opt_ptr(source),
                target.as_ptr(),
                opt_ptr(fstype),
                flags,
                opt_ptr(data).cast(),
            )
        })
    }
    fn kind(&mut self, path: &CStr) -> Result<Option<bool>, i32> {
        // SAFETY: `st` is a plain C struct written by stat(2).
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is a valid C string and `st` is writable.
        match check(unsafe { libc::stat(path.as_ptr(), &raw mut st) }) {
            Ok(()) => Ok(Some(st.st_mode & libc::S_IFMT == libc::S_IFDIR)),
            Err(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn mkdir(&mut self, path: &CStr, mode: u32) -> Result<(), i32> {
        // SAFETY: NUL-terminated path.
        check(unsafe { libc::mkdir(path.as_ptr(), mode) })
    }
    fn create_file(&mut self, path: &CStr, mode: u32) -> Result<(), i32> {
        // SAFETY: NUL-terminated path; the fd is closed at once.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                mode,
            )
        };
        if fd < 0 {
            return Err(errno());
        }
        // SAFETY: fd was just opened by us.
        unsafe { libc::close(fd) };
        Ok(())
    }
    fn symlink(&mut self, target: &CStr, link: &CStr) -> Result<(), i32> {
        // SAFETY: NUL-terminated paths.
        check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) })
    }
    fn pivot_root(&mut self, new_root: &CStr, put_old: &CStr) -> Result<(), i32> {
        // SAFETY: NUL-terminated paths.
        let rc =
            unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
        if rc < 0 { Err(errno()) } else { Ok(()) }
    }
    fn umount_detach(&mut self, target: &CStr) -> Result<(), i32> {
        // SAFETY: NUL-terminated path.
        check(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) })
    }
    fn chroot(&mut self, path: &CStr) -> Result<(), i32> {
        // SAFETY: NUL-terminated path.
        check(unsafe { libc::chroot(path.as_ptr()) })
    }
    fn chdir(&mut self, path: &CStr) -> Result<(), i32> {
        // SAFETY: NUL-terminated path.
        check(unsafe { libc::chdir(path.as_ptr()) })
    }
    fn sethostname(&mut self, name: &CStr) -> Result<(), i32> {
        let bytes = name.to_bytes();
        // SAFETY: pointer and length describe `bytes`.
        check(unsafe { libc::sethostname(bytes.as_ptr().cast(), bytes.len()) })
    }
    fn loopback_up(&mut self) -> Result<(), i32> {
        // SAFETY: a datagram socket only used for the interface ioctls; `ifr` is a plain C
        // struct on the stack.
        unsafe {
            let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if sock < 0 {
                return Err(errno());
            }
            let mut ifr: libc::ifreq = std::mem::zeroed();
            ifr.ifr_name[0] = b'l' as libc::c_char;
            ifr.ifr_name[1] = b'o' as libc::c_char;
            let mut rc = libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut ifr);
            if rc == 0 {
                ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
                rc = libc::ioctl(sock, libc::SIOCSIFFLAGS, &ifr);
            }
            let err = errno();
            libc::close(sock);
            if rc < 0 { Err(err) } else { Ok(()) }
        }
    }
    fn setrlimit(&mut self, resource: u32, soft: u64, hard: u64) -> Result<(), i32> {
        let lim = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: `lim` is a valid rlimit.
        check(unsafe { libc::setrlimit(resource as _, &raw const lim) })
    }
    fn drop_bounding(&mut self, cap: u32) -> Result<(), i32> {
        // SAFETY: prctl with integer arguments.
        match check(unsafe {
            libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0)
        }) {
            // A capability the kernel does not know is not in the set to begin with.
            Err(libc::EINVAL) => Ok(()),
            other => other,
        }
    }
    fn setgroups(&mut self, groups: &[libc::gid_t]) -> Result<(), i32> {
        // SAFETY: pointer and length describe `groups`; raw for the reason given at setgid.
        let rc = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
        if rc < 0 { Err(errno()) } else { Ok(()) }
    }
    fn setgid(&mut self, gid: libc::gid_t) -> Result<(), i32> {
        // The raw syscall changes only this thread's ids, which is all the child has; glibc's
        // wrapper would try to signal the threads that the copy does not have.
        // SAFETY: integer argument.
        let rc = unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) };
        if rc < 0 { Err(errno()) } else { Ok(()) }
    }
    fn setuid(&mut self, uid: libc::uid_t) -> Result<(), i32> {
        // SAFETY: integer argument; see setgid for why the raw syscall.
        let rc = unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) };
        if rc < 0 { Err(errno()) } else { Ok(()) }
    }
    fn capset(&mut self, permitted: u64, effective: u64, inheritable: u64) -> Result<(), i32> {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const VERSION_3: u32 = 0x2008_0522;
        let header = Header {
            version: VERSION_3,
            pid: 0,
        };
        let data = [
            Data {
                effective: effective as u32,
                permitted: permitted as u32,
                inheritable: inheritable as u32,
            },
            Data {
                effective: (effective >> 32) as u32,
                permitted: (permitted >> 32) as u32,
                inheritable: (inheritable >> 32) as u32,
            },
        ];
        // SAFETY: header and two data structs as capset(2) version 3 expects.
        let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
        if rc < 0 { Err(errno()) } else { Ok(()) }
    }
    fn no_new_privs(&mut self) -> Result<(), i32> {
        // SAFETY: prctl with integer arguments.
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
    }
    fn seccomp(&mut self, filter: &[Insn]) -> Result<(), i32> {
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            // `Insn` has the layout of `struct sock_filter`.
            filter: filter.as_ptr().cast::<libc::sock_filter>().cast_mut(),
        };
        // SAFETY: a valid BPF program prepared by the parent; the kernel copies it.
        check(unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &raw const prog,
                0,
                0,
            )
        })
    }
    fn unshare(&mut self, flags: libc::c_int) -> Result<(), i32> {
        // SAFETY: integer argument.
        check(unsafe { libc::unshare(flags) })
    }
    fn setns(&mut self, fd: RawFd, nstype: libc::c_int) -> Result<(), i32> {
        // SAFETY: integer arguments; the fd is the parent's, inherited and open.
        check(unsafe { libc::setns(fd, nstype) })
    }
}

/// The child's standard stream wiring: for each of fd 0, 1, 2 the fd to `dup2` onto it, or
/// -1 to leave the inherited one.
pub struct ChildIo {
    pub stdio: [RawFd; 3],
    /// A pty slave to make the controlling terminal and fds 0–2.
    pub tty_slave: RawFd,
}

/// Everything the child needs, prepared before `clone`.
pub struct ChildSpec<'a> {
    pub steps: &'a [Step],
    /// Read end of the start pipe: one byte means "go", EOF means the parent is gone.
    pub start_fd: RawFd,
    /// The parent's write end of the start pipe, closed first thing in the child.
    pub parent_end: RawFd,
    /// Wait for a second byte on the start pipe after the setup, before `execve`: the
    /// parent sends it once the private network is ready (set up meanwhile, in parallel).
    pub net_wait: bool,
    /// Write end of the error pipe (close-on-exec): `(step index, errno)` on failure.
    pub error_fd: RawFd,
    pub io: ChildIo,
    /// Paths to try for `execve`, in order (the `PATH` search, done without allocating).
    pub exec_candidates: &'a [CString],
    /// NULL-terminated argv and envp arrays pointing into parent-owned `CString`s.
    pub argv: &'a [*const libc::c_char],
    pub envp: &'a [*const libc::c_char],
    /// Stay as a minimal init (PID 1) and run the command as its child.
    pub init: bool,
}

/// The minimal init of `--init`, after the whole setup (so it has the command's identity,
/// capabilities and seccomp filter): fork the command, then as PID 1 forward every signal
/// to it, reap every child, and exit as the command did (128 + signal when it was killed).
/// Returns in the command's process. Raw system calls only, as the rest of the child.
///
/// # Safety
/// Only in the sandbox child, before `execve`.
extern "C" fn init_noop(_: libc::c_int) {}

/// Every catchable signal back to its default disposition.
///
/// # Safety
/// Only in the sandbox child (raw system calls).
unsafe fn default_signals() {
    for sig in 1..65 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: resetting a disposition; no handler runs.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
}

/// Block until the parent writes one byte on `fd` (go on); leave if it closed the pipe
/// (the parent is gone).
///
/// # Safety
/// Only in the sandbox child (raw system calls).
unsafe fn wait_for_go(fd: RawFd) {
    let mut byte = 0u8;
    loop {
        // SAFETY: reading one byte into a stack variable.
        let n = unsafe { libc::read(fd, (&raw mut byte).cast(), 1) };
        if n == 1 {
            return;
        }
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        // SAFETY: leaving without the parent's exit handlers.
        unsafe { libc::_exit(127) };
    }
}

unsafe fn become_init(spec: &ChildSpec<'_>) {
    // SAFETY: (whole block) signal-mask, fork, wait and kill calls on stack data.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&raw mut all);
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut none);
        // Blocked before the fork, so no signal sent from here on is lost.
        libc::sigprocmask(libc::SIG_SETMASK, &raw const all, std::ptr::null_mut());
        // A namespace's init only receives the signals it has a handler for; with a handler
        // installed (never run: everything stays blocked and is taken by sigwaitinfo), the
        // signals `stop` and `kill` send from outside reach it and are forwarded.
        for sig in 1..65 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = init_noop as *const () as libc::sighandler_t;
                libc::sigfillset(&raw mut act.sa_mask);
                libc::sigaction(sig, &raw const act, std::ptr::null_mut());
            }
        }
        let child = libc::fork();
        if child < 0 {
            fail(spec, STEP_PRELUDE, errno());
        }
        if child == 0 {
            // The command: its own process group, in the terminal's foreground when it has one.
            libc::setpgid(0, 0);
            if libc::isatty(0) == 1 {
                libc::tcsetpgrp(0, libc::getpid());
            }
            default_signals();
            libc::sigprocmask(libc::SIG_SETMASK, &raw const none, std::ptr::null_mut());
            return;
        }
        // The init keeps no fd at all: only the command reports an exec failure, and pipes
        // others wait on (output, a supervisor's report pipe) close when the command's side
        // does — the init never execs, so close-on-exec would not close them.
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
        loop {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let sig = libc::sigwaitinfo(&raw const all, &raw mut info);
            if sig < 0 {
                continue;
            }
            if sig == libc::SIGCHLD {
                loop {
                    let mut status = 0;
                    let pid = libc::waitpid(-1, &raw mut status, libc::WNOHANG);
                    if pid <= 0 {
                        break;
                    }
                    if pid == child {
                        let code = if libc::WIFEXITED(status) {
                            libc::WEXITSTATUS(status)
                        } else {
                            128 + libc::WTERMSIG(status)
                        };
                        libc::_exit(code);
                    }
                }
            } else {
                libc::kill(child, sig);
            }
        }
    }
}

fn report(fd: RawFd, index: usize, err: i32) {
    let mut buf = [0u8; 12];
    buf[..8].copy_from_slice(&(index as u64).to_le_bytes());
    buf[8..].copy_from_slice(&err.to_le_bytes());
    // SAFETY: writing a stack buffer to a pipe; a short write only loses the diagnosis.
    unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
}

fn fail(spec: &ChildSpec<'_>, index: usize, err: i32) -> ! {
    report(spec.error_fd, index, err);
    // SAFETY: leave without running any of the parent's exit handlers.
    unsafe { libc::_exit(127) }
}

/// Index reported for failures before the plan runs.
pub const STEP_PRELUDE: usize = usize::MAX;

/// The child after `clone`: wire stdio, run the plan, drop privileges, exec. Never returns.
///
/// # Safety
/// Must only be called in the freshly cloned child, with `spec` built by the parent.
pub unsafe fn child_main(spec: &ChildSpec<'_>) -> ! {
    // SAFETY: (whole block) raw system calls on fds and stack data; see the module comment.
    unsafe {
        // Die with the parent from the very start. The parent is outside our pid namespace,
        // so getppid() says 0 here; the start pipe tells whether it is still alive instead.
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );

        // Default dispositions and an empty mask for the command (the parent forwards
        // signals with handlers, and Rust programs ignore SIGPIPE).
        default_signals();
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &raw const set, std::ptr::null_mut());

        libc::close(spec.parent_end);

        // Wait until the parent has put us into our cgroups.
        wait_for_go(spec.start_fd);

        // A session of its own: terminal signals reach the command only through the parent.
        if libc::setsid() < 0 {
            fail(spec, STEP_PRELUDE, errno());
        }
        if spec.io.tty_slave >= 0 {
            if libc::ioctl(spec.io.tty_slave, libc::TIOCSCTTY, 0) < 0 {
                fail(spec, STEP_PRELUDE, errno());
            }
            for target in 0..3 {
                if libc::dup2(spec.io.tty_slave, target) < 0 {
                    fail(spec, STEP_PRELUDE, errno());
                }
            }
        }
        for (target, &source) in spec.io.stdio.iter().enumerate() {
            if source >= 0 && libc::dup2(source, target as RawFd) < 0 {
                fail(spec, STEP_PRELUDE, errno());
            }
        }

        if let Err((index, err)) = execute(spec.steps, &mut RealSys) {
            fail(spec, index, err);
        }

        // No fd of the parent's (other threads may have made some without O_CLOEXEC) leaks
        // into the command.
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        );

        if spec.net_wait {
            wait_for_go(spec.start_fd);
        }

        // setuid clears the parent-death signal; set it again, then make sure the parent did
        // not die before it was set.
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        let mut pfd = libc::pollfd {
            fd: spec.start_fd,
            events: libc::POLLIN,
            revents: 0,
        };
        if libc::poll(&raw mut pfd, 1, 0) > 0 && pfd.revents & libc::POLLHUP != 0 {
            libc::_exit(127);
        }

        if spec.init {
            become_init(spec);
        }

        let mut err = libc::ENOENT;
        for path in spec.exec_candidates {
            libc::execve(path.as_ptr(), spec.argv.as_ptr(), spec.envp.as_ptr());
            let e = errno();
            // As execvp: remember a real failure, keep searching past missing entries.
            if e != libc::ENOENT && e != libc::ENOTDIR {
                err = e;
            }
        }
        fail(spec, spec.steps.len(), err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::plan::{self, Network, PlanInput, Profile};
    use std::path::PathBuf;

    /// Records every call; fails the call whose description starts with `fail_on`.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<String>,
        fail_on: Option<(&'static str, i32)>,
        existing: Vec<(&'static str, bool)>,
    }

    impl Recorder {
        fn call(&mut self, s: String) -> Result<(), i32> {
            let fail = matches!(self.fail_on, Some((p, _)) if s.starts_with(p));
            self.calls.push(s);
            match self.fail_on {
                Some((_, e)) if fail => Err(e),
                _ => Ok(()),
            }
        }
    }

    fn s(c: Option<&CStr>) -> String {
        c.map_or("-".into(), |c| c.to_string_lossy().into_owned())
    }

    impl Sys for Recorder {
        fn mount(
            &mut self,
            source: Option<&CStr>,
            target: &CStr,
            fstype: Option<&CStr>,
            flags: libc::c_ulong,
            data: Option<&CStr>,
        ) -> Result<(), i32> {
            self.call(format!(
                "mount {} {} {} {flags:#x} {}",
                s(source),
                s(Some(target)),
                s(fstype),
                s(data)
            ))
        }
        fn kind(&mut self, path: &CStr) -> Result<Option<bool>, i32> {
            let p = path.to_string_lossy();
            Ok(self.existing.iter().find(|(e, _)| *e == p).map(|(_, d)| *d))
        }
        fn mkdir(&mut self, path: &CStr, _mode: u32) -> Result<(), i32> {
            self.call(format!("mkdir {}", s(Some(path))))
        }
        fn create_file(&mut self, path: &CStr, _mode: u32) -> Result<(), i32> {
            self.call(format!("touch {}", s(Some(path))))
        }
        fn symlink(&mut self, target: &CStr, link: &CStr) -> Result<(), i32> {
            self.call(format!("symlink {} {}", s(Some(target)), s(Some(link))))
        }
        fn pivot_root(&mut self, new_root: &CStr, put_old: &CStr) -> Result<(), i32> {
            self.call(format!(
                "pivot_root {} {}",
                s(Some(new_root)),
                s(Some(put_old))
            ))
        }
        fn umount_detach(&mut self, target: &CStr) -> Result<(), i32> {
            self.call(format!("umount_detach {}", s(Some(target))))
        }
        fn chroot(&mut self, path: &CStr) -> Result<(), i32> {
            self.call(format!("chroot {}", s(Some(path))))
        }
        fn chdir(&mut self, path: &CStr) -> Result<(), i32> {
            self.call(format!("chdir {}", s(Some(path))))
        }
        fn sethostname(&mut self, name: &CStr) -> Result<(), i32> {
            self.call(format!("sethostname {}", s(Some(name))))
        }
        fn loopback_up(&mut self) -> Result<(), i32> {
            self.call("lo up".into())
        }
        fn setrlimit(&mut self, resource: u32, soft: u64, hard: u64) -> Result<(), i32> {
            self.call(format!("setrlimit {resource} {soft} {hard}"))
        }
        fn drop_bounding(&mut self, cap: u32) -> Result<(), i32> {
            self.call(format!("capbset_drop {cap}"))
        }
        fn setgroups(&mut self, groups: &[libc::gid_t]) -> Result<(), i32> {
            self.call(format!("setgroups {groups:?}"))
        }
        fn setgid(&mut self, gid: libc::gid_t) -> Result<(), i32> {
            self.call(format!("setgid {gid}"))
        }
        fn setuid(&mut self, uid: libc::uid_t) -> Result<(), i32> {
            self.call(format!("setuid {uid}"))
        }
        fn capset(&mut self, p: u64, e: u64, i: u64) -> Result<(), i32> {
            self.call(format!("capset {p:#x} {e:#x} {i:#x}"))
        }
        fn no_new_privs(&mut self) -> Result<(), i32> {
            self.call("no_new_privs".into())
        }
        fn seccomp(&mut self, filter: &[Insn]) -> Result<(), i32> {
            self.call(format!("seccomp {}", filter.len()))
        }
        fn unshare(&mut self, flags: libc::c_int) -> Result<(), i32> {
            self.call(format!("unshare {flags:#x}"))
        }
        fn setns(&mut self, fd: RawFd, nstype: libc::c_int) -> Result<(), i32> {
            self.call(format!("setns {fd} {nstype:#x}"))
        }
    }

    fn input(profile: Profile) -> PlanInput {
        PlanInput {
            root: PathBuf::from("/r"),
            profile,
            network: Network::Host,
            hostname: None,
            binds: Vec::new(),
            resolv_conf: None,
            console: None,
            read_only_root: false,
            cwd: PathBuf::from("/work"),
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            rlimits: Vec::new(),
            last_cap: 40,
            root_flags: 0,
            cgroup_view: Vec::new(),
            caps: None,
            tmpfs: Vec::new(),
            shm_size: None,
        }
    }

    #[test]
    fn pivot_root_detaches_old_root() {
        let steps = plan::build(&input(Profile::Build)).unwrap();
        let mut rec = Recorder::default();
        execute(&steps, &mut rec).unwrap();
        let i = rec.calls.iter().position(|c| c == "chdir /r").unwrap();
        assert_eq!(
            &rec.calls[i..i + 5],
            &[
                "chdir /r",
                "pivot_root . .",
                "umount_detach .",
                "chdir /",
                "chdir /work"
            ]
        );
        assert!(!rec.calls.iter().any(|c| c.starts_with("chroot")));
    }

    #[test]
    fn falls_back_to_chroot_on_rootfs() {
        let steps = plan::build(&input(Profile::Build)).unwrap();
        let mut rec = Recorder {
            fail_on: Some(("pivot_root", libc::EINVAL)),
            ..Recorder::default()
        };
        execute(&steps, &mut rec).unwrap();
        let i = rec
            .calls
            .iter()
            .position(|c| c == "pivot_root . .")
            .unwrap();
        assert_eq!(
            &rec.calls[i + 1..i + 4],
            &[
                format!("mount . / - {:#x} -", libc::MS_MOVE),
                "chroot .".to_string(),
                "chdir /".to_string()
            ]
        );
    }

    #[test]
    fn reports_failing_step_index() {
        let steps = plan::build(&input(Profile::Build)).unwrap();
        let mut rec = Recorder {
            fail_on: Some(("mount proc", libc::EPERM)),
            ..Recorder::default()
        };
        let (index, err) = execute(&steps, &mut rec).unwrap_err();
        assert_eq!(err, libc::EPERM);
        assert!(
            steps[index]
                .to_string()
                .starts_with("mount proc on /r/proc")
        );
    }

    #[test]
    fn masks_and_readonly_paths_by_kind() {
        let steps = plan::build(&input(Profile::Container)).unwrap();
        let mut rec = Recorder {
            existing: vec![
                ("/r/proc/kcore", false),
                ("/r/proc/scsi", true),
                ("/r/proc/sys", true),
            ],
            ..Recorder::default()
        };
        execute(&steps, &mut rec).unwrap();
        let c = &rec.calls;
        assert!(c.contains(&format!(
            "mount /dev/null /r/proc/kcore - {:#x} -",
            libc::MS_BIND
        )));
        assert!(c.contains(&format!(
            "mount tmpfs /r/proc/scsi tmpfs {:#x} size=0",
            libc::MS_RDONLY
        )));
        assert!(
            !c.iter().any(|x| x.contains("/r/proc/keys")),
            "missing paths are skipped"
        );
        let ro = c
            .iter()
            .position(|x| x.starts_with("mount /r/proc/sys /r/proc/sys"))
            .unwrap();
        assert!(c[ro + 1].starts_with("mount - /r/proc/sys - "));
        // Every capability outside Docker's set is dropped from the bounding set.
        let dropped: Vec<u32> = c
            .iter()
            .filter_map(|x| x.strip_prefix("capbset_drop ")?.parse().ok())
            .collect();
        let expected: Vec<u32> = (0..=40)
            .filter(|n| crate::sandbox::caps::DOCKER_DEFAULT & (1 << n) == 0)
            .collect();
        assert_eq!(dropped, expected);
        let nnp = c.iter().position(|x| x == "no_new_privs").unwrap();
        assert!(c[nnp + 1..].iter().all(|x| x.starts_with("seccomp ")));
        assert_eq!(c.iter().filter(|x| x.starts_with("seccomp ")).count(), 2);
    }

    #[test]
    fn existing_directories_are_fine() {
        let steps = vec![Step::Mkdir {
            path: CString::new("/r/proc").unwrap(),
            mode: 0o555,
        }];
        let mut rec = Recorder {
            fail_on: Some(("mkdir", libc::EEXIST)),
            ..Recorder::default()
        };
        execute(&steps, &mut rec).unwrap();
    }

    /// Runs `body` in a forked child after installing the filters for `caps` (with
    /// `no_new_privs`, so no privilege is needed); returns the child's exit code.
    fn in_filtered_child(caps: u64, suppress_sync: bool, body: fn() -> i32) -> i32 {
        let filters = crate::sandbox::seccomp::compile(caps, suppress_sync).unwrap();
        // SAFETY: the child makes only raw syscalls and leaves with _exit.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                let mut sys = RealSys;
                if sys.no_new_privs().is_err() || filters.iter().any(|f| sys.seccomp(f).is_err()) {
                    libc::_exit(100);
                }
                libc::_exit(body());
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &raw mut status, 0), pid);
            assert!(libc::WIFEXITED(status), "child killed: {status:#x}");
            libc::WEXITSTATUS(status)
        }
    }

    fn errno_of(rc: libc::c_long) -> i32 {
        if rc < 0 { errno() } else { 0 }
    }

    #[test]
    fn sync_filter_makes_sync_calls_succeed_without_running_them() {
        // fsync(-1) would fail with EBADF if it ran; other calls are untouched.
        let code = in_filtered_child(crate::sandbox::caps::BUILD_DEFAULT, true, || unsafe {
            // SAFETY: calls on invalid descriptors only return errors.
            let synced = libc::fsync(-1) == 0
                && libc::fdatasync(-1) == 0
                && libc::syncfs(-1) == 0
                && libc::sync_file_range(-1, 0, 0, 0) == 0;
            let others_untouched = libc::close(-1) == -1;
            match (synced, others_untouched) {
                (true, true) => 0,
                (false, _) => 2,
                _ => 3,
            }
        });
        assert_eq!(
            code, 0,
            "100: not installed, 2: a sync call ran, 3: other calls changed"
        );
        // Without the filter the same call fails, so the check above means something.
        // SAFETY: fsync on an invalid descriptor only returns an error.
        assert_eq!(unsafe { libc::fsync(-1) }, -1);
    }

    #[test]
    fn container_filter_refuses_as_docker_does() {
        let code = in_filtered_child(crate::sandbox::caps::DOCKER_DEFAULT, false, || {
            // SAFETY: each call either fails or has no effect worth undoing in this child.
            unsafe {
                let checks = [
                    // Namespaces need CAP_SYS_ADMIN: EPERM.
                    errno_of(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWNS)) == libc::EPERM,
                    errno_of(libc::syscall(
                        libc::SYS_mount,
                        c"none".as_ptr(),
                        c"/".as_ptr(),
                        c"tmpfs".as_ptr(),
                        0,
                        0,
                    )) == libc::EPERM,
                    errno_of(libc::syscall(libc::SYS_kexec_load, 0, 0, 0, 0)) == libc::EPERM,
                    // clone3 says ENOSYS so the C library falls back to clone.
                    errno_of(libc::syscall(libc::SYS_clone3, 0, 0)) == libc::ENOSYS,
                    // clone with a namespace flag: EPERM (the filter sees the flags).
                    errno_of(libc::syscall(
                        libc::SYS_clone,
                        libc::CLONE_NEWUSER | libc::SIGCHLD,
                        0,
                        0,
                        0,
                        0,
                    )) == libc::EPERM,
                    // AF_VSOCK refused, AF_UNIX fine.
                    errno_of(libc::syscall(libc::SYS_socket, 40, libc::SOCK_STREAM, 0))
                        == libc::EPERM,
                    {
                        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                        fd >= 0 && libc::close(fd) == 0
                    },
                    // personality: the query is fine, others refused.
                    libc::personality(0xffff_ffff) >= 0,
                    errno_of(libc::c_long::from(libc::personality(0x0040_0000))) == libc::EPERM,
                    // A syscall newer than the table: ENOSYS, as runc answers.
                    errno_of(libc::syscall(1000)) == libc::ENOSYS,
                    // sync really runs (no suppression in containers): fsync(-1) is EBADF.
                    errno_of(libc::c_long::from(libc::fsync(-1))) == libc::EBADF,
                    // Ordinary calls work.
                    libc::getpid() > 0,
                ];
                match checks.iter().position(|ok| !ok) {
                    None => 0,
                    Some(i) => 10 + i as i32,
                }
            }
        });
        assert_eq!(code, 0, "100: not installed; 10+i: check i failed");
    }
}
