//! Forwarding of the signals imgbuild receives to the sandboxed commands.
//!
//! Only [`Profile::Container`](super::Profile::Container) sandboxes forward: `imgbuild run`
//! passes SIGINT, SIGTERM, … on to its container, as podman does. A build sandbox does not:
//! its command is a hook or maintainer script that imgbuild stops itself, by SIGKILL, when a
//! stop signal reaches imgbuild (see [`crate::interrupt`]); forwarding would only let a shell
//! that waits for its child, or a PID 1 without handlers, ignore the signal. SIGWINCH is
//! caught for every sandbox with a pty, to copy the window size.
//!
//! A process-wide handler (installed while a sandbox that needs it runs, the previous
//! dispositions restored afterwards) writes each signal number into the self-pipe of every
//! running sandbox that wants it; each sandbox's wait loop reads its pipe and `kill`s its
//! command. The pipes live for the whole process and are only ever claimed and released, never
//! closed, so the handler can never write into an fd that was closed and reused meanwhile.

use std::os::fd::RawFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Signals forwarded to the command of a forwarding sandbox.
pub const FORWARDED: &[libc::c_int] = &[
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Also caught: resizes the sandbox's pty (the kernel then signals the command itself).
pub const WINCH: libc::c_int = libc::SIGWINCH;

const SLOTS: usize = 64;

static WRITE_FDS: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];
static CLAIMED: [AtomicBool; SLOTS] = [const { AtomicBool::new(false) }; SLOTS];
/// Whether the slot's sandbox wants the [`FORWARDED`] signals (else only SIGWINCH).
static FORWARDS: [AtomicBool; SLOTS] = [const { AtomicBool::new(false) }; SLOTS];

struct Installed {
    /// Sandboxes running, each with SIGWINCH caught.
    users: usize,
    /// Of those, the ones forwarding [`FORWARDED`].
    forwarders: usize,
    previous_winch: Vec<(libc::c_int, libc::sigaction)>,
    previous_forwarded: Vec<(libc::c_int, libc::sigaction)>,
    read_fds: [RawFd; SLOTS],
}

static STATE: Mutex<Installed> = Mutex::new(Installed {
    users: 0,
    forwarders: 0,
    previous_winch: Vec::new(),
    previous_forwarded: Vec::new(),
    read_fds: [-1; SLOTS],
});

extern "C" fn handler(sig: libc::c_int) {
    // SAFETY: errno is thread-local; write(2) on a pipe is async-signal-safe.
    unsafe {
        let saved = *libc::__errno_location();
        // Signal numbers are below 65: the byte holds them.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let byte = sig as u8;
        for (slot, fd) in WRITE_FDS.iter().enumerate() {
            let fd = fd.load(Ordering::Acquire);
            let wanted = sig == WINCH || FORWARDS[slot].load(Ordering::Acquire);
            if fd >= 0 && CLAIMED[slot].load(Ordering::Acquire) && wanted {
                libc::write(fd, (&raw const byte).cast(), 1);
            }
        }
        *libc::__errno_location() = saved;
    }
}

/// Install [`handler`] for `signals`, returning the dispositions it replaced.
fn install(signals: &[libc::c_int]) -> Vec<(libc::c_int, libc::sigaction)> {
    let mut previous = Vec::new();
    for &sig in signals {
        // SAFETY: installing a handler that only does async-signal-safe work.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = handler as *const () as libc::sighandler_t;
            act.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&raw mut act.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, &raw const act, &raw mut old) == 0 {
                previous.push((sig, old));
            }
        }
    }
    previous
}

fn restore(previous: &mut Vec<(libc::c_int, libc::sigaction)>) {
    for (sig, old) in previous.drain(..) {
        // SAFETY: restoring the disposition saved when we installed ours.
        unsafe { libc::sigaction(sig, &raw const old, std::ptr::null_mut()) };
    }
}

/// Errors setting up forwarding.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("more than {SLOTS} sandboxes running at once")]
    TooMany,
    #[error("cannot set up signal forwarding: {0}")]
    Os(std::io::Error),
}

/// One sandbox's claim on the forwarding: read the pipe to learn of signals.
pub struct Forwarding {
    slot: usize,
    read_fd: RawFd,
    forward: bool,
}

impl Forwarding {
    /// Claim a slot and make sure the handlers are installed: SIGWINCH always, the
    /// [`FORWARDED`] signals when `forward` is true.
    pub fn start(forward: bool) -> Result<Forwarding, SignalError> {
        let mut state = STATE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = (0..SLOTS)
            .find(|&i| !CLAIMED[i].load(Ordering::Acquire))
            .ok_or(SignalError::TooMany)?;
        if state.read_fds[slot] < 0 {
            let mut fds = [0; 2];
            // SAFETY: pipe2 fills the two-element array.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
                return Err(SignalError::Os(std::io::Error::last_os_error()));
            }
            state.read_fds[slot] = fds[0];
            WRITE_FDS[slot].store(fds[1], Ordering::Release);
        }
        let read_fd = state.read_fds[slot];
        // Drop anything a previous user left unread.
        let mut buf = [0u8; 64];
        // SAFETY: reading into a stack buffer from our non-blocking pipe.
        while unsafe { libc::read(read_fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
        FORWARDS[slot].store(forward, Ordering::Release);
        CLAIMED[slot].store(true, Ordering::Release);
        if state.users == 0 {
            state.previous_winch = install(&[WINCH]);
        }
        state.users += 1;
        if forward {
            if state.forwarders == 0 {
                state.previous_forwarded = install(FORWARDED);
            }
            state.forwarders += 1;
        }
        Ok(Forwarding {
            slot,
            read_fd,
            forward,
        })
    }

    /// The fd to poll for readability.
    pub fn fd(&self) -> RawFd {
        self.read_fd
    }

    /// Signals received since the last call.
    pub fn take(&self) -> Vec<libc::c_int> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: reading into a stack buffer from our non-blocking pipe.
            let n = unsafe { libc::read(self.read_fd, buf.as_mut_ptr().cast(), buf.len()) };
            let Ok(n @ 1..) = usize::try_from(n) else {
                break;
            };
            out.extend(buf[..n].iter().map(|&b| libc::c_int::from(b)));
        }
        out
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        let mut state = STATE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        CLAIMED[self.slot].store(false, Ordering::Release);
        if self.forward {
            state.forwarders -= 1;
            if state.forwarders == 0 {
                let mut previous = std::mem::take(&mut state.previous_forwarded);
                restore(&mut previous);
            }
        }
        state.users -= 1;
        if state.users == 0 {
            let mut previous = std::mem::take(&mut state.previous_winch);
            restore(&mut previous);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_reach_every_claimant_and_handlers_are_restored() {
        let current = || {
            // SAFETY: reading the current disposition only.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                libc::sigaction(libc::SIGUSR2, std::ptr::null(), &raw mut old);
                old.sa_sigaction
            }
        };
        let before = current();
        // A build sandbox alone leaves the signal to imgbuild.
        let quiet = Forwarding::start(false).unwrap();
        assert_eq!(current(), before);
        let a = Forwarding::start(true).unwrap();
        let b = Forwarding::start(true).unwrap();
        assert_ne!(a.fd(), b.fd());
        // SAFETY: raising a signal whose handler is ours.
        unsafe { libc::raise(libc::SIGUSR2) };
        assert_eq!(a.take(), vec![libc::SIGUSR2]);
        assert_eq!(b.take(), vec![libc::SIGUSR2]);
        assert!(a.take().is_empty());
        assert!(quiet.take().is_empty(), "not forwarded to a build sandbox");
        drop(a);
        drop(b);
        assert_eq!(current(), before);
        drop(quiet);
        assert_eq!(current(), before);
    }
}
