//! `imgbuild test`: the checks of a container-structure-test config (schema version 2.0.0)
//! run against an image of the store.
//!
//! * **Command tests** each get a fresh container of the image (the image's entrypoint
//!   cleared): the `setup` commands run first, in that container's root, so the command sees
//!   what they changed; then the command, with its stdout, stderr and exit code captured; then
//!   the `teardown` commands. The container is released afterwards, whatever happened.
//! * **File existence, file content and license tests** read one container's root tree through
//!   [`crate::confine`]: a symlink in the image resolves inside the image, never on the host.
//! * **The metadata test** reads the image config from the store.
//!
//! SIGINT, SIGTERM and SIGHUP stop the run (when [`crate::interrupt`] is installed): a running
//! command is killed rather than sent the signal, and every container is released.
//!
//! `$VAR` and `${VAR}` in a command, its arguments, `envVars` values and `fileExistenceTests`
//! paths are expanded from the image's `Env` and the config's `globalEnvVars` (and, for a command
//! test, its own `envVars`); an unset variable expands to nothing.

pub mod config;
pub mod report;
mod yaml;

pub use config::Config;
pub use report::{FileReport, Report, TestResult};

use crate::confine::Root;
use crate::runtime::{UserSpec, Volume};
use crate::sandbox::{Network, Profile, Sandbox, SandboxError, Stdio};
use crate::storage::{StorageError, Store};
use config::{
    CommandTest, ExecutableBy, FileContentTest, FileExistenceTest, LicenseTest, MetadataTest,
};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Errors that stop a run (a failing check is a [`TestResult`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum StructureTestError {
    /// The config file is invalid.
    #[error("{}:{line}: {}{message}", path.display(), if field.is_empty() { String::new() } else { format!("{field}: ") })]
    Config {
        /// The config file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// The field, as a path (`commandTests[2].expectedOutput[0]`); empty for the document.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The image store failed (also: the image is not in it).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The image config cannot be read.
    #[error("image {image}: invalid config: {reason}")]
    ImageConfig {
        /// The image.
        image: String,
        /// What is wrong with its config.
        reason: String,
    },
    /// The runtime could not set a container up (user, environment, volume).
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    /// A container's root tree could not be opened.
    #[error("container {id}: {source}")]
    Root {
        /// The container's id.
        id: String,
        /// The confined operation's error.
        #[source]
        source: crate::confine::ConfineError,
    },
    /// imgbuild was told to stop (SIGINT, SIGTERM, SIGHUP) between two tests.
    #[error(transparent)]
    Interrupted(#[from] crate::interrupt::Interrupted),
    /// The sandbox could not run a container (other than its command failing to start).
    #[error("container {id}: {source}")]
    Sandbox {
        /// The container's id.
        id: String,
        /// The sandbox's error.
        #[source]
        source: SandboxError,
    },
}

type Result<T, E = StructureTestError> = std::result::Result<T, E>;

/// The image config fields the tests read (OCI `config` object, Docker's names).
#[derive(Debug, Default, serde::Deserialize)]
struct ImageConfig {
    #[serde(rename = "Env", default)]
    env: Option<Vec<String>>,
    #[serde(rename = "Entrypoint", default)]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    cmd: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    working_dir: Option<String>,
    #[serde(rename = "User", default)]
    user: Option<String>,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "ExposedPorts", default)]
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(rename = "Volumes", default)]
    volumes: Option<BTreeMap<String, serde_json::Value>>,
}

impl ImageConfig {
    fn env_map(&self) -> BTreeMap<String, String> {
        self.env
            .iter()
            .flatten()
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    /// Exposed ports without their protocol (`80/tcp` is `80`), as the config names them.
    fn ports(&self) -> Vec<String> {
        self.exposed_ports
            .iter()
            .flatten()
            .map(|(p, _)| p.split('/').next().unwrap_or(p).to_string())
            .collect()
    }
}

/// Expand `$NAME`, `${NAME}` and the one-character special names (`$1`, `$$`, ...) the way the
/// upstream tool's Go runtime does (`os.Expand`): unknown names give nothing, a `$` followed by
/// none of these stays, `${}` and an unclosed `${` are dropped.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let special = |c: u8| b"*#$@!?-".contains(&c) || c.is_ascii_digit();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut start = 0;
    let mut j = 0;
    while j < bytes.len() {
        if bytes[j] == b'$' && j + 1 < bytes.len() {
            out.push_str(&text[start..j]);
            let rest = &text[j + 1..];
            let rb = rest.as_bytes();
            // (name, bytes consumed after the `$`)
            let (name, width): (Option<&str>, usize) = if rb[0] == b'{' {
                if rb.len() > 2 && special(rb[1]) && rb[2] == b'}' {
                    (Some(&rest[1..2]), 3)
                } else if let Some(close) = rest.find('}') {
                    if close == 1 {
                        (None, 2)
                    } else {
                        (Some(&rest[1..close]), close + 1)
                    }
                } else {
                    (None, rest.len())
                }
            } else if special(rb[0]) {
                (Some(&rest[..1]), 1)
            } else {
                let n = rb
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                    .count();
                if n == 0 {
                    out.push('$');
                    (None, 0)
                } else {
                    (Some(&rest[..n]), n)
                }
            };
            if let Some(name) = name {
                out.push_str(&lookup(name).unwrap_or_default());
            }
            j += width + 1;
            start = j;
        } else {
            j += 1;
        }
    }
    out.push_str(&text[start.min(text.len())..]);
    out
}

/// The mode as Go's `FileMode.String` writes it, which is what `permissions` is compared with:
/// the type and special-bit letters (`d`, `L`, `D`, `p`, `S`, `u`, `g`, `c`, `t`; `-` when
/// none) followed by `rwxrwxrwx`.
pub fn mode_string(mode: u32) -> String {
    let kind = mode & libc::S_IFMT;
    let mut out = String::new();
    if kind == libc::S_IFDIR {
        out.push('d');
    }
    if kind == libc::S_IFLNK {
        out.push('L');
    }
    if kind == libc::S_IFBLK || kind == libc::S_IFCHR {
        out.push('D');
    }
    if kind == libc::S_IFIFO {
        out.push('p');
    }
    if kind == libc::S_IFSOCK {
        out.push('S');
    }
    if mode & libc::S_ISUID != 0 {
        out.push('u');
    }
    if mode & libc::S_ISGID != 0 {
        out.push('g');
    }
    if kind == libc::S_IFCHR {
        out.push('c');
    }
    if mode & libc::S_ISVTX != 0 {
        out.push('t');
    }
    if out.is_empty() {
        out.push('-');
    }
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        out.push(if mode & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    out
}

/// A container of the store, released when dropped.
struct Container<'s> {
    store: &'s Store,
    id: String,
    rootfs: PathBuf,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self.store.release_container(&self.id);
    }
}

/// Runs configs against one image.
pub struct Tester<'s> {
    store: &'s Store,
    image_id: String,
    config: ImageConfig,
    etc: tempfile::TempDir,
    hostname: String,
}

impl<'s> Tester<'s> {
    /// A tester for `image` (`name[:tag]`, id, id prefix or digest) in `store`.
    pub fn new(store: &'s Store, image: &str) -> Result<Tester<'s>> {
        let details = store.inspect(image)?;
        let image_id = details.record.id.clone();
        let config = match details.config.get("config") {
            Some(c) if !c.is_null() => {
                serde_json::from_value(c.clone()).map_err(|e| StructureTestError::ImageConfig {
                    image: image_id.clone(),
                    reason: e.to_string(),
                })?
            }
            _ => ImageConfig::default(),
        };
        // The containers' /etc/hostname, hosts and resolv.conf, shared by all of them: every
        // test container is named after the image.
        let etc = tempfile::Builder::new()
            .prefix("imgbuild-test-")
            .tempdir()
            .map_err(|source| StructureTestError::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        let hostname = image_id
            .trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect::<String>();
        for (name, text) in [
            ("hostname", format!("{hostname}\n")),
            ("hosts", crate::runtime::hosts_file(&hostname)),
            ("resolv.conf", String::new()),
        ] {
            let path = etc.path().join(name);
            std::fs::write(&path, text)
                .map_err(|source| StructureTestError::Io { path, source })?;
        }
        Ok(Tester {
            store,
            image_id,
            config,
            etc,
            hostname,
        })
    }

    /// The image's id.
    pub fn image_id(&self) -> &str {
        &self.image_id
    }

    /// Run every test of `configs` in order, calling `progress` with each file's path before
    /// its tests and with each result as it is known.
    pub fn run(
        &self,
        configs: &[Config],
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<Report> {
        let start = Instant::now();
        let mut report = Report::default();
        for c in configs {
            progress(Progress::File(&c.path));
            let mut file = FileReport {
                path: c.path.clone(),
                results: Vec::new(),
            };
            // A stop signal between tests ends the run (the containers made so far are
            // released as they go out of scope); one during a command goes to the command.
            let mut push = |r: TestResult, file: &mut FileReport| {
                progress(Progress::Result(&r));
                file.results.push(r);
                crate::interrupt::check()
            };
            // The upstream tool's order: commands, file contents, file existence, licenses,
            // metadata.
            let env = self.global_env(c);
            for t in &c.command_tests {
                crate::interrupt::check()?;
                let r = self.command_test(c, &env, t)?;
                push(r, &mut file)?;
            }
            let needs_tree = !(c.file_content_tests.is_empty()
                && c.file_existence_tests.is_empty()
                && c.license_tests.is_empty());
            if needs_tree {
                let container = self.container()?;
                let root =
                    Root::open(&container.rootfs).map_err(|source| StructureTestError::Root {
                        id: container.id.clone(),
                        source,
                    })?;
                for t in &c.file_content_tests {
                    push(timed(|| content_test(&root, t)), &mut file)?;
                }
                for t in &c.file_existence_tests {
                    push(timed(|| existence_test(&root, &env, t)), &mut file)?;
                }
                for t in &c.license_tests {
                    push(timed(|| license_test(&root, t)), &mut file)?;
                }
            }
            if !c.metadata.is_empty() {
                push(
                    timed(|| metadata_test(&self.config, &c.metadata)),
                    &mut file,
                )?;
            }
            report.files.push(file);
        }
        report.duration = start.elapsed();
        Ok(report)
    }

    fn container(&self) -> Result<Container<'s>> {
        let c = self.store.create_container(&self.image_id)?;
        Ok(Container {
            store: self.store,
            id: c.id,
            rootfs: c.rootfs,
        })
    }

    /// The image's environment with the config's `globalEnvVars` over it (values expanded).
    fn global_env(&self, c: &Config) -> BTreeMap<String, String> {
        let mut env = self.config.env_map();
        for kv in &c.global_env {
            let v = expand(&kv.value, &|n| env.get(n).cloned());
            env.insert(kv.key.clone(), v);
        }
        env
    }

    fn command_test(
        &self,
        c: &Config,
        global: &BTreeMap<String, String>,
        t: &CommandTest,
    ) -> Result<TestResult> {
        let start = Instant::now();
        let mut result = TestResult::new(format!("Command Test: {}", t.name));
        // Variables over the image's: the globals, the test's own, then containerRunOptions'.
        let mut env = global.clone();
        let mut extra: Vec<(String, String)> = c
            .global_env
            .iter()
            .map(|kv| (kv.key.clone(), global[&kv.key].clone()))
            .collect();
        for kv in &t.env {
            let v = expand(&kv.value, &|n| env.get(n).cloned());
            env.insert(kv.key.clone(), v.clone());
            extra.push((kv.key.clone(), v));
        }
        extra.extend(run_option_env(&c.run_options)?);
        let lookup = |n: &str| env.get(n).cloned();
        let argv: Vec<String> = std::iter::once(&t.command)
            .chain(&t.args)
            .map(|a| expand(a, &lookup))
            .collect();

        let container = self.container()?;
        let prepared = self.prepare(&container, c, &extra)?;
        for cmd in &t.setup {
            // Their exit status is not checked, as upstream; a command that cannot start is.
            if let Err(e) = self.exec(&container, &prepared, cmd.clone()) {
                result.fail(format!(
                    "setup command {cmd:?}: {}",
                    exec_error(e, &container)?
                ));
                result.duration = start.elapsed();
                return Ok(result);
            }
        }
        match self.exec(&container, &prepared, argv) {
            Ok(out) => {
                result.stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                result.stderr = String::from_utf8_lossy(&out.stderr).into_owned();
                check_output(t, &mut result, out.code);
            }
            Err(e) => result.fail(format!(
                "the command could not run: {}",
                exec_error(e, &container)?
            )),
        }
        for cmd in &t.teardown {
            // Teardown cannot change the verdict; a failure to start is noted.
            if let Err(e) = self.exec(&container, &prepared, cmd.clone()) {
                let why = exec_error(e, &container)?;
                result
                    .errors
                    .push(format!("teardown command {cmd:?} (ignored): {why}"));
            }
        }
        drop(container);
        result.duration = start.elapsed();
        Ok(result)
    }

    /// User, working directory and environment of a command test's container.
    fn prepare(
        &self,
        container: &Container<'_>,
        c: &Config,
        extra: &[(String, String)],
    ) -> Result<Prepared> {
        let root_err = |source| StructureTestError::Root {
            id: container.id.clone(),
            source,
        };
        let root = Root::open(&container.rootfs).map_err(root_err)?;
        let spec = match (&c.run_options.user, self.config.user.as_deref()) {
            (Some(u), _) => Some(UserSpec::parse(u)?),
            (None, Some(u)) if !u.is_empty() => Some(UserSpec::parse(u)?),
            _ => None,
        };
        let user =
            crate::runtime::resolve_user_in(&container.id, &container.rootfs, spec.as_ref())?;
        let workdir = self
            .config
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into());
        let rel = workdir.trim_start_matches('/');
        if !rel.is_empty() {
            root.create_dir_all(rel, 0o755).map_err(root_err)?;
        }
        let env = crate::runtime::environment(
            self.config.env.as_deref().unwrap_or_default(),
            &self.hostname,
            &user.home,
            false,
            extra,
        );
        let volumes = c
            .run_options
            .bind_mounts
            .iter()
            .map(|b| b.parse::<Volume>())
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Prepared {
            user,
            workdir,
            env,
            volumes,
        })
    }

    fn exec(
        &self,
        container: &Container<'_>,
        p: &Prepared,
        argv: Vec<String>,
    ) -> std::result::Result<crate::sandbox::Outcome, SandboxError> {
        let mut sb = Sandbox::new(&container.rootfs, argv)
            .profile(Profile::Container)
            .network(Network::None)
            .hostname(self.hostname.clone())
            .user(p.user.uid, p.user.gid, p.user.groups.clone())
            .cwd(&p.workdir)
            .resolv_conf(false)
            .stdin(Stdio::Null)
            .stdout(Stdio::Capture)
            .stderr(Stdio::Capture)
            .stop_on_interrupt(true);
        for (k, v) in &p.env {
            sb = sb.env(k, v);
        }
        for name in ["hostname", "hosts", "resolv.conf"] {
            sb = sb.bind(
                self.etc.path().join(name),
                Path::new("/etc").join(name),
                true,
            );
        }
        for v in &p.volumes {
            sb = sb.bind(&v.host, &v.container, v.read_only);
        }
        sb.run()
    }
}

/// What a run reports as it goes.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// The tests of this config file start.
    File(&'a Path),
    /// A test has ended.
    Result(&'a TestResult),
}

struct Prepared {
    user: crate::runtime::ExecUser,
    workdir: String,
    env: Vec<(String, String)>,
    volumes: Vec<Volume>,
}

/// The variables `containerRunOptions` passes: imgbuild's own (`envVars`, unset ones skipped)
/// and an env file's.
fn run_option_env(o: &config::RunOptions) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    if let Some(path) = &o.env_file {
        let text = std::fs::read_to_string(path).map_err(|source| StructureTestError::Io {
            path: path.clone(),
            source,
        })?;
        out.extend(crate::runtime::parse_env_file(path, &text, &|_| None)?);
    }
    for name in &o.env_vars {
        if let Ok(v) = std::env::var(name) {
            out.push((name.clone(), v));
        }
    }
    Ok(out)
}

/// A command that could not start fails its test (as a container that cannot start fails
/// upstream's); any other sandbox error stops the run.
fn exec_error(e: SandboxError, c: &Container<'_>) -> Result<String> {
    match e {
        e @ SandboxError::Exec { .. } => Ok(e.to_string()),
        SandboxError::Interrupted(i) => Err(i.into()),
        source => Err(StructureTestError::Sandbox {
            id: c.id.clone(),
            source,
        }),
    }
}

fn timed(f: impl FnOnce() -> TestResult) -> TestResult {
    let start = Instant::now();
    let mut r = f();
    r.duration = start.elapsed();
    r
}

/// The checks of a command test on what the command printed and returned.
fn check_output(t: &CommandTest, r: &mut TestResult, code: i32) {
    let (out, err) = (r.stdout.clone(), r.stderr.clone());
    for p in &t.expected_output {
        if !p.regex.is_match(&out) {
            r.fail(format!(
                "expected output '{}' not found in stdout",
                p.source
            ));
        }
    }
    for p in &t.excluded_output {
        if p.regex.is_match(&out) {
            r.fail(format!("excluded output '{}' found in stdout", p.source));
        }
    }
    for p in &t.expected_error {
        if !p.regex.is_match(&err) {
            r.fail(format!("expected error '{}' not found in stderr", p.source));
        }
    }
    for p in &t.excluded_error {
        if p.regex.is_match(&err) {
            r.fail(format!("excluded error '{}' found in stderr", p.source));
        }
    }
    if code != t.exit_code {
        r.fail(format!("exit code {code}, expected {}", t.exit_code));
    }
}

/// `path` made relative to the image's root, cleaned lexically as an absolute path (`..` at
/// the root stays there, as the container engine's archive read cleans it); symlinks are then
/// resolved inside the image by [`Root`].
fn rel(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

fn read_file(root: &Root, path: &str) -> std::result::Result<Vec<u8>, String> {
    let mut f = root.open_file(rel(path)).map_err(|e| e.to_string())?;
    let meta = f.metadata().map_err(|e| format!("{path}: {e}"))?;
    if meta.is_dir() {
        return Err(format!("{path} is a directory, not a file"));
    }
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)
        .map_err(|e| format!("{path}: {e}"))?;
    Ok(buf)
}

fn content_test(root: &Root, t: &FileContentTest) -> TestResult {
    let mut r = TestResult::new(format!("File Content Test: {}", t.name));
    let text = match read_file(root, &t.path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => {
            r.fail(format!("cannot read {}: {e}", t.path));
            return r;
        }
    };
    for p in &t.expected_contents {
        if !p.regex.is_match(&text) {
            r.fail(format!(
                "expected content '{}' not found in {}",
                p.source, t.path
            ));
        }
    }
    for p in &t.excluded_contents {
        if p.regex.is_match(&text) {
            r.fail(format!(
                "excluded content '{}' found in {}",
                p.source, t.path
            ));
        }
    }
    r
}

fn existence_test(
    root: &Root,
    env: &BTreeMap<String, String>,
    t: &FileExistenceTest,
) -> TestResult {
    let mut r = TestResult::new(format!("File Existence Test: {}", t.name));
    let path = expand(&t.path, &|n| env.get(n).cloned());
    // The path itself, not what a final symlink points to (as the upstream tool's archive read).
    let meta = match root.lstat(rel(&path)) {
        Ok(m) => m,
        Err(e) if e.is_not_found() => {
            if t.should_exist {
                r.fail(format!("{path} should exist but does not"));
            }
            return r;
        }
        Err(e) => {
            r.fail(format!("cannot examine {path}: {e}"));
            return r;
        }
    };
    if !t.should_exist {
        r.fail(format!("{path} should not exist but does"));
        return r;
    }
    let mode = meta.mode();
    let shown = mode_string(mode);
    if let Some(p) = &t.permissions
        && *p != shown
    {
        r.fail(format!("{path} has permissions {shown}, expected {p}"));
    }
    if let Some(by) = t.executable_by {
        let (mask, who) = match by {
            ExecutableBy::Owner => (0o100, "owner"),
            ExecutableBy::Group => (0o010, "group"),
            ExecutableBy::Other => (0o001, "other"),
            ExecutableBy::Any => (0o111, "any"),
        };
        if mode & mask == 0 {
            r.fail(format!("{path} is not executable by {who} ({shown})"));
        }
    }
    if let Some(uid) = t.uid
        && meta.uid() != uid
    {
        r.fail(format!(
            "{path} is owned by uid {}, expected {uid}",
            meta.uid()
        ));
    }
    if let Some(gid) = t.gid
        && meta.gid() != gid
    {
        r.fail(format!("{path} has gid {}, expected {gid}", meta.gid()));
    }
    r
}

/// Packages whose copyright files are not scanned (as upstream: a false positive).
const LICENSE_EXEMPT: &[&str] = &["libgnutls30"];
/// License names a copyright file must not mention (upper case; the file is upper-cased).
const LICENSE_REFUSED: &[&str] = &["AGPL", "WTFPL"];

fn license_file(root: &Root, path: &str) -> Option<String> {
    match read_file(root, path) {
        Err(e) => Some(format!("cannot read license file {path}: {e}")),
        Ok(b) => {
            let text = String::from_utf8_lossy(&b).to_uppercase();
            LICENSE_REFUSED
                .iter()
                .find(|w| text.contains(*w))
                .map(|w| format!("{path} names the license {w}"))
        }
    }
}

fn license_test(root: &Root, t: &LicenseTest) -> TestResult {
    let mut r = TestResult::new("License Test".into());
    if t.debian {
        let doc = "usr/share/doc";
        match root.read_dir(doc) {
            Err(e) => r.fail(format!("cannot read /{doc}: {e}")),
            Ok(names) => {
                for name in names {
                    let name = name.to_string_lossy().into_owned();
                    // Real directories only: a symlink stands for another package's.
                    let is_dir = root
                        .lstat(format!("{doc}/{name}"))
                        .is_ok_and(|m| m.is_dir());
                    if !is_dir || LICENSE_EXEMPT.contains(&name.as_str()) {
                        continue;
                    }
                    if let Some(e) = license_file(root, &format!("/{doc}/{name}/copyright")) {
                        r.fail(e);
                    }
                }
            }
        }
    }
    for f in &t.files {
        if let Some(e) = license_file(root, f) {
            r.fail(e);
        }
    }
    r
}

fn matches(expected: &config::KeyValue, actual: &str) -> bool {
    if expected.is_regex {
        regex::Regex::new(&expected.value).is_ok_and(|re| re.is_match(actual))
    } else {
        expected.value == actual
    }
}

fn metadata_test(image: &ImageConfig, t: &MetadataTest) -> TestResult {
    let mut r = TestResult::new("Metadata Test".into());
    let env = image.env_map();
    for kv in &t.env {
        match env.get(&kv.key) {
            None => r.fail(format!("variable {} is not in the image's Env", kv.key)),
            Some(v) if !matches(kv, v) => r.fail(format!(
                "variable {} is '{v}', expected {}'{}'",
                kv.key,
                if kv.is_regex { "a match of " } else { "" },
                kv.value
            )),
            Some(_) => {}
        }
    }
    for k in &t.unbound_env {
        if env.contains_key(k) {
            r.fail(format!("variable {k} should not be in the image's Env"));
        }
    }
    let labels = image.labels.clone().unwrap_or_default();
    for kv in &t.labels {
        match labels.get(&kv.key) {
            None => r.fail(format!("label {} is not set", kv.key)),
            Some(v) if !matches(kv, v) => r.fail(format!(
                "label {} is '{v}', expected {}'{}'",
                kv.key,
                if kv.is_regex { "a match of " } else { "" },
                kv.value
            )),
            Some(_) => {}
        }
    }
    let empty = Vec::new();
    if let Some(cmd) = &t.cmd {
        let actual = image.cmd.as_ref().unwrap_or(&empty);
        if actual != cmd {
            r.fail(format!("Cmd is {actual:?}, expected {cmd:?}"));
        }
    }
    if let Some(ep) = &t.entrypoint {
        let actual = image.entrypoint.as_ref().unwrap_or(&empty);
        if actual != ep {
            r.fail(format!("Entrypoint is {actual:?}, expected {ep:?}"));
        }
    }
    if let Some(w) = &t.workdir {
        let actual = image.working_dir.clone().unwrap_or_default();
        if actual != *w {
            r.fail(format!("WorkingDir is '{actual}', expected '{w}'"));
        }
    }
    if let Some(u) = &t.user {
        let actual = image.user.clone().unwrap_or_default();
        if actual != *u {
            r.fail(format!("User is '{actual}', expected '{u}'"));
        }
    }
    let ports = image.ports();
    for p in &t.exposed_ports {
        if !ports.contains(p) {
            r.fail(format!("port {p} is not exposed"));
        }
    }
    for p in &t.unexposed_ports {
        if ports.contains(p) {
            r.fail(format!("port {p} should not be exposed"));
        }
    }
    let volumes: Vec<&String> = image.volumes.iter().flatten().map(|(k, _)| k).collect();
    for v in &t.volumes {
        if !volumes.contains(&v) {
            r.fail(format!("volume {v} is not declared"));
        }
    }
    for v in &t.unmounted_volumes {
        if volumes.contains(&v) {
            r.fail(format!("volume {v} should not be declared"));
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_go_os_expand() {
        let env: BTreeMap<String, String> = [("HOME", "/root"), ("P", "/bin")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let x = |s: &str| expand(s, &|n| env.get(n).cloned());
        assert_eq!(x("$HOME/x"), "/root/x");
        assert_eq!(x("${P}:$P"), "/bin:/bin");
        assert_eq!(x("a$UNSET-b"), "a-b");
        assert_eq!(x("cost $ 5"), "cost $ 5");
        assert_eq!(x("end$"), "end$");
        assert_eq!(x("$$"), "");
        assert_eq!(x("${}x"), "x");
        assert_eq!(x("${unclosed"), "");
        assert_eq!(x("$1a"), "a");
        assert_eq!(x("é$HOME"), "é/root");
    }

    #[test]
    fn paths_are_cleaned_as_absolute() {
        assert_eq!(rel("/"), "");
        assert_eq!(rel("/bin/../../../etc/passwd"), "etc/passwd");
        assert_eq!(rel("etc//./x/"), "etc/x");
    }

    /// A symlink in the image, absolute or climbing, never reaches the host's files.
    #[test]
    fn file_tests_stay_in_the_image() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("etc/abs")).unwrap();
        std::os::unix::fs::symlink("../../../../../etc/passwd", t.path().join("etc/up")).unwrap();
        std::fs::write(t.path().join("etc/own"), "mine\n").unwrap();
        assert!(
            Path::new("/etc/passwd").exists(),
            "the host file the links point at"
        );
        let root = Root::open(t.path()).unwrap();
        let cfg = Config::parse(
            Path::new("t.yaml"),
            "schemaVersion: 2.0.0\nfileContentTests:\n  - {name: a, path: /etc/abs, expectedContents: [root]}\n  - {name: u, path: /etc/up, expectedContents: [root]}\n  - {name: o, path: /etc/../../etc/own, expectedContents: ['^mine']}\nfileExistenceTests:\n  - {name: l, path: /etc/abs, permissions: Lrwxrwxrwx}\n",
        )
        .unwrap();
        let r: Vec<TestResult> = cfg
            .file_content_tests
            .iter()
            .map(|c| content_test(&root, c))
            .collect();
        assert!(
            !r[0].pass && r[0].errors[0].contains("cannot read /etc/abs"),
            "{:?}",
            r[0].errors
        );
        assert!(!r[1].pass, "{:?}", r[1]);
        assert!(r[2].pass, "{:?}", r[2].errors);
        let e = existence_test(&root, &BTreeMap::new(), &cfg.file_existence_tests[0]);
        assert!(e.pass, "{:?}", e.errors);
    }

    #[test]
    fn modes_print_as_go_does() {
        assert_eq!(mode_string(libc::S_IFREG | 0o644), "-rw-r--r--");
        assert_eq!(mode_string(libc::S_IFDIR | 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(libc::S_IFDIR | 0o1777), "dtrwxrwxrwx");
        assert_eq!(mode_string(libc::S_IFLNK | 0o777), "Lrwxrwxrwx");
        assert_eq!(mode_string(libc::S_IFREG | 0o4755), "urwxr-xr-x");
        assert_eq!(mode_string(libc::S_IFREG | 0o2755), "grwxr-xr-x");
        assert_eq!(mode_string(libc::S_IFCHR | 0o666), "Dcrw-rw-rw-");
        assert_eq!(mode_string(libc::S_IFIFO | 0o600), "prw-------");
    }

    fn command(yaml: &str) -> CommandTest {
        let c = Config::parse(
            Path::new("t.yaml"),
            &format!("schemaVersion: 2.0.0\ncommandTests:\n{yaml}"),
        )
        .unwrap();
        c.command_tests[0].clone()
    }

    #[test]
    fn output_checks_search_anywhere_and_exit_code_defaults_to_zero() {
        let t = command(
            "  - name: t\n    command: x\n    expectedOutput: ['wor.d', '^hello']\n    excludedOutput: ['^world']\n    expectedError: ['warn']\n",
        );
        let mut r = TestResult::new("t".into());
        r.stdout = "hello\nworld\n".into();
        r.stderr = "a warning".into();
        check_output(&t, &mut r, 0);
        assert!(r.pass, "{:?}", r.errors);

        let mut r = TestResult::new("t".into());
        r.stdout = "world".into();
        check_output(&t, &mut r, 3);
        assert!(!r.pass);
        assert_eq!(
            r.errors,
            [
                "expected output '^hello' not found in stdout",
                "excluded output '^world' found in stdout",
                "expected error 'warn' not found in stderr",
                "exit code 3, expected 0",
            ]
        );
    }

    #[test]
    fn metadata_checks() {
        let image: ImageConfig = serde_json::from_value(serde_json::json!({
            "Env": ["PATH=/usr/bin", "LANG=C.UTF-8"],
            "Cmd": ["/bin/bash"],
            "Labels": {"build-date": "2024-01-02"},
            "ExposedPorts": {"80/tcp": {}},
            "Volumes": {"/data": {}},
        }))
        .unwrap();
        let c = Config::parse(
            Path::new("t.yaml"),
            "schemaVersion: 2.0.0\nmetadataTest:\n  envVars:\n    - key: LANG\n      value: C.UTF-8\n  labels:\n    - key: build-date\n      value: '^\\d{4}-'\n      isRegex: true\n  exposedPorts: ['80']\n  unexposedPorts: ['443']\n  volumes: [/data]\n  cmd: [/bin/bash]\n  entrypoint: []\n",
        )
        .unwrap();
        let r = metadata_test(&image, &c.metadata);
        assert!(r.pass, "{:?}", r.errors);
        let c = Config::parse(
            Path::new("t.yaml"),
            "schemaVersion: 2.0.0\nmetadataTest:\n  unboundEnvVars:\n    - key: LANG\n  workdir: /app\n  cmd: []\n  user: nobody\n",
        )
        .unwrap();
        let r = metadata_test(&image, &c.metadata);
        assert_eq!(r.errors.len(), 4, "{:?}", r.errors);
    }
}
