//! A private docker daemon for one test: its own data root, exec root, pid file, config and
//! socket in a temporary directory, no iptables rules and no bridge. Dropping it stops the
//! daemon and the containerd it started, unmounts what they left and removes their cgroups,
//! also when the test fails.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running private `dockerd`.
pub struct Dockerd {
    dir: tempfile::TempDir,
    child: Child,
    socket: PathBuf,
    /// The cgroup (in every v1 hierarchy) its containers go under.
    cgroup: String,
}

impl Dockerd {
    /// Starts `dockerd` and waits until its API answers (at most `limit`); an error carries
    /// the daemon's log.
    pub fn start(limit: Duration) -> Result<Dockerd, String> {
        // Short paths: the daemon's and containerd's sockets live under it (108-byte limit).
        let dir = tempfile::Builder::new()
            .prefix("imgbuild-dockerd-")
            .tempdir_in("/tmp")
            .map_err(|e| format!("temp dir: {e}"))?;
        let d = dir.path();
        for sub in ["data", "exec", "config"] {
            std::fs::create_dir(d.join(sub)).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        // Not the host's /etc/docker/daemon.json.
        std::fs::write(d.join("daemon.json"), "{}").map_err(|e| e.to_string())?;
        let log = std::fs::File::create(d.join("dockerd.log")).map_err(|e| e.to_string())?;
        let socket = d.join("docker.sock");
        let cgroup = format!("imgbuild-test-dockerd-{}", std::process::id());
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .arg("--cgroup-parent")
            .arg(&cgroup)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("dockerd: {e}"))?;
        let mut daemon = Dockerd {
            dir,
            child,
            socket,
            cgroup,
        };
        let deadline = Instant::now() + limit;
        while !daemon.answers() {
            if let Ok(Some(st)) = daemon.child.try_wait() {
                return Err(format!("dockerd exited ({st}):\n{}", daemon.log()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "dockerd did not answer within {limit:?}:\n{}",
                    daemon.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(daemon)
    }

    /// True when `GET /_ping` on the socket answers `OK`.
    fn answers(&self) -> bool {
        let Ok(mut s) = UnixStream::connect(&self.socket) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        reply.starts_with("HTTP/1.") && reply.contains(" 200 ") && reply.ends_with("OK")
    }

    /// The daemon's log so far (its last lines).
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default();
        super::tail(&text, 40)
    }

    /// `docker` talking to this daemon only (its own client config, the classic builder).
    pub fn docker(&self) -> Command {
        let mut c = Command::new("docker");
        c.arg("--host")
            .arg(format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", self.dir.path().join("config"))
            .env("DOCKER_BUILDKIT", "0")
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .stdin(Stdio::null());
        c
    }

    /// A scratch directory inside the daemon's temporary directory (removed with it).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join("scratch").join(name);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        p
    }
}

/// Processes whose command line names `dir` (the daemon's containerd and shims).
fn processes_naming(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .collect()
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        // dockerd stops its containers and its containerd on SIGTERM.
        let _ = kill(
            Pid::from_raw(self.child.id().cast_signed()),
            Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        // Whatever outlived it (a containerd or shim of a daemon that had to be killed).
        let dir = self.dir.path().to_path_buf();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = processes_naming(&dir);
            if left.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in left {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for m in super::mounts_under(&dir).iter().rev() {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        // The containers' cgroups are gone with the containers; their parent goes here (in
        // every v1 hierarchy, below the test's own cgroup where that is not the root).
        for e in walkdir::WalkDir::new("/sys/fs/cgroup")
            .max_depth(5)
            .contents_first(true)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_dir() && e.file_name() == self.cgroup.as_str())
        {
            let _ = std::fs::remove_dir(e.path());
        }
    }
}
