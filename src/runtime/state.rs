//! Container records, their names, and whether the process supervising a container lives.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::storage::DriverKind;

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Its root tree exists; the command has not started (or failed to start).
    Created,
    /// The command runs, supervised by the imgbuild process `pid`.
    Running,
    /// The command ended with `exit_code`.
    Exited,
    /// Recorded as running, but the imgbuild process supervising it is gone (killed): the
    /// command died with it, its exit code is unknown. Only reported, never recorded.
    Dead,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Created => "created",
            State::Running => "running",
            State::Exited => "exited",
            State::Dead => "dead",
        })
    }
}

/// What the runtime records about a container (`<store>/runtime/<id>/state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// 64 hex digits.
    pub id: String,
    /// Unique among the store's containers.
    pub name: String,
    /// The image id.
    pub image: String,
    /// The image reference as given to `run`.
    pub image_ref: String,
    /// The command line run (entrypoint and command).
    pub command: Vec<String>,
    /// The container's hostname.
    pub hostname: String,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    /// The current state.
    pub state: State,
    /// The command's exit code (128 + signal when killed) once exited.
    pub exit_code: Option<i32>,
    /// When the command ended, seconds since the Unix epoch.
    pub finished: Option<u64>,
    /// The running command's pid, as the host sees it (PID 1 of the container's namespace).
    pub pid: Option<u32>,
    /// That process's start time in clock ticks since boot (`/proc/PID/stat` field 22), so a
    /// reused pid is not taken for it.
    pub pid_start: Option<u64>,
    /// The imgbuild process supervising the command (`imgbuild run` in the foreground, the
    /// container's monitor when detached): the command is its child and dies with it.
    #[serde(default)]
    pub monitor_pid: Option<u32>,
    /// The supervisor's start time, as `pid_start`.
    #[serde(default)]
    pub monitor_start: Option<u64>,
    /// When the command last started, seconds since the Unix epoch.
    #[serde(default)]
    pub started: Option<u64>,
    /// The signal `stop` sends first (the image's `StopSignal` or `--stop-signal`; SIGTERM).
    #[serde(default = "default_stop_signal")]
    pub stop_signal: i32,
    /// Seconds `stop` waits after that signal before SIGKILL.
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout: u64,
    /// The storage driver holding the root tree.
    pub driver: DriverKind,
    /// The root tree.
    pub rootfs: PathBuf,
    /// Removed when the command ends (`--rm`).
    pub auto_remove: bool,
    /// The ports published from the host (`-p`, `-P`).
    #[serde(default)]
    pub ports: Vec<super::net::PublishedPort>,
}

/// The start time of process `pid` in clock ticks since boot, if it exists and has not
/// ended (a zombie waiting for its parent to reap it counts as ended).
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    if matches!(fields.next(), Some("Z" | "X")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

fn default_stop_signal() -> i32 {
    libc::SIGTERM
}

/// The seconds `stop` waits by default, as podman.
pub const DEFAULT_STOP_TIMEOUT: u64 = 10;

fn default_stop_timeout() -> u64 {
    DEFAULT_STOP_TIMEOUT
}

impl ContainerRecord {
    /// Records that the command ended with `code` at `finished` (seconds since the epoch):
    /// no process of the container is left to record.
    pub fn mark_exited(&mut self, code: i32, finished: u64) {
        self.state = State::Exited;
        self.exit_code = Some(code);
        self.finished = Some(finished);
        self.pid = None;
        self.pid_start = None;
        self.monitor_pid = None;
        self.monitor_start = None;
    }

    /// The state as it is now: a recorded `Running` whose supervisor is gone is `Dead` (the
    /// command died with it; a reboot leaves every container so).
    pub fn live_state(&self) -> State {
        match self.state {
            State::Running if self.supervisor_alive() => State::Running,
            State::Running => State::Dead,
            s => s,
        }
    }

    /// Whether the supervising process recorded is the one alive under its pid.
    pub fn supervisor_alive(&self) -> bool {
        self.monitor_pid
            .is_some_and(|p| self.monitor_start.is_some() && process_start(p) == self.monitor_start)
    }

    /// The running command's pid, when it is still the process recorded.
    pub fn command_pid(&self) -> Option<u32> {
        self.pid
            .filter(|&p| self.pid_start.is_some() && process_start(p) == self.pid_start)
    }
}

/// Docker's rule for container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

const ADJECTIVES: &[&str] = &[
    "agile", "bold", "brave", "bright", "calm", "clever", "crisp", "eager", "fair", "fast",
    "gentle", "happy", "jolly", "keen", "kind", "lucid", "merry", "neat", "nimble", "proud",
    "quiet", "quick", "sharp", "smart", "steady", "sunny", "swift", "tidy", "vivid", "wise",
    "witty", "zesty",
];

const NOUNS: &[&str] = &[
    "alder", "aspen", "badger", "beaver", "birch", "cedar", "crane", "falcon", "ferret", "finch",
    "gecko", "heron", "ibex", "lark", "lynx", "maple", "marten", "newt", "otter", "owl", "panda",
    "pine", "puffin", "raven", "robin", "rowan", "salmon", "spruce", "stork", "swan", "walnut",
    "willow",
];

/// A name for container `id` (`adjective_noun`, picked by the id's random digits), with a
/// numeric suffix when `taken` says the plain one is in use.
pub fn generate_name(id: &str, taken: &dyn Fn(&str) -> bool) -> String {
    let pick = |range: std::ops::Range<usize>, n: usize| {
        id.get(range)
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .unwrap_or(0)
            % n
    };
    let base = format!(
        "{}_{}",
        ADJECTIVES[pick(0..4, ADJECTIVES.len())],
        NOUNS[pick(4..8, NOUNS.len())]
    );
    if !taken(&base) {
        return base;
    }
    // Ends at the first free name: only finitely many are taken.
    let mut n = 2u64;
    loop {
        let name = format!("{base}{n}");
        if !taken(&name) {
            return name;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("web-1.a_b"));
        for bad in ["", "a", "-x", "a b", "a/b", "é1"] {
            assert!(!valid_name(bad), "{bad}");
        }
        let id = "0123456789abcdef";
        let n = generate_name(id, &|_| false);
        assert!(valid_name(&n) && n.contains('_'), "{n}");
        assert_eq!(generate_name(id, &|_| false), n, "same id, same name");
        let taken = n.clone();
        let second = generate_name(id, &|c| c == taken);
        assert_eq!(second, format!("{n}2"));
    }

    #[test]
    fn own_process_is_alive_and_a_reused_pid_is_not() {
        let me = std::process::id();
        let start = process_start(me);
        assert!(start.is_some());
        let mut rec = ContainerRecord {
            id: "0".repeat(64),
            name: "x1".into(),
            image: "sha256:0".into(),
            image_ref: "x".into(),
            command: vec![],
            hostname: "h".into(),
            created: 0,
            state: State::Running,
            exit_code: None,
            finished: None,
            pid: Some(me),
            pid_start: start,
            monitor_pid: Some(me),
            monitor_start: start,
            started: Some(0),
            stop_signal: libc::SIGTERM,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            driver: DriverKind::Vfs,
            rootfs: PathBuf::from("/"),
            auto_remove: false,
            ports: Vec::new(),
        };
        assert_eq!(rec.live_state(), State::Running);
        assert_eq!(rec.command_pid(), Some(me));
        rec.pid_start = start.map(|s| s + 1);
        assert_eq!(rec.command_pid(), None);
        assert_eq!(rec.live_state(), State::Running, "the supervisor decides");
        rec.monitor_start = start.map(|s| s + 1);
        assert_eq!(rec.live_state(), State::Dead);
        rec.state = State::Exited;
        assert_eq!(rec.live_state(), State::Exited);
    }
}
