//! `imgbuild run`'s private network end to end on the busybox image: outbound name resolution
//! and a TCP connection to the host's Debian mirror, a published port served from inside,
//! `--add-host`/`--dns` in the container's files, the helper tied to the run (none left
//! behind, also when imgbuild is killed), and a missing helper refused. Needs root and the
//! Debian mirror (the busybox tree comes from it): reported as ignored without root or a mirror
//! in the apt sources; a mirror that does not answer fails the test in CI.

use crate::support::build::host_mirror;
use crate::support::runtime::{Fixture, IMAGE};
use imgbuild::storage::DriverKind;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The host name and port of the host's Debian mirror, read from its apt sources.
fn mirror_host() -> Result<(String, u16), String> {
    let uri = host_mirror("bookworm")?;
    let (scheme, rest) = uri.split_once("://").ok_or(format!("not a URL: {uri}"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| format!("bad port in {uri}"))?),
        None => (authority, if scheme == "https" { 443 } else { 80 }),
    };
    Ok((host.to_string(), port))
}

/// Live (not zombie) `slirp4netns` processes among `pids`.
fn live_helpers(pids: &[u32]) -> Vec<u32> {
    pids.iter()
        .copied()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                let state = s.rsplit_once(") ").map(|(_, r)| r.chars().next());
                state != Some(Some('Z'))
            })
        })
        .collect()
}

/// The `slirp4netns` children of process `parent`.
fn helpers_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((comm, rest)) = stat.split_once(" (").and_then(|(_, r)| r.rsplit_once(") "))
        else {
            continue;
        };
        let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if comm == "slirp4netns" && ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The default network reaches the outside: the mirror's name resolves through the
/// container's resolver and a TCP connection to it answers HTTP. nc's input stays open (a
/// FIFO held by the shell) until the answer has come: busybox nc may end at the end of its
/// input, before the server answered.
#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
#[cfg_attr(
    not(imgbuild_has_host_mirror),
    ignore = "needs a Debian archive in the host's apt sources"
)]
fn private_network_resolves_and_connects_to_the_mirror() {
    let Some(f) = Fixture::new(
        "private_network_resolves_and_connects_to_the_mirror",
        DriverKind::Overlay,
    ) else {
        return;
    };
    // The host's apt sources name an archive (cfg imgbuild_has_host_mirror).
    let (host, port) = mirror_host().unwrap_or_else(|e| panic!("the host's Debian mirror: {e}"));
    let script = format!(
        "ip=$(nslookup -type=a {host} | sed -n '/^Name:/,$ s/^Address: *//p' | head -n1); \
         echo \"ip=$ip\"; \
         mkfifo /tmp/req; nc \"$ip\" {port} < /tmp/req | head -n1 > /tmp/answer & \
         exec 3>/tmp/req; \
         printf 'HEAD / HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n' >&3; \
         wait; exec 3>&-; cat /tmp/answer"
    );
    let out = f.sh_ok(&[], &script);
    let mut lines = out.lines();
    let ip = lines.next().unwrap_or_default().trim_start_matches("ip=");
    assert!(
        ip.parse::<std::net::Ipv4Addr>().is_ok(),
        "{host} did not resolve inside: {out}"
    );
    assert!(
        lines.next().unwrap_or_default().starts_with("HTTP/"),
        "no HTTP answer from {host}:{port} ({ip}): {out}"
    );
}

/// `-p 127.0.0.1:PORT:80`: the host gets the page a server in the container serves; `ps`
/// shows the port; killing the run (`rm -f` SIGKILLs imgbuild) leaves no helper behind.
#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
#[cfg_attr(
    not(imgbuild_has_host_mirror),
    ignore = "needs a Debian archive in the host's apt sources"
)]
fn published_port_serves_the_host_and_no_helper_is_left() {
    let Some(f) = Fixture::new(
        "published_port_serves_the_host_and_no_helper_is_left",
        DriverKind::Overlay,
    ) else {
        return;
    };
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "hello from the container\n").unwrap();
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let volume = format!("{}:/www:ro", www.path().display());
    let mut child = f
        .command(&[
            "run", "--name", "web", "-p", &publish, "-v", &volume, IMAGE, "httpd", "-f", "-p",
            "80", "-h", "/www",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let attempt =
            TcpStream::connect_timeout(&addr, Duration::from_secs(2)).and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
                let mut r = String::new();
                s.read_to_string(&mut r)?;
                Ok(r)
            });
        match attempt {
            Ok(r) if r.starts_with("HTTP/") => break r,
            _ if Instant::now() > deadline => {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "no answer on {addr}: {:?}; imgbuild: {}",
                    attempt,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            // The server is starting: the helper accepts and closes until it listens. A pause
            // between attempts keeps the loop from taking a CPU from the run it waits for.
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "imgbuild run ended early"
        );
    };
    assert!(body.contains("hello from the container"), "{body}");

    let ps = f.imgbuild(&["ps", "--format", "{{.Names}} {{.Ports}}"]);
    assert_eq!(
        String::from_utf8_lossy(&ps.stdout).trim(),
        format!("web 127.0.0.1:{port}->80/tcp")
    );
    let helpers = helpers_of(child.id());
    assert_eq!(helpers.len(), 1, "one helper while it runs");

    let rm = f.imgbuild(&["rm", "-f", "web"]);
    assert!(
        rm.status.success(),
        "{}",
        String::from_utf8_lossy(&rm.stderr)
    );
    let _ = child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !live_helpers(&helpers).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        live_helpers(&helpers),
        Vec::<u32>::new(),
        "helper left behind"
    );
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err());
    f.assert_clean();
}

/// `--add-host`, `--dns`, `--dns-search` and `--dns-option` are in the container's files,
/// next to podman's entries for the private network; the helper is gone after `--rm`.
#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
#[cfg_attr(
    not(imgbuild_has_host_mirror),
    ignore = "needs a Debian archive in the host's apt sources"
)]
fn add_host_and_dns_options_reach_the_container_files() {
    let Some(f) = Fixture::new(
        "add_host_and_dns_options_reach_the_container_files",
        DriverKind::Vfs,
    ) else {
        return;
    };
    let out = f.sh_ok(
        &[
            "--hostname",
            "box",
            "--add-host",
            "db.internal:10.1.2.3",
            "--add-host",
            "v6:fd00::7",
            "--dns",
            "192.0.2.53",
            "--dns-search",
            "example.org",
            "--dns-option",
            "ndots:2",
        ],
        "cat /etc/hosts; echo ---; cat /etc/resolv.conf",
    );
    let (hosts, resolv) = out.split_once("---\n").unwrap();
    assert!(
        hosts.starts_with("10.1.2.3\tdb.internal\nfd00::7\tv6\n"),
        "{hosts}"
    );
    assert!(hosts.contains("10.0.2.100\tbox "), "{hosts}");
    assert_eq!(
        resolv,
        "search example.org\nnameserver 192.0.2.53\noptions ndots:2\n"
    );
    // Without --dns the helper's forwarder comes first, and no loopback resolver is copied.
    let resolv = f.sh_ok(&[], "cat /etc/resolv.conf");
    assert!(resolv.contains("nameserver 10.0.2.3\n"), "{resolv}");
    assert!(!resolv.contains("nameserver 127."), "{resolv}");

    // A run that ends by itself takes its helper along.
    let mut child = f
        .command(&["run", "--rm", IMAGE, "sleep", "2"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let helpers = loop {
        let h = helpers_of(child.id());
        if !h.is_empty() || Instant::now() > deadline {
            break h;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(helpers.len(), 1, "one helper while it runs");
    assert!(child.wait().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !live_helpers(&helpers).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        live_helpers(&helpers),
        Vec::<u32>::new(),
        "helper left behind"
    );
}

/// Without slirp4netns on PATH the private network is refused with the program and the
/// package named, and nothing is left; `none` and `host` need nothing.
#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
#[cfg_attr(
    not(imgbuild_has_host_mirror),
    ignore = "needs a Debian archive in the host's apt sources"
)]
fn missing_helper_is_refused() {
    let Some(f) = Fixture::new("missing_helper_is_refused", DriverKind::Vfs) else {
        return;
    };
    let empty = tempfile::tempdir().unwrap();
    let out = f
        .command(&["run", "--rm", IMAGE, "true"])
        .env("PATH", empty.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains("slirp4netns") && err.contains("Debian package slirp4netns"),
        "{err}"
    );
    f.assert_clean();
    for net in ["none", "host"] {
        let out = f
            .command(&["run", "--rm", "--network", net, IMAGE, "true"])
            .env("PATH", empty.path())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{net}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = f
        .command(&["run", "-p", "99999", IMAGE, "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("'99999'"), "{err}");
    f.assert_clean();
}
