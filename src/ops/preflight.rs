//! The checks an operation makes before any download or write: privileges, the kernel, and free
//! space where it will write. Each problem is one line; all of them are reported together, so a
//! user without root on an old kernel learns both at once instead of after minutes of downloads.

use std::path::{Path, PathBuf};

/// The oldest kernel the sandbox runs on: `close_range(CLOSE_RANGE_CLOEXEC)` (5.11) keeps the
/// parent's descriptors out of build scripts and containers, and `pidfd_open` (5.3) watches them.
pub const MIN_KERNEL: (u32, u32) = (5, 11);

/// The capabilities a build needs, by number (`capabilities(7)`) and name: unpacking packages
/// as their owners (`CHOWN`, `FOWNER`, `DAC_OVERRIDE`, `MKNOD`, `SETFCAP`), and building the sandbox
/// (`SYS_ADMIN` for namespaces and mounts, `SYS_CHROOT`, `SETUID`/`SETGID`, `KILL`).
const CAPABILITIES: &[(u32, &str)] = &[
    (0, "CAP_CHOWN"),
    (1, "CAP_DAC_OVERRIDE"),
    (3, "CAP_FOWNER"),
    (5, "CAP_KILL"),
    (6, "CAP_SETGID"),
    (7, "CAP_SETUID"),
    (18, "CAP_SYS_CHROOT"),
    (21, "CAP_SYS_ADMIN"),
    (27, "CAP_MKNOD"),
    (31, "CAP_SETFCAP"),
];

/// The namespaces the build sandbox enters (`/proc/self/ns/` names).
const NAMESPACES: &[&str] = &["mnt", "pid", "uts", "ipc", "net", "cgroup"];

/// Free space the operation wants on a filesystem, named by a path on it.
#[derive(Debug, Clone)]
pub struct Space {
    /// Where it writes (need not exist yet: its nearest existing ancestor is measured).
    pub path: PathBuf,
    /// What it is, for the message ("target directory", "download cache").
    pub what: &'static str,
    /// Bytes a usual image takes there: less is a warning (a small image may still fit, and
    /// the unpack bounds stop a full disk cleanly).
    pub bytes: u64,
}

/// What an operation needs of the host.
#[derive(Debug, Clone, Default)]
pub struct Needs {
    /// Root's capabilities and the sandbox's namespaces (everything that unpacks or runs
    /// scripts: build, prepare, create).
    pub sandbox: bool,
    /// Free space, per place written.
    pub space: Vec<Space>,
    /// The machine architecture (`--target-arch` name) whose programs the operation runs
    /// (package scripts): probed, so a foreign build without qemu-user fails at once.
    pub executes: Option<String>,
}

/// The least free space `build`/`prepare` want for the root tree and the image files: a
/// minimal Debian image takes about 150 MB as a tree and as much again as each archive.
pub const MIN_FREE_WORK: u64 = 1_000_000_000;
/// The least free space wanted in the download cache.
pub const MIN_FREE_CACHE: u64 = 250_000_000;
/// Free space below which nothing is built at all: the packages' metadata alone takes more.
pub const FLOOR: u64 = 32_000_000;

/// What the checks found: errors stop the operation, warnings are said and it goes on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// One line each.
    pub errors: Vec<String>,
    /// One line each.
    pub warnings: Vec<String>,
}

/// What the checks read of the host; a separate value so that the decisions can be tested
/// with any host.
#[derive(Debug, Clone)]
pub struct Host {
    /// The effective uid.
    pub euid: u32,
    /// The effective capability set (`CapEff` of `/proc/self/status`).
    pub capabilities: u64,
    /// The kernel release (`uname -r`).
    pub kernel: String,
    /// Namespaces of [`NAMESPACES`] this kernel lacks.
    pub missing_namespaces: Vec<&'static str>,
    /// Whether the kernel has seccomp filters.
    pub seccomp: bool,
}

impl Host {
    /// This machine, as the current process sees it.
    pub fn current() -> Host {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let capabilities = field("CapEff")
            .and_then(|v| u64::from_str_radix(v, 16).ok())
            .unwrap_or(0);
        Host {
            euid: nix::unistd::geteuid().as_raw(),
            capabilities,
            kernel: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            missing_namespaces: NAMESPACES
                .iter()
                .filter(|ns| !Path::new("/proc/self/ns").join(ns).exists())
                .copied()
                .collect(),
            // The field is there when the kernel was built with seccomp.
            seccomp: field("Seccomp").is_some()
                && Path::new("/proc/sys/kernel/seccomp/actions_avail").exists(),
        }
    }
}

/// The kernel release's major and minor version (`6.1.0-18-amd64` → (6, 1)).
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Free bytes for an unprivileged writer on the filesystem holding `path` or, when it does not
/// exist yet, its nearest existing ancestor.
fn free_bytes(path: &Path) -> Option<u64> {
    let abs = std::path::absolute(path).ok()?;
    let existing = abs.ancestors().find(|p| p.exists())?;
    let st = nix::sys::statvfs::statvfs(existing).ok()?;
    Some(st.blocks_available().saturating_mul(st.fragment_size()))
}

fn human(bytes: u64) -> String {
    // Whole MB read well at the sizes involved; the exact figure is not the point.
    #[allow(clippy::cast_precision_loss)]
    let mb = bytes as f64 / 1e6;
    if mb >= 1000.0 {
        format!("{:.1} GB", mb / 1000.0)
    } else {
        format!("{mb:.0} MB")
    }
}

/// What `host` lacks for `needs`; `free` measures a path's filesystem.
pub fn problems(host: &Host, needs: &Needs, free: &dyn Fn(&Path) -> Option<u64>) -> Findings {
    let mut findings = Findings::default();
    let out = &mut findings.errors;
    if needs.sandbox {
        let missing: Vec<&str> = CAPABILITIES
            .iter()
            .filter(|(bit, _)| host.capabilities & (1u64 << bit) == 0)
            .map(|(_, name)| *name)
            .collect();
        if !missing.is_empty() {
            // A plain user lacks them all: naming ten capabilities would only hide the point.
            let who = match (host.euid, missing.len() == CAPABILITIES.len()) {
                (0, _) => format!("root without {}", missing.join(", ")),
                (uid, true) => format!("uid {uid}"),
                (uid, false) => format!("uid {uid} without {}", missing.join(", ")),
            };
            out.push(format!(
                "this needs root (it unpacks packages as their owners and runs their scripts in \
                 namespaces); running as {who}: run it as root, for example with sudo"
            ));
        }
        match kernel_version(&host.kernel) {
            Some(v) if v < MIN_KERNEL => out.push(format!(
                "kernel {} is too old: the build sandbox needs Linux {}.{} or newer",
                host.kernel, MIN_KERNEL.0, MIN_KERNEL.1
            )),
            _ => {}
        }
        if !host.missing_namespaces.is_empty() {
            out.push(format!(
                "the kernel has no {} namespaces, which the build sandbox needs",
                host.missing_namespaces.join(", ")
            ));
        }
        if !host.seccomp {
            out.push(
                "the kernel has no seccomp filters, which the build sandbox needs".to_string(),
            );
        }
    }
    for s in &needs.space {
        let Some(have) = free(&s.path) else {
            continue;
        };
        if have < FLOOR {
            findings.errors.push(format!(
                "{}: {} free for the {}; nothing can be built in less than {}",
                s.path.display(),
                human(have),
                s.what,
                human(FLOOR)
            ));
        } else if have < s.bytes {
            findings.warnings.push(format!(
                "{}: only {} free for the {}, where a minimal Debian image takes about {}: \
                 the build may run out of space",
                s.path.display(),
                human(have),
                s.what,
                human(s.bytes)
            ));
        }
    }
    findings
}

/// Checks this host for `needs`: every error found, one line each, in one error; warnings go
/// to `reporter`.
pub fn check(needs: &Needs, reporter: &dyn super::Reporter) -> Result<(), super::OpsError> {
    let mut findings = problems(&Host::current(), needs, &free_bytes);
    if let Some(arch) = &needs.executes
        && let Err(e) = probe(arch, needs)
    {
        findings.errors.push(e);
    }
    for w in &findings.warnings {
        reporter.warn(w);
    }
    if findings.errors.is_empty() {
        Ok(())
    } else {
        Err(super::OpsError::Preflight(findings.errors))
    }
}

/// Runs the probe of [`crate::binfmt`] for `arch` in a temporary directory, else (a `noexec`
/// temporary filesystem) beside the first place the operation writes.
fn probe(arch: &str, needs: &Needs) -> Result<(), String> {
    let places = std::iter::once(std::env::temp_dir()).chain(
        needs
            .space
            .first()
            .and_then(|s| std::path::absolute(&s.path).ok())
            .and_then(|p| p.ancestors().find(|a| a.is_dir()).map(Path::to_path_buf)),
    );
    let mut last = "no directory could hold a probe program".to_string();
    for dir in places {
        let Ok(scratch) = tempfile::Builder::new()
            .prefix(".imgbuild-probe-")
            .tempdir_in(&dir)
        else {
            continue;
        };
        match crate::binfmt::probe(arch, scratch.path()) {
            Ok(_) => return Ok(()),
            Err(e @ crate::binfmt::BinfmtError::Io { .. }) => last = e.to_string(),
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_host() -> Host {
        Host {
            euid: 0,
            capabilities: 0x1ff_ffff_ffff,
            kernel: "6.1.0-18-amd64".into(),
            missing_namespaces: Vec::new(),
            seccomp: true,
        }
    }

    fn sandbox() -> Needs {
        Needs {
            sandbox: true,
            space: Vec::new(),
            executes: None,
        }
    }

    #[test]
    fn root_on_a_current_kernel_passes() {
        assert_eq!(
            problems(&root_host(), &sandbox(), &|_| None),
            Findings::default()
        );
        assert_eq!(kernel_version("5.10.0-28-cloud-amd64"), Some((5, 10)));
        assert_eq!(kernel_version("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(kernel_version("garbage"), None);
    }

    #[test]
    fn a_user_is_told_to_be_root_in_one_line_naming_what_is_missing() {
        let host = Host {
            euid: 1000,
            capabilities: 0,
            ..root_host()
        };
        let p = problems(&host, &sandbox(), &|_| None).errors;
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("needs root") && p[0].contains("uid 1000"),
            "{p:?}"
        );
        assert!(!p[0].contains("CAP_") && !p[0].contains('\n'), "{p:?}");
        let partial = Host {
            capabilities: 1 << 21,
            ..host.clone()
        };
        let p = problems(&partial, &sandbox(), &|_| None).errors;
        assert!(p[0].contains("uid 1000 without CAP_CHOWN,"), "{p:?}");
        // Operations that need no sandbox do not ask for root.
        assert_eq!(
            problems(&host, &Needs::default(), &|_| None),
            Findings::default()
        );
    }

    #[test]
    fn every_problem_is_reported_together() {
        let host = Host {
            euid: 0,
            capabilities: !(1u64 << 21),
            kernel: "4.19.0".into(),
            missing_namespaces: vec!["cgroup"],
            seccomp: false,
        };
        let needs = Needs {
            sandbox: true,
            space: vec![
                Space {
                    path: "/small/out".into(),
                    what: "target directory",
                    bytes: MIN_FREE_WORK,
                },
                Space {
                    path: "/some/cache".into(),
                    what: "download cache",
                    bytes: MIN_FREE_CACHE,
                },
                Space {
                    path: "/big/root".into(),
                    what: "root tree",
                    bytes: MIN_FREE_WORK,
                },
            ],
            executes: None,
        };
        let free = |p: &Path| {
            Some(if p.starts_with("/small") {
                5_000_000
            } else if p.starts_with("/some") {
                100_000_000
            } else {
                u64::MAX
            })
        };
        let Findings {
            errors: p,
            warnings,
        } = problems(&host, &needs, &free);
        assert_eq!(p.len(), 5, "{p:#?}");
        // Less than usual but more than nothing: said, and the build goes on.
        assert_eq!(
            warnings,
            [
                "/some/cache: only 100 MB free for the download cache, where a minimal Debian \
              image takes about 250 MB: the build may run out of space"
            ]
        );
        assert!(
            p[0].contains("running as root without CAP_SYS_ADMIN:"),
            "{p:?}"
        );
        assert!(p[1].contains("kernel 4.19.0 is too old") && p[1].contains("5.11"));
        assert!(p[2].contains("no cgroup namespaces"));
        assert!(p[3].contains("seccomp"));
        assert_eq!(
            p[4],
            "/small/out: 5 MB free for the target directory; nothing can be built in less than 32 MB"
        );
    }

    #[test]
    fn a_path_not_made_yet_is_measured_on_its_nearest_ancestor() {
        let t = tempfile::tempdir().unwrap();
        assert!(free_bytes(&t.path().join("not/made/yet")).is_some_and(|b| b > 0));
    }
}
