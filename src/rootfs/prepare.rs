//! `prepare`: a fresh root tree built from a description, in KIWI's order. This module runs the
//! steps; each lives in its own module with its own error:
//!
//! 1. plan (lock file or solver) and download every package into the cache (`plan`);
//! 2. bootstrap: the merged-/usr skeleton, the minbase set unpacked and configured (`install`);
//! 3. `post_bootstrap.sh` ([`hooks`](super::hooks)); 4. the image packages;
//! 5. the overlay: `root/`, `root.tar.gz` and `<archive>`s from the description directory
//!    ([`overlay`](super::overlay));
//! 6. `<users>`; 7. `/.profile`, `/.kconfig`, locale and timezone, `<file>`s
//!    ([`files`](super::files)); the `imageinclude` apt sources ([`sources`](super::sources));
//!    8. `config.sh`;
//! 9. `uninstall` (with autoremove) and `delete` (forced) packages ([`remove`](super::remove));
//! 10. the resolved description and the lock kept in `/image` for `create`
//!     ([`prepared`](super::prepared)).
//!
//! A derived image (`derived_from`) starts instead from its bases' layers, unpacked in order
//! (whiteouts applied, every path confined to the root) by the [`BaseStep`] `prepare` is given
//! ([`base`](super::base)); the unpacked tree is recorded in `/image/base.snapshot` so that
//! `create` can write one diff layer, and there is no bootstrap phase: the base's dpkg database
//! is the installed set the image packages are solved on.
//!
//! A root this call created is removed again when any step fails, so a failed prepare leaves no
//! half-built tree behind. Every sandbox's mounts live in its own mount namespace, so none stays.

use super::base::{self, BaseError};
use super::files::{self, FilesError};
use super::hooks::{self, HookError};
use super::install::{self, InstallError};
use super::overlay::{self, OverlayError};
use super::prepared::{EpochRecord, PreparedError, PreparedRoot};
use super::remove::{self, RemoveError};
use super::rpminstall::{self, RpmInstallError, RpmInstallOptions};
use super::snapshot_cache::{self, SnapshotCache, SnapshotError, StageInputs};
use super::sources::{self, SourcesError};
use super::{RootfsError, skeleton};
use crate::description::{Description, PackageSet, ResolvedImage};
use crate::plan::{self, Overrides, PackageFormat, Phase, Plan, PlanError, PlanOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// The base step is part of `prepare`'s interface: its callers give one, and resolve the
// `derived_from` URIs they take from the command line as it does.
pub use super::base::{BaseStep, BaseStepError, resolve_base_uri};

/// Errors of `prepare`, one variant per step; each step's error names what failed and where.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The target root exists and is not empty.
    #[error(
        "{0}: the root directory exists and is not empty (use --allow-existing-root to build into it)"
    )]
    RootExists(PathBuf),
    /// The target root could not be read or created.
    #[error("{path}: {source}")]
    Root {
        /// The root directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Planning or downloading failed.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The skeleton of a fresh root could not be laid out.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    /// Installing packages failed.
    #[error(transparent)]
    Install(#[from] InstallError),
    /// Installing rpm packages failed.
    #[error(transparent)]
    RpmInstall(Box<RpmInstallError>),
    /// The base step of a derived image failed (see [`BaseStep`]).
    #[error(transparent)]
    Base(#[from] BaseError),
    /// A hook of the description failed.
    #[error(transparent)]
    Hook(#[from] HookError),
    /// The description's overlay could not be applied.
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    /// Users, `/.profile`, locale, timezone or a `<file>` could not be put into the root.
    #[error(transparent)]
    Files(#[from] FilesError),
    /// The image's apt sources could not be written.
    #[error(transparent)]
    Sources(#[from] SourcesError),
    /// Removing packages failed.
    #[error(transparent)]
    Remove(#[from] RemoveError),
    /// The description, selection or lock could not be kept in `/image`.
    #[error(transparent)]
    Kept(#[from] PreparedError),
    /// A root holding part of a corrupt snapshot could not be emptied again.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

impl From<RpmInstallError> for PrepareError {
    fn from(e: RpmInstallError) -> Self {
        PrepareError::RpmInstall(Box::new(e))
    }
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
    /// The package-stage snapshot cache; none: `--no-snapshot`.
    pub snapshot: Option<SnapshotOptions>,
}

/// How `prepare` uses the package-stage snapshot cache ([`snapshot_cache`]).
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    /// The package cache directory holding `snapshots/`.
    pub cache_dir: PathBuf,
    /// The identity of the imgbuild doing the install (part of the key).
    pub tool: String,
    /// After a save, least recently used snapshots are removed down to this many bytes.
    pub max_bytes: u64,
}

/// What `prepare` did with the snapshot cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotUse {
    /// The package stage was restored from snapshot `key`.
    Restored {
        /// The snapshot's key.
        key: String,
    },
    /// The package stage ran and was kept as `key`; `evicted` older snapshots made room.
    Saved {
        /// The snapshot's key.
        key: String,
        /// Snapshots removed to keep the cache within its size.
        evicted: usize,
    },
    /// The package stage ran; it could not be kept (or a corrupt snapshot was replaced), for
    /// `reason`.
    Note {
        /// What happened, for the user.
        reason: String,
    },
}

/// The default of `--hook-timeout`: generous, since hooks may build software, yet finite, so a
/// hook waiting for input that never comes does not hold a CI runner for ever.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_hours(2);

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
    /// The installed packages' date (also kept in the root for `create`).
    pub epoch: EpochRecord,
    /// What the package-stage snapshot cache did, in order (a corrupt snapshot replaced gives
    /// a note and then the save).
    pub snapshot: Vec<SnapshotUse>,
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
    let existed = make_root(root, opts.allow_existing_root)?;
    let empty_root = std::fs::read_dir(root)
        .map_err(|source| io(root, source))?
        .next()
        .is_none();
    let mut guard = RootGuard {
        path: root.to_path_buf(),
        armed: !existed,
    };
    // Should a stop signal leave no time for the guard, the interrupt watcher removes it.
    let _registration = (!existed).then(|| {
        crate::interrupt::remove_on_exit(root, |p| crate::workdir::remove_tree(p).is_ok())
    });
    let mut steps = Steps {
        on_step,
        times: Vec::new(),
    };

    // A derived image's base is its bootstrap.
    let derived = !image.build_type.derived_from.is_empty();
    let base_installed = if derived {
        Some(steps.run("base", || base::unpack_bases(root, image, bases))?)
    } else {
        None
    };

    let (cache, fetcher, the_plan) = steps.run("resolve", || {
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
        Ok::<_, PlanError>((cache, fetcher, the_plan))
    })?;

    let rpm = the_plan.format == PackageFormat::Rpm;
    let exclude_docs = image
        .preferences
        .rpm_excludedocs
        .as_ref()
        .is_some_and(|d| d.value);
    let mut snapshot_log = Vec::new();
    // The package stage of a fresh root can come from, and go to, the snapshot cache.
    let stage = match &opts.snapshot {
        Some(s) if !derived && empty_root => {
            let post_bootstrap = hooks::hook(&image.dir, "post_bootstrap.sh");
            let inputs = StageInputs {
                tool: &s.tool,
                plan: &the_plan,
                post_bootstrap: post_bootstrap.as_deref(),
                exclude_docs,
            };
            match snapshot_cache::stage_key(&inputs) {
                Ok(key) => Some((SnapshotCache::new(&s.cache_dir), key, s.max_bytes)),
                Err(e) => {
                    snapshot_log.push(SnapshotUse::Note {
                        reason: e.to_string(),
                    });
                    None
                }
            }
        }
        _ => None,
    };
    let restored = match &stage {
        Some((cache, key, _)) if cache.contains(key) => {
            restore_stage(cache, key, root, &mut steps, &mut snapshot_log)?
        }
        _ => None,
    };
    let mut rpm_opts = RpmInstallOptions {
        exclude_docs,
        verbose: opts.verbose,
        epoch: 0,
    };
    let epoch = if let Some(epoch) = restored {
        rpm_opts.epoch = epoch.seconds;
        epoch
    } else {
        let epoch = install_packages(
            root,
            image,
            opts,
            &the_plan,
            (&cache, &fetcher),
            derived,
            &mut rpm_opts,
            &mut steps,
        )?;
        if let Some((cache, key, max_bytes)) = &stage {
            save_stage(
                cache,
                key,
                root,
                image,
                &the_plan,
                *max_bytes,
                &mut steps,
                &mut snapshot_log,
            );
        }
        epoch
    };

    steps.run("configure", || {
        configure(root, image, &the_plan, opts, epoch.seconds)
    })?;

    let (uninstall, delete) = removals(image, opts);
    if !uninstall.is_empty() || !delete.is_empty() {
        steps.run("remove", || {
            if rpm {
                rpminstall::remove_packages(root, &uninstall, &delete, &rpm_opts)
                    .map_err(PrepareError::from)
            } else {
                remove::remove_packages(root, &uninstall, &delete, opts.verbose)
                    .map_err(PrepareError::from)
            }
        })?;
    }

    keep(root, desc, image, &the_plan)?;
    guard.armed = false;
    Ok(Prepared {
        plan: the_plan,
        steps: steps.times,
        epoch,
        snapshot: snapshot_log,
    })
}

/// Downloads and installs the plan's packages: the bootstrap phase and `post_bootstrap.sh` (for
/// a fresh root), then the image phase; keeps and returns the packages' date.
#[allow(clippy::too_many_arguments)]
fn install_packages(
    root: &Path,
    image: &ResolvedImage,
    opts: &PrepareOptions,
    the_plan: &Plan,
    (cache, fetcher): (&crate::apt::cache::Cache, &crate::apt::fetch::Fetcher),
    derived: bool,
    rpm_opts: &mut RpmInstallOptions,
    steps: &mut Steps<'_>,
) -> Result<EpochRecord, PrepareError> {
    let paths = steps.run("download", || the_plan.download(cache, fetcher))?;
    let debs = |phase: Phase| -> Vec<PathBuf> {
        the_plan
            .packages
            .iter()
            .zip(&paths)
            .filter(|(p, _)| p.phase == phase)
            .map(|(_, path)| path.clone())
            .collect()
    };
    let rpm = the_plan.format == PackageFormat::Rpm;
    if rpm {
        rpm_opts.epoch = rpminstall::root_epoch(root, &paths).seconds;
    }
    let rpm_opts = &*rpm_opts;
    if !derived {
        steps.run("bootstrap", || {
            if rpm {
                // rpm packages lay out the root themselves (`filesystem`).
                rpminstall::install(root, &debs(Phase::Bootstrap), rpm_opts)?;
            } else {
                skeleton(root, &the_plan.arch)?;
                install::install(root, &debs(Phase::Bootstrap), opts.verbose)?;
            }
            Ok::<_, PrepareError>(())
        })?;
        if let Some(script) = hooks::hook(&image.dir, "post_bootstrap.sh") {
            steps.run("post_bootstrap.sh", || {
                hooks::run_hook(
                    root,
                    &script,
                    "post_bootstrap.sh",
                    &BTreeMap::new(),
                    opts.hook_timeout,
                    opts.verbose,
                )
            })?;
        }
    }

    let image_debs = debs(Phase::Image);
    if !image_debs.is_empty() {
        steps.run("install", || {
            if rpm {
                rpminstall::install(root, &image_debs, rpm_opts).map(drop)?;
            } else {
                install::install(root, &image_debs, opts.verbose).map(drop)?;
            }
            Ok::<_, PrepareError>(())
        })?;
    }

    // The packages' date, before a hook can remove what it is read from.
    let epoch = if rpm {
        rpminstall::root_epoch(root, &paths)
    } else {
        install::packages_epoch(root, &paths)
    };
    PreparedRoot::new(root).write_epoch(&epoch)?;
    Ok(epoch)
}

/// Restores the package stage from snapshot `key` into the empty `root`: its date when it
/// could, none (with a note, the root emptied again, a corrupt snapshot removed) when not.
fn restore_stage(
    cache: &SnapshotCache,
    key: &str,
    root: &Path,
    steps: &mut Steps<'_>,
    log: &mut Vec<SnapshotUse>,
) -> Result<Option<EpochRecord>, PrepareError> {
    let outcome = steps.run("restore snapshot", || {
        let Some(_) = cache.restore(key, root)? else {
            return Ok(None);
        };
        // The date was kept in the root before the snapshot was taken.
        match PreparedRoot::new(root).epoch() {
            Ok(Some(epoch)) => Ok(Some(epoch)),
            _ => Err(SnapshotError::Corrupt {
                key: key.to_string(),
                reason: "the packages' date is not in it".into(),
            }),
        }
    });
    match outcome {
        Ok(Some(epoch)) => {
            log.push(SnapshotUse::Restored {
                key: key.to_string(),
            });
            Ok(Some(epoch))
        }
        Ok(None) => Ok(None),
        Err(e) => {
            let corrupt = matches!(e, SnapshotError::Corrupt { .. });
            let removed = corrupt && cache.remove(key).unwrap_or(false);
            log.push(SnapshotUse::Note {
                reason: format!(
                    "{e}{}; installing the packages afresh",
                    if removed { " (removed)" } else { "" }
                ),
            });
            snapshot_cache::clear_root(root)?;
            Ok(None)
        }
    }
}

/// Keeps the freshly installed package stage as snapshot `key` and trims the cache to
/// `max_bytes`; a snapshot that cannot be kept is a note, not a failed build.
#[allow(clippy::too_many_arguments)]
fn save_stage(
    cache: &SnapshotCache,
    key: &str,
    root: &Path,
    image: &ResolvedImage,
    the_plan: &Plan,
    max_bytes: u64,
    steps: &mut Steps<'_>,
    log: &mut Vec<SnapshotUse>,
) {
    let label = format!(
        "{} {} {}",
        image.name,
        image
            .preferences
            .version
            .as_ref()
            .map_or("", |v| v.value.as_str()),
        the_plan.arch
    );
    let saved = steps.run("save snapshot", || {
        cache.save(key, root, &label, the_plan.packages.len())
    });
    match saved {
        Ok(_) => {
            let policy = snapshot_cache::PrunePolicy {
                max_bytes: Some(max_bytes),
                ..Default::default()
            };
            let evicted = cache
                .prune(&policy, Some(key))
                .map_or(0, |p| p.removed.len());
            log.push(SnapshotUse::Saved {
                key: key.to_string(),
                evicted,
            });
        }
        Err(e) => log.push(SnapshotUse::Note {
            reason: format!("the package stage was not snapshotted: {e}"),
        }),
    }
}

/// Refuses an existing root that is not empty (unless allowed), and creates the root; returns
/// whether it existed before.
fn make_root(root: &Path, allow_existing: bool) -> Result<bool, PrepareError> {
    let existed = root.exists();
    if existed
        && !allow_existing
        && std::fs::read_dir(root)
            .map_err(|source| io(root, source))?
            .next()
            .is_some()
    {
        return Err(PrepareError::RootExists(root.to_path_buf()));
    }
    std::fs::create_dir_all(root).map_err(|source| io(root, source))?;
    Ok(existed)
}

/// The steps run so far with their wall times, each announced as it starts.
struct Steps<'a> {
    on_step: &'a mut dyn FnMut(&str),
    times: Vec<StepTime>,
}

impl Steps<'_> {
    /// Runs the step `name`; its time is recorded when it succeeds.
    fn run<T, E>(
        &mut self,
        name: &'static str,
        step: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        (self.on_step)(name);
        let start = Instant::now();
        let out = step()?;
        self.times.push(StepTime {
            step: name,
            took: start.elapsed(),
        });
        Ok(out)
    }
}

/// The description applied to the installed tree, in KIWI's order: the overlay, `<users>`,
/// `/.profile`, locale and timezone, `<file>`s, the image's apt sources, then `config.sh`.
fn configure(
    root: &Path,
    image: &ResolvedImage,
    the_plan: &Plan,
    opts: &PrepareOptions,
    epoch: u64,
) -> Result<(), PrepareError> {
    overlay::overlay(root, image)?;
    files::users(root, image, opts.verbose)?;
    let vars = files::profile(root, image)?;
    files::locale_and_timezone(root, image)?;
    files::description_files(root, image, opts.verbose)?;
    let manager = image
        .preferences
        .packagemanager
        .as_ref()
        .map_or("zypper", |p| p.value.as_str());
    sources::image_sources(root, the_plan, manager, epoch)?;
    if let Some(script) = hooks::hook(&image.dir, "config.sh") {
        hooks::run_hook(
            root,
            &script,
            "config.sh",
            &vars,
            opts.hook_timeout,
            opts.verbose,
        )?;
    }
    Ok(())
}

/// The packages removed at the end: `uninstall`, and `delete` with `--delete-package`.
fn removals(image: &ResolvedImage, opts: &PrepareOptions) -> (Vec<String>, Vec<String>) {
    let names =
        |set: &PackageSet| -> Vec<String> { set.packages.iter().map(|p| p.name.clone()).collect() };
    let uninstall = names(&image.packages.uninstall);
    let mut delete = names(&image.packages.delete);
    delete.extend(opts.delete_packages.iter().cloned());
    (uninstall, delete)
}

/// Keeps what `create` needs in `/image`: the description with its selection, and the lock of
/// the installed packages (their download digests, for the SBOM).
fn keep(
    root: &Path,
    desc: &Description,
    image: &ResolvedImage,
    the_plan: &Plan,
) -> Result<(), PreparedError> {
    let kept = PreparedRoot::new(root);
    kept.keep_description(desc, image)?;
    kept.write_lock(&the_plan.lock_file())
}

fn io(path: &Path, source: std::io::Error) -> PrepareError {
    PrepareError::Root {
        path: path.to_path_buf(),
        source,
    }
}
