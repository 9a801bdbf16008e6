//! The sandbox against a real root tree: a busybox-static tree built once from the host's
//! Debian mirror into the test target dir. Needs root; skips clearly without it or without
//! the mirror.

use crate::support::{busybox, cgroups_of, in_process_sandbox, root_or_skip, skip};

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use imgbuild::sandbox::caps::{self, DOCKER_DEFAULT};
use imgbuild::sandbox::{Limits, Network, Outcome, Profile, Sandbox, SandboxError, Stdio};

/// The shared busybox root and the in-process sandbox lock (the leak checks below look for
/// this process's cgroups, and the signal tests signal processes by marker), or `None` (after
/// [`skip`]ping `test`).
fn setup(test: &str) -> Option<(PathBuf, MutexGuard<'static, ()>)> {
    if !root_or_skip(test) {
        return None;
    }
    let root = match busybox::root() {
        Ok(r) => r.to_path_buf(),
        Err(e) => {
            skip(format_args!(
                "{test} needs the busybox-static test root (Debian mirror): {e}"
            ));
            return None;
        }
    };
    Some((root, in_process_sandbox()))
}

fn mountinfo() -> BTreeSet<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(|l| l.split(' ').skip(2).collect::<Vec<_>>().join(" "))
        .collect()
}

/// Checks after each test that the host gained no mount and no cgroup.
struct Clean {
    root: PathBuf,
    before: BTreeSet<String>,
}

impl Clean {
    fn new(root: &Path) -> Clean {
        Clean {
            root: root.to_path_buf(),
            before: mountinfo(),
        }
    }
}

impl Drop for Clean {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let after = mountinfo();
        let root = self.root.to_string_lossy().to_string();
        let new: Vec<&String> = after
            .difference(&self.before)
            .filter(|m| m.contains(&root) || m.contains(" - proc ") || m.contains(" - devpts "))
            .collect();
        assert!(new.is_empty(), "mounts left on the host: {new:#?}");
        assert!(
            !after.iter().any(|m| m.contains(&root)),
            "the test root is mounted on the host"
        );
        assert_eq!(
            cgroups_of(&[std::process::id()]),
            Vec::<PathBuf>::new(),
            "cgroups left behind"
        );
    }
}

fn sh(root: &Path, script: &str) -> Sandbox {
    Sandbox::new(root, ["/bin/sh", "-c", script])
        .env("PATH", "/bin")
        .stdout(Stdio::Capture)
        .stderr(Stdio::Capture)
}

fn text(o: &Outcome) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn run_ok(sb: Sandbox) -> String {
    let o = sb.run().expect("sandbox runs");
    assert_eq!(
        o.code,
        0,
        "stdout: {}\nstderr: {}",
        text(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    text(&o)
}

fn host_mask(field: &str) -> u64 {
    caps::status_mask(
        &std::fs::read_to_string("/proc/self/status").unwrap(),
        field,
    )
    .unwrap()
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn command_is_pid1_with_own_hostname_and_no_host_processes() {
    let Some((root, _g)) = setup("command_is_pid1_with_own_hostname_and_no_host_processes") else {
        return;
    };
    let _c = Clean::new(&root);
    for profile in [Profile::Build, Profile::Container] {
        let out = run_ok(
            sh(
                &root,
                "echo $$; hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /proc | grep -c '^[0-9]'",
            )
            .hostname("sbx-test")
            .profile(profile),
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "1", "{profile:?}: {out}");
        assert_eq!(lines[1], "sbx-test");
        assert!(
            lines[2].starts_with("/bin/sh -c"),
            "pid 1 is the command: {out}"
        );
        // sh, ls and grep: nothing of the host's.
        let procs: usize = lines[3].parse().unwrap();
        assert!(procs <= 4, "host processes visible: {procs}");
    }
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn build_profile_has_build_capabilities_seccomp_and_cannot_mount() {
    let Some((root, _g)) = setup("build_profile_has_build_capabilities_seccomp_and_cannot_mount")
    else {
        return;
    };
    let _c = Clean::new(&root);
    let status = run_ok(sh(&root, "cat /proc/self/status"));
    assert_eq!(
        caps::status_mask(&status, "CapBnd"),
        Some(caps::BUILD_DEFAULT & host_mask("CapBnd"))
    );
    assert_eq!(
        caps::status_mask(&status, "CapEff"),
        Some(caps::BUILD_DEFAULT & host_mask("CapBnd"))
    );
    // No no_new_privs: setuid programs still work in maintainer scripts.
    assert!(status.contains("NoNewPrivs:\t0"));
    // The default profile plus dpkg's syncs as no-ops; `sync` still succeeds.
    assert!(status.contains("Seccomp:\t2"), "{status}");
    run_ok(sh(&root, "sync"));
    // Hooks cannot mount (no CAP_SYS_ADMIN, and the filter refuses mount).
    let o = sh(&root, "mount -t tmpfs scratch /tmp").run().unwrap();
    assert_ne!(o.code, 0, "mount must fail in a build sandbox");
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn container_profile_has_docker_capabilities_and_cannot_mount() {
    let Some((root, _g)) = setup("container_profile_has_docker_capabilities_and_cannot_mount")
    else {
        return;
    };
    let _c = Clean::new(&root);
    let status = run_ok(sh(&root, "cat /proc/self/status").profile(Profile::Container));
    assert_eq!(caps::status_mask(&status, "CapBnd"), Some(DOCKER_DEFAULT));
    assert_eq!(caps::status_mask(&status, "CapEff"), Some(DOCKER_DEFAULT));
    assert_eq!(caps::status_mask(&status, "CapInh"), Some(0));
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    // Docker's default seccomp profile (a running image keeps real syncs).
    assert!(status.contains("Seccomp:\t2"), "{status}");
    let o = sh(&root, "mount -t tmpfs scratch /tmp")
        .profile(Profile::Container)
        .run()
        .unwrap();
    assert_ne!(o.code, 0, "mount must fail in a container");
    // A non-root user has no capabilities at all.
    let status = run_ok(
        sh(&root, "cat /proc/self/status; id -u; id -G")
            .profile(Profile::Container)
            .user(1000, 1000, vec![5]),
    );
    assert_eq!(caps::status_mask(&status, "CapEff"), Some(0));
    assert!(status.contains("\n1000\n1000 5\n"), "{status}");
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn sys_is_readonly_and_proc_is_masked_in_containers() {
    let Some((root, _g)) = setup("sys_is_readonly_and_proc_is_masked_in_containers") else {
        return;
    };
    let _c = Clean::new(&root);
    for profile in [Profile::Build, Profile::Container] {
        let o = sh(&root, "mkdir /sys/x").profile(profile).run().unwrap();
        assert_ne!(o.code, 0, "{profile:?}: /sys writable");
        let mounts = run_ok(sh(&root, "cat /proc/mounts").profile(profile));
        let sys = mounts
            .lines()
            .find(|l| l.split(' ').nth(1) == Some("/sys"))
            .unwrap();
        assert!(sys.split(' ').nth(3).unwrap().starts_with("ro,"), "{sys}");
    }
    let out = run_ok(
        sh(
            &root,
            "for p in /proc/kcore /proc/keys /proc/timer_list; do [ -e $p ] && echo $p $(wc -c < $p); done; \
             cat /proc/mounts; echo 1 > /proc/sys/kernel/domainname && echo sys-writable; true",
        )
        .profile(Profile::Container),
    );
    let mut checked = 0;
    for p in ["/proc/kcore", "/proc/keys", "/proc/timer_list"] {
        if Path::new(p).exists() {
            assert!(out.contains(&format!("{p} 0\n")), "{p} not masked: {out}");
            checked += 1;
        }
    }
    assert!(checked > 0, "no maskable path exists on this kernel");
    assert!(!out.contains("sys-writable"), "/proc/sys writable: {out}");
    // Build hooks are masked the same way, and cannot write the host's sysctls.
    let out = run_ok(sh(
        &root,
        "wc -c < /proc/kcore 2>/dev/null; echo 1 > /proc/sys/kernel/domainname && echo sys-writable; true",
    ));
    assert!(
        !out.contains("sys-writable"),
        "/proc/sys writable in a build: {out}"
    );
    if Path::new("/proc/kcore").exists() {
        assert!(
            out.starts_with("0\n"),
            "build profile did not mask /proc/kcore: {out}"
        );
    }
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn exit_codes_and_signals() {
    let Some((root, _g)) = setup("exit_codes_and_signals") else {
        return;
    };
    let _c = Clean::new(&root);
    let o = sh(&root, "exit 42").run().unwrap();
    assert_eq!((o.code, o.signal), (42, None));
    // Killed from outside with SIGKILL: 137.
    let marker = format!("killme-{}", std::process::id());
    let script = "while :; do sleep 1; done";
    let handle = {
        let root = root.clone();
        let marker = marker.clone();
        std::thread::spawn(move || {
            Sandbox::new(&root, ["/bin/sh", "-c", script, &marker])
                .env("PATH", "/bin")
                .run()
        })
    };
    let pid = wait_for_marker(&marker, Duration::from_secs(10)).expect("sandbox started");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
    let o = handle.join().unwrap().unwrap();
    assert_eq!((o.code, o.signal), (137, Some(9)));
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn stdio_capture_env_cwd_and_errors() {
    let Some((root, _g)) = setup("stdio_capture_env_cwd_and_errors") else {
        return;
    };
    let _c = Clean::new(&root);
    let o = sh(
        &root,
        "echo out; echo err >&2; pwd; echo $FOO; env | cut -d= -f1 | sort | tr '\\n' ' '",
    )
    .env("FOO", "bar")
    .cwd("/etc")
    .run()
    .unwrap();
    // Nothing of imgbuild's environment: only what was set, and what sh adds itself.
    assert_eq!(text(&o), "out\n/etc\nbar\nFOO PATH PWD SHLVL ");
    assert_eq!(o.stderr, b"err\n");
    match sh(&root, "true").cwd("/no/such/dir").run() {
        Err(SandboxError::Setup { step, .. }) => assert!(step.contains("chdir"), "{step}"),
        other => panic!("expected a setup error, got {other:?}"),
    }
    match Sandbox::new(&root, ["no-such-program"])
        .env("PATH", "/bin")
        .run()
    {
        Err(e @ SandboxError::Exec { .. }) => {
            let SandboxError::Exec { ref error, .. } = e else {
                unreachable!()
            };
            assert_eq!(error.raw_os_error(), Some(libc::ENOENT));
            // Said as a shell would, without the sandbox's root directory.
            assert_eq!(
                e.to_string(),
                "cannot execute \"no-such-program\": executable file not found in $PATH"
            );
        }
        other => panic!("expected an exec error, got {other:?}"),
    }
    // PATH search finds the program.
    let o = Sandbox::new(&root, ["true"])
        .env("PATH", "/nonexistent:/bin")
        .run()
        .unwrap();
    assert_eq!(o.code, 0);
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn dev_resolv_conf_and_binds() {
    let Some((root, _g)) = setup("dev_resolv_conf_and_binds") else {
        return;
    };
    let _c = Clean::new(&root);
    let out = run_ok(sh(
        &root,
        "ls /dev | tr '\\n' ' '; echo; readlink /dev/ptmx; head -c 5 /dev/urandom | wc -c; echo x > /dev/null; \
         grep ' /dev/pts ' /proc/mounts",
    ));
    let lines: Vec<&str> = out.lines().collect();
    for d in [
        "null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "fd", "stdin",
        "stdout", "stderr",
    ] {
        assert!(
            lines[0].split(' ').any(|x| x == d),
            "/dev/{d} missing: {}",
            lines[0]
        );
    }
    assert_eq!(lines[1], "pts/ptmx");
    assert_eq!(lines[2], "5");
    assert!(lines[3].contains("ptmxmode=666"), "{}", lines[3]);

    // The host's resolv.conf is shown read-only; the root's file never changes.
    let before = std::fs::read(root.join("etc/resolv.conf")).unwrap();
    let o = sh(
        &root,
        "cat /etc/resolv.conf; echo hacked > /etc/resolv.conf",
    )
    .run()
    .unwrap();
    assert_ne!(o.code, 0, "resolv.conf must be read-only");
    assert_eq!(o.stdout, std::fs::read("/etc/resolv.conf").unwrap());
    assert_eq!(std::fs::read(root.join("etc/resolv.conf")).unwrap(), before);
    let o = sh(&root, "cat /etc/resolv.conf")
        .resolv_conf(false)
        .run()
        .unwrap();
    assert_eq!(o.stdout, before);

    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in"), "from host\n").unwrap();
    let ro = tempfile::tempdir().unwrap();
    let out = run_ok(
        sh(
            &root,
            "cat /work/rw/in; echo back > /work/rw/out; touch /mnt/ro/x 2>/dev/null && echo ro-writable; true",
        )
        .bind(host.path(), "/work/rw", false)
        .bind(ro.path(), "/mnt/ro", true),
    );
    assert_eq!(out, "from host\n");
    assert_eq!(
        std::fs::read_to_string(host.path().join("out")).unwrap(),
        "back\n"
    );
    assert!(!ro.path().join("x").exists());
    let _ = std::fs::remove_dir(root.join("mnt/ro"));
    let _ = std::fs::remove_dir(root.join("mnt"));
    let _ = std::fs::remove_dir(root.join("work/rw"));
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn read_only_root_and_rlimits() {
    let Some((root, _g)) = setup("read_only_root_and_rlimits") else {
        return;
    };
    let _c = Clean::new(&root);
    let o = sh(&root, "touch /tmp/ro-test")
        .profile(Profile::Container)
        .read_only_root(true)
        .run()
        .unwrap();
    assert_ne!(o.code, 0);
    assert!(!root.join("tmp/ro-test").exists());
    let out = run_ok(sh(&root, "ulimit -n; ulimit -Hn").profile(Profile::Container));
    let host_hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .unwrap()
        .1;
    let expect = host_hard.min(imgbuild::sandbox::CONTAINER_NOFILE);
    assert_eq!(out, format!("{expect}\n{expect}\n"));
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn network_none_has_only_loopback() {
    let Some((root, _g)) = setup("network_none_has_only_loopback") else {
        return;
    };
    let _c = Clean::new(&root);
    let script = "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; cat /sys/class/net/lo/flags";
    let out = run_ok(sh(&root, script).network(Network::None));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "lo", "{out}");
    let flags = u32::from_str_radix(lines[1].trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is up");
    assert_eq!(lines.len(), 2, "only lo: {out}");
    let host = run_ok(sh(&root, "tail -n +3 /proc/net/dev | wc -l").network(Network::Host));
    let host_ifaces = std::fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .count()
        - 2;
    assert_eq!(host.trim(), host_ifaces.to_string());
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn tty_is_allocated_and_sized() {
    let Some((root, _g)) = setup("tty_is_allocated_and_sized") else {
        return;
    };
    let _c = Clean::new(&root);
    let o = sh(
        &root,
        "test -t 0 && test -t 1 && echo tty-ok; stty size; test -c /dev/console && echo console",
    )
    .tty(true)
    .stdin(Stdio::Null)
    .run()
    .unwrap();
    let out = text(&o).replace('\r', "");
    assert_eq!(o.code, 0, "{out}");
    assert_eq!(out, "tty-ok\n24 80\nconsole\n");
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn memory_and_pids_limits_on_cgroups() {
    let Some((root, _g)) = setup("memory_and_pids_limits_on_cgroups") else {
        return;
    };
    let _c = Clean::new(&root);
    let o = sh(&root, "dd if=/dev/zero of=/dev/null bs=256M count=1")
        .profile(Profile::Container)
        .limits(Limits {
            memory: Some(64 << 20),
            ..Limits::default()
        })
        .run()
        .unwrap();
    assert_eq!(o.code, 137, "allocator not OOM-killed: {o:?}");
    // Without the limit the same command succeeds.
    run_ok(sh(
        &root,
        "dd if=/dev/zero of=/dev/null bs=256M count=1 2>/dev/null",
    ));

    // The subshell forks until the limit stops it (busybox sh then gives up); the sleeps it
    // started stay, and pid 1 counts them with builtins alone.
    let bomb = "(i=0; while [ $i -lt 60 ]; do sleep 30 & i=$((i+1)); done) 2>/dev/null; \
                set -- /proc/[0-9]*; echo $#";
    let o = sh(&root, bomb)
        .profile(Profile::Container)
        .limits(Limits {
            pids: Some(20),
            ..Limits::default()
        })
        .run()
        .unwrap();
    let count: usize = text(&o).trim().parse().unwrap();
    assert!(count <= 20, "pids limit not enforced: {count} processes");
    assert!(count >= 10, "the fork bomb did not run: {count}");
    // In its cgroup namespace the command sees its own cgroup as the root, and its limits
    // under /sys/fs/cgroup.
    let cpus = run_ok(
        sh(
            &root,
            "cat /proc/self/cgroup; cat /sys/fs/cgroup/cpu.max /sys/fs/cgroup/cpu*/cpu.cfs_quota_us 2>/dev/null; true",
        )
        .limits(Limits {
            cpus: Some(0.5),
            ..Limits::default()
        }),
    );
    assert!(
        !cpus.contains("imgbuild-sandbox-"),
        "cgroup path visible: {cpus}"
    );
    assert!(cpus.contains("50000"), "limit not visible: {cpus}");
    // A setup failure removes the cgroups too (checked by `Clean`).
    let err = sh(&root, "true")
        .cwd("/no/such/dir")
        .limits(Limits {
            pids: Some(10),
            memory: Some(64 << 20),
            cpus: None,
        })
        .run();
    assert!(matches!(err, Err(SandboxError::Setup { .. })), "{err:?}");
}

fn wait_for_marker(marker: &str, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(p) = find_marker(marker) {
            return Some(p);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn find_marker(marker: &str) -> Option<i32> {
    for e in std::fs::read_dir("/proc").ok()?.filter_map(Result::ok) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let mut cmd = Vec::new();
        if std::fs::File::open(e.path().join("cmdline"))
            .and_then(|mut f| f.read_to_end(&mut cmd))
            .is_ok()
            && cmd.starts_with(b"/bin/sh\0")
            && cmd.split(|&b| b == 0).any(|a| a == marker.as_bytes())
        {
            return Some(pid);
        }
    }
    None
}

fn imgbuild_sandbox(
    root: &Path,
    script: &str,
    marker: &str,
    extra: &[&str],
) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_imgbuild"))
        .args(["sandbox-run", "--container"])
        .args(extra)
        .arg(root)
        .args(["/bin/sh", "-c", script, marker])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn sigterm_to_imgbuild_reaches_the_command() {
    let Some((root, _g)) = setup("sigterm_to_imgbuild_reaches_the_command") else {
        return;
    };
    let _c = Clean::new(&root);
    let marker = format!("term-{}", std::process::id());
    let script =
        "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 1 & wait $!; done";
    let mut child = imgbuild_sandbox(&root, script, &marker, &[]);
    // "ready" is printed once the trap is set: the event to wait for.
    let mut stdout = child.stdout.take().unwrap();
    let mut ready = [0u8; 6];
    stdout.read_exact(&mut ready).unwrap();
    assert_eq!(&ready, b"ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().cast_signed()),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    let st = child.wait().unwrap();
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    assert_eq!(st.code(), Some(7), "{out}");
    assert_eq!(out, "got-term\n");
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn sigkill_of_imgbuild_kills_the_sandbox_and_leaves_no_mounts() {
    let Some((root, _g)) = setup("sigkill_of_imgbuild_kills_the_sandbox_and_leaves_no_mounts")
    else {
        return;
    };
    let _c = Clean::new(&root);
    let marker = format!("orphan-{}", std::process::id());
    let mut child = imgbuild_sandbox(
        &root,
        "while :; do sleep 1; done",
        &marker,
        &["--memory", "268435456"],
    );
    let inner = wait_for_marker(&marker, Duration::from_secs(10)).expect("sandbox started");
    // The sandbox's mounts exist only in its own mount namespace.
    let ns = std::fs::read_to_string(format!("/proc/{inner}/mountinfo")).unwrap();
    assert!(ns.contains(" /proc "), "sandbox has its own /proc");
    assert!(
        !mountinfo()
            .iter()
            .any(|m| m.contains(&root.to_string_lossy().to_string()))
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while find_marker(&marker).is_some() {
        assert!(Instant::now() < deadline, "sandbox outlived imgbuild");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Its cgroup could not be removed by the killed imgbuild; the next sandbox with limits
    // sweeps it away.
    let stale_dirs = || {
        walkdir::WalkDir::new("/sys/fs/cgroup")
            .max_depth(6)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| {
                imgbuild::sandbox::cgroup::owner_pid(&e.file_name().to_string_lossy())
                    == Some(child.id())
            })
            .map(walkdir::DirEntry::into_path)
            .collect::<Vec<_>>()
    };
    let stale = || stale_dirs().len();
    assert!(stale() >= 1, "the killed imgbuild's cgroups");
    // Only a cgroup without processes can be removed: wait until the killed sandbox has been
    // reaped (its zombie still counts as a member under load).
    let deadline = Instant::now() + Duration::from_secs(10);
    while stale_dirs().iter().any(|d| {
        std::fs::read_to_string(d.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty())
    }) {
        assert!(
            Instant::now() < deadline,
            "the killed sandbox was never reaped"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    run_ok(sh(&root, "true").limits(Limits {
        memory: Some(256 << 20),
        ..Limits::default()
    }));
    assert_eq!(stale(), 0, "stale cgroup swept");
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn tty_copies_the_terminal_size_and_restores_its_mode() {
    let Some((root, _g)) = setup("tty_copies_the_terminal_size_and_restores_its_mode") else {
        return;
    };
    let _c = Clean::new(&root);
    // A terminal standing in for the user's: 33 rows, 99 columns, cooked mode.
    let ws = nix::pty::Winsize {
        ws_row: 33,
        ws_col: 99,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let term = nix::pty::openpty(&ws, None).unwrap();
    let before = nix::sys::termios::tcgetattr(&term.slave).unwrap();
    let o = sh(&root, "stty size; stty -a | grep -c -- -icanon; true")
        .tty(true)
        .stdin(Stdio::Fd(term.slave.try_clone().unwrap()))
        .run()
        .unwrap();
    let out = text(&o).replace('\r', "");
    assert_eq!(o.code, 0, "{out}");
    // The command's own pty is cooked (icanon on), whatever imgbuild's terminal is set to.
    assert_eq!(out, "33 99\n0\n");
    let after = nix::sys::termios::tcgetattr(&term.slave).unwrap();
    assert_eq!(
        before.local_flags, after.local_flags,
        "terminal mode restored"
    );
    assert_eq!(before.input_flags, after.input_flags);
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn output_to_a_given_fd() {
    let Some((root, _g)) = setup("output_to_a_given_fd") else {
        return;
    };
    let _c = Clean::new(&root);
    let file = tempfile::tempfile().unwrap();
    let mut reader = file.try_clone().unwrap();
    let o = Sandbox::new(&root, ["/bin/sh", "-c", "echo to-file; echo to-null >&2"])
        .stdout(Stdio::Fd(file.into()))
        .stderr(Stdio::Null)
        .run()
        .unwrap();
    assert_eq!(o.code, 0);
    assert!(o.stdout.is_empty() && o.stderr.is_empty());
    use std::io::Seek;
    reader.rewind().unwrap();
    let mut s = String::new();
    reader.read_to_string(&mut s).unwrap();
    assert_eq!(s, "to-file\n");
}
