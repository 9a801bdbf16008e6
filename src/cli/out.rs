//! stdout and stderr as Unix tools use them: once the reader of either has gone (`imgbuild info
//! DIR | head`), the process ends as if SIGPIPE had killed it, with no message and no backtrace.
//!
//! Rust ignores SIGPIPE, so a write to a closed pipe fails with EPIPE, on which std's `println!`
//! panics (exit 101). imgbuild keeps SIGPIPE ignored, because its own pipes (to the build
//! sandboxes, the stop pipe) must fail as errors instead of killing a build half way; children
//! get the default back (std's `Command` and the sandbox's child reset it before `exec`). Only
//! the writes to stdout and stderr turn EPIPE into the default action, as Go does for fds 1 and 2
//! (so podman behaves the same): the shell sees the process killed by SIGPIPE (status 141), as
//! for coreutils. A command that builds stops cleanly instead, as on SIGINT (its work directory
//! removed), then ends the same way.
//!
//! The binary's `print!`, `println!`, `eprint!` and `eprintln!` are the macros below (declared
//! before every other module, so they shadow std's there).

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// [`std::print!`] that ends the process quietly when stdout is closed.
macro_rules! print {
    ($($arg:tt)*) => {{
        $crate::cli::out::stdout(format_args!($($arg)*));
    }};
}

/// [`std::println!`] that ends the process quietly when stdout is closed.
macro_rules! println {
    () => {{
        $crate::cli::out::stdout(format_args!("\n"));
    }};
    ($($arg:tt)*) => {{
        $crate::cli::out::stdout(format_args!("{}\n", format_args!($($arg)*)));
    }};
}

/// [`std::eprint!`] that ends the process (or stops a build) quietly when stderr is closed.
macro_rules! eprint {
    ($($arg:tt)*) => {{
        $crate::cli::out::stderr(format_args!($($arg)*));
    }};
}

/// [`std::eprintln!`] that ends the process (or stops a build) quietly when stderr is closed.
macro_rules! eprintln {
    () => {{
        $crate::cli::out::stderr(format_args!("\n"));
    }};
    ($($arg:tt)*) => {{
        $crate::cli::out::stderr(format_args!("{}\n", format_args!($($arg)*)));
    }};
}

/// Set once stderr was found closed: nothing more is written to it.
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

/// Set for the commands that build: a closed stderr stops the build instead of ending the
/// process on the spot.
static STOP_ON_CLOSED_STDERR: AtomicBool = AtomicBool::new(false);

/// From now on a closed stderr stops the work as a stop signal does (`imgbuild::interrupt`
/// must be installed), and [`end_if_closed`] ends the process once the work has wound down.
pub fn stop_on_closed_stderr() {
    STOP_ON_CLOSED_STDERR.store(true, Ordering::SeqCst);
}

/// Write `args` to stdout, flushed (so a closed pipe is noticed here, not at exit). On EPIPE
/// the process ends as SIGPIPE ends it; on another error (a full disk) with the error on
/// stderr and status 1.
pub fn stdout(args: std::fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| out.flush());
    drop(out);
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => die_of_sigpipe(),
        Err(e) => {
            stderr(format_args!("imgbuild: error: writing to stdout: {e}\n"));
            std::process::exit(1);
        }
    }
}

/// Write `args` to stderr. On EPIPE: a build is stopped (see [`stop_on_closed_stderr`]) and
/// nothing more is written; any other command ends as SIGPIPE ends it. Other errors are dropped:
/// there is nowhere left to report them.
pub fn stderr(args: std::fmt::Arguments<'_>) {
    if STDERR_CLOSED.load(Ordering::SeqCst) {
        return;
    }
    match io::stderr().lock().write_fmt(args) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => closed_stderr(),
        _ => {}
    }
}

/// stderr's reader has gone.
fn closed_stderr() {
    STDERR_CLOSED.store(true, Ordering::SeqCst);
    if STOP_ON_CLOSED_STDERR.load(Ordering::SeqCst) {
        imgbuild::interrupt::trigger(libc::SIGPIPE);
    } else {
        die_of_sigpipe();
    }
}

/// After the command returned: when stderr was found closed, or the work was stopped for it,
/// end as SIGPIPE ends a process. From now on a closed stderr ends the process at once: the
/// work is over.
pub fn end_if_closed() {
    STOP_ON_CLOSED_STDERR.store(false, Ordering::SeqCst);
    let stopped = imgbuild::interrupt::received().is_some_and(|i| i.signal == libc::SIGPIPE);
    if STDERR_CLOSED.load(Ordering::SeqCst) || stopped {
        die_of_sigpipe();
    }
}

/// End the process for a parse error, `--help` or `--version` as clap does, but through the
/// macros above where the stream is not a terminal (clap drops a write error and exits 0).
pub fn clap_exit(e: &clap::Error) -> ! {
    let terminal = if e.use_stderr() {
        io::stderr().is_terminal()
    } else {
        io::stdout().is_terminal()
    };
    if terminal {
        e.exit();
    }
    let text = e.render();
    if e.use_stderr() {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    std::process::exit(e.exit_code())
}

/// End the process as SIGPIPE's default action does: no message, no unwinding; the parent
/// sees it killed by SIGPIPE (a shell's status 141).
pub fn die_of_sigpipe() -> ! {
    // SAFETY: plain signal calls: the default action for SIGPIPE, unblocked in this thread,
    // then raised, which ends the whole process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &raw const set, std::ptr::null_mut());
        libc::raise(libc::SIGPIPE);
    }
    // Not reached; should the signal not end us, the status a shell would show.
    std::process::exit(128 + libc::SIGPIPE)
}
