//! The parent's wait loop: child exit (through a pidfd), forwarded signals, captured output,
//! the pty relay, a build's stop signal and the timeout, all in one `poll`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::signals::{self, Forwarding};
use super::{ChildGuard, Outcome, SandboxError, TtyOut, os};

/// Restores a terminal's mode on drop.
struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    fn enter(fd: RawFd) -> Option<RawMode> {
        // SAFETY: termios is a plain C struct filled by tcgetattr.
        unsafe {
            if libc::isatty(fd) != 1 {
                return None;
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &raw mut saved) != 0 {
                return None;
            }
            let mut raw = saved;
            libc::cfmakeraw(&raw mut raw);
            if libc::tcsetattr(fd, libc::TCSANOW, &raw const raw) != 0 {
                return None;
            }
            Some(RawMode { fd, saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restoring the attributes read in `enter`.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &raw const self.saved) };
    }
}

/// Copy the window size of the first terminal among `from` (else 24×80) to the pty.
pub(super) fn copy_winsize(from: &[RawFd], master: RawFd) {
    // SAFETY: winsize is a plain C struct; the ioctls read/write it.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        let found = from
            .iter()
            .any(|&fd| libc::isatty(fd) == 1 && libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) == 0);
        if !found || ws.ws_row == 0 {
            ws.ws_row = 24;
            ws.ws_col = 80;
        }
        libc::ioctl(master, libc::TIOCSWINSZ, &ws);
    }
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on an fd we hold.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }
}

enum Read {
    Data(usize),
    Again,
    Eof,
}

fn read(fd: RawFd, buf: &mut [u8]) -> Read {
    // SAFETY: reading into a slice we own.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    match usize::try_from(n) {
        Ok(0) => return Read::Eof,
        Ok(n) => return Read::Data(n),
        Err(_) => {}
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN | libc::EINTR) => Read::Again,
        // EIO: the pty slave has no more openers.
        _ => Read::Eof,
    }
}

fn write_all(fd: RawFd, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: writing from a slice we own.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if let Ok(n @ 1..) = usize::try_from(n) {
            data = &data[n..];
            continue;
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) => {
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one pollfd on the stack.
                unsafe { libc::poll(&raw mut p, 1, 100) };
            }
            // The reader went away; the output is lost, the command is not affected.
            _ => return,
        }
    }
}

fn exit_code(status: libc::c_int) -> (i32, Option<i32>) {
    if libc::WIFEXITED(status) {
        (libc::WEXITSTATUS(status), None)
    } else if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        (128 + sig, Some(sig))
    } else {
        (255, None)
    }
}

/// The terminals whose size the pty copies.
pub(super) fn size_sources(tty_input: Option<RawFd>, tty_output: TtyOut) -> Vec<RawFd> {
    tty_input
        .into_iter()
        .chain(match tty_output {
            TtyOut::Fd(fd) => Some(fd),
            _ => None,
        })
        .collect()
}

/// After the command exits, how long to wait for the last output before giving up on a pipe
/// something outside the sandbox still holds.
const DRAIN_TIMEOUT_MS: libc::c_int = 2000;

/// When the wait loop ends the command itself.
#[derive(Clone, Copy)]
pub(super) struct Stop {
    /// Kill the command when it runs longer.
    pub timeout: Option<Duration>,
    /// Kill the command when imgbuild receives a stop signal (see [`crate::interrupt`]).
    pub on_interrupt: bool,
}

/// Why the wait loop killed the command.
enum Killed {
    Interrupted(crate::interrupt::Interrupted),
    TimedOut(Duration),
}

/// Milliseconds until `deadline` for `poll`, rounded up so the wakeup is never early.
fn poll_ms(deadline: Instant) -> libc::c_int {
    let left = deadline.saturating_duration_since(Instant::now());
    let ms = left.as_micros().div_ceil(1000);
    libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
}

pub(super) fn wait(
    mut child: ChildGuard,
    fwd: &Forwarding,
    stop: Stop,
    captures: [Option<OwnedFd>; 2],
    master: Option<OwnedFd>,
    tty_input: Option<RawFd>,
    tty_output: TtyOut,
) -> Result<Outcome, SandboxError> {
    // SAFETY: pidfd_open returns a new fd for our (unreaped) child, or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.pid, 0) };
    // A descriptor fits `RawFd`; -1 (or anything else out of range) is the failure.
    let Ok(pidfd) = RawFd::try_from(pidfd) else {
        return Err(os("watch the sandbox process")(io::Error::last_os_error()));
    };
    if pidfd < 0 {
        return Err(os("watch the sandbox process")(io::Error::last_os_error()));
    }
    // SAFETY: fresh fd we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };

    let mut outputs: [Option<OwnedFd>; 2] = captures;
    let mut collected: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    for o in outputs.iter().flatten() {
        set_nonblocking(o.as_raw_fd());
    }
    let mut master = master;
    let mut input = tty_input;
    let _raw = match (&master, tty_input) {
        (Some(_), Some(fd)) => RawMode::enter(fd),
        _ => None,
    };
    let size_sources = size_sources(tty_input, tty_output);
    if let Some(m) = &master {
        set_nonblocking(m.as_raw_fd());
    }
    let mut pending: Vec<u8> = Vec::new();
    let mut status: Option<libc::c_int> = None;
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = stop.timeout.map(|t| Instant::now() + t);
    let interrupt_fd = stop.on_interrupt.then(crate::interrupt::poll_fd).flatten();
    let mut killed: Option<Killed> = None;

    loop {
        let outputs_open = outputs.iter().any(Option::is_some) || master.is_some();
        if status.is_some() && !outputs_open {
            break;
        }
        if status.is_none() && killed.is_none() {
            let why = match (stop.on_interrupt, deadline) {
                (true, _) if crate::interrupt::received().is_some() => {
                    crate::interrupt::received().map(Killed::Interrupted)
                }
                (_, Some(d)) if Instant::now() >= d => stop.timeout.map(Killed::TimedOut),
                _ => None,
            };
            if why.is_some() {
                // SAFETY: signalling our own, not yet reaped, child: PID 1 of its pid
                // namespace, so the kernel kills every process in it.
                unsafe { libc::kill(child.pid, libc::SIGKILL) };
                killed = why;
            }
        }
        // Index map: 0 pidfd, 1 signals, 2/3 captures, 4 master, 5 input, 6 stop signal.
        let mut pfds: Vec<(usize, libc::pollfd)> = Vec::new();
        let mut add = |tag: usize, fd: RawFd, events: libc::c_short| {
            pfds.push((
                tag,
                libc::pollfd {
                    fd,
                    events,
                    revents: 0,
                },
            ));
        };
        if status.is_none() {
            add(0, pidfd.as_raw_fd(), libc::POLLIN);
            add(1, fwd.fd(), libc::POLLIN);
            if let (Some(fd), None) = (interrupt_fd, &killed) {
                add(6, fd, libc::POLLIN);
            }
        }
        for (i, o) in outputs.iter().enumerate() {
            if let Some(o) = o {
                add(2 + i, o.as_raw_fd(), libc::POLLIN);
            }
        }
        if let Some(m) = &master {
            let mut ev = libc::POLLIN;
            if !pending.is_empty() && status.is_none() {
                ev |= libc::POLLOUT;
            }
            add(4, m.as_raw_fd(), ev);
            if let (Some(fd), true, None) = (input, pending.is_empty(), status) {
                add(5, fd, libc::POLLIN);
            }
        }
        let mut raw: Vec<libc::pollfd> = pfds.iter().map(|(_, p)| *p).collect();
        let timeout = match (status, deadline, &killed) {
            (Some(_), _, _) => DRAIN_TIMEOUT_MS,
            (None, Some(d), None) => poll_ms(d),
            _ => -1,
        };
        // SAFETY: `raw` is a valid pollfd array of its length.
        let n = unsafe { libc::poll(raw.as_mut_ptr(), raw.len() as libc::nfds_t, timeout) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(os("wait for the sandbox")(io::Error::last_os_error()));
        }
        if n == 0 && status.is_some() {
            break;
        }
        // A stop signal (tag 6) or the deadline is acted on at the top of the loop.
        for ((tag, _), p) in pfds.iter().zip(raw.iter()) {
            if p.revents == 0 {
                continue;
            }
            match tag {
                0 => {
                    let mut st = 0;
                    // SAFETY: reaping our own child, which the pidfd says has exited.
                    let r = unsafe { libc::waitpid(child.pid, &raw mut st, libc::__WALL) };
                    if r == child.pid {
                        child.reaped = true;
                        status = Some(st);
                    }
                }
                1 => {
                    for sig in fwd.take() {
                        if sig == signals::WINCH {
                            if let Some(m) = &master {
                                copy_winsize(&size_sources, m.as_raw_fd());
                            }
                        } else {
                            // SAFETY: signalling our own, not yet reaped, child.
                            unsafe { libc::kill(child.pid, sig) };
                        }
                    }
                }
                2 | 3 => {
                    let i = tag - 2;
                    if let Some(fd) = outputs[i].as_ref().map(AsRawFd::as_raw_fd) {
                        loop {
                            match read(fd, &mut buf) {
                                Read::Data(k) => collected[i].extend_from_slice(&buf[..k]),
                                Read::Again => break,
                                Read::Eof => {
                                    outputs[i] = None;
                                    break;
                                }
                            }
                        }
                    }
                }
                4 => {
                    let Some(fd) = master.as_ref().map(AsRawFd::as_raw_fd) else {
                        continue;
                    };
                    if p.revents & libc::POLLOUT != 0 && !pending.is_empty() {
                        // SAFETY: writing from our buffer to the non-blocking master.
                        let k = unsafe { libc::write(fd, pending.as_ptr().cast(), pending.len()) };
                        if let Ok(k @ 1..) = usize::try_from(k) {
                            pending.drain(..k);
                        }
                    }
                    if p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                        match read(fd, &mut buf) {
                            Read::Data(k) => match tty_output {
                                TtyOut::Capture => collected[0].extend_from_slice(&buf[..k]),
                                TtyOut::Fd(out) => write_all(out, &buf[..k]),
                                TtyOut::Discard => {}
                            },
                            Read::Again => {}
                            Read::Eof => master = None,
                        }
                    }
                }
                5 => {
                    if let Some(fd) = input {
                        match read(fd, &mut buf) {
                            Read::Data(k) => pending.extend_from_slice(&buf[..k]),
                            Read::Again => {}
                            Read::Eof => input = None,
                        }
                    }
                }
                _ => {}
            }
        }
    }
    match killed {
        Some(Killed::Interrupted(i)) => return Err(SandboxError::Interrupted(i)),
        Some(Killed::TimedOut(after)) => return Err(SandboxError::TimedOut { after }),
        None => {}
    }
    let status = status.unwrap_or(0);
    let (code, signal) = exit_code(status);
    let [stdout, stderr] = collected;
    Ok(Outcome {
        code,
        signal,
        stdout,
        stderr,
    })
}
