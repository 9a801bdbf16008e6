//! The sandbox's seccomp policy: Docker's default profile (an allow-list; everything else
//! fails with `EPERM`), compiled to classic BPF for the capabilities the sandbox keeps.
//!
//! What is allowed and how calls fail follows Docker's default profile: syscalls that need a
//! capability the sandbox does not keep are refused, `clone` may not create namespaces without
//! `CAP_SYS_ADMIN`, `clone3` then fails with `ENOSYS` (so the C library falls back to `clone`,
//! whose flags the filter can see), `socket` refuses `AF_ALG` and `AF_VSOCK`, `personality`
//! takes only the harmless values. As runc does, a syscall newer than any this table knows fails
//! with `ENOSYS` rather than `EPERM`, so newer C libraries in an image fall back to older calls.
//! A syscall made through another ABI (32-bit x86 on `x86_64`) kills the process.
//!
//! The program is compiled by the parent (the main filter by the `seccompiler` crate; the small
//! filter of errno overrides by hand, since `seccompiler` has no "number above" test and one
//! action per filter) and only installed by the child. The kernel runs every installed filter
//! and takes the strictest action, the most recently installed one's among equals: the override
//! filter is installed last so its `ENOSYS` and errno-0 answers win over the main filter's.
// Kernel ABI: syscall arguments and struct fields (fds, flags, BPF fields) are converted
// between the widths the ABI gives them; each value's range is fixed by the kernel or checked
// where it is produced. (In the cloned child, errors cannot be handled as in the parent.)
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use std::collections::BTreeMap;

use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};

/// One classic BPF instruction, laid out as `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Operation.
    pub code: u16,
    /// Jump offset when true.
    pub jt: u8,
    /// Jump offset when false.
    pub jf: u8,
    /// Operand.
    pub k: u32,
}

/// Errors of compiling the policy.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// This CPU architecture has no syscall table here.
    #[error("seccomp: no syscall table for the {0} architecture")]
    Arch(&'static str),
    /// The BPF compiler refused the policy.
    #[error("seccomp: compiling the filter: {0:?}")]
    Compile(seccompiler::BackendError),
}

const CAP_SYS_ADMIN: u32 = 21;
const EPERM: u32 = libc::EPERM as u32;
const ENOSYS: u32 = libc::ENOSYS as u32;
/// `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID
/// | CLONE_NEWNET`: the flags `clone` may not carry without `CAP_SYS_ADMIN`.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;
/// `personality` values Docker allows: `PER_LINUX`, `PER_LINUX32`, `UNAME26`,
/// `PER_LINUX32 | UNAME26`, and the query `0xffffffff`.
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];
/// Address families `socket` refuses: `AF_ALG` (38) and `AF_VSOCK` (40).
const AF_ALG: u64 = 38;
const AF_VSOCK: u64 = 40;

/// The syscalls [`compile`] turns into successful no-ops when asked (as
/// `systemd-nspawn --suppress-sync`).
pub const SYNC_CALLS: &[&str] = &["fsync", "fdatasync", "sync", "syncfs", "sync_file_range"];

macro_rules! numbers {
    ($($n:ident),* $(,)?) => {
        &[$((stringify!($n), libc::$n as i64)),*]
    };
}

/// Syscalls allowed whatever the capabilities (the list Docker's default profile allows;
/// names this architecture lacks are skipped).
pub const ALLOWED: &[&str] = &[
    "_llseek",
    "_newselect",
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "arch_prctl",
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "bind",
    "breakpoint",
    "brk",
    "cacheflush",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "getxattrat",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "ioctl",
    "ioprio_get",
    "ioprio_set",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listmount",
    "listxattr",
    "listxattrat",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "modify_ldt",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "process_vm_readv",
    "process_vm_writev",
    "pselect6",
    "pselect6_time64",
    "ptrace",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "removexattrat",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "riscv_hwprobe",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "set_tls",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "setsid",
    "setsockopt",
    "setuid",
    "setuid32",
    "setxattr",
    "setxattrat",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statmount",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "sync_file_range2",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "uretprobe",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Syscalls allowed only when the sandbox keeps a capability (number, names).
pub const BY_CAPABILITY: &[(u32, &[&str])] = &[
    // CAP_DAC_READ_SEARCH
    (2, &["open_by_handle_at"]),
    // CAP_SYS_ADMIN
    (
        21,
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "lsm_get_self_attr",
            "lsm_list_modules",
            "lsm_set_self_attr",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    // CAP_SYS_BOOT
    (22, &["reboot"]),
    // CAP_SYS_CHROOT
    (18, &["chroot"]),
    // CAP_SYS_MODULE
    (16, &["delete_module", "init_module", "finit_module"]),
    // CAP_SYS_PACCT
    (20, &["acct"]),
    // CAP_SYS_PTRACE
    (
        19,
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    // CAP_SYS_RAWIO
    (17, &["iopl", "ioperm"]),
    // CAP_SYS_TIME
    (
        25,
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    // CAP_SYS_TTY_CONFIG
    (26, &["vhangup"]),
    // CAP_SYS_NICE
    (
        23,
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    // CAP_SYSLOG
    (34, &["syslog"]),
    // CAP_BPF
    (39, &["bpf"]),
    // CAP_PERFMON
    (38, &["perf_event_open"]),
];

#[cfg(target_arch = "x86_64")]
const NUMBERS: &[(&str, i64)] = numbers![
    SYS_accept,
    SYS_accept4,
    SYS_access,
    SYS_acct,
    SYS_adjtimex,
    SYS_alarm,
    SYS_arch_prctl,
    SYS_bind,
    SYS_bpf,
    SYS_brk,
    SYS_capget,
    SYS_capset,
    SYS_chdir,
    SYS_chmod,
    SYS_chown,
    SYS_chroot,
    SYS_clock_adjtime,
    SYS_clock_getres,
    SYS_clock_gettime,
    SYS_clock_nanosleep,
    SYS_clock_settime,
    SYS_clone,
    SYS_clone3,
    SYS_close,
    SYS_close_range,
    SYS_connect,
    SYS_copy_file_range,
    SYS_creat,
    SYS_delete_module,
    SYS_dup,
    SYS_dup2,
    SYS_dup3,
    SYS_epoll_create,
    SYS_epoll_create1,
    SYS_epoll_ctl,
    SYS_epoll_ctl_old,
    SYS_epoll_pwait,
    SYS_epoll_pwait2,
    SYS_epoll_wait,
    SYS_epoll_wait_old,
    SYS_eventfd,
    SYS_eventfd2,
    SYS_execve,
    SYS_execveat,
    SYS_exit,
    SYS_exit_group,
    SYS_faccessat,
    SYS_faccessat2,
    SYS_fadvise64,
    SYS_fallocate,
    SYS_fanotify_init,
    SYS_fanotify_mark,
    SYS_fchdir,
    SYS_fchmod,
    SYS_fchmodat,
    SYS_fchmodat2,
    SYS_fchown,
    SYS_fchownat,
    SYS_fcntl,
    SYS_fdatasync,
    SYS_fgetxattr,
    SYS_finit_module,
    SYS_flistxattr,
    SYS_flock,
    SYS_fork,
    SYS_fremovexattr,
    SYS_fsconfig,
    SYS_fsetxattr,
    SYS_fsmount,
    SYS_fsopen,
    SYS_fspick,
    SYS_fstat,
    SYS_fstatfs,
    SYS_fsync,
    SYS_ftruncate,
    SYS_futex,
    SYS_futex_waitv,
    SYS_futimesat,
    SYS_get_mempolicy,
    SYS_get_robust_list,
    SYS_get_thread_area,
    SYS_getcpu,
    SYS_getcwd,
    SYS_getdents,
    SYS_getdents64,
    SYS_getegid,
    SYS_geteuid,
    SYS_getgid,
    SYS_getgroups,
    SYS_getitimer,
    SYS_getpeername,
    SYS_getpgid,
    SYS_getpgrp,
    SYS_getpid,
    SYS_getppid,
    SYS_getpriority,
    SYS_getrandom,
    SYS_getresgid,
    SYS_getresuid,
    SYS_getrlimit,
    SYS_getrusage,
    SYS_getsid,
    SYS_getsockname,
    SYS_getsockopt,
    SYS_gettid,
    SYS_gettimeofday,
    SYS_getuid,
    SYS_getxattr,
    SYS_init_module,
    SYS_inotify_add_watch,
    SYS_inotify_init,
    SYS_inotify_init1,
    SYS_inotify_rm_watch,
    SYS_io_cancel,
    SYS_io_destroy,
    SYS_io_getevents,
    SYS_io_setup,
    SYS_io_submit,
    SYS_ioctl,
    SYS_ioperm,
    SYS_iopl,
    SYS_ioprio_get,
    SYS_ioprio_set,
    SYS_kcmp,
    SYS_kill,
    SYS_landlock_add_rule,
    SYS_landlock_create_ruleset,
    SYS_landlock_restrict_self,
    SYS_lchown,
    SYS_lgetxattr,
    SYS_link,
    SYS_linkat,
    SYS_listen,
    SYS_listxattr,
    SYS_llistxattr,
    SYS_lookup_dcookie,
    SYS_lremovexattr,
    SYS_lseek,
    SYS_lsetxattr,
    SYS_lstat,
    SYS_madvise,
    SYS_mbind,
    SYS_membarrier,
    SYS_memfd_create,
    SYS_memfd_secret,
    SYS_mincore,
    SYS_mkdir,
    SYS_mkdirat,
    SYS_mknod,
    SYS_mknodat,
    SYS_mlock,
    SYS_mlock2,
    SYS_mlockall,
    SYS_mmap,
    SYS_modify_ldt,
    SYS_mount,
    SYS_mount_setattr,
    SYS_move_mount,
    SYS_mprotect,
    SYS_mq_getsetattr,
    SYS_mq_notify,
    SYS_mq_open,
    SYS_mq_timedreceive,
    SYS_mq_timedsend,
    SYS_mq_unlink,
    SYS_mremap,
    SYS_mseal,
    SYS_msgctl,
    SYS_msgget,
    SYS_msgrcv,
    SYS_msgsnd,
    SYS_msync,
    SYS_munlock,
    SYS_munlockall,
    SYS_munmap,
    SYS_name_to_handle_at,
    SYS_nanosleep,
    SYS_newfstatat,
    SYS_open,
    SYS_open_by_handle_at,
    SYS_open_tree,
    SYS_openat,
    SYS_openat2,
    SYS_pause,
    SYS_perf_event_open,
    SYS_personality,
    SYS_pidfd_getfd,
    SYS_pidfd_open,
    SYS_pidfd_send_signal,
    SYS_pipe,
    SYS_pipe2,
    SYS_pkey_alloc,
    SYS_pkey_free,
    SYS_pkey_mprotect,
    SYS_poll,
    SYS_ppoll,
    SYS_prctl,
    SYS_pread64,
    SYS_preadv,
    SYS_preadv2,
    SYS_prlimit64,
    SYS_process_madvise,
    SYS_process_mrelease,
    SYS_process_vm_readv,
    SYS_process_vm_writev,
    SYS_pselect6,
    SYS_ptrace,
    SYS_pwrite64,
    SYS_pwritev,
    SYS_pwritev2,
    SYS_quotactl,
    SYS_quotactl_fd,
    SYS_read,
    SYS_readahead,
    SYS_readlink,
    SYS_readlinkat,
    SYS_readv,
    SYS_reboot,
    SYS_recvfrom,
    SYS_recvmmsg,
    SYS_recvmsg,
    SYS_remap_file_pages,
    SYS_removexattr,
    SYS_rename,
    SYS_renameat,
    SYS_renameat2,
    SYS_restart_syscall,
    SYS_rmdir,
    SYS_rseq,
    SYS_rt_sigaction,
    SYS_rt_sigpending,
    SYS_rt_sigprocmask,
    SYS_rt_sigqueueinfo,
    SYS_rt_sigreturn,
    SYS_rt_sigsuspend,
    SYS_rt_sigtimedwait,
    SYS_rt_tgsigqueueinfo,
    SYS_sched_get_priority_max,
    SYS_sched_get_priority_min,
    SYS_sched_getaffinity,
    SYS_sched_getattr,
    SYS_sched_getparam,
    SYS_sched_getscheduler,
    SYS_sched_rr_get_interval,
    SYS_sched_setaffinity,
    SYS_sched_setattr,
    SYS_sched_setparam,
    SYS_sched_setscheduler,
    SYS_sched_yield,
    SYS_seccomp,
    SYS_select,
    SYS_semctl,
    SYS_semget,
    SYS_semop,
    SYS_semtimedop,
    SYS_sendfile,
    SYS_sendmmsg,
    SYS_sendmsg,
    SYS_sendto,
    SYS_set_mempolicy,
    SYS_set_mempolicy_home_node,
    SYS_set_robust_list,
    SYS_set_thread_area,
    SYS_set_tid_address,
    SYS_setdomainname,
    SYS_setfsgid,
    SYS_setfsuid,
    SYS_setgid,
    SYS_setgroups,
    SYS_sethostname,
    SYS_setitimer,
    SYS_setns,
    SYS_setpgid,
    SYS_setpriority,
    SYS_setregid,
    SYS_setresgid,
    SYS_setresuid,
    SYS_setreuid,
    SYS_setrlimit,
    SYS_setsid,
    SYS_setsockopt,
    SYS_settimeofday,
    SYS_setuid,
    SYS_setxattr,
    SYS_shmat,
    SYS_shmctl,
    SYS_shmdt,
    SYS_shmget,
    SYS_shutdown,
    SYS_sigaltstack,
    SYS_signalfd,
    SYS_signalfd4,
    SYS_socket,
    SYS_socketpair,
    SYS_splice,
    SYS_stat,
    SYS_statfs,
    SYS_statx,
    SYS_symlink,
    SYS_symlinkat,
    SYS_sync,
    SYS_sync_file_range,
    SYS_syncfs,
    SYS_sysinfo,
    SYS_syslog,
    SYS_tee,
    SYS_tgkill,
    SYS_time,
    SYS_timer_create,
    SYS_timer_delete,
    SYS_timer_getoverrun,
    SYS_timer_gettime,
    SYS_timer_settime,
    SYS_timerfd_create,
    SYS_timerfd_gettime,
    SYS_timerfd_settime,
    SYS_times,
    SYS_tkill,
    SYS_truncate,
    SYS_umask,
    SYS_umount2,
    SYS_uname,
    SYS_unlink,
    SYS_unlinkat,
    SYS_unshare,
    SYS_utime,
    SYS_utimensat,
    SYS_utimes,
    SYS_vfork,
    SYS_vhangup,
    SYS_vmsplice,
    SYS_wait4,
    SYS_waitid,
    SYS_write,
    SYS_writev,
];
/// Syscalls newer than the libc crate's tables, numbered from the kernel's `x86_64` table.
#[cfg(target_arch = "x86_64")]
const NEWER: &[(&str, i64)] = &[
    ("cachestat", 451),
    ("futex_requeue", 456),
    ("futex_wait", 455),
    ("futex_wake", 454),
    ("getxattrat", 464),
    ("io_pgetevents", 333),
    ("listmount", 458),
    ("listxattrat", 465),
    ("lsm_get_self_attr", 459),
    ("lsm_list_modules", 461),
    ("lsm_set_self_attr", 460),
    ("map_shadow_stack", 453),
    ("removexattrat", 466),
    ("setxattrat", 463),
    ("statmount", 457),
    ("uretprobe", 335),
];

#[cfg(target_arch = "aarch64")]
const NUMBERS: &[(&str, i64)] = numbers![
    SYS_accept,
    SYS_accept4,
    SYS_acct,
    SYS_adjtimex,
    SYS_bind,
    SYS_bpf,
    SYS_brk,
    SYS_capget,
    SYS_capset,
    SYS_chdir,
    SYS_chroot,
    SYS_clock_adjtime,
    SYS_clock_getres,
    SYS_clock_gettime,
    SYS_clock_nanosleep,
    SYS_clock_settime,
    SYS_clone,
    SYS_clone3,
    SYS_close,
    SYS_close_range,
    SYS_connect,
    SYS_copy_file_range,
    SYS_delete_module,
    SYS_dup,
    SYS_dup3,
    SYS_epoll_create1,
    SYS_epoll_ctl,
    SYS_epoll_pwait,
    SYS_epoll_pwait2,
    SYS_eventfd2,
    SYS_execve,
    SYS_execveat,
    SYS_exit,
    SYS_exit_group,
    SYS_faccessat,
    SYS_faccessat2,
    SYS_fadvise64,
    SYS_fallocate,
    SYS_fanotify_init,
    SYS_fanotify_mark,
    SYS_fchdir,
    SYS_fchmod,
    SYS_fchmodat,
    SYS_fchown,
    SYS_fchownat,
    SYS_fcntl,
    SYS_fdatasync,
    SYS_fgetxattr,
    SYS_finit_module,
    SYS_flistxattr,
    SYS_flock,
    SYS_fremovexattr,
    SYS_fsconfig,
    SYS_fsetxattr,
    SYS_fsmount,
    SYS_fsopen,
    SYS_fspick,
    SYS_fstat,
    SYS_fstatfs,
    SYS_fsync,
    SYS_ftruncate,
    SYS_futex,
    SYS_futex_waitv,
    SYS_get_mempolicy,
    SYS_get_robust_list,
    SYS_getcpu,
    SYS_getcwd,
    SYS_getdents64,
    SYS_getegid,
    SYS_geteuid,
    SYS_getgid,
    SYS_getgroups,
    SYS_getitimer,
    SYS_getpeername,
    SYS_getpgid,
    SYS_getpid,
    SYS_getppid,
    SYS_getpriority,
    SYS_getrandom,
    SYS_getresgid,
    SYS_getresuid,
    SYS_getrusage,
    SYS_getsid,
    SYS_getsockname,
    SYS_getsockopt,
    SYS_gettid,
    SYS_gettimeofday,
    SYS_getuid,
    SYS_getxattr,
    SYS_init_module,
    SYS_inotify_add_watch,
    SYS_inotify_init1,
    SYS_inotify_rm_watch,
    SYS_io_cancel,
    SYS_io_destroy,
    SYS_io_getevents,
    SYS_io_setup,
    SYS_io_submit,
    SYS_ioctl,
    SYS_ioprio_get,
    SYS_ioprio_set,
    SYS_kcmp,
    SYS_kill,
    SYS_landlock_add_rule,
    SYS_landlock_create_ruleset,
    SYS_landlock_restrict_self,
    SYS_lgetxattr,
    SYS_linkat,
    SYS_listen,
    SYS_listxattr,
    SYS_llistxattr,
    SYS_lookup_dcookie,
    SYS_lremovexattr,
    SYS_lseek,
    SYS_lsetxattr,
    SYS_madvise,
    SYS_mbind,
    SYS_membarrier,
    SYS_memfd_create,
    SYS_memfd_secret,
    SYS_mincore,
    SYS_mkdirat,
    SYS_mknodat,
    SYS_mlock,
    SYS_mlock2,
    SYS_mlockall,
    SYS_mmap,
    SYS_mount,
    SYS_mount_setattr,
    SYS_move_mount,
    SYS_mprotect,
    SYS_mq_getsetattr,
    SYS_mq_notify,
    SYS_mq_open,
    SYS_mq_timedreceive,
    SYS_mq_timedsend,
    SYS_mq_unlink,
    SYS_mremap,
    SYS_mseal,
    SYS_msgctl,
    SYS_msgget,
    SYS_msgrcv,
    SYS_msgsnd,
    SYS_msync,
    SYS_munlock,
    SYS_munlockall,
    SYS_munmap,
    SYS_name_to_handle_at,
    SYS_nanosleep,
    SYS_newfstatat,
    SYS_open_by_handle_at,
    SYS_open_tree,
    SYS_openat,
    SYS_openat2,
    SYS_perf_event_open,
    SYS_personality,
    SYS_pidfd_getfd,
    SYS_pidfd_open,
    SYS_pidfd_send_signal,
    SYS_pipe2,
    SYS_pkey_alloc,
    SYS_pkey_free,
    SYS_pkey_mprotect,
    SYS_ppoll,
    SYS_prctl,
    SYS_pread64,
    SYS_preadv,
    SYS_preadv2,
    SYS_prlimit64,
    SYS_process_madvise,
    SYS_process_mrelease,
    SYS_process_vm_readv,
    SYS_process_vm_writev,
    SYS_pselect6,
    SYS_ptrace,
    SYS_pwrite64,
    SYS_pwritev,
    SYS_pwritev2,
    SYS_quotactl,
    SYS_quotactl_fd,
    SYS_read,
    SYS_readahead,
    SYS_readlinkat,
    SYS_readv,
    SYS_reboot,
    SYS_recvfrom,
    SYS_recvmmsg,
    SYS_recvmsg,
    SYS_remap_file_pages,
    SYS_removexattr,
    SYS_renameat2,
    SYS_restart_syscall,
    SYS_rseq,
    SYS_rt_sigaction,
    SYS_rt_sigpending,
    SYS_rt_sigprocmask,
    SYS_rt_sigqueueinfo,
    SYS_rt_sigreturn,
    SYS_rt_sigsuspend,
    SYS_rt_sigtimedwait,
    SYS_rt_tgsigqueueinfo,
    SYS_sched_get_priority_max,
    SYS_sched_get_priority_min,
    SYS_sched_getaffinity,
    SYS_sched_getattr,
    SYS_sched_getparam,
    SYS_sched_getscheduler,
    SYS_sched_rr_get_interval,
    SYS_sched_setaffinity,
    SYS_sched_setattr,
    SYS_sched_setparam,
    SYS_sched_setscheduler,
    SYS_sched_yield,
    SYS_seccomp,
    SYS_semctl,
    SYS_semget,
    SYS_semop,
    SYS_semtimedop,
    SYS_sendfile,
    SYS_sendmmsg,
    SYS_sendmsg,
    SYS_sendto,
    SYS_set_mempolicy,
    SYS_set_mempolicy_home_node,
    SYS_set_robust_list,
    SYS_set_tid_address,
    SYS_setdomainname,
    SYS_setfsgid,
    SYS_setfsuid,
    SYS_setgid,
    SYS_setgroups,
    SYS_sethostname,
    SYS_setitimer,
    SYS_setns,
    SYS_setpgid,
    SYS_setpriority,
    SYS_setregid,
    SYS_setresgid,
    SYS_setresuid,
    SYS_setreuid,
    SYS_setsid,
    SYS_setsockopt,
    SYS_settimeofday,
    SYS_setuid,
    SYS_setxattr,
    SYS_shmat,
    SYS_shmctl,
    SYS_shmdt,
    SYS_shmget,
    SYS_shutdown,
    SYS_sigaltstack,
    SYS_signalfd4,
    SYS_socket,
    SYS_socketpair,
    SYS_splice,
    SYS_statfs,
    SYS_statx,
    SYS_symlinkat,
    SYS_sync,
    SYS_syncfs,
    SYS_sysinfo,
    SYS_syslog,
    SYS_tee,
    SYS_tgkill,
    SYS_timer_create,
    SYS_timer_delete,
    SYS_timer_getoverrun,
    SYS_timer_gettime,
    SYS_timer_settime,
    SYS_timerfd_create,
    SYS_timerfd_gettime,
    SYS_timerfd_settime,
    SYS_times,
    SYS_tkill,
    SYS_truncate,
    SYS_umask,
    SYS_umount2,
    SYS_uname,
    SYS_unlinkat,
    SYS_unshare,
    SYS_utimensat,
    SYS_vhangup,
    SYS_vmsplice,
    SYS_wait4,
    SYS_waitid,
    SYS_write,
    SYS_writev,
];
/// Syscalls newer than the libc crate's tables, numbered from the kernel's aarch64 table.
#[cfg(target_arch = "aarch64")]
const NEWER: &[(&str, i64)] = &[
    ("cachestat", 451),
    ("futex_requeue", 456),
    ("futex_wait", 455),
    ("futex_wake", 454),
    ("getxattrat", 464),
    ("io_pgetevents", 292),
    ("listmount", 458),
    ("listxattrat", 465),
    ("lsm_get_self_attr", 459),
    ("lsm_list_modules", 461),
    ("lsm_set_self_attr", 460),
    ("map_shadow_stack", 453),
    ("removexattrat", 466),
    ("setxattrat", 463),
    ("statmount", 457),
];

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const NUMBERS: &[(&str, i64)] = &[];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const NEWER: &[(&str, i64)] = &[];

/// `AUDIT_ARCH_*` of this build's architecture (what `seccomp_data.arch` says for native calls).
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const AUDIT_ARCH: u32 = 0;

/// The syscall number of `name` on this architecture, if it has that syscall.
pub fn number(name: &str) -> Option<i64> {
    NUMBERS
        .iter()
        .find(|(n, _)| n.strip_prefix("SYS_") == Some(name))
        .or_else(|| NEWER.iter().find(|(n, _)| *n == name))
        .map(|&(_, nr)| nr)
}

/// The highest syscall number the tables know: anything above fails with `ENOSYS`.
pub fn highest_known() -> i64 {
    NUMBERS
        .iter()
        .chain(NEWER)
        .map(|&(_, nr)| nr)
        .max()
        .unwrap_or(0)
}

fn has(caps: u64, cap: u32) -> bool {
    cap < 64 && caps & (1 << cap) != 0
}

fn cond(
    arg: u8,
    len: SeccompCmpArgLen,
    op: SeccompCmpOp,
    value: u64,
) -> Result<SeccompCondition, SeccompError> {
    SeccompCondition::new(arg, len, op, value).map_err(SeccompError::Compile)
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, SeccompError> {
    SeccompRule::new(conditions).map_err(SeccompError::Compile)
}

/// The allowed syscalls and their argument rules for a sandbox keeping `caps`.
fn allow_rules(caps: u64) -> Result<BTreeMap<i64, Vec<SeccompRule>>, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let unconditional = ALLOWED.iter().copied().chain(
        BY_CAPABILITY
            .iter()
            .filter(|(cap, _)| has(caps, *cap))
            .flat_map(|(_, names)| names.iter().copied()),
    );
    for name in unconditional {
        if let Some(nr) = number(name) {
            // An empty rule list matches the syscall whatever its arguments.
            rules.insert(nr, Vec::new());
        }
    }
    if let Some(nr) = number("personality") {
        let mut list = Vec::new();
        for value in PERSONALITIES {
            list.push(rule(vec![cond(
                0,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                value,
            )?])?);
        }
        rules.insert(nr, list);
    }
    if let Some(nr) = number("socket") {
        let family = |op, v| cond(0, SeccompCmpArgLen::Dword, op, v);
        rules.insert(
            nr,
            vec![
                rule(vec![family(SeccompCmpOp::Lt, AF_ALG)?])?,
                rule(vec![family(SeccompCmpOp::Eq, AF_ALG + 1)?])?,
                rule(vec![family(SeccompCmpOp::Gt, AF_VSOCK)?])?,
            ],
        );
    }
    if !has(caps, CAP_SYS_ADMIN)
        && let Some(nr) = number("clone")
    {
        // x86_64 and aarch64 both pass the flags first (s390 differs).
        rules.insert(
            nr,
            vec![rule(vec![cond(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(CLONE_NAMESPACE_FLAGS),
                0,
            )?])?],
        );
    }
    Ok(rules)
}

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGT_K: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
    Insn { code, jt, jf, k }
}

/// The errno overrides: a call above [`highest_known`] → `ENOSYS`; `clone3` without
/// `CAP_SYS_ADMIN` → `ENOSYS`; with `suppress_sync`, [`SYNC_CALLS`] → 0 without running;
/// anything else (and other ABIs, which the main filter handles) → allow.
fn overrides(caps: u64, suppress_sync: bool) -> Vec<Insn> {
    // (syscall, action) pairs tested one after another.
    let mut exact: Vec<(u32, u32)> = Vec::new();
    if !has(caps, CAP_SYS_ADMIN)
        && let Some(nr) = number("clone3")
    {
        exact.push((nr as u32, libc::SECCOMP_RET_ERRNO | ENOSYS));
    }
    if suppress_sync {
        for name in SYNC_CALLS {
            if let Some(nr) = number(name) {
                // Errno 0: the call "succeeds" without doing anything.
                exact.push((nr as u32, libc::SECCOMP_RET_ERRNO));
            }
        }
    }
    let mut p = vec![
        insn(LD_W_ABS, 0, 0, ARCH_OFFSET),
        insn(JEQ_K, 1, 0, AUDIT_ARCH),
        insn(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
        insn(LD_W_ABS, 0, 0, NR_OFFSET),
        insn(JGT_K, 0, 1, highest_known() as u32),
        insn(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | ENOSYS),
    ];
    for (nr, action) in exact {
        p.push(insn(JEQ_K, 0, 1, nr));
        p.push(insn(RET_K, 0, 0, action));
    }
    p.push(insn(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW));
    p
}

/// The filters to install, in order, for a sandbox that keeps the capability set `caps`
/// (after `execve`) and optionally turns syncs into no-ops.
pub fn compile(caps: u64, suppress_sync: bool) -> Result<Vec<Vec<Insn>>, SeccompError> {
    let arch = std::env::consts::ARCH;
    let target = seccompiler::TargetArch::try_from(arch).map_err(|_| SeccompError::Arch(arch))?;
    if NUMBERS.is_empty() {
        return Err(SeccompError::Arch(arch));
    }
    let main = SeccompFilter::new(
        allow_rules(caps)?,
        SeccompAction::Errno(EPERM),
        SeccompAction::Allow,
        target,
    )
    .map_err(SeccompError::Compile)?;
    let main: seccompiler::BpfProgram = main.try_into().map_err(SeccompError::Compile)?;
    let main = main.iter().map(|f| insn(f.code, f.jt, f.jf, f.k)).collect();
    Ok(vec![main, overrides(caps, suppress_sync)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_resolve_the_calls_every_program_needs() {
        for name in [
            "read",
            "write",
            "openat",
            "execve",
            "clone",
            "clone3",
            "exit_group",
            "mmap",
            "rt_sigreturn",
            "futex",
            "socket",
            "personality",
            "capset",
            "setresuid",
        ] {
            assert!(number(name).is_some(), "{name}");
        }
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(number("read"), Some(0));
            assert_eq!(number("clone3"), Some(435));
            assert_eq!(number("io_pgetevents"), Some(333));
            assert_eq!(highest_known(), 466);
        }
        assert_eq!(number("no_such_call"), None);
    }

    #[test]
    fn capabilities_decide_the_privileged_calls() {
        let docker = crate::sandbox::caps::DOCKER_DEFAULT;
        let with = allow_rules(docker | 1 << CAP_SYS_ADMIN).unwrap();
        let without = allow_rules(docker).unwrap();
        let mount = number("mount").unwrap();
        assert!(with.contains_key(&mount) && !without.contains_key(&mount));
        let clone = number("clone").unwrap();
        assert!(
            with[&clone].is_empty(),
            "clone unrestricted with CAP_SYS_ADMIN"
        );
        assert_eq!(without[&clone].len(), 1, "clone flags checked without it");
        assert!(
            without.contains_key(&number("chroot").unwrap()),
            "SYS_CHROOT is Docker's"
        );
        assert!(!without.contains_key(&number("reboot").unwrap()));
        assert!(!without.contains_key(&number("kexec_load").unwrap_or(-1)));
    }

    #[test]
    fn override_filter_shape() {
        let p = overrides(0, true);
        // arch check (3), ENOSYS above the table (3), clone3 (2), five syncs (10), allow (1)
        assert_eq!(p.len(), 3 + 3 + 2 + 2 * SYNC_CALLS.len() + 1);
        assert_eq!(p.last().unwrap().k, libc::SECCOMP_RET_ALLOW);
        let with_admin = overrides(1 << CAP_SYS_ADMIN, false);
        assert_eq!(with_admin.len(), 7, "no clone3 or sync entries");
    }

    #[test]
    fn compiles_for_both_profiles() {
        let docker = crate::sandbox::caps::DOCKER_DEFAULT;
        let filters = compile(docker, false).unwrap();
        assert_eq!(filters.len(), 2);
        assert!(filters[0].len() > ALLOWED.len() / 2);
        assert!(filters[0].len() < 4096, "within the kernel's BPF_MAXINSNS");
    }
}
