//! Detached containers end to end on the busybox image: `run -d` of a web server, the page
//! fetched from the host, `logs`, `exec`, `stop` with the stop signal, `start` again,
//! `kill`, `wait`, `rm -f`, `container prune` — and nothing left behind (record, mount,
//! cgroup, monitor process).

use crate::support::cgroups_of;
use crate::support::runtime::*;
use imgbuild::storage::DriverKind;
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A free TCP port on loopback (bound, then released for the server to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The body of `GET /` from 127.0.0.1:`port` (see [`http_get`]).
fn page(port: u16, within: Duration) -> String {
    let resp = http_get(port, within);
    resp.split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default()
}

fn text(o: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ok(f: &Fixture, args: &[&str]) -> String {
    let o = f.imgbuild(args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{args:?}: {out}{err}");
    out
}

fn inspect(f: &Fixture, name: &str) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&ok(f, &["container", "inspect", name])).unwrap();
    v[0].clone()
}

/// Whether `pid` is a live process (a zombie waiting to be reaped is not: on machines whose
/// init does not reap, ended monitors stay as zombies).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_string()))
        .is_some_and(|r| !r.starts_with('Z') && !r.starts_with('X'))
}

/// A pidfd of process `pid`: readable once it has ended.
fn pidfd(pid: u32) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    assert!(fd >= 0, "pidfd_open {pid}");
    // SAFETY: a fresh fd we own.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(i32::try_from(fd).unwrap()) }
}

/// Wait (on the event, bounded by `within`) until `fd` is readable.
fn wait_readable(fd: &std::os::fd::OwnedFd, within: Duration) {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(within.as_millis()).unwrap();
    // SAFETY: one pollfd on the stack.
    let n = unsafe { libc::poll(&raw mut p, 1, ms) };
    assert_eq!(n, 1, "no event within {within:?}");
}

/// Live processes whose command line mentions the container id (its monitor).
fn processes_mentioning(id: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline"))
            && String::from_utf8_lossy(&cmd).contains(id)
            && alive(pid)
        {
            out.push(pid);
        }
    }
    out
}

const SERVER: &str = "mkdir -p /www && echo hello-from-imgbuild > /www/index.html && \
    trap 'echo got-TERM; exit 3' TERM; httpd -f -vv -p $PORT -h /www & wait";

fn web_server_lifecycle(driver: DriverKind) {
    let test = format!("web_server_lifecycle({driver})");
    let Some(f) = Fixture::new(&test, driver) else {
        return;
    };
    let port = free_port().to_string();
    let publish = format!("127.0.0.1:{port}:80");
    let out = ok(
        &f,
        &[
            "run", "-d", "--name", "web", "-p", &publish, "-e", "PORT=80", IMAGE, "/bin/sh", "-c",
            SERVER,
        ],
    );
    let id = out.trim().to_string();
    assert_eq!(id.len(), 64, "run -d prints the id: {out}");
    let port: u16 = port.parse().unwrap();
    assert_eq!(page(port, Duration::from_secs(20)), "hello-from-imgbuild\n");

    // ps shows it running; inspect has its pid and monitor.
    let ps = ok(&f, &["ps", "--format", "{{.Names}} {{.Status}} {{.Ports}}"]);
    assert!(ps.starts_with("web Up "), "{ps}");
    assert!(
        ps.trim_end()
            .ends_with(&format!("127.0.0.1:{port}->80/tcp")),
        "{ps}"
    );
    let info = inspect(&f, "web");
    assert_eq!(info["State"]["Status"], "running");
    assert_eq!(
        info["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"],
        port.to_string()
    );
    assert_eq!(info["HostConfig"]["NetworkMode"], "private");
    let pid = info["State"]["Pid"].as_u64().unwrap();
    assert!(pid > 0 && alive(u32::try_from(pid).unwrap()));
    let monitor = info["State"]["ConmonPid"].as_u64().unwrap();
    assert!(monitor > 0);

    // The request is in the log (httpd -vv logs each URL on stderr).
    let logs = f.imgbuild(&["logs", "web"]);
    let (lo, le) = text(&logs);
    assert!(logs.status.success(), "{le}");
    assert!(
        le.contains("url:/") || lo.contains("url:/"),
        "logs: {lo} / {le}"
    );
    // The last line (httpd's, on stderr) with its RFC 3339 time in front.
    let o = f.imgbuild(&["logs", "--timestamps", "--tail", "1", "web"]);
    let (to, te) = text(&o);
    let line = to + &te;
    let (time, rest) = line.split_once(' ').unwrap_or_default();
    assert!(
        time.len() > 20 && time.as_bytes()[10] == b'T' && time.ends_with('Z') && !rest.is_empty(),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1, "{line}");

    // exec joins the container: it sees httpd as one of its processes, under pid 1's tree.
    let ps_inside = ok(&f, &["exec", "web", "ps", "-o", "pid,comm"]);
    assert!(ps_inside.contains("httpd"), "{ps_inside}");
    assert!(
        ps_inside
            .lines()
            .any(|l| l.split_whitespace().next() == Some("1"))
    );
    let who = ok(
        &f,
        &[
            "exec",
            "-u",
            "app",
            "-w",
            "/tmp",
            "web",
            "sh",
            "-c",
            "id -u; pwd",
        ],
    );
    assert_eq!(who, "1000\n/tmp\n");
    let o = f.imgbuild(&[
        "exec",
        "-t",
        "web",
        "sh",
        "-c",
        "[ -t 0 ] && [ -t 1 ] && echo on-a-tty",
    ]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("on-a-tty"),
        "{:?}",
        text(&o)
    );
    let o = f.imgbuild(&["exec", "web", "no-such-command"]);
    assert_eq!(o.status.code(), Some(127));
    let status = ok(&f, &["exec", "web", "cat", "/proc/self/status"]);
    assert!(status.contains("CapBnd:\t00000000a80425fb"), "{status}");
    assert!(status.contains("Seccomp:\t2"), "{status}");

    // stop: SIGTERM (the default stop signal) reaches the shell's trap, well within the timeout.
    let t = Instant::now();
    ok(&f, &["stop", "-t", "30", "web"]);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let info = inspect(&f, "web");
    assert_eq!(info["State"]["Status"], "exited");
    assert_eq!(info["State"]["ExitCode"], 3);
    assert!(processes_mentioning(&id).is_empty(), "monitor left");
    let logs = ok(&f, &["logs", "web"]);
    assert!(logs.contains("got-TERM"), "{logs}");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());

    // start runs it again; the page is served again; its writable layer was kept.
    ok(&f, &["start", "web"]);
    assert_eq!(page(port, Duration::from_secs(20)), "hello-from-imgbuild\n");
    assert_eq!(
        ok(&f, &["exec", "web", "cat", "/www/index.html"]),
        "hello-from-imgbuild\n"
    );

    // kill with a signal the shell ignores by default leaves it; SIGKILL ends it; wait says 137.
    ok(&f, &["kill", "-s", "KILL", "web"]);
    assert_eq!(ok(&f, &["wait", "web"]).trim(), "137");
    let o = f.imgbuild(&["kill", "web"]);
    assert!(
        !o.status.success(),
        "kill of a stopped container is refused"
    );

    // A container that ignores its stop signal is killed after the timeout.
    ok(
        &f,
        &[
            "run",
            "-d",
            "--name",
            "stubborn",
            IMAGE,
            "sh",
            "-c",
            "trap '' TERM; while :; do sleep 1; done",
        ],
    );
    let t = Instant::now();
    ok(&f, &["stop", "-t", "1", "stubborn"]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert_eq!(inspect(&f, "stubborn")["State"]["ExitCode"], 137);

    // rm -f of a running container; prune of the stopped ones; nothing left.
    ok(&f, &["start", "web"]);
    let info = inspect(&f, "web");
    let monitor = u32::try_from(info["State"]["ConmonPid"].as_u64().unwrap()).unwrap();
    ok(&f, &["rm", "-f", "web"]);
    assert!(!alive(monitor), "monitor left");
    assert_eq!(
        cgroups_of(&[monitor]),
        Vec::<PathBuf>::new(),
        "cgroups left"
    );
    let pruned = ok(&f, &["container", "prune"]);
    assert_eq!(pruned.lines().count(), 1, "{pruned}");
    f.assert_clean();
    assert!(processes_mentioning(&id).is_empty());
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
#[cfg_attr(
    not(imgbuild_has_host_mirror),
    ignore = "needs a Debian archive in the host's apt sources"
)]
fn web_server_lifecycle_overlay() {
    web_server_lifecycle(DriverKind::Overlay);
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
#[cfg_attr(
    not(imgbuild_has_host_mirror),
    ignore = "needs a Debian archive in the host's apt sources"
)]
fn web_server_lifecycle_vfs() {
    web_server_lifecycle(DriverKind::Vfs);
}

/// `run -d` of a command that does not exist fails as `run` does (127) and leaves nothing;
/// `--rm -d` removes the container once its command ends; `logs -f` follows to the end.
#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
#[cfg_attr(
    not(imgbuild_has_host_mirror),
    ignore = "needs a Debian archive in the host's apt sources"
)]
fn detached_failures_auto_remove_and_follow() {
    let Some(f) = Fixture::new(
        "detached_failures_auto_remove_and_follow",
        DriverKind::Overlay,
    ) else {
        return;
    };
    let o = f.imgbuild(&["run", "-d", IMAGE, "/no/such/program"]);
    assert_eq!(o.status.code(), Some(127), "{:?}", text(&o));
    f.assert_clean();

    let out = ok(
        &f,
        &[
            "run",
            "-d",
            "--name",
            "talker",
            IMAGE,
            "sh",
            "-c",
            "for i in 1 2 3; do echo line$i; sleep 0.2; done; echo oops >&2",
        ],
    );
    assert_eq!(out.trim().len(), 64);
    // Follows until the command ends, then returns.
    let o = f.imgbuild(&["logs", "-f", "talker"]);
    let (lo, le) = text(&o);
    assert_eq!(lo, "line1\nline2\nline3\n");
    assert_eq!(le, "oops\n");
    assert_eq!(ok(&f, &["wait", "talker"]).trim(), "0");
    // --tail counts the lines of both streams together, as podman's.
    let o = f.imgbuild(&["logs", "--tail", "2", "talker"]);
    assert_eq!(text(&o), ("line3\n".to_string(), "oops\n".to_string()));
    ok(&f, &["rm", "talker"]);

    // A killed monitor takes the command with it; the container is `dead`, and rm cleans it.
    ok(
        &f,
        &["run", "-d", "--name", "orphan", IMAGE, "sleep", "600"],
    );
    // podman's top-level inspect finds containers too.
    let info: serde_json::Value = serde_json::from_str(&ok(&f, &["inspect", "orphan"])).unwrap();
    let monitor = u32::try_from(info[0]["State"]["ConmonPid"].as_u64().unwrap()).unwrap();
    let pid = u32::try_from(info[0]["State"]["Pid"].as_u64().unwrap()).unwrap();
    assert!(alive(pid));
    let pidfd = pidfd(pid);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor.cast_signed()),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    wait_readable(&pidfd, Duration::from_secs(20));
    assert_eq!(inspect(&f, "orphan")["State"]["Status"], "dead");
    ok(&f, &["rm", "orphan"]);
    f.assert_clean();
    ok(
        &f,
        &[
            "run",
            "-d",
            "--rm",
            "--name",
            "brief",
            IMAGE,
            "sh",
            "-c",
            "sleep 0.3",
        ],
    );
    let o = f.imgbuild(&["wait", "brief"]);
    assert!(
        o.status.success() || text(&o).1.contains("no such container"),
        "{:?}",
        text(&o)
    );
    // wait returns once the monitor is gone, after it removed the container.
    f.assert_clean();
}

/// The podman flags smoke tests use: each one's effect seen from inside the container.
#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
#[cfg_attr(
    not(imgbuild_has_host_mirror),
    ignore = "needs a Debian archive in the host's apt sources"
)]
fn podman_flags_take_effect_inside() {
    let Some(f) = Fixture::new("podman_flags_take_effect_inside", DriverKind::Overlay) else {
        return;
    };
    let run = |opts: &[&str], script: &str| f.sh_ok(opts, script);
    // --entrypoint replaces the image's entrypoint and drops its Cmd.
    assert_eq!(
        ok(
            &f,
            &["run", "--rm", "--entrypoint", "/bin/echo", IMAGE, "hi"]
        ),
        "hi\n"
    );
    // Capabilities: Docker's default set, plus and minus.
    let capbnd = |opts: &[&str]| {
        run(opts, "grep CapBnd /proc/self/status")
            .split_whitespace()
            .nth(1)
            .map(|h| u64::from_str_radix(h, 16).unwrap())
            .unwrap()
    };
    assert_eq!(capbnd(&[]), 0xa804_25fb);
    assert_eq!(capbnd(&["--cap-add", "NET_ADMIN"]), 0xa804_25fb | 1 << 12);
    assert_eq!(capbnd(&["--cap-drop", "ALL", "--cap-add", "CHOWN"]), 1);
    let o = f.imgbuild(&["run", "--rm", "--cap-add", "BOGUS", IMAGE, "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o).1.contains("BOGUS"), "{:?}", text(&o));
    // tmpfs mounts, with their options, and the read-only defaults.
    let mounts = run(
        &["--tmpfs", "/scratch:size=1m,mode=700"],
        "grep ' /scratch ' /proc/mounts; stat -c %a /scratch",
    );
    assert!(
        mounts.contains("tmpfs /scratch tmpfs") && mounts.contains("size=1024k"),
        "{mounts}"
    );
    assert!(
        mounts.contains("noexec") && mounts.ends_with("700\n"),
        "{mounts}"
    );
    let (code, _, _) = f.sh(
        &["--tmpfs", "/scratch:size=1m"],
        "dd if=/dev/zero of=/scratch/x bs=1k count=2048",
    );
    assert_ne!(code, 0, "a 1 MiB tmpfs takes no 2 MiB");
    assert_eq!(
        run(
            &["--read-only"],
            "touch /tmp/a /var/tmp/b /run/c && echo ok; touch /etc/x 2>/dev/null || echo ro"
        ),
        "ok\nro\n"
    );
    assert_eq!(
        run(
            &["--read-only", "--read-only-tmpfs=false"],
            "touch /tmp/a 2>/dev/null || echo ro"
        ),
        "ro\n"
    );
    // --init: the command is not PID 1, and a stop signal reaches it through the init.
    assert_eq!(run(&["--init"], "echo $$"), "2\n");
    let t = Instant::now();
    ok(
        &f,
        &[
            "run", "-d", "--init", "--name", "sleeper", IMAGE, "sleep", "600",
        ],
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "run -d returns once started"
    );
    let t = Instant::now();
    ok(&f, &["stop", "-t", "20", "sleeper"]);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(inspect(&f, "sleeper")["State"]["ExitCode"], 143);
    // --stop-signal, kept for later stops.
    ok(
        &f,
        &[
            "run",
            "-d",
            "--name",
            "usr1",
            "--stop-signal",
            "USR1",
            IMAGE,
            "sh",
            "-c",
            "trap 'exit 7' USR1; while :; do sleep 1; done",
        ],
    );
    ok(&f, &["stop", "usr1"]);
    assert_eq!(inspect(&f, "usr1")["State"]["ExitCode"], 7);
    // --ulimit, --shm-size, --label.
    assert_eq!(
        run(&["--ulimit", "nofile=100:200"], "ulimit -n; ulimit -Hn"),
        "100\n200\n"
    );
    let shm = run(&["--shm-size", "1m"], "grep ' /dev/shm ' /proc/mounts");
    assert!(shm.contains("size=1024k"), "{shm}");
    ok(
        &f,
        &[
            "run",
            "--name",
            "labelled",
            "-l",
            "team=base",
            IMAGE,
            "true",
        ],
    );
    assert_eq!(inspect(&f, "labelled")["Config"]["Labels"]["team"], "base");
    // exec gets the container's capabilities, not the default set.
    ok(
        &f,
        &[
            "run",
            "-d",
            "--name",
            "nocaps",
            "--cap-drop",
            "ALL",
            IMAGE,
            "sleep",
            "600",
        ],
    );
    let st = ok(
        &f,
        &["exec", "nocaps", "grep", "CapBnd", "/proc/self/status"],
    );
    assert!(st.contains("0000000000000000"), "{st}");
    ok(&f, &["rm", "-f", "nocaps"]);
    // --platform: a stored image of another platform is refused, naming both.
    let o = f.imgbuild(&["run", "--rm", "--platform", "linux/arm64", IMAGE, "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        text(&o).1.contains("linux/amd64") && text(&o).1.contains("linux/arm64"),
        "{:?}",
        text(&o)
    );
    ok(&f, &["rm", "--all"]);
    f.assert_clean();
}

/// docs/run.md's podman table: every row marked supported names an imgbuild command whose
/// flags its `--help` lists, so the table cannot claim a flag imgbuild lacks.
#[test]
fn run_table_rows_are_true() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/run.md")).unwrap();
    let table = doc
        .split("## podman compared")
        .nth(1)
        .expect("docs/run.md has a 'podman compared' section");
    let mut checked = 0;
    for line in table.lines().filter(|l| l.starts_with("| `")) {
        let unescaped = line.replace("\\|", "/");
        let cells: Vec<&str> = unescaped
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        assert!(cells.len() >= 4, "{line}");
        if cells[2].trim() != "✓" {
            assert_eq!(
                cells[1].trim(),
                "—",
                "unsupported rows name no command: {line}"
            );
            continue;
        }
        let cmd = cells[1].trim().trim_matches('`');
        let words: Vec<&str> = cmd.split_whitespace().collect();
        assert_eq!(words[0], "imgbuild", "{line}");
        let sub: Vec<&str> = if words[1] == "container" {
            words[1..3].to_vec()
        } else {
            vec![words[1]]
        };
        let mut args = sub.clone();
        args.push("--help");
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_imgbuild"))
            .args(&args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}");
        let help = String::from_utf8_lossy(&o.stdout);
        for w in words.iter().filter(|w| w.starts_with('-')) {
            let flag = w.split('=').next().unwrap();
            let listed = if flag.starts_with("--") {
                help.contains(&format!("{flag} "))
                    || help.contains(&format!("{flag}\n"))
                    || help.contains(&format!("{flag}="))
            } else {
                help.contains(&format!("{flag}, "))
            };
            assert!(
                listed,
                "docs/run.md row `{cmd}`: {flag} is not in `imgbuild {} --help`",
                sub.join(" ")
            );
        }
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} supported rows");
}
