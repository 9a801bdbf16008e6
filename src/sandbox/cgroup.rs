//! Resource limits through cgroups, v2 or v1, chosen per controller.
//!
//! A controller is used on the unified (v2) hierarchy when that hierarchy can enable it for
//! our cgroup, otherwise on its v1 hierarchy. So a pure v2 host, a pure v1 host and a hybrid
//! one (v1 controllers plus an empty `unified` mount) all work. The sandbox's cgroups are
//! created below the cgroup imgbuild itself runs in, so limits set on imgbuild still apply.
//! What to create and write is computed as data ([`plan`]) and unit-tested on fake hosts.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Errors of cgroup setup and removal.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No hierarchy offers a controller a limit needs.
    #[error("cgroup controller `{controller}` is available neither on cgroup v2 nor v1")]
    Unavailable {
        /// The controller (`memory`, `pids`, `cpu`, `devices`).
        controller: &'static str,
    },
    /// A cgroup file or directory could not be read or written.
    #[error("cgroup {path}: {source}")]
    Io {
        /// The cgroup file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Resource limits for the sandbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Memory in bytes (swap included where the kernel accounts it).
    pub memory: Option<u64>,
    /// Maximum number of processes and threads.
    pub pids: Option<u64>,
    /// CPU time as a number of CPUs (`1.5` = 150 ms per 100 ms period).
    pub cpus: Option<f64>,
}

impl Limits {
    /// True when no limit is set.
    pub fn is_empty(&self) -> bool {
        self.memory.is_none() && self.pids.is_none() && self.cpus.is_none()
    }
}

/// A mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where it is mounted.
    pub mount: PathBuf,
    /// v1 controllers bound to it; empty for the v2 hierarchy.
    pub controllers: Vec<String>,
    /// True for cgroup2.
    pub unified: bool,
    /// The `name=` of a named v1 hierarchy without controllers (`systemd`).
    pub name: Option<String>,
}

/// The host's cgroup layout as seen by this process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Host {
    /// The mounted cgroup hierarchies (from `/proc/self/mountinfo`).
    pub hierarchies: Vec<Hierarchy>,
    /// Our cgroup path per v1 controller (from `/proc/self/cgroup`).
    pub v1_paths: Vec<(String, String)>,
    /// Our cgroup path in the v2 hierarchy.
    pub v2_path: Option<String>,
    /// Controllers the v2 hierarchy offers at our cgroup (`cgroup.controllers`).
    pub v2_controllers: Vec<String>,
}

/// Parse `/proc/self/mountinfo` for cgroup mounts.
pub fn parse_mountinfo(text: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let rfields: Vec<&str> = right.split(' ').collect();
        let (Some(mount), Some(fstype)) = (fields.get(4), rfields.first()) else {
            continue;
        };
        let mount = PathBuf::from(mount.replace("\\040", " "));
        match *fstype {
            "cgroup2" => out.push(Hierarchy {
                mount,
                controllers: Vec::new(),
                unified: true,
                name: None,
            }),
            "cgroup" => {
                let opts = rfields.get(2).copied().unwrap_or("");
                let controllers = opts
                    .split(',')
                    .filter(|o| {
                        matches!(
                            *o,
                            "memory"
                                | "pids"
                                | "cpu"
                                | "cpuacct"
                                | "cpuset"
                                | "blkio"
                                | "devices"
                                | "freezer"
                                | "hugetlb"
                                | "net_cls"
                                | "net_prio"
                                | "perf_event"
                                | "rdma"
                                | "misc"
                        )
                    })
                    .map(str::to_string)
                    .collect();
                let name = opts
                    .split(',')
                    .find_map(|o| o.strip_prefix("name="))
                    .map(str::to_string);
                out.push(Hierarchy {
                    mount,
                    controllers,
                    unified: false,
                    name,
                });
            }
            _ => {}
        }
    }
    out
}

/// Parse `/proc/self/cgroup`: (v1 controller → path) pairs and the v2 path.
pub fn parse_proc_cgroup(text: &str) -> (Vec<(String, String)>, Option<String>) {
    let mut v1 = Vec::new();
    let mut v2 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && ctrls.is_empty() {
            v2 = Some(path.to_string());
        } else {
            for c in ctrls.split(',') {
                v1.push((c.to_string(), path.to_string()));
            }
        }
    }
    (v1, v2)
}

impl Host {
    /// Read this process's cgroup layout.
    pub fn detect() -> Result<Host, CgroupError> {
        let mi = Path::new("/proc/self/mountinfo");
        let pc = Path::new("/proc/self/cgroup");
        let hierarchies = parse_mountinfo(&std::fs::read_to_string(mi).map_err(io(mi))?);
        let (v1_paths, v2_path) = parse_proc_cgroup(&std::fs::read_to_string(pc).map_err(io(pc))?);
        let mut host = Host {
            hierarchies,
            v1_paths,
            v2_path,
            v2_controllers: Vec::new(),
        };
        if let Some(dir) = host.v2_dir() {
            let f = dir.join("cgroup.controllers");
            if let Ok(text) = std::fs::read_to_string(&f) {
                host.v2_controllers = text.split_whitespace().map(str::to_string).collect();
            }
        }
        Ok(host)
    }

    /// The same host with the sandbox cgroups placed at the root of the v2 hierarchy: the
    /// fallback when our own cgroup cannot delegate controllers (see [`setup`]).
    #[must_use]
    pub fn at_v2_root(&self) -> Host {
        let mut host = self.clone();
        host.v2_path = Some("/".to_string());
        host.v2_controllers = host
            .v2_dir()
            .and_then(|d| std::fs::read_to_string(d.join("cgroup.controllers")).ok())
            .map(|t| t.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        host
    }

    /// The hierarchies mounted under `/sys/fs/cgroup`, as a sandbox shows them.
    pub fn view(&self) -> Vec<super::plan::CgroupView> {
        let base = Path::new("/sys/fs/cgroup");
        let mut out = Vec::new();
        for h in &self.hierarchies {
            let Ok(rel) = h.mount.strip_prefix(base) else {
                continue;
            };
            let dir = rel.to_string_lossy().into_owned();
            if dir.contains('/') {
                continue;
            }
            let options = if h.unified {
                None
            } else if !h.controllers.is_empty() {
                Some(h.controllers.join(","))
            } else if let Some(n) = &h.name {
                Some(format!("none,name={n}"))
            } else {
                continue;
            };
            out.push(super::plan::CgroupView {
                dir,
                fstype: if h.unified { "cgroup2" } else { "cgroup" },
                options,
            });
        }
        out
    }

    fn v2_dir(&self) -> Option<PathBuf> {
        let h = self.hierarchies.iter().find(|h| h.unified)?;
        let path = self.v2_path.as_deref().unwrap_or("/");
        Some(join_cgroup(&h.mount, path))
    }
}

/// The host directories of the cgroups process `pid` is in, one per hierarchy of `host`
/// (`/proc/PID/cgroup` read from the host's cgroup namespace): where a process joining that
/// one's sandbox is put.
pub fn dirs_of(pid: i32, host: &Host) -> Result<Vec<PathBuf>, CgroupError> {
    let f = PathBuf::from(format!("/proc/{pid}/cgroup"));
    let (v1, v2) = parse_proc_cgroup(&std::fs::read_to_string(&f).map_err(io(&f))?);
    let mut out = Vec::new();
    for h in &host.hierarchies {
        let path = if h.unified {
            v2.clone()
        } else {
            let named = h.name.as_ref().map(|n| format!("name={n}"));
            v1.iter()
                .find(|(c, _)| h.controllers.contains(c) || named.as_ref() == Some(c))
                .map(|(_, p)| p.clone())
        };
        if let Some(path) = path {
            let dir = join_cgroup(&h.mount, &path);
            if dir.join("cgroup.procs").exists() && !out.contains(&dir) {
                out.push(dir);
            }
        }
    }
    Ok(out)
}

fn join_cgroup(mount: &Path, path: &str) -> PathBuf {
    mount.join(path.trim_start_matches('/'))
}

/// One file write into a cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The cgroup file.
    pub file: PathBuf,
    /// What is written to it.
    pub value: String,
    /// Missing files are skipped (e.g. swap accounting turned off).
    pub optional: bool,
}

/// What to create for one sandbox: directories (the process joins each), preparatory writes
/// into parents (enabling v2 controllers), and limit writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Writes into parents' `cgroup.subtree_control` that enable the v2 controllers needed.
    pub enable: Vec<Write>,
    /// The cgroup directories to create, one per hierarchy used.
    pub dirs: Vec<PathBuf>,
    /// The limit writes into the created directories.
    pub writes: Vec<Write>,
    /// The cgroup v2 directory the device program is attached to, when the device policy is
    /// enforced on v2.
    pub device_program: Option<PathBuf>,
    /// The sandbox's directory on the v2 hierarchy, if it has one: the process is created
    /// inside it rather than moved there.
    pub v2_dir: Option<PathBuf>,
}

const CPU_PERIOD: u64 = 100_000;

/// (file name, value, optional) for one controller on v2 or v1.
type FileValue = (&'static str, String, bool);

/// Compute the cgroups for `limits`, named `name`, on `host`.
pub fn plan(limits: &Limits, host: &Host, name: &str) -> Result<Plan, CgroupError> {
    let mut p = Plan::default();
    let mut need: Vec<(&'static str, Vec<FileValue>, Vec<FileValue>)> = Vec::new();
    if let Some(m) = limits.memory {
        need.push((
            "memory",
            vec![
                ("memory.max", m.to_string(), false),
                ("memory.swap.max", "0".into(), true),
            ],
            vec![
                ("memory.limit_in_bytes", m.to_string(), false),
                ("memory.memsw.limit_in_bytes", m.to_string(), true),
            ],
        ));
    }
    if let Some(n) = limits.pids {
        need.push((
            "pids",
            vec![("pids.max", n.to_string(), false)],
            vec![("pids.max", n.to_string(), false)],
        ));
    }
    if let Some(c) = limits.cpus {
        // `cpus` was checked to lie in 0.01..=CPU count, so the quota is a small positive number.
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let quota = ((c * CPU_PERIOD as f64).round() as u64).max(1000);
        need.push((
            "cpu",
            vec![("cpu.max", format!("{quota} {CPU_PERIOD}"), false)],
            vec![
                ("cpu.cfs_period_us", CPU_PERIOD.to_string(), false),
                ("cpu.cfs_quota_us", quota.to_string(), false),
            ],
        ));
    }
    let v2 = host
        .hierarchies
        .iter()
        .find(|h| h.unified)
        .map(|h| (h, host.v2_path.as_deref().unwrap_or("/")));
    for (controller, v2_writes, v1_writes) in need {
        let on_v2 = v2.filter(|_| host.v2_controllers.iter().any(|c| c == controller));
        let (dir, writes) = if let Some((h, path)) = on_v2 {
            let parent = join_cgroup(&h.mount, path);
            p.enable.push(Write {
                file: parent.join("cgroup.subtree_control"),
                value: format!("+{controller}"),
                optional: false,
            });
            p.v2_dir = Some(parent.join(name));
            (parent.join(name), v2_writes)
        } else {
            let h = host
                .hierarchies
                .iter()
                .find(|h| !h.unified && h.controllers.iter().any(|c| c == controller))
                .ok_or(CgroupError::Unavailable { controller })?;
            let path = host
                .v1_paths
                .iter()
                .find(|(c, _)| c == controller)
                .map_or("/", |(_, p)| p.as_str());
            (join_cgroup(&h.mount, path).join(name), v1_writes)
        };
        if !p.dirs.contains(&dir) {
            p.dirs.push(dir.clone());
        }
        for (file, value, optional) in writes {
            p.writes.push(Write {
                file: dir.join(file),
                value,
                optional,
            });
        }
    }
    devices(&mut p, host, name)?;
    Ok(p)
}

/// The device policy ([`super::devices::DEFAULT`]): as an eBPF program on the sandbox's v2
/// cgroup wherever a cgroup2 hierarchy is mounted (pure v2, and the `unified` mount of hybrid
/// hosts), else on the v1 `devices` controller. v2 is preferred because the process can then be
/// created directly inside its cgroup (`CLONE_INTO_CGROUP`): moving a process into a v1 cgroup
/// waits for an RCU grace period, several milliseconds of every container start.
fn devices(p: &mut Plan, host: &Host, name: &str) -> Result<(), CgroupError> {
    if let Some(h) = host.hierarchies.iter().find(|h| h.unified) {
        let dir = join_cgroup(&h.mount, host.v2_path.as_deref().unwrap_or("/")).join(name);
        if !p.dirs.contains(&dir) {
            p.dirs.push(dir.clone());
        }
        p.v2_dir = Some(dir.clone());
        p.device_program = Some(dir);
        return Ok(());
    }
    let Some(h) = host
        .hierarchies
        .iter()
        .find(|h| !h.unified && h.controllers.iter().any(|c| c == "devices"))
    else {
        return Err(CgroupError::Unavailable {
            controller: "devices",
        });
    };
    let path = host
        .v1_paths
        .iter()
        .find(|(c, _)| c == "devices")
        .map_or("/", |(_, p)| p.as_str());
    let dir = join_cgroup(&h.mount, path).join(name);
    if !p.dirs.contains(&dir) {
        p.dirs.push(dir.clone());
    }
    p.writes.push(Write {
        file: dir.join("devices.deny"),
        value: "a".into(),
        optional: false,
    });
    for r in super::devices::DEFAULT {
        p.writes.push(Write {
            file: dir.join("devices.allow"),
            value: r.v1_line(),
            optional: false,
        });
    }
    Ok(())
}

/// Create the cgroups for `limits` on this host.
///
/// On cgroup v2 a controller can only be enabled for the children of a cgroup that has no
/// processes of its own (the root excepted); imgbuild usually sits in such a cgroup (a
/// systemd service or session scope). When enabling fails for that reason (`EBUSY`), the
/// sandbox's cgroup goes below the v2 root instead, as container engines' cgroupfs drivers do.
pub fn setup(limits: &Limits, host: &Host) -> Result<Cgroups, CgroupError> {
    let name = unique_name();
    match Cgroups::create(&plan(limits, host, &name)?) {
        Err(CgroupError::Io { source, .. })
            if source.raw_os_error() == Some(libc::EBUSY)
                && host.v2_path.as_deref().is_some_and(|p| p != "/") =>
        {
            Cgroups::create(&plan(limits, &host.at_v2_root(), &name)?)
        }
        other => other,
    }
}

/// Live cgroups of one sandbox; removed on drop (after killing anything left in them).
#[derive(Debug)]
pub struct Cgroups {
    dirs: Vec<PathBuf>,
    v2_dir: Option<PathBuf>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

const NAME_PREFIX: &str = "imgbuild-sandbox-";

/// A name unique on this host for the lifetime of this process.
pub fn unique_name() -> String {
    format!(
        "{NAME_PREFIX}{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The pid of the imgbuild process that named a sandbox cgroup, if `name` is one.
pub fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let (pid, counter) = rest.split_once('-')?;
    counter.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Remove sandbox cgroups under `parent` left by imgbuild processes that no longer exist
/// (killed with SIGKILL, so their cleanup never ran; the kernel already killed the processes
/// inside). `rmdir` only succeeds on a cgroup without processes, so nothing live is touched.
fn sweep_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let Some(pid) = owner_pid(&e.file_name().to_string_lossy()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

fn write(w: &Write) -> Result<(), CgroupError> {
    match std::fs::write(&w.file, &w.value) {
        Err(e) if w.optional && e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other.map_err(io(&w.file)),
    }
}

impl Cgroups {
    /// Create the cgroups of `plan` and write the limits. On error, whatever was created is
    /// removed again.
    pub fn create(plan: &Plan) -> Result<Cgroups, CgroupError> {
        for w in &plan.enable {
            // Enabling an already enabled controller is fine; the kernel accepts it again.
            write(w)?;
        }
        let mut made = Cgroups {
            dirs: Vec::new(),
            v2_dir: plan.v2_dir.clone(),
        };
        for d in &plan.dirs {
            if let Some(parent) = d.parent() {
                sweep_stale(parent);
            }
            std::fs::create_dir(d).map_err(io(d))?;
            made.dirs.push(d.clone());
        }
        for w in &plan.writes {
            write(w)?;
        }
        if let Some(dir) = &plan.device_program {
            super::devices::attach_program(dir, super::devices::DEFAULT).map_err(|source| {
                CgroupError::Io {
                    path: dir.clone(),
                    source,
                }
            })?;
        }
        Ok(made)
    }

    /// The directory on the v2 hierarchy, for `CLONE_INTO_CGROUP`.
    pub fn v2_dir(&self) -> Option<&Path> {
        self.v2_dir.as_deref()
    }

    /// Move `pid` into every cgroup, except the v2 one when it was created there already.
    pub fn attach(&self, pid: i32, born_in_v2: bool) -> Result<(), CgroupError> {
        for d in &self.dirs {
            if born_in_v2 && Some(d.as_path()) == self.v2_dir.as_deref() {
                continue;
            }
            let f = d.join("cgroup.procs");
            std::fs::write(&f, pid.to_string()).map_err(io(&f))?;
        }
        Ok(())
    }

    /// The directories, for inspection.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    fn remove_one(dir: &Path) {
        for attempt in 0..200 {
            match std::fs::remove_dir(dir) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(_) => {
                    // Processes still in it (the kernel is tearing the pid namespace down,
                    // or something escaped our wait): kill them and retry.
                    let kill = dir.join("cgroup.kill");
                    if kill.exists() {
                        let _ = std::fs::write(&kill, "1");
                    } else if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                        for pid in text
                            .split_whitespace()
                            .filter_map(|p| p.parse::<i32>().ok())
                        {
                            // SAFETY: sending a signal has no memory effects.
                            unsafe { libc::kill(pid, libc::SIGKILL) };
                        }
                    }
                    std::thread::sleep(Duration::from_millis(if attempt < 20 { 5 } else { 25 }));
                }
            }
        }
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for d in self.dirs.iter().rev() {
            Cgroups::remove_one(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
35 30 0:31 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
36 30 0:32 / /sys/fs/cgroup/devices rw,nosuid - cgroup cgroup rw,devices
";
    const HYBRID_CGROUP: &str =
        "5:pids:/\n4:memory:/jobs/a\n3:cpu,cpuacct:/\n1:name=systemd:/\n0::/\n";

    fn hybrid(v2_controllers: &[&str]) -> Host {
        let (v1_paths, v2_path) = parse_proc_cgroup(HYBRID_CGROUP);
        Host {
            hierarchies: parse_mountinfo(HYBRID_MOUNTINFO),
            v1_paths,
            v2_path,
            v2_controllers: v2_controllers
                .iter()
                .map(std::string::ToString::to_string)
                .collect(),
        }
    }

    #[test]
    fn parses_hybrid_host() {
        let h = hybrid(&[]);
        assert_eq!(h.hierarchies.len(), 6);
        assert_eq!(h.hierarchies[4].name.as_deref(), Some("systemd"));
        assert!(h.hierarchies[0].unified);
        assert_eq!(h.hierarchies[3].controllers, vec!["cpu", "cpuacct"]);
        assert!(
            h.hierarchies[4].controllers.is_empty(),
            "name=systemd has no controller"
        );
        assert_eq!(h.v2_path.as_deref(), Some("/"));
        assert!(h.v1_paths.contains(&("memory".into(), "/jobs/a".into())));
    }

    #[test]
    fn hybrid_with_empty_unified_uses_v1() {
        let limits = Limits {
            memory: Some(64 << 20),
            pids: Some(20),
            cpus: Some(0.5),
        };
        let p = plan(&limits, &hybrid(&[]), "x").unwrap();
        assert!(p.enable.is_empty());
        assert_eq!(
            p.dirs,
            vec![
                PathBuf::from("/sys/fs/cgroup/memory/jobs/a/x"),
                PathBuf::from("/sys/fs/cgroup/pids/x"),
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/x"),
                PathBuf::from("/sys/fs/cgroup/unified/x"),
            ]
        );
        assert_eq!(
            p.device_program.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified/x")),
            "devices as an eBPF program on the unified hierarchy"
        );
        let w: Vec<(String, String)> = p
            .writes
            .iter()
            .map(|w| (w.file.display().to_string(), w.value.clone()))
            .collect();
        assert_eq!(
            w,
            vec![
                (
                    "/sys/fs/cgroup/memory/jobs/a/x/memory.limit_in_bytes".into(),
                    "67108864".into()
                ),
                (
                    "/sys/fs/cgroup/memory/jobs/a/x/memory.memsw.limit_in_bytes".into(),
                    "67108864".into()
                ),
                ("/sys/fs/cgroup/pids/x/pids.max".into(), "20".into()),
                (
                    "/sys/fs/cgroup/cpu,cpuacct/x/cpu.cfs_period_us".into(),
                    "100000".into()
                ),
                (
                    "/sys/fs/cgroup/cpu,cpuacct/x/cpu.cfs_quota_us".into(),
                    "50000".into()
                ),
            ]
        );
        assert!(
            p.writes[1].optional,
            "memsw exists only with swap accounting"
        );
    }

    #[test]
    fn pure_v2_host() {
        let mountinfo = "25 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let (v1_paths, v2_path) = parse_proc_cgroup("0::/user.slice/job\n");
        let host = Host {
            hierarchies: parse_mountinfo(mountinfo),
            v1_paths,
            v2_path,
            v2_controllers: vec!["cpu".into(), "memory".into(), "pids".into()],
        };
        let limits = Limits {
            memory: Some(1 << 30),
            pids: Some(100),
            cpus: Some(2.0),
        };
        let p = plan(&limits, &host, "sb").unwrap();
        let dir = PathBuf::from("/sys/fs/cgroup/user.slice/job/sb");
        assert_eq!(p.dirs, vec![dir.clone()]);
        assert_eq!(
            p.device_program.as_ref(),
            Some(&dir),
            "devices as an eBPF program"
        );
        assert_eq!(
            p.enable
                .iter()
                .map(|w| w.value.as_str())
                .collect::<Vec<_>>(),
            vec!["+memory", "+pids", "+cpu"]
        );
        assert!(
            p.enable.iter().all(
                |w| w.file == Path::new("/sys/fs/cgroup/user.slice/job/cgroup.subtree_control")
            )
        );
        let w: Vec<(PathBuf, &str)> = p
            .writes
            .iter()
            .map(|w| (w.file.clone(), w.value.as_str()))
            .collect();
        assert_eq!(
            w,
            vec![
                (dir.join("memory.max"), "1073741824"),
                (dir.join("memory.swap.max"), "0"),
                (dir.join("pids.max"), "100"),
                (dir.join("cpu.max"), "200000 100000"),
            ]
        );
    }

    #[test]
    fn v2_root_fallback_places_the_cgroup_at_the_root() {
        let mountinfo = "25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let host = Host {
            hierarchies: parse_mountinfo(mountinfo),
            v1_paths: Vec::new(),
            v2_path: Some("/".into()),
            v2_controllers: vec!["memory".into()],
        };
        let p = plan(
            &Limits {
                memory: Some(1 << 20),
                ..Limits::default()
            },
            &host,
            "sb",
        )
        .unwrap();
        assert_eq!(p.dirs, vec![PathBuf::from("/sys/fs/cgroup/sb")]);
        assert_eq!(
            p.enable[0].file,
            Path::new("/sys/fs/cgroup/cgroup.subtree_control")
        );
    }

    #[test]
    fn hybrid_prefers_v2_per_controller() {
        // pids bound to cgroup2, memory still on v1.
        let p = plan(
            &Limits {
                memory: Some(1 << 20),
                pids: Some(5),
                cpus: None,
            },
            &hybrid(&["pids"]),
            "y",
        )
        .unwrap();
        assert_eq!(
            p.dirs,
            vec![
                PathBuf::from("/sys/fs/cgroup/memory/jobs/a/y"),
                PathBuf::from("/sys/fs/cgroup/unified/y"),
            ]
        );
        assert!(
            p.writes
                .iter()
                .any(|w| w.file == Path::new("/sys/fs/cgroup/unified/y/pids.max"))
        );
    }

    #[test]
    fn v1_device_policy_denies_all_then_allows_the_defaults() {
        // A pure v1 host: no cgroup2 mount.
        let mut host = hybrid(&[]);
        host.hierarchies.retain(|h| !h.unified);
        let p = plan(&Limits::default(), &host, "d").unwrap();
        assert_eq!(p.device_program, None);
        assert_eq!(p.v2_dir, None);
        assert_eq!(p.dirs, vec![PathBuf::from("/sys/fs/cgroup/devices/d")]);
        assert_eq!(
            p.writes[0].file,
            Path::new("/sys/fs/cgroup/devices/d/devices.deny")
        );
        assert_eq!(p.writes[0].value, "a");
        let allowed: Vec<&str> = p.writes[1..].iter().map(|w| w.value.as_str()).collect();
        assert!(allowed.contains(&"c 1:3 rwm") && allowed.contains(&"b *:* m"));
    }

    #[test]
    fn view_mirrors_the_hosts_hierarchies() {
        let v = hybrid(&[]).view();
        let dirs: Vec<(&str, &str, Option<&str>)> = v
            .iter()
            .map(|v| (v.dir.as_str(), v.fstype, v.options.as_deref()))
            .collect();
        assert_eq!(
            dirs,
            vec![
                ("unified", "cgroup2", None),
                ("memory", "cgroup", Some("memory")),
                ("pids", "cgroup", Some("pids")),
                ("cpu,cpuacct", "cgroup", Some("cpu,cpuacct")),
                ("systemd", "cgroup", Some("none,name=systemd")),
                ("devices", "cgroup", Some("devices")),
            ]
        );
        let pure = Host {
            hierarchies: parse_mountinfo("25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"),
            ..Host::default()
        };
        let v = pure.view();
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].dir.as_str(), v[0].fstype), ("", "cgroup2"));
    }

    #[test]
    fn owner_pid_of_sandbox_cgroups_only() {
        let name = unique_name();
        assert_eq!(owner_pid(&name), Some(std::process::id()));
        assert_eq!(owner_pid("imgbuild-sandbox-42-7"), Some(42));
        assert_eq!(owner_pid("imgbuild-sandbox-42"), None);
        assert_eq!(owner_pid("docker-42-7"), None);
    }

    #[test]
    fn missing_controller_is_a_clear_error() {
        let host = Host {
            hierarchies: parse_mountinfo(HYBRID_MOUNTINFO)
                .into_iter()
                .filter(|h| !h.controllers.contains(&"pids".to_string()))
                .collect(),
            ..hybrid(&[])
        };
        let err = plan(
            &Limits {
                pids: Some(1),
                ..Limits::default()
            },
            &host,
            "z",
        )
        .unwrap_err();
        assert!(err.to_string().contains("`pids`"));
    }
}
