//! qemu-user for aarch64 registered with `binfmt_misc` while a test needs it, as Debian's
//! `qemu-user-static` registers it (its `/usr/lib/binfmt.d` line, with the `F` flag), and put
//! back as it was when the last test using it is done (also when it failed): what the fixture
//! mounted is unmounted, the handler it registered removed, the one it enabled disabled again.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

const DIR: &str = "/proc/sys/fs/binfmt_misc";
const HANDLER: &str = "/proc/sys/fs/binfmt_misc/qemu-aarch64";
const CONF: &str = "/usr/lib/binfmt.d/qemu-aarch64.conf";

/// What the fixture changed, and how many tests use it now.
#[derive(Default)]
struct State {
    users: usize,
    mounted: bool,
    registered: bool,
    enabled: bool,
}

static STATE: Mutex<State> = Mutex::new(State {
    users: 0,
    mounted: false,
    registered: false,
    enabled: false,
});

/// Held while a test runs aarch64 programs.
pub struct Qemu(());

/// Registers qemu-aarch64 (from the installed qemu-user-static) unless it is already; panics
/// with the reason when it cannot.
pub fn qemu_aarch64() -> Qemu {
    let mut s = STATE.lock().unwrap_or_else(PoisonError::into_inner);
    if s.users == 0 {
        if !Path::new(DIR).join("status").exists() {
            run("mount", &["-t", "binfmt_misc", "binfmt_misc", DIR]);
            s.mounted = true;
        }
        if !Path::new(HANDLER).exists() {
            let line = std::fs::read_to_string(CONF)
                .unwrap_or_else(|e| panic!("{CONF}: {e} (apt-get install qemu-user-static)"));
            std::fs::write(Path::new(DIR).join("register"), line.trim_end())
                .unwrap_or_else(|e| panic!("registering {CONF}: {e}"));
            s.registered = true;
        } else if !std::fs::read_to_string(HANDLER).is_ok_and(|t| t.starts_with("enabled")) {
            std::fs::write(HANDLER, "1").unwrap_or_else(|e| panic!("{HANDLER}: {e}"));
            s.enabled = true;
        }
    }
    s.users += 1;
    Qemu(())
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let mut s = STATE.lock().unwrap_or_else(PoisonError::into_inner);
        s.users -= 1;
        if s.users > 0 {
            return;
        }
        if std::mem::take(&mut s.registered) {
            let _ = std::fs::write(HANDLER, "-1");
        } else if std::mem::take(&mut s.enabled) {
            let _ = std::fs::write(HANDLER, "0");
        }
        if std::mem::take(&mut s.mounted) {
            let _ = std::process::Command::new("umount").arg(DIR).status();
        }
    }
}

fn run(cmd: &str, args: &[&str]) {
    let st = std::process::Command::new(cmd)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(st.success(), "{cmd} {args:?}: {st}");
}
