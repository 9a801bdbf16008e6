//! The private network: a sandbox's own network namespace connected to the host by
//! `slirp4netns` (user-mode networking), with outbound access, a DNS forwarder and published
//! ports.
//!
//! The helper is started by [`crate::sandbox::Sandbox::run`] once the command's network
//! namespace exists and is ready (its `--ready-fd` written) before the command is executed. It
//! lives exactly as long as the run: it is sent SIGKILL when `run` returns (and reaped by a
//! thread, so that the kernel's teardown of its tap device does not delay `run`), and if
//! imgbuild itself dies — even by SIGKILL — the helper goes too, twice over: its parent-death
//! signal is SIGKILL, and its `--exit-fd` pipe, whose write end only imgbuild holds, closes.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The helper program.
pub const HELPER: &str = "slirp4netns";
/// The Debian package that has it.
pub const HELPER_PACKAGE: &str = "slirp4netns";
/// The interface the helper makes in the namespace (as podman names it).
pub const INTERFACE: &str = "tap0";
/// The container's address on the private network (slirp4netns' `--configure` default).
pub const CONTAINER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);
/// The gateway, which is the host as seen from the container.
pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// The helper's DNS forwarder, which asks the host's resolvers.
pub const DNS_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
/// The MTU of the interface (podman's for slirp4netns).
const MTU: &str = "--mtu=65520";
/// How long the helper may take to configure the namespace before the run fails.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A transport protocol of a published port.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One published port: connections to `host_ip:host_port` on the host reach `container_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortForward {
    /// The protocol.
    pub proto: Proto,
    /// The host address listened on (`0.0.0.0`: all).
    pub host_ip: Ipv4Addr,
    /// The host port.
    pub host_port: u16,
    /// The port in the container.
    pub container_port: u16,
}

/// Errors of the private network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The helper program is not installed.
    #[error(
        "the private network needs {program}, which is not on PATH: install the Debian \
         package {package}, or use --network none or --network host"
    )]
    Missing {
        /// The program looked for.
        program: &'static str,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// The helper could not be started or failed before it was ready.
    #[error("{}: {reason}", program.display())]
    Helper {
        /// The helper program.
        program: PathBuf,
        /// What went wrong (its own message when it printed one).
        reason: String,
    },
    /// A port could not be published.
    #[error("cannot publish {}:{}->{}/{}: {reason}", port.host_ip, port.host_port, port.container_port, port.proto.as_str())]
    Publish {
        /// The port.
        port: PortForward,
        /// The helper's answer.
        reason: String,
    },
    /// A file or socket of the helper failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or socket.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// The helper on `PATH` (imgbuild's own `PATH`, else the default one).
pub fn find_helper() -> Result<PathBuf, NetError> {
    let path =
        std::env::var_os("PATH").unwrap_or_else(|| OsString::from(crate::sandbox::DEFAULT_PATH));
    std::env::split_paths(&path)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(HELPER))
        .find(|p| {
            nix::unistd::access(p.as_path(), nix::unistd::AccessFlags::X_OK).is_ok() && p.is_file()
        })
        .ok_or(NetError::Missing {
            program: HELPER,
            package: HELPER_PACKAGE,
        })
}

/// A running helper; killed and reaped on drop.
pub(crate) struct Helper {
    child: Child,
    program: PathBuf,
    /// Held until the helper is killed: its closing (imgbuild's death) ends the helper too.
    _exit_w: OwnedFd,
    ready_r: Option<OwnedFd>,
    stderr: std::fs::File,
    /// The API socket's directory, when ports are published.
    api_dir: Option<tempfile::TempDir>,
    /// Reap the killed helper before drop returns (see [`crate::sandbox::Sandbox::settle_network`]).
    pub(crate) wait_on_drop: bool,
}

fn pipe_high() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((r, w))
}

/// A close-on-exec copy of `fd` numbered 10 or above, so that moving it to 3 or 4 in the
/// helper never overwrites the other.
fn dup_high(fd: &OwnedFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new fd we own.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

impl Helper {
    /// Start the helper for the network namespace of process `pid`. Returns at once; call
    /// [`Helper::wait_ready`] before the command runs.
    pub(crate) fn start(
        program: &Path,
        pid: libc::pid_t,
        publish: bool,
    ) -> Result<Helper, NetError> {
        let err = |reason: String| NetError::Helper {
            program: program.to_path_buf(),
            reason,
        };
        let (ready_r, ready_w) = pipe_high().map_err(|e| err(format!("pipe: {e}")))?;
        let (exit_r, exit_w) = pipe_high().map_err(|e| err(format!("pipe: {e}")))?;
        let ready_w = dup_high(&ready_w).map_err(|e| err(format!("dup: {e}")))?;
        let exit_r = dup_high(&exit_r).map_err(|e| err(format!("dup: {e}")))?;
        // Its messages, read only when it fails: a file never fills up the way a pipe can.
        let stderr = tempfile::tempfile().map_err(|e| err(format!("temp file: {e}")))?;
        let api_dir = if publish {
            Some(
                tempfile::Builder::new()
                    .prefix("imgbuild-net-")
                    .tempdir()
                    .map_err(|e| err(format!("temp dir: {e}")))?,
            )
        } else {
            None
        };
        let mut cmd = Command::new(program);
        cmd.args([
            "--configure",
            MTU,
            "--disable-host-loopback",
            "--enable-ipv6",
            "--enable-sandbox",
            "--enable-seccomp",
            "--ready-fd=3",
            "--exit-fd=4",
        ]);
        if let Some(d) = &api_dir {
            cmd.arg("--api-socket").arg(d.path().join("api.sock"));
        }
        cmd.arg(pid.to_string())
            .arg(INTERFACE)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                stderr
                    .try_clone()
                    .map_err(|e| err(format!("temp file: {e}")))?,
            );
        let (rw, er) = (ready_w.as_raw_fd(), exit_r.as_raw_fd());
        let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(rw, 3) < 0 || libc::dup2(er, 4) < 0 {
                    return Err(io::Error::last_os_error());
                }
                // Dies with the thread that started it, which is the one waiting in
                // `Sandbox::run` for the command.
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) < 0
                {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died before the death signal was set.
                if libc::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| err(e.to_string()))?;
        drop(ready_w);
        drop(exit_r);
        Ok(Helper {
            child,
            program: program.to_path_buf(),
            _exit_w: exit_w,
            ready_r: Some(ready_r),
            stderr,
            api_dir,
            wait_on_drop: false,
        })
    }

    fn failure(&mut self, what: &str) -> NetError {
        // Killed first: its status then says nothing; its own message says why.
        let _ = self.child.kill();
        let status = self.child.wait().ok();
        let mut msg = String::new();
        let _ = self.stderr.rewind_and_read(&mut msg);
        let msg: Vec<&str> = msg
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("WARNING"))
            .collect();
        let reason = if msg.is_empty() {
            format!(
                "{what} ({})",
                status.map_or_else(|| "status unknown".into(), |s| s.to_string())
            )
        } else {
            format!("{what}: {}", msg.join("; "))
        };
        NetError::Helper {
            program: self.program.clone(),
            reason,
        }
    }

    /// Wait (without polling) until the helper has configured the namespace, then publish
    /// `ports` through its API socket.
    pub(crate) fn wait_ready(&mut self, ports: &[PortForward]) -> Result<(), NetError> {
        let Some(ready) = self.ready_r.take() else {
            return Ok(());
        };
        let mut pfd = libc::pollfd {
            fd: ready.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
            // SAFETY: polling one fd we own.
            let n = unsafe { libc::poll(&raw mut pfd, 1, ms) };
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if n == 0 {
                return Err(self.failure(&format!("not ready after {} s", READY_TIMEOUT.as_secs())));
            }
            break;
        }
        let mut byte = [0u8; 1];
        let got = std::fs::File::from(ready).read(&mut byte).unwrap_or(0);
        if got != 1 {
            return Err(self.failure("exited before the network was configured"));
        }
        for p in ports {
            self.publish(p)?;
        }
        // The API is not needed after this: the socket goes now, so that nothing is left in
        // the temp dir even if imgbuild is killed later.
        if let Some(dir) = self.api_dir.take() {
            dir.close().map_err(|source| NetError::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        }
        Ok(())
    }

    fn publish(&mut self, port: &PortForward) -> Result<(), NetError> {
        let Some(dir) = &self.api_dir else {
            return Err(NetError::Publish {
                port: *port,
                reason: "the helper was started without its API socket".into(),
            });
        };
        let sock = dir.path().join("api.sock");
        let request = serde_json::json!({
            "execute": "add_hostfwd",
            "arguments": {
                "proto": port.proto.as_str(),
                "host_addr": port.host_ip.to_string(),
                "host_port": port.host_port,
                "guest_addr": CONTAINER_IP.to_string(),
                "guest_port": port.container_port,
            }
        });
        let io_err = |source| NetError::Io {
            path: sock.clone(),
            source,
        };
        let mut s = std::os::unix::net::UnixStream::connect(&sock).map_err(io_err)?;
        s.write_all(request.to_string().as_bytes())
            .map_err(io_err)?;
        s.shutdown(std::net::Shutdown::Write).map_err(io_err)?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).map_err(io_err)?;
        let v: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
        if v.get("return").is_some() {
            return Ok(());
        }
        let desc = v
            .pointer("/error/desc")
            .and_then(serde_json::Value::as_str)
            .unwrap_or(answer.trim());
        let reason = if desc.contains("slirp_add_hostfwd failed") {
            "the address is in use or cannot be bound".to_string()
        } else {
            desc.to_string()
        };
        Err(NetError::Publish {
            port: *port,
            reason,
        })
    }
}

trait RewindRead {
    fn rewind_and_read(&mut self, out: &mut String) -> io::Result<usize>;
}

impl RewindRead for std::fs::File {
    fn rewind_and_read(&mut self, out: &mut String) -> io::Result<usize> {
        use std::io::Seek;
        self.rewind()?;
        self.read_to_string(out)
    }
}

impl Drop for Helper {
    /// SIGKILL, then reap without waiting here. A killed helper runs no more code, but the
    /// kernel's teardown of its tap device and of the namespace it held (RCU grace periods)
    /// takes 12–30 ms on a loaded host, longer than the whole rest of a run; waiting for it
    /// made `run --rm IMAGE /bin/true` 2× crun instead of under it. The reaping thread ends
    /// with the process: in a short-lived imgbuild the dead helper is then reaped by init.
    fn drop(&mut self) {
        let _ = self.child.kill();
        if self.wait_on_drop {
            let _ = self.child.wait();
            return;
        }
        let pid = self.child.id();
        let reaper = std::thread::Builder::new()
            .name("net-helper-reaper".into())
            .spawn(move || {
                let Ok(pid) = libc::pid_t::try_from(pid) else {
                    return;
                };
                let mut status = 0;
                // SAFETY: reaping our own child, whose `Child` handle no longer waits for it.
                while unsafe { libc::waitpid(pid, &raw mut status, 0) } < 0
                    && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
                {
                }
            });
        if reaper.is_err() {
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_helper_names_program_and_package() {
        let e = NetError::Missing {
            program: HELPER,
            package: HELPER_PACKAGE,
        }
        .to_string();
        assert!(
            e.contains("slirp4netns") && e.contains("Debian package"),
            "{e}"
        );
    }

    #[test]
    fn high_dups_stay_clear_of_3_and_4() {
        let (r, _w) = pipe_high().unwrap();
        let d = dup_high(&r).unwrap();
        assert!(d.as_raw_fd() >= 10);
    }
}
