//! `imgbuild run`, `ps` and `rm` end to end on a busybox image loaded into a temp store, for
//! the vfs, overlay and btrfs drivers (btrfs on a loop-mounted file), compared with crun on the
//! same tree. Needs root; skips clearly without it or without the Debian mirror (the busybox
//! tree is built from it once and cached).

use crate::support::image::{PodmanStore, podman};
use crate::support::loop_device::LoopDevice;
use crate::support::runtime::*;
use crate::support::storage::loops_backed_by;
use crate::support::{host_quirks, mounts_under, skip};
use imgbuild::storage::DriverKind;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

/// Memory and fork-bomb tests must not overlap on a small machine; run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn ps_json(f: &Fixture, all: bool) -> Vec<serde_json::Value> {
    let mut args = vec!["ps", "--format", "json"];
    if all {
        args.push("-a");
    }
    let o = f.imgbuild(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `cat /etc/os-release` works; a file written in one container is invisible to another;
/// ps shows the kept container; rm removes it and its mounts.
fn image_runs_and_containers_are_isolated(driver: DriverKind) {
    let test = format!("image_runs_and_containers_are_isolated({driver})");
    let _g = serial();
    let Some(f) = Fixture::new(&test, driver) else {
        return;
    };
    assert_eq!(f.sh_ok(&[], "cat /etc/os-release"), OS_RELEASE);

    let o = f.imgbuild(&[
        "run",
        "--name",
        "writer",
        IMAGE,
        "/bin/sh",
        "-c",
        "echo secret > /root/mark && cat /root/mark",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "secret\n");
    let out = f.sh_ok(
        &[],
        "if [ -e /root/mark ]; then echo visible; else echo invisible; fi",
    );
    assert_eq!(out, "invisible\n");

    // The stopped container keeps its writable layer, but nothing stays mounted.
    assert_eq!(mounts_under(&f.store_root), Vec::<String>::new());
    let all = ps_json(&f, true);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["Names"], serde_json::json!(["writer"]));
    assert_eq!(all[0]["State"], "exited");
    assert_eq!(all[0]["ExitCode"], 0);
    assert_eq!(all[0]["Driver"], driver.name());
    let id = all[0]["Id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 64);
    assert!(
        ps_json(&f, false).is_empty(),
        "an exited container listed as running"
    );
    let table = String::from_utf8_lossy(&f.imgbuild(&["ps", "-a"]).stdout).into_owned();
    assert!(
        table.contains(&id[..12]) && table.contains("Exited (0)"),
        "{table}"
    );

    // A second container of the same name is refused, and leaves nothing.
    let o = f.imgbuild(&["run", "--rm", "--name", "writer", IMAGE, "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already in use"));

    // Removed by a short id prefix.
    let o = f.imgbuild(&["rm", &id[..10]]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = f.imgbuild(&["rm", "writer"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such container"));
    f.assert_clean();
    let loop_file = f.loop_file();
    drop(f);
    if let Some(file) = loop_file {
        assert_eq!(
            loops_backed_by(&file),
            Vec::<String>::new(),
            "loop device left"
        );
    }
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn vfs_image_runs_and_containers_are_isolated() {
    image_runs_and_containers_are_isolated(DriverKind::Vfs);
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn overlay_image_runs_and_containers_are_isolated() {
    image_runs_and_containers_are_isolated(DriverKind::Overlay);
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn btrfs_image_runs_and_containers_are_isolated() {
    image_runs_and_containers_are_isolated(DriverKind::Btrfs);
}

/// Run `argv` with crun on `root` (read-only) with Docker's default capabilities, as engines
/// configure it.
fn crun(root: &Path, hostname: &str, argv: &[&str]) -> Result<String, String> {
    let bundle = tempfile::tempdir().map_err(|e| e.to_string())?;
    let st = Command::new("crun")
        .arg("spec")
        .current_dir(bundle.path())
        .status()
        .map_err(|e| format!("crun: {e}"))?;
    if !st.success() {
        return Err("crun spec failed".into());
    }
    let path = bundle.path().join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    cfg["process"]["terminal"] = false.into();
    cfg["process"]["args"] = serde_json::json!(argv);
    let caps = serde_json::json!(imgbuild::sandbox::caps::DOCKER_DEFAULT_NAMES);
    for set in ["bounding", "effective", "permitted"] {
        cfg["process"]["capabilities"][set] = caps.clone();
    }
    cfg["process"]["capabilities"]["inheritable"] = serde_json::json!([]);
    cfg["process"]["capabilities"]["ambient"] = serde_json::json!([]);
    cfg["hostname"] = hostname.into();
    cfg["root"]["path"] = root.to_string_lossy().into_owned().into();
    cfg["root"]["readonly"] = true.into();
    std::fs::write(&path, cfg.to_string()).map_err(|e| e.to_string())?;
    let id = format!("imgbuild-runtime-crun-{}", std::process::id());
    let out = Command::new("crun")
        .args(["run", "-b"])
        .arg(bundle.path())
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let _ = Command::new("crun").args(["delete", "-f", &id]).output();
    if !out.status.success() && out.stdout.is_empty() {
        return Err(format!(
            "crun run failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What a container sees of its isolation, one fact per line.
const PROBE: &str = "echo pid=$$; hostname; cat /etc/hostname 2>/dev/null || hostname; \
    grep CapBnd /proc/self/status; \
    mount -t tmpfs none /tmp 2>/dev/null && echo mount-ok || echo mount-failed; \
    touch /sys/x 2>/dev/null && echo sys-writable || echo sys-ro; \
    for p in /proc/kcore /proc/keys /proc/timer_list; do [ -e $p ] && echo $p=$(wc -c < $p); done; \
    set -- /proc/[0-9]*; echo procs=$#";

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn container_matches_crun() {
    let _g = serial();
    let Some(f) = Fixture::new("container_matches_crun", DriverKind::Overlay) else {
        return;
    };
    host_quirks();
    let ours = f.sh_ok(&["--hostname", "box1"], PROBE);
    assert!(ours.starts_with("pid=1\nbox1\nbox1\n"), "{ours}");
    assert!(ours.contains("CapBnd:\t00000000a80425fb\n"), "{ours}");
    assert!(
        ours.contains("mount-failed\n") && ours.contains("sys-ro\n"),
        "{ours}"
    );
    assert!(
        ours.ends_with("procs=1\n"),
        "host processes visible: {ours}"
    );
    if Path::new("/proc/kcore").exists() {
        assert!(ours.contains("/proc/kcore=0\n"), "{ours}");
    }
    match crun(&f.busybox, "box1", &["/bin/sh", "-c", PROBE]) {
        // crun has no /etc/hostname of its own: the probe prints the hostname instead.
        Ok(theirs) => assert_eq!(ours, theirs, "ours vs crun"),
        Err(e) => skip(format_args!("(crun part of container_matches_crun): {e}")),
    }

    // The default hostname is the id's first 12 digits, also in /etc/hostname and /etc/hosts.
    let o = f.imgbuild(&[
        "run",
        "--name",
        "host",
        IMAGE,
        "/bin/sh",
        "-c",
        "hostname; cat /etc/hostname; grep -c \"$(hostname)\" /etc/hosts",
    ]);
    let id = ps_json(&f, true)[0]["Id"].as_str().unwrap().to_string();
    let short = &id[..12];
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{short}\n{short}\n1\n")
    );
    assert!(f.imgbuild(&["rm", "host"]).status.success());
    f.assert_clean();
}

/// What a container may do, one fact per line: capability sets, `no_new_privs`, the seccomp
/// mode, masked and read-only paths, device access (a block node of the host's loop device
/// `$1:$2` can be made but not opened), the memory limit seen in /sys/fs/cgroup, host sysctls.
const CONFORMANCE_PROBE: &str = r#"grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status
for p in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug /sys/firmware; do [ -e $p ] && echo "$p $(ls $p | wc -l) $(cat $p 2>/dev/null | wc -c)"; done
for p in /proc/sys/vm/swappiness /proc/sys/kernel/core_pattern /proc/sysrq-trigger; do (echo 1 > $p) 2>/dev/null && echo "$p writable" || echo "$p read-only"; done
touch /sys/x 2>/dev/null && echo sys-writable || echo sys-read-only
b=/dev/shm/blk; rm -f $b; mknod $b b $1 $2 && echo mknod-ok || echo mknod-refused
dd if=$b of=/dev/null bs=512 count=1 2>/dev/null && echo block-read || echo block-read-denied
dd if=/dev/zero of=$b bs=512 count=1 2>/dev/null && echo block-write || echo block-write-denied
echo x > /dev/null && head -c 4 /dev/urandom | wc -c
cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max 2>/dev/null; true
"#;

/// podman (with crun) on the same tree, configured with Docker's defaults as imgbuild uses
/// them: Docker's capability list and `no_new_privs`; podman's own seccomp profile, masked
/// paths and device list; a private cgroup namespace.
fn podman_crun(root: &Path, args: &[&str]) -> Result<String, String> {
    // A private store, in a short temp dir (podman limits the runroot path to 50 characters).
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store = PodmanStore(dir.path().join("p"));
    let out = podman(&store.0)
        .args(["run", "--rm", "--runtime", "crun", "--cgroupns=private"])
        .args(host_quirks())
        .args(["--cap-drop", "all"])
        .args(
            imgbuild::sandbox::caps::DOCKER_DEFAULT_NAMES
                .iter()
                .flat_map(|c| ["--cap-add", c]),
        )
        .args(["--security-opt", "no-new-privileges", "--memory", "64m"])
        .arg("--rootfs")
        .arg(root)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("podman: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "podman run failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn container_conformance_with_crun() {
    let _g = serial();
    let Some(f) = Fixture::new("container_conformance_with_crun", DriverKind::Overlay) else {
        return;
    };
    let lo = LoopDevice::attach();
    let (major, minor) = lo.numbers();
    let (maj, min) = (major.to_string(), minor.to_string());
    let ours = f.sh_ok(
        &["--memory", "64m"],
        &format!("set -- {maj} {min}\n{CONFORMANCE_PROBE}"),
    );
    // The facts themselves, whatever crun says.
    for fact in [
        "CapBnd:\t00000000a80425fb",
        "CapEff:\t00000000a80425fb",
        "CapInh:\t0000000000000000",
        "CapAmb:\t0000000000000000",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
        "/proc/sys/vm/swappiness read-only",
        "/proc/sys/kernel/core_pattern read-only",
        "/proc/sysrq-trigger read-only",
        "sys-read-only",
        "mknod-ok",
        "block-read-denied",
        "block-write-denied",
        "\n4\n",
        "67108864",
    ] {
        assert!(ours.contains(fact), "missing {fact:?} in:\n{ours}");
    }
    if Path::new("/proc/kcore").exists() {
        assert!(ours.contains("/proc/kcore 1 0\n"), "{ours}");
    }
    host_quirks();
    // podman's --rootfs runs in the tree itself: probe a copy.
    let copy = tempfile::tempdir_in("/var/tmp").unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", f.busybox.display()))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(st.success());
    match podman_crun(
        copy.path(),
        &["/bin/sh", "-c", CONFORMANCE_PROBE, "sh", &maj, &min],
    ) {
        Ok(theirs) => assert_eq!(ours, theirs, "imgbuild run vs podman/crun"),
        Err(e) => skip(format_args!(
            "(crun part of container_conformance_with_crun): {e}"
        )),
    }
    f.assert_clean();
}

/// Finding: `imgbuild run … sh -c 'mknod /b b 7 0; dd … of=/b'` wrote the host's loop device.
#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn container_cannot_write_host_block_device() {
    let _g = serial();
    let Some(f) = Fixture::new(
        "container_cannot_write_host_block_device",
        DriverKind::Overlay,
    ) else {
        return;
    };
    let lo = LoopDevice::attach();
    std::fs::write(lo.backing(), b"marker").unwrap();
    let (major, minor) = lo.numbers();
    let (code, out, _) = f.sh(
        &[],
        &format!(
            "mknod /b b {major} {minor} && echo made; \
             dd if=/dev/zero of=/b bs=512 count=1 conv=notrunc,nocreat 2>/dev/null && echo wrote; \
             dd if=/b of=/dev/null bs=512 count=1 2>/dev/null && echo read; true"
        ),
    );
    assert_eq!(code, 0);
    assert_eq!(out, "made\n", "the container reached the host's device");
    assert!(std::fs::read(lo.backing()).unwrap().starts_with(b"marker"));
    f.assert_clean();
}

/// Finding: `/proc/self/status` showed `Seccomp: 0` in containers (podman/crun: 2).
#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn container_runs_under_seccomp() {
    let _g = serial();
    let Some(f) = Fixture::new("container_runs_under_seccomp", DriverKind::Vfs) else {
        return;
    };
    let out = f.sh_ok(
        &[],
        "grep -E '^Seccomp:' /proc/self/status; unshare -m true 2>/dev/null && echo unshared; true",
    );
    assert_eq!(out, "Seccomp:\t2\n");
    f.assert_clean();
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn limits_exit_codes_and_signals() {
    let _g = serial();
    let Some(f) = Fixture::new("limits_exit_codes_and_signals", DriverKind::Overlay) else {
        return;
    };
    let (code, _, _) = f.sh(&[], "exit 42");
    assert_eq!(code, 42);
    let (code, _, _) = f.sh(
        &["--memory", "64m"],
        "dd if=/dev/zero of=/dev/null bs=256M count=1",
    );
    assert_eq!(code, 137, "256 MB allocator not killed under --memory 64m");
    f.sh_ok(
        &[],
        "dd if=/dev/zero of=/dev/null bs=256M count=1 2>/dev/null",
    );
    let bomb = "(i=0; while [ $i -lt 60 ]; do sleep 30 & i=$((i+1)); done) 2>/dev/null; \
                set -- /proc/[0-9]*; echo $#";
    let n: usize = f
        .sh_ok(&["--pids-limit", "20"], bomb)
        .trim()
        .parse()
        .unwrap();
    assert!(
        (10..=20).contains(&n),
        "pids limit not enforced: {n} processes"
    );
    // In its cgroup namespace the container sees its own cgroup as `/` and its CPU quota.
    let cpu = f.sh_ok(
        &["--cpus", "0.5"],
        "cat /proc/self/cgroup; cat /sys/fs/cgroup/cpu.max /sys/fs/cgroup/cpu*/cpu.cfs_quota_us 2>/dev/null; true",
    );
    assert!(!cpu.contains("imgbuild-sandbox-"), "{cpu}");
    assert!(cpu.contains("50000"), "{cpu}");

    // Not found / not executable: Docker's 127 / 126, the container removed all the same.
    let o = f.imgbuild(&["run", "--rm", IMAGE, "/no/such/program"]);
    assert_eq!(
        o.status.code(),
        Some(127),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The cause is said once, without the container's root in the store.
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(err.matches("cannot execute").count(), 1, "{err}");
    assert!(err.contains("\"/no/such/program\": no such file"), "{err}");
    assert!(!err.contains("merged") && !err.contains("store"), "{err}");
    let o = f.imgbuild(&["run", "--rm", IMAGE, "nosuchcmd"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(127), "{err}");
    assert!(
        err.trim_end()
            .ends_with(": cannot execute \"nosuchcmd\": executable file not found in $PATH"),
        "{err}"
    );
    let o = f.imgbuild(&["run", "--rm", IMAGE, "/etc/os-release"]);
    assert_eq!(
        o.status.code(),
        Some(126),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("Permission denied").count(), 0, "{err}");
    assert_eq!(err.matches("permission denied").count(), 1, "{err}");
    f.assert_clean();

    // SIGTERM to imgbuild reaches the command, whose exit code imgbuild returns.
    let mut child = f
        .command(&[
            "run",
            "--rm",
            IMAGE,
            "/bin/sh",
            "-c",
            "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 1 & wait $!; done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    // "ready" is printed after the trap is set: the signal can be sent now.
    assert_eq!(line, "ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().cast_signed()),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    let st = child.wait().unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(st.code(), Some(7));
    assert_eq!(rest, "got-term\n");
    assert_eq!(
        crate::support::cgroups_of(&[child.id()]),
        Vec::<std::path::PathBuf>::new()
    );
    f.assert_clean();
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn image_config_and_options_apply() {
    let _g = serial();
    let Some(f) = Fixture::new("image_config_and_options_apply", DriverKind::Vfs) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("vars.env");
    std::fs::write(&env_file, "# comment\nFROM_FILE=yes\nIMAGE_VAR=file\n").unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("in"), "host file\n").unwrap();

    // Image Env, env file, -e (later wins), HOSTNAME and HOME.
    let out = f.sh_ok(
        &[
            "--env-file",
            env_file.to_str().unwrap(),
            "-e",
            "IMAGE_VAR=cli",
            "-e",
            "X=1",
        ],
        "echo $IMAGE_VAR $FROM_FILE $X $PATH $HOME",
    );
    assert_eq!(out, "cli yes 1 /bin /root\n");
    // The image's Cmd runs when none is given (sh reading the empty stdin).
    let o = f.imgbuild(&["run", "--rm", IMAGE]);
    assert_eq!(o.status.code(), Some(0));
    // -u by name: uid, gid, supplementary groups, HOME; by ids; -w created when missing.
    let out = f.sh_ok(
        &["-u", "app", "-w", "/new/dir"],
        "id -u; id -g; id -G; echo $HOME; pwd",
    );
    assert_eq!(out, "1000\n1000\n1000 2000\n/home/app\n/new/dir\n");
    let out = f.sh_ok(&["-u", "4242:7"], "id -u; id -g");
    assert_eq!(out, "4242\n7\n");
    // -v read-only and read-write.
    let spec_ro = format!("{}:/data:ro", data.display());
    let out = f.sh_ok(
        &["-v", &spec_ro],
        "cat /data/in; touch /data/x 2>/dev/null || echo ro",
    );
    assert_eq!(out, "host file\nro\n");
    let spec_rw = format!("{}:/data", data.display());
    f.sh_ok(&["-v", &spec_rw], "echo from-container > /data/out");
    assert_eq!(
        std::fs::read_to_string(data.join("out")).unwrap(),
        "from-container\n"
    );
    // --read-only root, /etc files still the container's own.
    let out = f.sh_ok(&["--read-only"], "touch /x 2>/dev/null || echo ro-root");
    assert_eq!(out, "ro-root\n");
    let out = f.sh_ok(&["--network", "host"], "cat /etc/resolv.conf");
    assert_eq!(
        out,
        std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
    );
    let out = f.sh_ok(
        &["--network", "host", "--hostname", "own-name"],
        "hostname; grep -c own-name /etc/hosts",
    );
    assert_eq!(out, "own-name\n1\n");
    let out = f.sh_ok(&[], "ls /sys/class/net");
    assert_eq!(out, "lo\ntap0\n", "the private network by default");
    let out = f.sh_ok(&["--network", "none"], "ls /sys/class/net");
    assert_eq!(out, "lo\n", "--network none");
    // -t gives a terminal.
    let out = f.sh_ok(&["-t"], "[ -t 1 ] && echo tty; echo $TERM");
    assert_eq!(out.replace('\r', ""), "tty\nxterm\n");
    // --rm removes a failing command's container.
    let (code, _, _) = f.sh(&[], "exit 3");
    assert_eq!(code, 3);
    f.assert_clean();
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn bad_input_is_refused_and_leaves_nothing() {
    let _g = serial();
    let Some(f) = Fixture::new(
        "bad_input_is_refused_and_leaves_nothing",
        DriverKind::Overlay,
    ) else {
        return;
    };
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["run", "--rm", "no/such:image", "true"],
            125,
            "no such image: no/such:image",
        ),
        (
            &["run", "--rm", "-v", "relative:/x", IMAGE, "true"],
            2,
            "invalid volume spec 'relative:/x'",
        ),
        (
            &["run", "--rm", "-v", "/x", IMAGE, "true"],
            2,
            "invalid volume spec '/x'",
        ),
        (
            &["run", "--rm", "-v", "/no/such/dir:/x", IMAGE, "true"],
            125,
            "/no/such/dir",
        ),
        (
            &["run", "--rm", "--memory", "64x", IMAGE, "true"],
            2,
            "invalid size '64x'",
        ),
        (
            &["run", "--rm", "--memory", "1k", IMAGE, "true"],
            125,
            "below the minimum",
        ),
        (
            &["run", "--rm", "-u", "ghost", IMAGE, "true"],
            125,
            "unable to find user or group 'ghost'",
        ),
        (
            &["run", "--name", "bad/name", IMAGE, "true"],
            125,
            "invalid container name",
        ),
        (
            &["run", "-w", "relative", IMAGE, "true"],
            125,
            "not an absolute path",
        ),
    ];
    for (args, code, msg) in cases {
        let o = f.imgbuild(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(*code), "{args:?}: {err}");
        assert!(err.contains(msg), "{args:?}: {err}");
        f.assert_clean();
    }
}

/// Start a long-running named container; returns the imgbuild process once the command runs.
fn start_long(f: &Fixture, name: &str) -> std::process::Child {
    let mut child = f
        .command(&[
            "run",
            "--name",
            name,
            IMAGE,
            "/bin/sh",
            "-c",
            "echo ready; while :; do sleep 1 & wait $!; done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    child
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn running_containers_in_ps_and_rm_force() {
    let _g = serial();
    let Some(f) = Fixture::new("running_containers_in_ps_and_rm_force", DriverKind::Overlay) else {
        return;
    };
    let mut child = start_long(&f, "long");
    let running = ps_json(&f, false);
    assert_eq!(running.len(), 1, "{running:?}");
    assert_eq!(running[0]["State"], "running");
    // podman's Pid: the container's command, a child of the supervising imgbuild.
    let pid = running[0]["Pid"].as_u64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status.contains(&format!("\nPPid:\t{}\n", child.id())),
        "{status}"
    );
    let o = f.imgbuild(&["rm", "long"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is running"));
    let o = f.imgbuild(&["rm", "-f", "long"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The command was killed; its foreground `run` reports that as podman does.
    assert_eq!(child.wait().unwrap().code(), Some(137));
    f.assert_clean();

    // A supervisor killed outright leaves a dead container, which rm removes.
    let mut child = start_long(&f, "victim");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().cast_signed()),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    let all = ps_json(&f, true);
    assert_eq!(all[0]["State"], "dead", "{all:?}");
    assert!(ps_json(&f, false).is_empty());
    let o = f.imgbuild(&["rm", "victim"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    f.assert_clean();
}
