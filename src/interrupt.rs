//! Stopping a build on SIGINT, SIGTERM or SIGHUP.
//!
//! The command line calls [`install`] for the commands that build (`build`, `create`, `prepare`,
//! `lock`). A signal then:
//!
//! 1. is recorded ([`received`]), and the pipe behind [`poll_fd`] becomes readable for good:
//!    every build sandbox's wait loop polls it and SIGKILLs its command, which is PID 1 of its
//!    pid namespace, so the whole process tree of a hook or maintainer script dies at once;
//! 2. makes [`check`] fail in the long loops (downloads, unpacking, packing), so the main flow
//!    returns an error and unwinds through its normal `Drop` cleanup, which removes the
//!    temporary root; the binary then exits with 128 + the signal number;
//! 3. if the process still runs after the grace period (a call blocked in the kernel or on the
//!    network), the watcher thread removes every directory registered with [`remove_on_exit`]
//!    itself and exits with 128 + the signal number.
//!
//! Without [`install`] nothing here changes behaviour: [`check`] always passes.

use std::io;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

/// The signals that stop a build.
pub const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// How long the main flow has to wind down after a signal before the watcher ends the process.
pub const GRACE: Duration = Duration::from_secs(1);

/// The work was stopped by a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by {}", signal_name(*.signal))]
pub struct Interrupted {
    /// The signal number.
    pub signal: i32,
}

impl Interrupted {
    /// The exit status a process stopped by this signal reports: 128 + the signal number.
    pub fn exit_code(&self) -> u8 {
        u8::try_from((128 + self.signal).clamp(0, 255)).unwrap_or(u8::MAX)
    }
}

impl From<Interrupted> for io::Error {
    fn from(e: Interrupted) -> io::Error {
        io::Error::other(e)
    }
}

/// The name of a signal as shells print it (`SIGTERM`), or its number.
pub fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGINT => "SIGINT".to_string(),
        libc::SIGTERM => "SIGTERM".to_string(),
        libc::SIGHUP => "SIGHUP".to_string(),
        libc::SIGKILL => "SIGKILL".to_string(),
        n => format!("signal {n}"),
    }
}

/// The first stop signal received, 0 before.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Woken when the signal is recorded, for [`sleep`].
static WAKE: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());

/// The first stop signal received, if any.
pub fn received() -> Option<Interrupted> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(Interrupted { signal }),
    }
}

/// Fails once a stop signal was received; cheap enough for every loop iteration.
pub fn check() -> Result<(), Interrupted> {
    match received() {
        Some(i) => Err(i),
        None => Ok(()),
    }
}

/// [`check`] as an I/O error, for code whose errors are `io::Error`s.
pub fn check_io() -> io::Result<()> {
    check().map_err(io::Error::from)
}

/// Wait for `d`, or less when a stop signal arrives meanwhile (then the error).
pub fn sleep(d: Duration) -> Result<(), Interrupted> {
    let (lock, cvar) = &WAKE;
    let guard = lock
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let _unused = cvar
        .wait_timeout_while(guard, d, |()| received().is_none())
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    check()
}

/// The self-pipe: its read end turns readable when a stop signal is recorded and stays so.
/// Both ends live as long as the process, so a poller can never see a reused fd.
fn pipe() -> Option<(RawFd, RawFd)> {
    static PIPE: OnceLock<Option<(RawFd, RawFd)>> = OnceLock::new();
    *PIPE.get_or_init(|| {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills the two-element array with new fds, which are never closed.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
            return None;
        }
        Some((fds[0], fds[1]))
    })
}

/// An fd to `poll` for `POLLIN`: readable once a stop signal was received.
pub fn poll_fd() -> Option<RawFd> {
    pipe().map(|(r, _)| r)
}

/// Record `signal` as if it had been received: every waiter and loop sees it. The first signal
/// wins. Returns false when one was recorded before.
pub fn trigger(signal: i32) -> bool {
    let first = SIGNAL
        .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok();
    if first {
        if let Some((_, w)) = pipe() {
            // SAFETY: writing one byte from the stack into our own non-blocking pipe.
            unsafe { libc::write(w, [1u8].as_ptr().cast(), 1) };
        }
        let (lock, cvar) = &WAKE;
        drop(
            lock.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        cvar.notify_all();
    }
    first
}

/// How the watcher removes a registered directory; true once it is gone. Each owner supplies
/// its own (a work directory removes its lock file last), so this module uses none of its users.
pub type Remover = fn(&Path) -> bool;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static REGISTERED: Mutex<Vec<(u64, PathBuf, Remover)>> = Mutex::new(Vec::new());

/// A directory the watcher removes if it has to end the process itself; unregistered on drop.
#[derive(Debug)]
pub struct Registration {
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut list = REGISTERED.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|(id, _, _)| *id != self.id);
    }
}

/// Have `dir` removed with `remove` when the watcher ends the process after a stop signal (the
/// normal path removes it through its owner's `Drop`).
pub fn remove_on_exit(dir: &Path, remove: Remover) -> Registration {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    REGISTERED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((id, dir.to_path_buf(), remove));
    Registration { id }
}

/// Catch SIGINT, SIGTERM and SIGHUP for the rest of the process: each is recorded as
/// [`trigger`] does; when the process still runs [`GRACE`] after the first, the watcher
/// removes the registered directories and exits with 128 + the signal number.
pub fn install() -> io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new(STOP_SIGNALS)?;
    // Created now, so a sandbox started later finds it without allocating a pipe late.
    let _ = pipe();
    std::thread::Builder::new()
        .name("imgbuild-signals".into())
        .spawn(move || {
            let Some(signal) = signals.forever().next() else {
                return;
            };
            trigger(signal);
            std::thread::sleep(GRACE);
            force_exit(Interrupted { signal });
        })?;
    Ok(())
}

/// How [`force_exit`] words its line, when not `imgbuild: <signal>`.
static EXIT_LINE: OnceLock<fn(Interrupted) -> String> = OnceLock::new();

/// Have the watcher print `line(signal)` (with its newline) instead of `imgbuild: interrupted by
/// <signal>` when it ends the process itself: the binary's json log wants an object there.
/// The first call wins.
pub fn set_exit_line(line: fn(Interrupted) -> String) {
    let _ = EXIT_LINE.set(line);
}

/// The last resort after the grace period: remove the registered directories and end the
/// process. Build sandboxes die with it (their commands have `PR_SET_PDEATHSIG`).
fn force_exit(i: Interrupted) -> ! {
    let dirs: Vec<(PathBuf, Remover)> = REGISTERED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(_, p, remove)| (p.clone(), *remove))
        .collect();
    for (d, remove) in dirs {
        // The main thread may be removing the same tree: a few tries settle any race.
        for _ in 0..3 {
            if remove(&d) {
                break;
            }
        }
    }
    let line = EXIT_LINE
        .get()
        .map_or_else(|| format!("imgbuild: {i}\n"), |line| line(i));
    // SAFETY: a plain write to stderr, then ending the process without running destructors
    // that the stuck thread may hold locks for.
    unsafe {
        libc::write(2, line.as_ptr().cast(), line.len());
        libc::_exit(i32::from(i.exit_code()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_and_names_follow_the_shell() {
        let i = Interrupted {
            signal: libc::SIGINT,
        };
        assert_eq!(i.exit_code(), 130);
        assert_eq!(i.to_string(), "interrupted by SIGINT");
        let t = Interrupted {
            signal: libc::SIGTERM,
        };
        assert_eq!(t.exit_code(), 143);
        assert_eq!(
            Interrupted {
                signal: libc::SIGHUP
            }
            .exit_code(),
            129
        );
        let e: io::Error = t.into();
        assert_eq!(e.to_string(), "interrupted by SIGTERM");
    }

    #[test]
    fn registrations_are_dropped() {
        let listed = |p: &str| {
            REGISTERED
                .lock()
                .unwrap()
                .iter()
                .any(|(_, q, _)| q == Path::new(p))
        };
        let a = remove_on_exit(Path::new("/nonexistent/registered-a"), |_| true);
        let b = remove_on_exit(Path::new("/nonexistent/registered-b"), |_| true);
        assert!(listed("/nonexistent/registered-a") && listed("/nonexistent/registered-b"));
        drop(a);
        assert!(!listed("/nonexistent/registered-a") && listed("/nonexistent/registered-b"));
        drop(b);
        assert!(!listed("/nonexistent/registered-b"));
    }
}
