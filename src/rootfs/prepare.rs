//! `prepare`: a fresh root tree built from a description, in KIWI's order.
//!
//! 1. plan (lock file or solver) and download every package into the cache;
//! 2. bootstrap: the merged-/usr skeleton, the minbase set unpacked and configured;
//! 3. `post_bootstrap.sh`; 4. the image packages;
//! 5. the overlay: `root/`, `root.tar.gz` and `<archive>`s from the description directory;
//! 6. `<users>`; 7. `/.profile`, `/.kconfig`, locale and timezone; 8. `config.sh`;
//! 9. `uninstall` (with autoremove) and `delete` (forced) packages;
//! 10. the resolved description kept in `/image` for `create`.
//!
//! A derived image (`derived_from`) starts instead from its bases' layers, unpacked in order
//! (whiteouts applied, every path confined to the root) by the [`BaseStep`] `prepare` is given;
//! the unpacked tree is recorded in `/image/base.snapshot` so that `create` can write one diff
//! layer, and there is no bootstrap phase: the base's dpkg database is the installed set the
//! image packages are solved on.
//!
//! A root this call created is removed again when any step fails, so a failed prepare leaves no
//! half-built tree behind. Every sandbox's mounts live in its own mount namespace, so none stays.

use super::install::{self, InstallError};
use super::users::UserSpec;
use super::{RootfsError, profile};
use crate::apt::fetch::Credentials;
use crate::confine::{Root, UnpackOptions};
use crate::description::{Description, ResolvedImage};
use crate::plan::{self, Overrides, Phase, Plan, PlanError, PlanOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Errors of `prepare`.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The target root exists and is not empty.
    #[error(
        "{0}: the root directory exists and is not empty (use --allow-existing-root to build into it)"
    )]
    RootExists(PathBuf),
    /// Planning or downloading failed.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Installing packages failed.
    #[error(transparent)]
    Install(#[from] InstallError),
    /// A root-tree step failed.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    /// Unpacking an overlay archive or directory failed.
    #[error("{path}: {source}")]
    Overlay {
        /// The archive or directory.
        path: PathBuf,
        /// What went wrong.
        source: crate::confine::ConfineError,
    },
    /// The base step of a derived image failed (see [`BaseStep`]).
    #[error(transparent)]
    BaseStep(BaseStepError),
    /// The base's record in a prepared root is missing or unreadable.
    #[error("{path}: {message}")]
    BaseRecord {
        /// The record file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A hook ran longer than the hook timeout and was killed.
    #[error(
        "{step} in {root} did not finish within {} s and was stopped (see --hook-timeout)",
        .after.as_secs()
    )]
    HookTimeout {
        /// The hook.
        step: String,
        /// The root tree.
        root: PathBuf,
        /// The timeout.
        after: Duration,
    },
    /// A hook script or command in the root failed.
    #[error("{step} failed in {root} (exit {code}):\n{output}")]
    Step {
        /// What ran.
        step: String,
        /// The root tree.
        root: PathBuf,
        /// Its exit code.
        code: i32,
        /// The last lines it printed.
        output: String,
    },
}

/// Options of `prepare` (KIWI's `system prepare`).
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// Where the root tree is built.
    pub root: PathBuf,
    /// Build into an existing, non-empty root.
    pub allow_existing_root: bool,
    /// Cache, lock and offline settings.
    pub plan: PlanOptions,
    /// Command-line repository and package additions.
    pub overrides: Overrides,
    /// `--delete-package`: packages removed (forced) at the end.
    pub delete_packages: Vec<String>,
    /// The longest a KIWI hook (`post_bootstrap.sh`, `config.sh`) may run; none: no limit.
    pub hook_timeout: Option<Duration>,
    /// Show the output of successful maintainer scripts and hooks on stderr too.
    pub verbose: bool,
}

/// Where `prepare` keeps the lock of the packages it installed, relative to the root; the
/// SBOM takes the packages' download digests from it.
pub const PACKAGES_LOCK: &str = "image/packages.lock";

/// The default of `--hook-timeout`: generous, since hooks may build software, yet finite, so a
/// hook waiting for input that never comes does not hold a CI runner for ever.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(2 * 60 * 60);

/// One finished step and how long it took.
#[derive(Debug, Clone)]
pub struct StepTime {
    /// The step's name.
    pub step: &'static str,
    /// Wall time.
    pub took: Duration,
}

/// What `prepare` did.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The plan that was installed.
    pub plan: Plan,
    /// Step timings, in order.
    pub steps: Vec<StepTime>,
}

/// Removes a root this run created unless disarmed.
struct RootGuard {
    path: PathBuf,
    armed: bool,
}

impl Drop for RootGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Build the root tree of `image` (from `desc`) as `opts` says; a derived image starts from what
/// `bases` unpacks. `on_step` is told when each step starts, for progress output.
pub fn prepare(
    desc: &Description,
    image: &ResolvedImage,
    opts: &PrepareOptions,
    bases: &dyn BaseStep,
    on_step: &mut dyn FnMut(&str),
) -> Result<Prepared, PrepareError> {
    let root = opts.root.as_path();
    let existed = root.exists();
    if existed
        && !opts.allow_existing_root
        && std::fs::read_dir(root)
            .map_err(|source| io(root, source))?
            .next()
            .is_some()
    {
        return Err(PrepareError::RootExists(root.to_path_buf()));
    }
    std::fs::create_dir_all(root).map_err(|source| io(root, source))?;
    let mut guard = RootGuard {
        path: root.to_path_buf(),
        armed: !existed,
    };
    // Should a stop signal leave no time for the guard, the interrupt watcher removes it.
    let _registration = (!existed).then(|| {
        crate::interrupt::remove_on_exit(root, |p| crate::workdir::remove_tree(p).is_ok())
    });
    let mut steps = Vec::new();
    let timed = |name: &'static str, on_step: &mut dyn FnMut(&str)| {
        on_step(name);
        let start = Instant::now();
        move |steps: &mut Vec<StepTime>| {
            steps.push(StepTime {
                step: name,
                took: start.elapsed(),
            })
        }
    };

    let derived = !image.build_type.derived_from.is_empty();
    let base_installed = if derived {
        let done = timed("base", on_step);
        let installed = unpack_bases(root, image, bases)?;
        done(&mut steps);
        Some(installed)
    } else {
        None
    };

    let done = timed("resolve", on_step);
    let (cache, fetcher) = plan::open_cache(&opts.plan)?;
    let the_plan = match &base_installed {
        Some(installed) => plan::plan_on_base(
            image,
            &opts.overrides,
            &opts.plan,
            &cache,
            &fetcher,
            installed,
        )?,
        None => plan::plan(image, &opts.overrides, &opts.plan, &cache, &fetcher)?,
    };
    done(&mut steps);

    let done = timed("download", on_step);
    let creds: Vec<Option<Credentials>> = the_plan
        .repositories
        .iter()
        .map(|r| r.spec.credentials.clone())
        .collect();
    let paths = the_plan.download(&cache, &fetcher, &creds)?;
    done(&mut steps);
    let debs = |phase: Phase| -> Vec<PathBuf> {
        the_plan
            .packages
            .iter()
            .zip(&paths)
            .filter(|(p, _)| p.phase == phase)
            .map(|(_, path)| path.clone())
            .collect()
    };

    // A derived image's base is its bootstrap.
    if !derived {
        let done = timed("bootstrap", on_step);
        super::skeleton(root, &the_plan.arch)?;
        install::install(root, &debs(Phase::Bootstrap), opts.verbose)?;
        done(&mut steps);
    }

    if !derived && let Some(script) = hook(&image.dir, "post_bootstrap.sh") {
        let done = timed("post_bootstrap.sh", on_step);
        run_hook(
            root,
            &script,
            "post_bootstrap.sh",
            &BTreeMap::new(),
            opts.hook_timeout,
            opts.verbose,
        )?;
        done(&mut steps);
    }

    let image_debs = debs(Phase::Image);
    if !image_debs.is_empty() {
        let done = timed("install", on_step);
        install::install(root, &image_debs, opts.verbose)?;
        done(&mut steps);
    }

    let done = timed("configure", on_step);
    overlay(root, image)?;
    let users: Vec<UserSpec> = image.users.iter().map(user_spec).collect();
    if !users.is_empty() {
        run_checked(root, "users", &super::users::script(&users), opts.verbose)?;
    }
    let vars = profile_vars(image);
    profile::write(root, &vars)?;
    locale_and_timezone(root, image)?;
    description_files(root, image, opts.verbose)?;
    image_sources(root, &the_plan)?;
    if let Some(script) = hook(&image.dir, "config.sh") {
        run_hook(
            root,
            &script,
            "config.sh",
            &vars,
            opts.hook_timeout,
            opts.verbose,
        )?;
    }
    done(&mut steps);

    let uninstall: Vec<String> = image
        .packages
        .uninstall
        .packages
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let mut delete: Vec<String> = image
        .packages
        .delete
        .packages
        .iter()
        .map(|p| p.name.clone())
        .collect();
    delete.extend(opts.delete_packages.iter().cloned());
    if !uninstall.is_empty() || !delete.is_empty() {
        let done = timed("remove", on_step);
        remove_packages(root, &uninstall, &delete, opts.verbose)?;
        done(&mut steps);
    }

    keep_description(root, desc, image)?;
    // The installed packages' download digests, for the SBOM that `create` writes.
    let lock_path = root.join(PACKAGES_LOCK);
    the_plan
        .lock_file()
        .write(&lock_path)
        .map_err(PlanError::from)?;
    guard.armed = false;
    Ok(Prepared {
        plan: the_plan,
        steps,
    })
}

/// One base a derived root was unpacked from, as recorded in `/image/base.json`.
///
/// `create` re-opens the base from its URI rather than keeping a copy of its blobs in the root:
/// the base is an input like the description (a copy would double the disk the base takes, and
/// archives would have to be unpacked anyway), every blob is verified against its digest again
/// when re-read, and the recorded manifest digest makes a base that changed in between an error
/// instead of a silently different image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BaseRecord {
    /// The base's URI with its path made absolute.
    pub uri: String,
    /// `sha256:` digest of the base's manifest when it was unpacked.
    pub manifest_digest: String,
}

/// The file in a prepared root that lists its bases.
pub const BASE_RECORD: &str = "image/base.json";
/// The file in a prepared root that records the tree its bases gave.
pub const BASE_SNAPSHOT: &str = "image/base.snapshot";

/// A `derived_from` URI with a relative path made absolute against `dir` (the description
/// directory), so that a description and its base stay together whatever the working directory.
/// An archive URI's `:TAG` suffix (`oci-archive:PATH:TAG`) is dropped when PATH names the file:
/// archives written by image builders hold one image, which is then the one meant.
pub fn resolve_base_uri(uri: &str, dir: &Path) -> String {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let abs = |p: &str| {
        let path = Path::new(p);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            dir.join(path)
        }
    };
    for transport in ["oci-archive:", "docker-archive:"] {
        if let Some(rest) = uri.strip_prefix(transport) {
            let mut path = abs(rest);
            if !path.exists()
                && let Some((file, tag)) = rest.rsplit_once(':')
                && !tag.contains('/')
                && abs(file).is_file()
            {
                path = abs(file);
            }
            return format!("{transport}{}", path.display());
        }
    }
    if let Some(rest) = uri.strip_prefix("oci:") {
        // `oci:DIR[:TAG]`: the tag is after the last ':' unless that is part of the path.
        return match rest.rsplit_once(':') {
            Some((d, tag)) if !tag.contains('/') && !d.is_empty() && !abs(rest).exists() => {
                format!("oci:{}:{tag}", abs(d).display())
            }
            _ => format!("oci:{}", abs(rest).display()),
        };
    }
    if uri.contains("://") && !uri.starts_with("file://") {
        return uri.to_string();
    }
    abs(uri.strip_prefix("file://").unwrap_or(uri))
        .display()
        .to_string()
}

/// The base step of a derived image (`derived_from`): unpack its bases into the root in order
/// (layers bottom first, whiteouts applied, every path confined to the root) and save the tree
/// they gave at [`BASE_SNAPSHOT`], so that `create` can write one diff layer. Reading images is
/// the business of `image`, which comes after this module in the pipeline, so `prepare` receives
/// the step instead of reaching forward for it: `build::base::ImageBases` is imgbuild's.
pub trait BaseStep {
    /// Unpack the bases of `image` (each `derived_from` URI resolved with [`resolve_base_uri`])
    /// into `root`, save the snapshot, and return the record of each base, in order.
    fn unpack(&self, root: &Path, image: &ResolvedImage) -> Result<Vec<BaseRecord>, BaseStepError>;
}

/// The error of a failed [`BaseStep`], passed through as it is.
pub type BaseStepError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the base step, records the bases in `/image`, and returns the packages the base's dpkg
/// database has installed.
fn unpack_bases(
    root: &Path,
    image: &ResolvedImage,
    bases: &dyn BaseStep,
) -> Result<Vec<plan::InstalledPackage>, PrepareError> {
    let records = bases.unpack(root, image).map_err(PrepareError::BaseStep)?;
    let dir = root.join("image");
    std::fs::create_dir_all(&dir).map_err(|source| io(&dir, source))?;
    let record = root.join(BASE_RECORD);
    let json = serde_json::to_string_pretty(&records).map_err(|e| PrepareError::BaseRecord {
        path: record.clone(),
        message: e.to_string(),
    })? + "\n";
    crate::atomic::write(&record, json.as_bytes()).map_err(|source| io(&record, source))?;

    let status = root.join("var/lib/dpkg/status");
    match std::fs::read_to_string(&status) {
        Ok(text) => plan::installed_packages(&text).map_err(|e| PrepareError::BaseRecord {
            path: status.clone(),
            message: e.to_string(),
        }),
        // A base without dpkg (busybox, distroless) has nothing installed as far as apt knows.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(io(&status, source)),
    }
}

/// The bases recorded in a prepared derived root.
pub fn base_records(root: &Path) -> Result<Vec<BaseRecord>, PrepareError> {
    let path = root.join(BASE_RECORD);
    let text = std::fs::read_to_string(&path).map_err(|e| PrepareError::BaseRecord {
        path: path.clone(),
        message: format!("{e} (a derived image's root must be prepared by imgbuild)"),
    })?;
    serde_json::from_str(&text).map_err(|e| PrepareError::BaseRecord {
        path,
        message: e.to_string(),
    })
}

fn io(path: &Path, source: std::io::Error) -> PrepareError {
    PrepareError::Rootfs(RootfsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A hook script of the description directory, if present.
pub fn hook(dir: &Path, name: &str) -> Option<PathBuf> {
    let p = dir.join(name);
    p.is_file().then_some(p)
}

/// Copy `script` into the root's `/image`, run it there (directly when executable, else with
/// bash, as KIWI does) with `vars` in its environment, and fail with its output on error, or
/// when it is still running after `timeout`; `verbose`: its output goes to stderr on success too.
pub fn run_hook(
    root: &Path,
    script: &Path,
    name: &str,
    vars: &BTreeMap<String, String>,
    timeout: Option<Duration>,
    verbose: bool,
) -> Result<(), PrepareError> {
    use std::os::unix::fs::PermissionsExt;
    let data = std::fs::read(script).map_err(|source| io(script, source))?;
    let executable = std::fs::metadata(script)
        .map(|m| m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false);
    let dir = root.join("image");
    std::fs::create_dir_all(&dir).map_err(|source| io(&dir, source))?;
    let target = dir.join(name);
    crate::atomic::write(&target, &data).map_err(|source| io(&target, source))?;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
        .map_err(|source| io(&target, source))?;
    let mut cmd = String::new();
    for (k, v) in vars {
        cmd.push_str(&format!("{k}={} ", profile::shell_quote(v)));
    }
    if executable {
        cmd.push_str(&format!("/image/{name}"));
    } else {
        cmd.push_str(&format!("$(command -v bash || echo sh) /image/{name}"));
    }
    run_checked_within(root, name, &format!("cd / && {cmd}"), timeout, verbose)
}

/// Run a shell snippet in the build sandbox; a non-zero exit is an error with its output.
/// `verbose`: its output goes to stderr on success too.
pub fn run_checked(
    root: &Path,
    step: &str,
    script: &str,
    verbose: bool,
) -> Result<(), PrepareError> {
    run_checked_within(root, step, script, None, verbose)
}

/// [`run_checked`], killing the snippet when it runs longer than `timeout`.
fn run_checked_within(
    root: &Path,
    step: &str,
    script: &str,
    timeout: Option<Duration>,
    verbose: bool,
) -> Result<(), PrepareError> {
    let out = match install::run_in_sandbox(root, script, timeout, verbose) {
        Ok(out) => out,
        Err(InstallError::Sandbox {
            source: crate::sandbox::SandboxError::TimedOut { after },
            ..
        }) => {
            return Err(PrepareError::HookTimeout {
                step: step.to_string(),
                root: root.to_path_buf(),
                after,
            });
        }
        Err(e) => return Err(e.into()),
    };
    if out.success() {
        return Ok(());
    }
    Err(PrepareError::Step {
        step: step.to_string(),
        root: root.to_path_buf(),
        code: out.code,
        output: install::output_tail(&out),
    })
}

/// The description's overlay: `root/` copied in (owners not kept, as KIWI's rsync), then
/// `root.tar.gz`, then every `<archive>` of the bootstrap and image sets, each confined to the root.
fn overlay(root: &Path, image: &ResolvedImage) -> Result<(), PrepareError> {
    let r = Root::open(root).map_err(|source| PrepareError::Overlay {
        path: root.to_path_buf(),
        source,
    })?;
    let dir = image.dir.join("root");
    if dir.is_dir() {
        copy_tree(&r, &dir)?;
    }
    let tarball = image.dir.join("root.tar.gz");
    if tarball.is_file() {
        unpack_archive(&r, &tarball, None)?;
    }
    for set in [&image.packages.bootstrap, &image.packages.image] {
        for a in &set.archives {
            let path = image.dir.join(&a.name);
            unpack_archive(
                &r,
                &path,
                a.attributes.get("target_dir").map(String::as_str),
            )?;
        }
    }
    Ok(())
}

/// Stream a directory as a tar archive into the confined unpacker (so the same escape checks
/// apply as to any archive), with owners reset to root.
fn copy_tree(root: &Root, dir: &Path) -> Result<(), PrepareError> {
    let (reader, writer) = std::io::pipe().map_err(|source| io(dir, source))?;
    let src = dir.to_path_buf();
    let producer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut b = tar::Builder::new(writer);
        b.follow_symlinks(false);
        b.mode(tar::HeaderMode::Deterministic);
        b.append_dir_all(".", &src)?;
        b.finish()
    });
    let opts = UnpackOptions {
        preserve_owners: false,
        update_existing_dirs: false,
        ..UnpackOptions::for_package()
    };
    let res = crate::confine::unpack(root, reader, &opts);
    let produced = producer.join();
    res.map_err(|source| PrepareError::Overlay {
        path: dir.to_path_buf(),
        source,
    })?;
    match produced {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(io(dir, source)),
        Err(_) => Err(io(dir, std::io::Error::other("archive writer panicked"))),
    }
}

/// Unpack a (possibly compressed) tar archive into the root, below `target_dir` if given.
fn unpack_archive(root: &Root, path: &Path, target_dir: Option<&str>) -> Result<(), PrepareError> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).map_err(|source| io(path, source))?;
    let mut buffered = std::io::BufReader::new(file);
    let head = buffered.fill_buf().map_err(|source| io(path, source))?;
    let reader = crate::apt::deb::Compression::from_magic(head)
        .reader(buffered)
        .map_err(|source| io(path, source))?;
    let prefix = target_dir.map(|t| PathBuf::from(t.trim_start_matches('/')));
    let map = |p: &Path| {
        Some(
            prefix
                .as_ref()
                .map(|pre| pre.join(p))
                .unwrap_or(p.to_path_buf()),
        )
    };
    let opts = UnpackOptions {
        map: Some(&map),
        ..UnpackOptions::for_package()
    };
    crate::confine::unpack(root, reader, &opts)
        .map(|_| ())
        .map_err(|source| PrepareError::Overlay {
            path: path.to_path_buf(),
            source,
        })
}

fn user_spec(u: &crate::description::User) -> UserSpec {
    UserSpec {
        name: u.name.clone(),
        password: (!u.password.is_empty()).then(|| u.password.clone()),
        password_is_plain: u.pwdformat == "plain",
        home: u.home.clone(),
        id: u.id,
        groups: u.groups.clone(),
        realname: u.realname.clone(),
        shell: u.shell.clone(),
    }
}

/// The `kiwi_*` variables KIWI puts in `/.profile`.
pub fn profile_vars(image: &ResolvedImage) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    let mut set = |k: &str, val: String| {
        v.insert(k.to_string(), val);
    };
    set("kiwi_iname", image.name.clone());
    if let Some(d) = &image.displayname {
        set("kiwi_displayname", d.clone());
    }
    let prefs = &image.preferences;
    set(
        "kiwi_iversion",
        prefs
            .version
            .as_ref()
            .map(|x| x.value.clone())
            .unwrap_or_else(|| "1.0.0".into()),
    );
    set("kiwi_profiles", image.profiles.join(","));
    set("kiwi_type", image.build_type.image.clone());
    if let Some(l) = &prefs.locale {
        set("kiwi_language", l.value.clone());
    }
    if let Some(t) = &prefs.timezone {
        set("kiwi_timezone", t.value.clone());
    }
    if let Some(k) = &prefs.keytable {
        set("kiwi_keytable", k.value.clone());
    }
    let delete: Vec<String> = image
        .packages
        .delete
        .packages
        .iter()
        .map(|p| p.name.clone())
        .collect();
    if !delete.is_empty() {
        set("kiwi_delete", delete.join(" "));
    }
    let drivers: Vec<String> = image.drivers.iter().map(|d| d.name.clone()).collect();
    if !drivers.is_empty() {
        set("kiwi_drivers", drivers.join(","));
    }
    set("kiwi_arch", image.arch.clone());
    v
}

/// `<timezone>` as `/etc/localtime` + `/etc/timezone`, `<locale>` as `/etc/default/locale`.
fn locale_and_timezone(root: &Path, image: &ResolvedImage) -> Result<(), PrepareError> {
    let r = Root::open(root).map_err(|source| PrepareError::Overlay {
        path: root.to_path_buf(),
        source,
    })?;
    let confine = |source| PrepareError::Overlay {
        path: root.to_path_buf(),
        source,
    };
    if let Some(tz) = &image.preferences.timezone {
        let zone = tz.value.trim();
        if zone.is_empty() || zone.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(PrepareError::Step {
                step: format!("timezone {zone:?}"),
                root: root.to_path_buf(),
                code: 1,
                output: "not a zone name".into(),
            });
        }
        let _ = r.remove("etc/localtime");
        r.symlink(format!("/usr/share/zoneinfo/{zone}"), "etc/localtime")
            .map_err(confine)?;
        let mut f = r.create_file("etc/timezone", 0o644).map_err(confine)?;
        std::io::Write::write_all(&mut f, format!("{zone}\n").as_bytes())
            .map_err(|source| io(&root.join("etc/timezone"), source))?;
    }
    if let Some(loc) = &image.preferences.locale {
        let first = loc.value.split(',').next().unwrap_or("C").trim();
        if !matches!(first, "C" | "POSIX" | "") {
            let lang = if first.contains('.') {
                first.to_string()
            } else {
                format!("{first}.UTF-8")
            };
            r.create_dir_all("etc/default", 0o755).map_err(confine)?;
            let mut f = r
                .create_file("etc/default/locale", 0o644)
                .map_err(confine)?;
            std::io::Write::write_all(&mut f, format!("LANG={lang}\n").as_bytes())
                .map_err(|source| io(&root.join("etc/default/locale"), source))?;
        }
    }
    Ok(())
}

/// `<file name= target= owner= permissions=>` of the bootstrap and image sets: files of the
/// description directory copied into the root (default target: `/<name>`), then owned and moded
/// with the image's own `chown`/`chmod`, so owner names resolve against the image's users.
fn description_files(
    root: &Path,
    image: &ResolvedImage,
    verbose: bool,
) -> Result<(), PrepareError> {
    let r = Root::open(root).map_err(|source| PrepareError::Overlay {
        path: root.to_path_buf(),
        source,
    })?;
    let mut script = String::from("set -e\n");
    for set in [&image.packages.bootstrap, &image.packages.image] {
        for f in &set.files {
            let src = image.dir.join(&f.name);
            let data = std::fs::read(&src).map_err(|source| io(&src, source))?;
            let target = f.target.clone().unwrap_or_else(|| format!("/{}", f.name));
            let rel = target.trim_start_matches('/');
            let overlay = |source| PrepareError::Overlay {
                path: src.clone(),
                source,
            };
            if let Some(parent) = Path::new(rel)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
            {
                r.create_dir_all(parent, 0o755).map_err(overlay)?;
            }
            let mut out = r.create_file(rel, 0o644).map_err(overlay)?;
            std::io::Write::write_all(&mut out, &data).map_err(|source| io(&src, source))?;
            let q = profile::shell_quote(&format!("/{rel}"));
            if let Some(owner) = &f.owner {
                script.push_str(&format!("chown {} {q}\n", profile::shell_quote(owner)));
            }
            if let Some(mode) = &f.permissions {
                script.push_str(&format!("chmod {} {q}\n", profile::shell_quote(mode)));
            }
        }
    }
    if script.len() > "set -e\n".len() {
        run_checked(root, "<file> owners and permissions", &script, verbose)?;
    }
    Ok(())
}

/// `imageinclude` repositories written into the image as deb822 sources, so `apt-get` in the
/// finished image uses them. A signing key the image does not already have at the same path is
/// copied to `/etc/apt/keyrings/`.
fn image_sources(root: &Path, plan: &Plan) -> Result<(), PrepareError> {
    let r = Root::open(root).map_err(|source| PrepareError::Overlay {
        path: root.to_path_buf(),
        source,
    })?;
    let overlay = |source| PrepareError::Overlay {
        path: root.join("etc/apt"),
        source,
    };
    for repo in plan.repositories.iter().filter(|r| r.spec.imageinclude) {
        let name: String = repo
            .spec
            .name()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut signed_by = None;
        if let Some(key) = repo.keyrings.first() {
            let rel = key.to_string_lossy().trim_start_matches('/').to_string();
            if r.lstat(&rel).is_ok() {
                signed_by = Some(format!("/{rel}"));
            } else {
                let data = std::fs::read(key).map_err(|source| io(key, source))?;
                let ext = key.extension().and_then(|e| e.to_str()).unwrap_or("gpg");
                let target = format!("etc/apt/keyrings/{name}.{ext}");
                r.create_dir_all("etc/apt/keyrings", 0o755)
                    .map_err(overlay)?;
                let mut f = r.create_file(&target, 0o644).map_err(overlay)?;
                std::io::Write::write_all(&mut f, &data).map_err(|source| io(key, source))?;
                signed_by = Some(format!("/{target}"));
            }
        }
        r.create_dir_all("etc/apt/sources.list.d", 0o755)
            .map_err(overlay)?;
        let mut f = r
            .create_file(format!("etc/apt/sources.list.d/{name}.sources"), 0o644)
            .map_err(overlay)?;
        std::io::Write::write_all(&mut f, repo.sources_entry(signed_by.as_deref()).as_bytes())
            .map_err(|source| io(&root.join("etc/apt/sources.list.d"), source))?;
    }
    Ok(())
}

/// `uninstall` packages go with apt's autoremove; `delete` packages are removed by force with
/// their removal scripts disabled, as KIWI does.
fn remove_packages(
    root: &Path,
    uninstall: &[String],
    delete: &[String],
    verbose: bool,
) -> Result<(), PrepareError> {
    for p in uninstall.iter().chain(delete) {
        // Package names are [a-z0-9][a-z0-9+.-]*: anything else cannot name a package and must
        // not reach a shell glob.
        let valid = p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && p.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '.' | '-')
            });
        if !valid {
            return Err(PrepareError::Step {
                step: format!("remove package {p:?}"),
                root: root.to_path_buf(),
                code: 1,
                output: "not a Debian package name".into(),
            });
        }
    }
    // Only installed packages are removed (as KIWI, a listed package that is not installed is
    // reported and skipped); the image has no apt lists to look others up in.
    let select = |names: &[String]| {
        let mut s = String::from("set -e\nlist=\n");
        for p in names {
            s.push_str(&format!(
                "if dpkg-query -W -f='${{Status}}' {p} 2>/dev/null | grep -q ' installed$'; then list=\"$list {p}\"; \
                 else echo \"imgbuild: {p} is not installed, not removed\" >&2; fi\n"
            ));
        }
        s
    };
    if !uninstall.is_empty() {
        let script = select(uninstall)
            + "[ -z \"$list\" ] || apt-get -y -q -o APT::Get::Purge=false --auto-remove remove $list\n";
        run_checked(root, "uninstall packages", &script, verbose)?;
    }
    if !delete.is_empty() {
        let mut script = select(delete);
        script.push_str(
            "for p in $list; do rm -f /var/lib/dpkg/info/$p.prerm /var/lib/dpkg/info/$p.postrm \
             /var/lib/dpkg/info/$p:*.prerm /var/lib/dpkg/info/$p:*.postrm; done\n\
             [ -z \"$list\" ] || dpkg --remove --force-remove-reinstreq --force-remove-essential --force-depends $list\n",
        );
        run_checked(root, "delete packages", &script, verbose)?;
    }
    Ok(())
}

/// Keep the description in `/image` (KIWI's `image/config.xml`), with the selection, so that
/// `create` can finish the image from the root alone.
fn keep_description(
    root: &Path,
    desc: &Description,
    image: &ResolvedImage,
) -> Result<(), PrepareError> {
    let dir = root.join("image");
    std::fs::create_dir_all(&dir).map_err(|source| io(&dir, source))?;
    let xml = dir.join("config.xml");
    crate::atomic::write(&xml, desc.to_xml().as_bytes()).map_err(|source| io(&xml, source))?;
    let sel = serde_json::json!({
        "profiles": image.profiles,
        "type": image.build_type.image,
        "arch": image.arch,
    });
    let path = dir.join("selection.json");
    crate::atomic::write(&path, format!("{sel:#}\n").as_bytes())
        .map_err(|source| io(&path, source))?;
    for name in ["images.sh"] {
        if let Some(script) = hook(&image.dir, name) {
            let data = std::fs::read(&script).map_err(|source| io(&script, source))?;
            let target = dir.join(name);
            crate::atomic::write(&target, &data).map_err(|source| io(&target, source))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_uris_resolve_against_the_description_directory() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("desc");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(t.path().join("base.tar"), b"").unwrap();
        let base = t.path().join("desc/../base.tar");
        // A relative archive path follows the description; an unneeded `:TAG` is dropped.
        assert_eq!(
            resolve_base_uri("oci-archive:../base.tar:13", &dir),
            format!("oci-archive:{}", base.display())
        );
        assert_eq!(
            resolve_base_uri("docker-archive:../base.tar", &dir),
            format!("docker-archive:{}", base.display())
        );
        // Absolute paths stay; layouts keep their tag.
        assert_eq!(
            resolve_base_uri("oci-archive:/x/base.tar", &dir),
            "oci-archive:/x/base.tar"
        );
        assert_eq!(
            resolve_base_uri("oci:layout:v1", &dir),
            format!("oci:{}:v1", dir.join("layout").display())
        );
        assert_eq!(
            resolve_base_uri("file://b.tar", &dir),
            dir.join("b.tar").display().to_string()
        );
        assert_eq!(
            resolve_base_uri("docker://debian:12", &dir),
            "docker://debian:12"
        );
    }
}
