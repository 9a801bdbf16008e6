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
}

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

/// Build the root tree of `image` (from `desc`) as `opts` says. `on_step` is told when each step
/// starts, for progress output.
pub fn prepare(
    desc: &Description,
    image: &ResolvedImage,
    opts: &PrepareOptions,
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

    let done = timed("resolve", on_step);
    let (cache, fetcher) = plan::open_cache(&opts.plan)?;
    let the_plan = plan::plan(image, &opts.overrides, &opts.plan, &cache, &fetcher)?;
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

    let done = timed("bootstrap", on_step);
    super::skeleton(root, &the_plan.arch)?;
    install::install(root, &debs(Phase::Bootstrap))?;
    done(&mut steps);

    if let Some(script) = hook(&image.dir, "post_bootstrap.sh") {
        let done = timed("post_bootstrap.sh", on_step);
        run_hook(root, &script, "post_bootstrap.sh", &BTreeMap::new())?;
        done(&mut steps);
    }

    let image_debs = debs(Phase::Image);
    if !image_debs.is_empty() {
        let done = timed("install", on_step);
        install::install(root, &image_debs)?;
        done(&mut steps);
    }

    let done = timed("configure", on_step);
    overlay(root, image)?;
    let users: Vec<UserSpec> = image.users.iter().map(user_spec).collect();
    if !users.is_empty() {
        run_checked(root, "users", &super::users::script(&users))?;
    }
    let vars = profile_vars(image);
    profile::write(root, &vars)?;
    locale_and_timezone(root, image)?;
    if let Some(script) = hook(&image.dir, "config.sh") {
        run_hook(root, &script, "config.sh", &vars)?;
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
        remove_packages(root, &uninstall, &delete)?;
        done(&mut steps);
    }

    keep_description(root, desc, image)?;
    // The installed packages' download digests, for the SBOM that `create` writes.
    let lock_path = root.join(crate::sbom::PACKAGES_LOCK);
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
/// bash, as KIWI does) with `vars` in its environment, and fail with its output on error.
pub fn run_hook(
    root: &Path,
    script: &Path,
    name: &str,
    vars: &BTreeMap<String, String>,
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
    run_checked(root, name, &format!("cd / && {cmd}"))
}

/// Run a shell snippet in the build sandbox; a non-zero exit is an error with its output.
pub fn run_checked(root: &Path, step: &str, script: &str) -> Result<(), PrepareError> {
    let out = install::run_in_sandbox(root, script)?;
    if out.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().collect();
    Err(PrepareError::Step {
        step: step.to_string(),
        root: root.to_path_buf(),
        code: out.code,
        output: lines[lines.len().saturating_sub(30)..].join("\n"),
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

/// `uninstall` packages go with apt's autoremove; `delete` packages are removed by force with
/// their removal scripts disabled, as KIWI does.
fn remove_packages(
    root: &Path,
    uninstall: &[String],
    delete: &[String],
) -> Result<(), PrepareError> {
    let quote = |v: &[String]| {
        v.iter()
            .map(|p| profile::shell_quote(p))
            .collect::<Vec<_>>()
            .join(" ")
    };
    if !uninstall.is_empty() {
        run_checked(
            root,
            "uninstall packages",
            &format!(
                "apt-get -y -q -o APT::Get::Purge=false --auto-remove remove {}",
                quote(uninstall)
            ),
        )?;
    }
    if !delete.is_empty() {
        let mut script = String::from("set -e\n");
        for p in delete {
            // Package names are [a-z0-9][a-z0-9+.-]*: anything else cannot name a package and
            // must not reach a shell glob.
            let valid = p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && p.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '.' | '-')
                });
            if !valid {
                return Err(PrepareError::Step {
                    step: format!("delete package {p:?}"),
                    root: root.to_path_buf(),
                    code: 1,
                    output: "not a Debian package name".into(),
                });
            }
            script.push_str(&format!(
                "rm -f /var/lib/dpkg/info/{p}.prerm /var/lib/dpkg/info/{p}.postrm /var/lib/dpkg/info/{p}:*.prerm /var/lib/dpkg/info/{p}:*.postrm\n"
            ));
        }
        script.push_str(&format!(
            "dpkg --remove --force-remove-reinstreq --force-remove-essential --force-depends {}\n",
            quote(delete)
        ));
        run_checked(root, "delete packages", &script)?;
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
