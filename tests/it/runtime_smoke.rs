//! The web-server smoke test end to end, as a user does it: descriptions/debian-httpd built
//! (and checked with `build --test`), loaded, `run -d -p`, the page fetched from the host,
//! `logs`, `exec`, `stop` with the image's stop signal (SIGQUIT, which its start script traps),
//! `start` again, `rm` — and nothing left behind: record, mount, cgroup, monitor, network
//! helper. Then outbound access from the image: the mirror's name resolves and a TCP
//! connection to it succeeds from inside.

use crate::support::build::{build, host_mirror, imgbuild, package_cache, preconditions};
use crate::support::runtime::http_get;
use crate::support::{description, mounts_under, scratch};
use std::net::TcpStream;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

fn run(scratch: &Path, args: &[&str]) -> Output {
    imgbuild(scratch).args(args).output().unwrap()
}

fn ok(scratch: &Path, args: &[&str]) -> String {
    let o = run(scratch, args);
    assert!(
        o.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Live (not zombie) processes named `comm`.
fn live(comm: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with(['Z', 'X']));
        if !zombie
            && std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
        {
            out.push(pid);
        }
    }
    out
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
#[cfg_attr(
    not(imgbuild_has_host_mirror),
    ignore = "needs a Debian archive in the host's apt sources"
)]
fn web_server_from_a_description_end_to_end() {
    let test = "web_server_from_a_description_end_to_end";
    if preconditions(test, "bookworm").is_none() {
        return;
    }
    let t = scratch(test);
    let s = t.path();
    let target = s.join("out");
    let config =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/structure-test/httpd.yaml");
    build(
        s,
        &description("debian-httpd"),
        &target,
        &package_cache(),
        s,
        &["--test", config.to_str().unwrap(), "--load"],
    );

    let helpers_before = live("slirp4netns").len();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let publish = format!("127.0.0.1:{port}:80");
    let id = ok(
        s,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            &publish,
            "debian-httpd:12",
        ],
    );
    assert_eq!(id.trim().len(), 64, "{id}");
    assert!(http_get(port, Duration::from_secs(30)).contains("imgbuild httpd smoke test"));

    let ps = ok(s, &["ps", "--format", "{{.Names}} {{.Ports}} {{.Status}}"]);
    assert!(
        ps.starts_with(&format!("web 127.0.0.1:{port}->80/tcp Up")),
        "{ps}"
    );
    let o = run(s, &["logs", "web"]);
    let logs =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(logs.contains("url:/"), "the request is logged: {logs}");
    let procs = ok(s, &["exec", "web", "busybox", "ps", "-o", "pid,args"]);
    assert!(procs.contains("busybox httpd -f"), "{procs}");
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(s, &["container", "inspect", "web"])).unwrap();
    let monitor = inspect[0]["State"]["ConmonPid"].as_u64().unwrap();
    assert_eq!(inspect[0]["Config"]["StopSignal"], libc::SIGQUIT);

    // stop sends the image's stop signal; the start script's trap ends the server cleanly,
    // well within the timeout.
    let t0 = Instant::now();
    ok(s, &["stop", "-t", "30", "web"]);
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(s, &["container", "inspect", "web"])).unwrap();
    assert_eq!(inspect[0]["State"]["Status"], "exited");
    assert_eq!(inspect[0]["State"]["ExitCode"], 0);
    let o = run(s, &["logs", "web"]);
    let logs =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(logs.contains("serve: SIGQUIT, stopping"), "{logs}");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port closed"
    );
    assert_eq!(
        live("slirp4netns").len(),
        helpers_before,
        "network helper left"
    );

    // start runs it again, on the same published port.
    ok(s, &["start", "web"]);
    assert!(http_get(port, Duration::from_secs(30)).contains("imgbuild httpd smoke test"));
    ok(s, &["rm", "-f", "web"]);

    // Nothing left: record, mounts, cgroups, monitor, network helper.
    let store = s.join("store");
    let runtime: Vec<_> = std::fs::read_dir(store.join("runtime"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name() != "lock")
        .collect();
    assert!(runtime.is_empty(), "records left: {runtime:?}");
    assert_eq!(mounts_under(&store), Vec::<String>::new());
    assert!(
        !live("imgbuild").contains(&u32::try_from(monitor).unwrap()),
        "monitor left"
    );
    assert_eq!(
        crate::support::cgroups_of(&[u32::try_from(monitor).unwrap()]),
        Vec::<std::path::PathBuf>::new()
    );
    assert_eq!(
        live("slirp4netns").len(),
        helpers_before,
        "network helper left"
    );

    // Outbound from the image, on the default private network: the mirror's host name
    // resolves, and a TCP connection to it gets an HTTP answer.
    let mirror = host_mirror("bookworm").unwrap();
    let rest = mirror.split_once("://").map_or(mirror.as_str(), |x| x.1);
    let hostport = rest.split('/').next().unwrap();
    let tls = mirror.starts_with("https://");
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h.to_string(), p.to_string()),
        _ => (
            hostport.to_string(),
            if tls { "443" } else { "80" }.to_string(),
        ),
    };
    if host.parse::<std::net::IpAddr>().is_err() {
        let resolved = ok(
            s,
            &[
                "run",
                "--rm",
                "--entrypoint",
                "getent",
                "debian-httpd:12",
                "hosts",
                &host,
            ],
        );
        assert!(resolved.contains(&host), "{resolved}");
    }
    // Plain HTTP gets an HTTP answer; for TLS the established connection is the proof.
    let script = if tls {
        format!("exec 3<>/dev/tcp/{host}/{port} && echo HTTP/1.x connected")
    } else {
        format!(
            "exec 3<>/dev/tcp/{host}/{port} && printf 'HEAD / HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n' >&3 && head -c 9 <&3"
        )
    };
    let answer = ok(
        s,
        &[
            "run",
            "--rm",
            "--entrypoint",
            "bash",
            "debian-httpd:12",
            "-c",
            &script,
        ],
    );
    assert!(answer.starts_with("HTTP/1."), "{answer}");
    ok(s, &["rm", "--all"]);
}
