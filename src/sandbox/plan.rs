//! The sandbox's setup as data: which mounts, in which order, with which flags, then the
//! identity and privilege changes. Computed by pure code in the parent (so it is unit-tested
//! without root) and applied step by step in the child by [`super::exec::execute`].

use std::ffi::CString;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::caps;
use super::seccomp::Insn;
use crate::confine::{ConfineError, Resolver, Root};

/// Mount flags used by the plan (`libc::MS_*`).
pub type MountFlags = libc::c_ulong;

/// One setup action performed inside the child, before `execve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `sethostname` in the new UTS namespace.
    SetHostname(CString),
    /// Bring `lo` up in a new network namespace.
    LoopbackUp,
    /// `mount(2)`.
    Mount {
        /// The source (device, directory or name); `None` for a remount.
        source: Option<CString>,
        /// The mount point.
        target: CString,
        /// The filesystem type; `None` for binds and remounts.
        fstype: Option<CString>,
        /// `MS_*` flags.
        flags: MountFlags,
        /// Filesystem-specific options.
        data: Option<CString>,
    },
    /// `mkdir(2)`; an existing directory is fine.
    Mkdir {
        /// The directory.
        path: CString,
        /// Its permission bits.
        mode: u32,
    },
    /// Create an empty file as a bind-mount target; an existing file is fine.
    CreateFile {
        /// The file.
        path: CString,
        /// Its permission bits.
        mode: u32,
    },
    /// `symlink(target, link)`.
    Symlink {
        /// What the link points to.
        target: CString,
        /// The link's path.
        link: CString,
    },
    /// Hide a path: bind `null_device` over a file, an empty read-only tmpfs over a directory;
    /// skipped when the path does not exist on this kernel.
    MaskPath {
        /// The path to hide.
        path: CString,
        /// The sandbox's `/dev/null`, bound over files.
        null_device: CString,
    },
    /// Bind a path onto itself and remount it read-only; skipped when it does not exist.
    ReadonlyPath {
        /// The path.
        path: CString,
    },
    /// `pivot_root(new_root, new_root)` then detach the old root; `chroot` where the current
    /// root cannot be pivoted (an initramfs `rootfs`).
    PivotRoot {
        /// The new root directory.
        new_root: CString,
    },
    /// Remount the (already pivoted) root read-only, keeping these other flags.
    RemountRootReadonly {
        /// The root mount's other `MS_*` flags.
        flags: MountFlags,
    },
    /// `chdir(2)`.
    Chdir(CString),
    /// `setrlimit(2)`, already clamped to the host's hard limit.
    SetRlimit {
        /// The `RLIMIT_*` resource.
        resource: u32,
        /// The soft limit.
        soft: u64,
        /// The hard limit.
        hard: u64,
    },
    /// Drop every capability not in `keep` from the bounding set.
    DropBounding {
        /// The capabilities kept, one bit per capability number.
        keep: u64,
        /// The highest capability number the kernel knows.
        last_cap: u32,
    },
    /// `setgroups(2)`.
    SetGroups(Vec<libc::gid_t>),
    /// `setgid(2)`.
    SetGid(libc::gid_t),
    /// `setuid(2)`.
    SetUid(libc::uid_t),
    /// `capset(2)` for the calling process.
    SetCaps {
        /// The permitted set, one bit per capability number.
        permitted: u64,
        /// The effective set.
        effective: u64,
        /// The inheritable set.
        inheritable: u64,
    },
    /// `prctl(PR_SET_NO_NEW_PRIVS)`.
    NoNewPrivs,
    /// Install these seccomp filters, in order (see [`super::seccomp`]).
    Seccomp(Vec<Vec<Insn>>),
    /// `unshare(CLONE_NEWCGROUP)`: taken after the parent has moved the process into its
    /// cgroups, so the namespace's root is the sandbox's own cgroup.
    NewCgroupNamespace,
    /// `setns(2)` into a running sandbox's namespace (`exec`): `fd` is the parent's open
    /// `/proc/PID/ns/*` file, inherited by the child.
    Setns {
        /// The namespace file descriptor.
        fd: std::os::fd::RawFd,
        /// Its `CLONE_NEW*` type.
        nstype: libc::c_int,
    },
    /// Mount a cgroup hierarchy for the sandbox's view of `/sys/fs/cgroup`; a failure leaves
    /// the directory empty rather than failing the sandbox (the view is informational).
    MountCgroup {
        /// The mount point.
        target: CString,
        /// `cgroup2`, or `cgroup` for a v1 hierarchy.
        fstype: CString,
        /// The v1 controllers or name option.
        data: Option<CString>,
    },
}

/// The `/proc/PID/ns/` name of a namespace type.
pub fn ns_name(nstype: libc::c_int) -> &'static str {
    match nstype {
        libc::CLONE_NEWCGROUP => "cgroup",
        libc::CLONE_NEWIPC => "ipc",
        libc::CLONE_NEWUTS => "uts",
        libc::CLONE_NEWNET => "net",
        libc::CLONE_NEWPID => "pid",
        libc::CLONE_NEWNS => "mnt",
        _ => "unknown",
    }
}

fn lossy(c: &CString) -> String {
    c.to_string_lossy().into_owned()
}

fn flag_names(flags: MountFlags) -> String {
    const NAMES: &[(MountFlags, &str)] = &[
        (libc::MS_RDONLY, "ro"),
        (libc::MS_NOSUID, "nosuid"),
        (libc::MS_NODEV, "nodev"),
        (libc::MS_NOEXEC, "noexec"),
        (libc::MS_REMOUNT, "remount"),
        (libc::MS_BIND, "bind"),
        (libc::MS_REC, "rec"),
        (libc::MS_PRIVATE, "private"),
        (libc::MS_SLAVE, "slave"),
        (libc::MS_STRICTATIME, "strictatime"),
    ];
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    names.join(",")
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::SetHostname(h) => write!(f, "sethostname {}", lossy(h)),
            Step::LoopbackUp => write!(f, "ifup lo"),
            Step::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => {
                write!(
                    f,
                    "mount {} on {} type {} ({})",
                    source.as_ref().map_or("none".into(), lossy),
                    lossy(target),
                    fstype.as_ref().map_or("none".into(), lossy),
                    flag_names(*flags)
                )?;
                if let Some(d) = data {
                    write!(f, " [{}]", lossy(d))?;
                }
                Ok(())
            }
            Step::Mkdir { path, mode } => write!(f, "mkdir {} {mode:o}", lossy(path)),
            Step::CreateFile { path, mode } => write!(f, "touch {} {mode:o}", lossy(path)),
            Step::Symlink { target, link } => write!(f, "ln -s {} {}", lossy(target), lossy(link)),
            Step::MaskPath { path, .. } => write!(f, "mask {}", lossy(path)),
            Step::ReadonlyPath { path } => write!(f, "readonly {}", lossy(path)),
            Step::PivotRoot { new_root } => write!(f, "pivot_root {}", lossy(new_root)),
            Step::RemountRootReadonly { .. } => write!(f, "remount / read-only"),
            Step::Chdir(p) => write!(f, "chdir {}", lossy(p)),
            Step::SetRlimit {
                resource,
                soft,
                hard,
            } => write!(f, "setrlimit {resource} {soft}:{hard}"),
            Step::DropBounding { keep, .. } => write!(f, "bounding set {keep:#x}"),
            Step::SetGroups(g) => write!(f, "setgroups {g:?}"),
            Step::SetGid(g) => write!(f, "setgid {g}"),
            Step::SetUid(u) => write!(f, "setuid {u}"),
            Step::SetCaps {
                permitted,
                effective,
                inheritable,
            } => write!(
                f,
                "capset permitted {permitted:#x} effective {effective:#x} inheritable {inheritable:#x}"
            ),
            Step::NoNewPrivs => write!(f, "no_new_privs"),
            Step::Seccomp(filters) => write!(
                f,
                "seccomp {}",
                filters
                    .iter()
                    .map(|p| p.len().to_string())
                    .collect::<Vec<_>>()
                    .join("+")
            ),
            Step::NewCgroupNamespace => write!(f, "unshare cgroup namespace"),
            Step::Setns { nstype, .. } => write!(f, "setns {}", ns_name(*nstype)),
            Step::MountCgroup {
                target,
                fstype,
                data,
            } => write!(
                f,
                "mount {} on {} ({})",
                lossy(fstype),
                lossy(target),
                data.as_ref().map_or(String::new(), lossy)
            ),
        }
    }
}

/// Errors of plan building: paths that cannot be expressed or resolved.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A path contains a NUL byte.
    #[error("path {path:?} contains a NUL byte")]
    Nul {
        /// The path.
        path: PathBuf,
    },
    /// Too many symlinks while resolving a path inside the root.
    #[error("too many levels of symbolic links resolving {path} inside {root}")]
    SymlinkLoop {
        /// The root directory.
        root: PathBuf,
        /// The path, as seen inside the root.
        path: PathBuf,
    },
    /// Reading the root tree failed while resolving a path.
    #[error("resolving {path} inside the root: {source}")]
    Io {
        /// The path, as seen inside the root.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A bind mount target that would cover a filesystem the sandbox mounts itself.
    #[error("bind mount target {path} lies under /proc or /sys, which the sandbox mounts itself")]
    ReservedTarget {
        /// The target, as seen inside the root.
        path: PathBuf,
    },
    /// The root could not be opened to resolve paths inside it.
    #[error(transparent)]
    Root(#[from] ConfineError),
    /// The seccomp policy could not be compiled.
    #[error(transparent)]
    Seccomp(#[from] super::seccomp::SeccompError),
}

pub(crate) fn cstring(path: &Path) -> Result<CString, PlanError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| PlanError::Nul {
        path: path.to_path_buf(),
    })
}

/// Resolve `path` (interpreted as seen from inside `root`) to a host path under `root`,
/// following symlinks as the sandboxed process would: absolute links restart at `root`, `..`
/// never climbs above it. Components that do not exist are taken literally. The lookup is
/// confine's in-root walk ([`Root::resolve`]).
pub fn resolve_in_root(root: &Path, path: &Path) -> Result<PathBuf, PlanError> {
    let dir = Root::open_with(root, Resolver::Walk)?;
    let rel = dir.resolve(path).map_err(|source| {
        if source.raw_os_error() == Some(libc::ELOOP) {
            PlanError::SymlinkLoop {
                root: root.to_path_buf(),
                path: path.to_path_buf(),
            }
        } else {
            PlanError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    Ok(root.join(rel))
}

/// The isolation profile decides namespaces, devices, capabilities and hardening.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// For package maintainer scripts and build hooks: writable root, the build capability set
    /// ([`caps::BUILD_DEFAULT`]), Docker's seccomp profile with syncs as no-ops, device policy,
    /// masked and read-only `/proc` paths; no `no_new_privs`.
    #[default]
    Build,
    /// For running images: Docker's default capabilities and seccomp profile, `no_new_privs`,
    /// device policy, masked and read-only `/proc` paths, clamped rlimits.
    Container,
}

/// Which network the command sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Share the host's network namespace (builds download and resolve names).
    #[default]
    Host,
    /// A new network namespace with only `lo`, up.
    None,
    /// A new network namespace connected to the host by the user-mode networking helper
    /// ([`crate::sandbox::net`]): outbound access, DNS and published ports.
    Private,
}

/// A host path made visible inside the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Path on the host (file or directory).
    pub source: PathBuf,
    /// Path inside the root; created (as an empty file or directory) when missing.
    pub target: PathBuf,
    /// Mount read-only.
    pub read_only: bool,
}

/// The paths Docker hides under `/proc` and `/sys` (moby `oci/defaults.go`).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// The paths Docker makes read-only under `/proc`.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Host device nodes bind-mounted into the sandbox's `/dev`.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Everything the plan depends on, gathered (with any file system reads) by the caller.
#[derive(Debug, Clone)]
pub struct PlanInput {
    /// Canonical host path of the root tree.
    pub root: PathBuf,
    /// The isolation profile.
    pub profile: Profile,
    /// The network the command sees.
    pub network: Network,
    /// The hostname in a new UTS namespace; `None` keeps the host's.
    pub hostname: Option<String>,
    /// Bind mounts with targets already resolved to host paths under `root`, and whether the
    /// source is a directory.
    pub binds: Vec<(BindMount, PathBuf, bool)>,
    /// Where to bind the host's `resolv.conf` (resolved inside the root), when the root has one.
    pub resolv_conf: Option<(PathBuf, PathBuf)>,
    /// The pty slave to show as `/dev/console`.
    pub console: Option<PathBuf>,
    /// Whether the root is mounted read-only.
    pub read_only_root: bool,
    /// Working directory inside the root.
    pub cwd: PathBuf,
    /// The user id the command runs as.
    pub uid: u32,
    /// The group id the command runs as.
    pub gid: u32,
    /// The supplementary groups.
    pub groups: Vec<u32>,
    /// `(resource, soft, hard)`, already clamped to the host's hard limits.
    pub rlimits: Vec<(u32, u64, u64)>,
    /// Highest capability number the kernel knows (`/proc/sys/kernel/cap_last_cap`).
    pub last_cap: u32,
    /// `MS_RDONLY`, `MS_NOSUID`, `MS_NOEXEC` as the host mount holding the root has them: kept
    /// when the root's bind mount is remounted `nodev`.
    pub root_flags: MountFlags,
    /// The cgroup hierarchies to show under `/sys/fs/cgroup` (read-only, in the sandbox's
    /// cgroup namespace).
    pub cgroup_view: Vec<CgroupView>,
    /// The capabilities the command keeps, over the profile's default set.
    pub caps: Option<u64>,
    /// tmpfs mounts: the target resolved under `root`, `MS_*` flags, and the data options.
    pub tmpfs: Vec<(PathBuf, MountFlags, String)>,
    /// The size of `/dev/shm` in bytes (64 MiB by default, as Docker's).
    pub shm_size: Option<u64>,
}

/// One cgroup hierarchy of the sandbox's `/sys/fs/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupView {
    /// Directory below `/sys/fs/cgroup`; empty for a pure cgroup v2 host, where the v2
    /// hierarchy is `/sys/fs/cgroup` itself.
    pub dir: String,
    /// `cgroup` or `cgroup2`.
    pub fstype: &'static str,
    /// Mount options naming the v1 controllers (`memory`, `cpu,cpuacct`, `none,name=systemd`).
    pub options: Option<String>,
}

/// A tmpfs mount's options as `--tmpfs PATH:OPTIONS` gives them (`rw,size=64m,mode=1777`,
/// `exec`, `ro`): the `MS_*` flags, starting from `nosuid,nodev,noexec` as Docker's, and the
/// options the kernel's tmpfs takes as data.
pub fn tmpfs_options(options: &str) -> (MountFlags, String) {
    let mut flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let mut data = Vec::new();
    for o in options.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        match o {
            "ro" => flags |= libc::MS_RDONLY,
            "rw" => flags &= !libc::MS_RDONLY,
            "exec" => flags &= !libc::MS_NOEXEC,
            "noexec" => flags |= libc::MS_NOEXEC,
            "suid" => flags &= !libc::MS_NOSUID,
            "nosuid" => flags |= libc::MS_NOSUID,
            "dev" => flags &= !libc::MS_NODEV,
            "nodev" => flags |= libc::MS_NODEV,
            // Propagation and copy-up words podman accepts; mounts here are private anyway.
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "tmpcopyup"
            | "notmpcopyup" => {}
            other => data.push(other.to_string()),
        }
    }
    (flags, data.join(","))
}

/// The capabilities the command keeps (bounding, permitted and effective sets, for root).
pub fn kept_caps(profile: Profile) -> u64 {
    match profile {
        Profile::Container => caps::DOCKER_DEFAULT,
        Profile::Build => caps::BUILD_DEFAULT,
    }
}

/// The clone flags (namespaces) for this input.
pub fn clone_flags(network: Network) -> libc::c_int {
    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    if network != Network::Host {
        flags |= libc::CLONE_NEWNET;
    }
    flags
}

struct Builder {
    steps: Vec<Step>,
}

impl Builder {
    fn mount(
        &mut self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MountFlags,
        data: Option<&str>,
    ) -> Result<(), PlanError> {
        let source = source.map(cstring).transpose()?;
        let step = Step::Mount {
            source,
            target: cstring(target)?,
            fstype: fstype.map(|s| CString::new(s).unwrap_or_default()),
            flags,
            data: data.map(|s| CString::new(s).unwrap_or_default()),
        };
        self.steps.push(step);
        Ok(())
    }
    fn mkdir(&mut self, path: &Path, mode: u32) -> Result<(), PlanError> {
        self.steps.push(Step::Mkdir {
            path: cstring(path)?,
            mode,
        });
        Ok(())
    }
    /// `mkdir -p` for the components of `path` below `root`.
    fn mkdir_all(&mut self, root: &Path, path: &Path) -> Result<(), PlanError> {
        let Ok(rel) = path.strip_prefix(root) else {
            return Ok(());
        };
        let mut cur = root.to_path_buf();
        for c in rel.components() {
            cur.push(c);
            self.mkdir(&cur, 0o755)?;
        }
        Ok(())
    }
}

fn is_under(path: &Path, prefix: &str) -> bool {
    path.starts_with(prefix)
}

/// The read-only `/sys/fs/cgroup` of the sandbox's cgroup namespace: the v2 hierarchy itself
/// on a pure v2 host, else a tmpfs with each hierarchy below it (as the host lays them out).
fn cgroup_view(b: &mut Builder, sys_dir: &Path, view: &[CgroupView]) -> Result<(), PlanError> {
    if view.is_empty() {
        return Ok(());
    }
    let base = sys_dir.join("fs/cgroup");
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let cgroup = |target: &Path, v: &CgroupView| -> Result<Step, PlanError> {
        Ok(Step::MountCgroup {
            target: cstring(target)?,
            fstype: CString::new(v.fstype).unwrap_or_default(),
            data: v
                .options
                .as_deref()
                .map(|o| CString::new(o).unwrap_or_default()),
        })
    };
    if let [only] = view
        && only.dir.is_empty()
    {
        b.steps.push(cgroup(&base, only)?);
        return Ok(());
    }
    b.mount(
        Some(Path::new("tmpfs")),
        &base,
        Some("tmpfs"),
        flags,
        Some("mode=755,size=64k"),
    )?;
    for v in view.iter().filter(|v| !v.dir.is_empty()) {
        let target = base.join(&v.dir);
        b.mkdir(&target, 0o555)?;
        b.steps.push(cgroup(&target, v)?);
    }
    b.mount(
        None,
        &base,
        None,
        libc::MS_REMOUNT | libc::MS_RDONLY | flags,
        Some("mode=755,size=64k"),
    )
}

/// Compute the ordered setup steps for a sandbox.
pub fn build(input: &PlanInput) -> Result<Vec<Step>, PlanError> {
    let root = &input.root;
    let mut b = Builder { steps: Vec::new() };
    b.steps.push(Step::NewCgroupNamespace);

    if let Some(h) = &input.hostname {
        b.steps
            .push(Step::SetHostname(CString::new(h.as_bytes()).map_err(
                |_| PlanError::Nul {
                    path: PathBuf::from(h),
                },
            )?));
    }
    if input.network != Network::Host {
        b.steps.push(Step::LoopbackUp);
    }

    // Nothing mounted from here on may reach the host: every mount becomes a slave of the
    // host's (host changes still arrive, ours never leave), then the root becomes a mount
    // point of its own, which pivot_root requires.
    b.mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_SLAVE,
        None,
    )?;
    b.mount(Some(root), root, None, libc::MS_BIND | libc::MS_REC, None)?;
    // Device nodes the command creates in the root cannot be opened (`nodev`); the nodes
    // the sandbox offers are bind mounts of the host's own, which keep their mount's flags.
    b.mount(
        None,
        root,
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NODEV | input.root_flags,
        None,
    )?;

    let nosuid_nodev_noexec = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let proc_dir = root.join("proc");
    b.mkdir(&proc_dir, 0o555)?;
    b.mount(
        Some(Path::new("proc")),
        &proc_dir,
        Some("proc"),
        nosuid_nodev_noexec,
        None,
    )?;
    let sys_dir = root.join("sys");
    b.mkdir(&sys_dir, 0o555)?;
    b.mount(
        Some(Path::new("sysfs")),
        &sys_dir,
        Some("sysfs"),
        nosuid_nodev_noexec | libc::MS_RDONLY,
        None,
    )?;
    cgroup_view(&mut b, &sys_dir, &input.cgroup_view)?;

    let dev = root.join("dev");
    b.mkdir(&dev, 0o755)?;
    b.mount(
        Some(Path::new("tmpfs")),
        &dev,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for name in DEVICES {
        let target = dev.join(name);
        b.steps.push(Step::CreateFile {
            path: cstring(&target)?,
            mode: 0o666,
        });
        b.mount(
            Some(&Path::new("/dev").join(name)),
            &target,
            None,
            libc::MS_BIND,
            None,
        )?;
    }
    b.mkdir(&dev.join("pts"), 0o755)?;
    b.mount(
        Some(Path::new("devpts")),
        &dev.join("pts"),
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    b.mkdir(&dev.join("shm"), 0o1777)?;
    b.mount(
        Some(Path::new("shm")),
        &dev.join("shm"),
        Some("tmpfs"),
        nosuid_nodev_noexec,
        Some(&format!(
            "mode=1777,size={}k",
            input.shm_size.unwrap_or(64 << 20).div_ceil(1024)
        )),
    )?;
    b.mkdir(&dev.join("mqueue"), 0o755)?;
    b.mount(
        Some(Path::new("mqueue")),
        &dev.join("mqueue"),
        Some("mqueue"),
        nosuid_nodev_noexec,
        None,
    )?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        b.steps.push(Step::Symlink {
            target: cstring(Path::new(target))?,
            link: cstring(&dev.join(link))?,
        });
    }
    if let Some(console) = &input.console {
        let target = dev.join("console");
        b.steps.push(Step::CreateFile {
            path: cstring(&target)?,
            mode: 0o620,
        });
        b.mount(Some(console), &target, None, libc::MS_BIND, None)?;
    }

    if let Some((host, target)) = &input.resolv_conf {
        b.mount(Some(host), target, None, libc::MS_BIND, None)?;
        b.mount(
            None,
            target,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
            None,
        )?;
    }

    for (bind, target, is_dir) in &input.binds {
        if is_under(target, &proc_dir.to_string_lossy())
            || is_under(target, &sys_dir.to_string_lossy())
        {
            return Err(PlanError::ReservedTarget {
                path: bind.target.clone(),
            });
        }
        if let Some(parent) = target.parent() {
            b.mkdir_all(root, parent)?;
        }
        if *is_dir {
            b.mkdir(target, 0o755)?;
        } else {
            b.steps.push(Step::CreateFile {
                path: cstring(target)?,
                mode: 0o644,
            });
        }
        b.mount(
            Some(&bind.source),
            target,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )?;
        let ro = if bind.read_only { libc::MS_RDONLY } else { 0 };
        b.mount(
            None,
            target,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NODEV | ro | libc::MS_REC,
            None,
        )?;
    }

    // Both profiles: a build hook is as untrusted as a container (packages and hooks come
    // from outside), so neither may write the host's sysctls or read what Docker hides.
    for p in MASKED_PATHS {
        b.steps.push(Step::MaskPath {
            path: cstring(&root.join(&p[1..]))?,
            null_device: cstring(Path::new("/dev/null"))?,
        });
    }
    for p in READONLY_PATHS {
        b.steps.push(Step::ReadonlyPath {
            path: cstring(&root.join(&p[1..]))?,
        });
    }

    for (target, flags, data) in &input.tmpfs {
        if is_under(target, &proc_dir.to_string_lossy())
            || is_under(target, &sys_dir.to_string_lossy())
        {
            return Err(PlanError::ReservedTarget {
                path: Path::new("/").join(target.strip_prefix(root).unwrap_or(target)),
            });
        }
        b.mkdir_all(root, target)?;
        b.mount(
            Some(Path::new("tmpfs")),
            target,
            Some("tmpfs"),
            *flags,
            Some(data),
        )?;
    }

    b.steps.push(Step::PivotRoot {
        new_root: cstring(root)?,
    });
    if input.read_only_root {
        b.steps.push(Step::RemountRootReadonly {
            flags: input.root_flags | libc::MS_NODEV,
        });
    }
    b.steps.push(Step::Chdir(cstring(&input.cwd)?));
    identity(&mut b, &Identity::of(input))?;
    Ok(b.steps)
}

/// Who the command runs as and with which privileges: the steps after the root is in place,
/// shared by a new sandbox and a process joining one.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The isolation profile (capabilities, seccomp).
    pub profile: Profile,
    /// `(resource, soft, hard)`, already clamped.
    pub rlimits: Vec<(u32, u64, u64)>,
    /// Highest capability number the kernel knows.
    pub last_cap: u32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// The capabilities kept (the profile's set unless changed).
    pub caps: u64,
}

impl Identity {
    fn of(input: &PlanInput) -> Identity {
        Identity {
            caps: input.caps.unwrap_or_else(|| kept_caps(input.profile)),
            profile: input.profile,
            rlimits: input.rlimits.clone(),
            last_cap: input.last_cap,
            uid: input.uid,
            gid: input.gid,
            groups: input.groups.clone(),
        }
    }
}

/// The steps of a process joining a running sandbox (`exec`): the namespaces in `ns` (type and
/// the parent's open fd; the cgroup namespace first, the mount namespace last, since entering it
/// moves the root), the working directory, then the same identity a new sandbox's command gets.
pub fn build_join(
    ns: &[(std::os::fd::RawFd, libc::c_int)],
    cwd: &Path,
    who: &Identity,
) -> Result<Vec<Step>, PlanError> {
    let mut b = Builder { steps: Vec::new() };
    for &(fd, nstype) in ns {
        b.steps.push(Step::Setns { fd, nstype });
    }
    b.steps.push(Step::Chdir(cstring(cwd)?));
    identity(&mut b, who)?;
    Ok(b.steps)
}

fn identity(b: &mut Builder, input: &Identity) -> Result<(), PlanError> {
    let container = input.profile == Profile::Container;
    for &(resource, soft, hard) in &input.rlimits {
        b.steps.push(Step::SetRlimit {
            resource,
            soft,
            hard,
        });
    }
    let keep = input.caps;
    b.steps.push(Step::DropBounding {
        keep,
        last_cap: input.last_cap,
    });
    b.steps.push(Step::SetGroups(input.groups.clone()));
    b.steps.push(Step::SetGid(input.gid));
    b.steps.push(Step::SetUid(input.uid));
    // Only root keeps capabilities across setuid (and execve); the inheritable set is empty.
    let set = if input.uid == 0 { keep } else { 0 };
    let filters = super::seccomp::compile(keep, !container)?;
    if container {
        b.steps.push(Step::SetCaps {
            permitted: set,
            effective: set,
            inheritable: 0,
        });
        b.steps.push(Step::NoNewPrivs);
        // Last, as crun does: every setup call above runs unfiltered.
        b.steps.push(Step::Seccomp(filters));
    } else {
        // Installed while CAP_SYS_ADMIN is still effective, so no no_new_privs is needed (it
        // would disable the setuid programs maintainer scripts may run); capset comes after,
        // and the filter allows it.
        b.steps.push(Step::Seccomp(filters));
        b.steps.push(Step::SetCaps {
            permitted: set,
            effective: set,
            inheritable: 0,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(root: &Path, profile: Profile) -> PlanInput {
        PlanInput {
            root: root.to_path_buf(),
            profile,
            network: Network::Host,
            hostname: Some("box".into()),
            binds: Vec::new(),
            resolv_conf: None,
            console: None,
            read_only_root: false,
            cwd: PathBuf::from("/"),
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

    fn lines(steps: &[Step]) -> Vec<String> {
        steps.iter().map(std::string::ToString::to_string).collect()
    }

    fn position(lines: &[String], needle: &str) -> usize {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no step containing {needle:?} in {lines:#?}"))
    }

    #[test]
    fn build_profile_order_and_flags() {
        let steps = build(&input(Path::new("/r"), Profile::Build)).unwrap();
        let l = lines(&steps);
        assert_eq!(l[0], "unshare cgroup namespace");
        assert_eq!(l[1], "sethostname box");
        assert_eq!(l[2], "mount none on / type none (rec,slave)");
        assert_eq!(l[3], "mount /r on /r type none (bind,rec)");
        assert_eq!(l[4], "mount none on /r type none (nodev,remount,bind)");
        assert!(l.contains(&"mount proc on /r/proc type proc (nosuid,nodev,noexec)".to_string()));
        assert!(
            l.contains(&"mount sysfs on /r/sys type sysfs (ro,nosuid,nodev,noexec)".to_string())
        );
        assert!(l.contains(
            &"mount devpts on /r/dev/pts type devpts (nosuid,noexec) [newinstance,ptmxmode=0666,mode=0620,gid=5]"
                .to_string()
        ));
        assert!(l.contains(&"ln -s pts/ptmx /r/dev/ptmx".to_string()));
        assert!(l.contains(&"ln -s /proc/self/fd /r/dev/fd".to_string()));
        for d in DEVICES {
            let touch = position(&l, &format!("touch /r/dev/{d} "));
            let bind = position(
                &l,
                &format!("mount /dev/{d} on /r/dev/{d} type none (bind)"),
            );
            assert!(touch < bind);
            assert!(position(&l, "type tmpfs (nosuid,nodev,strictatime) [mode=755") < touch);
        }
        // The root is bound before anything is mounted into it, and pivoted after.
        let pivot = position(&l, "pivot_root /r");
        assert!(position(&l, "/r/dev/mqueue type mqueue") < pivot);
        assert!(pivot < position(&l, "chdir /"));
        // Build drops to its own capability set, masks what Docker masks, and installs the
        // filters (with sync suppression) while still privileged, before capset; no
        // no_new_privs, so setuid programs keep working in maintainer scripts.
        assert!(l.contains(&format!("bounding set {:#x}", caps::BUILD_DEFAULT)));
        assert!(l.contains(&"mask /r/proc/kcore".to_string()));
        assert!(l.contains(&"readonly /r/proc/sys".to_string()));
        assert!(!l.iter().any(|s| s == "no_new_privs"));
        assert!(!l.iter().any(|s| s == "ifup lo"));
        let seccomp = position(&l, "seccomp ");
        assert!(position(&l, "setuid 0") < seccomp);
        assert!(seccomp < position(&l, "capset"));
        assert!(l.last().unwrap().starts_with("capset"));
    }

    #[test]
    fn container_profile_hardening() {
        let mut i = input(Path::new("/r"), Profile::Container);
        i.network = Network::None;
        i.read_only_root = true;
        i.uid = 1000;
        i.gid = 100;
        i.groups = vec![100, 27];
        i.rlimits = vec![(libc::RLIMIT_NOFILE, 20000, 20000)];
        let steps = build(&i).unwrap();
        let l = lines(&steps);
        assert!(l.contains(&"ifup lo".to_string()));
        for p in MASKED_PATHS {
            assert!(l.contains(&format!("mask /r{p}")), "{p}");
        }
        for p in READONLY_PATHS {
            assert!(l.contains(&format!("readonly /r{p}")), "{p}");
        }
        let pivot = position(&l, "pivot_root");
        assert!(position(&l, "mask /r/proc/kcore") < pivot);
        assert!(pivot < position(&l, "remount / read-only"));
        let bounding = position(&l, "bounding set 0xa80425fb");
        let setuid = position(&l, "setuid 1000");
        assert!(
            bounding < setuid,
            "bounding set is dropped while still root"
        );
        assert!(position(&l, "setgroups [100, 27]") < position(&l, "setgid 100"));
        assert!(position(&l, "setgid 100") < setuid);
        assert!(l.contains(&"capset permitted 0x0 effective 0x0 inheritable 0x0".to_string()));
        // no_new_privs, then the filters last of all.
        assert!(position(&l, "no_new_privs") < position(&l, "seccomp "));
        assert!(l.last().unwrap().starts_with("seccomp "));
        assert!(position(&l, "setrlimit 7 20000:20000") < setuid);
        assert_eq!(
            clone_flags(Network::None) & libc::CLONE_NEWNET,
            libc::CLONE_NEWNET
        );
        assert_eq!(clone_flags(Network::Host) & libc::CLONE_NEWNET, 0);
        assert_eq!(
            clone_flags(Network::Private) & libc::CLONE_NEWNET,
            libc::CLONE_NEWNET
        );
    }

    #[test]
    fn container_root_keeps_docker_default_caps() {
        let steps = build(&input(Path::new("/r"), Profile::Container)).unwrap();
        assert!(steps.contains(&Step::SetCaps {
            permitted: caps::DOCKER_DEFAULT,
            effective: caps::DOCKER_DEFAULT,
            inheritable: 0
        }));
    }

    #[test]
    fn binds_create_targets_and_remount_readonly() {
        let mut i = input(Path::new("/r"), Profile::Build);
        i.binds = vec![
            (
                BindMount {
                    source: "/host/cache".into(),
                    target: "/var/cache/apt".into(),
                    read_only: true,
                },
                PathBuf::from("/r/var/cache/apt"),
                true,
            ),
            (
                BindMount {
                    source: "/host/file".into(),
                    target: "/etc/hosts".into(),
                    read_only: false,
                },
                PathBuf::from("/r/etc/hosts"),
                false,
            ),
        ];
        i.resolv_conf = Some(("/etc/resolv.conf".into(), "/r/etc/resolv.conf".into()));
        let l = lines(&build(&i).unwrap());
        let mk = position(&l, "mkdir /r/var/cache/apt ");
        assert!(position(&l, "mkdir /r/var ") < mk);
        let bind = position(
            &l,
            "mount /host/cache on /r/var/cache/apt type none (bind,rec)",
        );
        assert!(mk < bind);
        assert!(
            bind < position(
                &l,
                "mount none on /r/var/cache/apt type none (ro,nodev,remount,bind,rec)"
            )
        );
        assert!(
            position(&l, "touch /r/etc/hosts") < position(&l, "mount /host/file on /r/etc/hosts")
        );
        assert!(
            !l.iter()
                .any(|s| s.contains("on /r/etc/hosts type none (ro"))
        );
        assert!(
            l.contains(&"mount none on /r/etc/resolv.conf type none (ro,remount,bind)".to_string())
        );
        assert!(position(&l, "/r/etc/resolv.conf") < position(&l, "pivot_root"));
    }

    #[test]
    fn bind_under_proc_is_refused() {
        let mut i = input(Path::new("/r"), Profile::Build);
        i.binds = vec![(
            BindMount {
                source: "/x".into(),
                target: "/proc/x".into(),
                read_only: false,
            },
            PathBuf::from("/r/proc/x"),
            true,
        )];
        assert!(matches!(build(&i), Err(PlanError::ReservedTarget { .. })));
    }

    #[test]
    fn resolve_follows_links_inside_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
        std::os::unix::fs::symlink("/etc/../../../host", root.join("escape")).unwrap();
        std::os::unix::fs::symlink("../../../../outside", root.join("usr/up")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert_eq!(
            resolve_in_root(root, Path::new("/bin/sh")).unwrap(),
            root.join("usr/bin/sh")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("/escape/x")).unwrap(),
            root.join("host/x")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("usr/up")).unwrap(),
            root.join("outside")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("/../../etc")).unwrap(),
            root.join("etc")
        );
        assert!(matches!(
            resolve_in_root(root, Path::new("/loop")),
            Err(PlanError::SymlinkLoop { .. })
        ));
    }
}
