//! The operations of imgbuild as library functions: [`build`] (the reuse check, a work root,
//! `prepare`, then `create`), [`prepare`], [`create`] and [`lock`].
//!
//! Each takes a request of plain data and a [`Reporter`], which hears of stages, notes and
//! warnings and says how downloads show progress and whether script output is shown; nothing is
//! printed here and no state is global, so the `imgbuild` binary is one caller among others. A
//! request's description comes as a [`Source`]: loaded and resolved first, so a caller can check
//! its own options against the image (a default target named after it) before any work starts.

mod bases;
mod build;
mod create;
mod lock;
mod platforms;
pub mod preflight;
mod prepare;

pub use self::bases::{BaseAccess, is_registry_base};
pub use self::build::{BuildRequest, Outcome, build};
pub use self::create::{CreateRequest, create};
pub use self::lock::{LockRequest, Locked, lock, lock_all};
pub use self::platforms::{PlatformsOutcome, PlatformsRequest, build_platforms};
pub use self::prepare::{PrepareRequest, prepare};
pub use crate::remote_cache::RegistryCache;

use crate::apt::fetch::Progress;
use crate::build::BuildError;
use crate::build::base::ImageBases;
use crate::description::{self, Description, DescriptionError, ResolvedImage, Selection};
use crate::image::ImageError;
use crate::image::base::BaseSource;
use crate::plan::{Overrides, PlanError, PlanOptions};
use crate::rootfs::prepare::{
    PrepareError, PrepareOptions, Prepared, SnapshotOptions, SnapshotUse,
};
use crate::rootfs::prepared::{EpochRecord, EpochSource, PreparedError, PreparedRoot};
use crate::workdir::{self, WorkDirError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Errors of the operations; each names the path or option involved, or passes the lower
/// module's error through.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The description could not be loaded or resolved.
    #[error(transparent)]
    Description(#[from] DescriptionError),
    /// `--set-container-derived-from` was given for a description without `derived_from`.
    #[error("--set-container-derived-from: the description of {image} has no derived_from")]
    NoDerivedFrom {
        /// The image name.
        image: String,
    },
    /// The working directory, against which a relative base path is taken, is unreadable.
    #[error("reading the working directory")]
    WorkingDirectory(#[source] std::io::Error),
    /// The base given with `--set-container-derived-from` is unusable.
    #[error("--set-container-derived-from {uri:?}")]
    DerivedFrom {
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        source: ImageError,
    },
    /// The tag of the OCI layout given with `--set-container-derived-from` is malformed.
    #[error("--set-container-derived-from {value}: {reason}")]
    DerivedFromTag {
        /// The tag, quoted (and shortened when long).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A registry base (`derived_from="docker://…"`) names no usable reference.
    #[error("{location}: derived_from {uri:?}: {source}")]
    RegistryBase {
        /// `file:line:col` of the `<type>` element.
        location: String,
        /// The URI as written.
        uri: String,
        /// What is wrong with it.
        source: Box<crate::registry::RegistryError>,
    },
    /// A registry base could not be pulled or found in the store.
    #[error("{location}: derived_from {uri:?}: {reason}")]
    RegistryBaseUnavailable {
        /// `file:line:col` of the `<type>` element.
        location: String,
        /// The URI as written.
        uri: String,
        /// Why (every place tried, or what the store lacks).
        reason: String,
    },
    /// The dpkg status of a derived lock's base cannot be parsed.
    #[error("the base image's var/lib/dpkg/status")]
    BaseStatus(#[source] crate::apt::control::ParseError),
    /// The rpm database of a derived lock's base cannot be read.
    #[error("the base image's rpm database: {0}")]
    BaseRpmDb(Box<crate::rootfs::rpmdb::RpmDbError>),
    /// A scratch directory (to read a base's rpm database in) could not be made or written.
    #[error("{path}: {source}")]
    Scratch {
        /// The directory.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The registries configuration (short names, mirrors) is unreadable or invalid.
    #[error(transparent)]
    RegistryConf(Box<crate::registry::RegistryError>),
    /// The image store that caches registry bases could not be used.
    #[error("the image store at {root}")]
    BaseStore {
        /// The store's root.
        root: PathBuf,
        /// What went wrong.
        source: Box<crate::storage::StorageError>,
    },
    /// The target directory must not be replaced, or an option is malformed.
    #[error(transparent)]
    Target(#[from] BuildError),
    /// A directory could not be created.
    #[error("creating {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The work directory of a build could not be created.
    #[error("creating a work directory in {dir}")]
    WorkDir {
        /// The directory it was to be created in.
        dir: PathBuf,
        /// What went wrong.
        source: WorkDirError,
    },
    /// A root was given to `create` that `prepare` did not make, or its `image/` is damaged.
    #[error(transparent)]
    Prepared(#[from] PreparedError),
    /// Resolving the packages or writing the lock file failed.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Preparing a root the user named (`prepare --root`, `build --root`) failed.
    #[error("preparing {root}")]
    Prepare {
        /// The root tree.
        root: PathBuf,
        /// What went wrong.
        source: Box<PrepareError>,
    },
    /// Preparing the build's own work root failed: said without its path, a temporary
    /// directory the user never named.
    #[error(transparent)]
    Build(Box<PrepareError>),
    /// A base the description derives from is not there.
    #[error("{location}: derived_from {uri:?}: {} does not exist", path.display())]
    MissingBase {
        /// `file:line:col` of the `<type>` element.
        location: String,
        /// The URI as written.
        uri: String,
        /// The file or directory it names.
        path: PathBuf,
    },
    /// The host cannot run the operation: one line per problem found before any work.
    #[error("{}", .0.join("\n"))]
    Preflight(Vec<String>),
    /// Writing the image files failed.
    #[error("writing {target}")]
    Create {
        /// The target directory.
        target: PathBuf,
        /// What went wrong.
        source: Box<BuildError>,
    },
    /// One architecture of a multi-architecture build failed.
    #[error("building for {arch}")]
    Platform {
        /// The `--target-arch` name.
        arch: String,
        /// What went wrong.
        source: Box<OpsError>,
    },
    /// The build of an architecture ended without a result (its thread panicked).
    #[error("the build ended without a result")]
    NoOutcome,
    /// An architecture's build wrote no OCI layout to make the index of.
    #[error("the build wrote no OCI layout")]
    NoLayout,
    /// The image index over the architectures could not be written.
    #[error("writing the image index in {path}")]
    Index {
        /// The result directory being written.
        path: PathBuf,
        /// What went wrong.
        source: ImageError,
    },
    /// A result directory could not be digested.
    #[error("{path}")]
    Digest {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        source: crate::digest::DigestError,
    },
}

/// What an operation tells its caller while it runs. `&self` throughout: an implementation that
/// keeps state uses interior mutability.
pub trait Reporter {
    /// A stage begins (`resolve`, `download`, …, `pack`, `write`).
    fn stage_start(&self, stage: &str);
    /// The stage begun last ended after `took`; a stage that fails is not reported done.
    fn stage_done(&self, stage: &str, took: Duration);
    /// A note outside the stages (a reused result, a removed stale work directory, …).
    fn info(&self, message: &str);
    /// A warning (of the plan, for instance a rolled-back mirror that was accepted).
    fn warn(&self, message: &str);
    /// How downloads show their progress.
    fn progress(&self) -> Progress;
    /// Whether the output of successful maintainer scripts and hooks goes to stderr too (the
    /// output of a failed one is always in its error).
    fn verbose(&self) -> bool;
}

/// A [`Reporter`] that reports nothing: no stages, notes, warnings or progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Reporter for Silent {
    fn stage_start(&self, _stage: &str) {}
    fn stage_done(&self, _stage: &str, _took: Duration) {}
    fn info(&self, _message: &str) {}
    fn warn(&self, _message: &str) {}
    fn progress(&self) -> Progress {
        Progress::Quiet
    }
    fn verbose(&self) -> bool {
        false
    }
}

/// A description loaded and resolved for a selection.
#[derive(Debug, Clone)]
pub struct Source {
    /// The loaded description (includes spliced).
    pub description: Description,
    /// The description resolved for the selection.
    pub image: ResolvedImage,
}

impl Source {
    /// Load the description at `path` (a file, or a directory holding one) and resolve it.
    pub fn load(path: &Path, selection: &Selection) -> Result<Source, OpsError> {
        let description = description::load(path)?;
        let image = description.resolve(selection)?;
        Ok(Source { description, image })
    }

    /// The description and selection `prepare` kept in `<root>/image`, resolved again.
    pub fn prepared(root: &Path) -> Result<Source, OpsError> {
        let kept = PreparedRoot::new(root);
        let selection = kept.selection()?.selection();
        Source::load(&kept.description_path(), &selection)
    }

    /// Derive from `uri` instead of the description's `derived_from` (which it must have); a
    /// relative path is taken from the working directory. The transport, that the base
    /// exists, and a layout's tag are checked here, before any work.
    pub fn set_derived_from(&mut self, uri: &str) -> Result<(), OpsError> {
        if self.image.build_type.derived_from.is_empty() {
            return Err(OpsError::NoDerivedFrom {
                image: self.image.name.clone(),
            });
        }
        let cwd = std::env::current_dir().map_err(OpsError::WorkingDirectory)?;
        let resolved = crate::rootfs::prepare::resolve_base_uri(uri, &cwd);
        let source = BaseSource::parse(&resolved).map_err(|source| OpsError::DerivedFrom {
            uri: uri.to_string(),
            source,
        })?;
        if let BaseSource::OciLayout(_, Some(tag)) = &source {
            crate::reference::check_tag(tag).map_err(|e| OpsError::DerivedFromTag {
                value: e.shown_value(),
                reason: e.reason.clone(),
            })?;
        }
        self.image.build_type.derived_from = vec![resolved];
        Ok(())
    }
}

/// Where packages come from and how they are pinned: the package options `build`, `prepare`
/// and `lock` share.
#[derive(Debug, Clone)]
pub struct Packages {
    /// The download cache (content-addressed, shared between builds).
    pub cache_dir: PathBuf,
    /// Use only the cache and the lock file; never touch the network.
    pub offline: bool,
    /// The lock file; none: `imgbuild.lock` beside the description.
    pub lock: Option<PathBuf>,
    /// Ignore an existing lock file and resolve afresh.
    pub no_lock: bool,
    /// Accept a signed Release older than the newest the cache has seen, with a warning.
    pub allow_older_release: bool,
    /// The host's apt configuration directory (for `apt-host:/` and default keyrings).
    pub apt_dir: PathBuf,
    /// Repository and package additions.
    pub overrides: Overrides,
    /// Packages removed (forced) at the end, as `<packages type="delete">`.
    pub delete_packages: Vec<String>,
    /// Where registry bases (`derived_from="docker://…"`) are pulled from and cached.
    pub bases: BaseAccess,
    /// The size cap of the package-stage snapshot cache in `cache_dir`; none: `--no-snapshot`.
    pub snapshots: Option<u64>,
}

impl Packages {
    /// The plan options for `image`, downloads showing `progress`.
    pub fn plan_options(&self, image: &ResolvedImage, progress: Progress) -> PlanOptions {
        PlanOptions {
            cache_dir: self.cache_dir.clone(),
            offline: self.offline,
            lock_path: self
                .lock
                .clone()
                .unwrap_or_else(|| image.dir.join("imgbuild.lock")),
            ignore_lock: self.no_lock,
            progress,
            apt_dir: self.apt_dir.clone(),
            allow_older_release: self.allow_older_release,
        }
    }

    /// The options of `prepare` for `image` into `root` (not an existing one), with the
    /// reporter's progress and verbosity.
    fn prepare_options(
        &self,
        image: &ResolvedImage,
        root: PathBuf,
        hook_timeout: Option<Duration>,
        reporter: &dyn Reporter,
    ) -> PrepareOptions {
        PrepareOptions {
            root,
            allow_existing_root: false,
            plan: self.plan_options(image, reporter.progress()),
            overrides: self.overrides.clone(),
            delete_packages: self.delete_packages.clone(),
            hook_timeout,
            verbose: reporter.verbose(),
            snapshot: self.snapshots.map(|max_bytes| SnapshotOptions {
                cache_dir: self.cache_dir.clone(),
                tool: crate::reuse::tool_identity(),
                max_bytes,
            }),
        }
    }
}

/// `rootfs::prepare` of `source` with `opts`, its steps reported through `stages`; says first
/// that the lock file will be used, when it will.
/// `named`: the root is the user's (its path goes into an error), not a work directory.
fn prepare_root(
    source: &Source,
    opts: &PrepareOptions,
    bases: &ImageBases,
    named: bool,
    stages: &mut Stages<'_>,
) -> Result<Prepared, OpsError> {
    let plan = &opts.plan;
    if plan.lock_path.exists() && !plan.ignore_lock {
        stages
            .reporter
            .info(&format!("using lock file {}", plan.lock_path.display()));
    }
    let prepared = crate::rootfs::prepare::prepare(
        &source.description,
        &source.image,
        opts,
        bases,
        &mut |s| {
            stages.start(s);
        },
    )
    .map_err(|source| {
        if named {
            OpsError::Prepare {
                root: opts.root.clone(),
                source: Box::new(source),
            }
        } else {
            OpsError::Build(Box::new(source))
        }
    })?;
    for used in &prepared.snapshot {
        let short = |key: &str| key.chars().take(12).collect::<String>();
        match used {
            SnapshotUse::Restored { key } => stages.reporter.info(&format!(
                "package stage restored from snapshot {} (--no-snapshot installs afresh)",
                short(key)
            )),
            SnapshotUse::Saved { key, evicted } => stages.reporter.info(&format!(
                "package stage kept as snapshot {}{}",
                short(key),
                if *evicted > 0 {
                    format!(
                        " ({evicted} least recently used removed to stay within the cache size)"
                    )
                } else {
                    String::new()
                }
            )),
            SnapshotUse::Note { reason } => stages.reporter.warn(reason),
        }
    }
    Ok(prepared)
}

/// The warning for an image dated from something weaker than its packages' changelogs (none
/// when it is dated from them): said once the date is known, since a date of 1970 or of a
/// package build goes unnoticed in `podman images` until it confuses somebody.
fn epoch_warning(epoch: &EpochRecord) -> Option<String> {
    let date = crate::image::config::rfc3339(epoch.seconds);
    match epoch.source {
        EpochSource::Changelogs => None,
        EpochSource::PackageBuilds => Some(format!(
            "the installed packages have no changelogs in /usr/share/doc: the image is dated \
             {date}, the newest build time of its packages (set SOURCE_DATE_EPOCH to choose)"
        )),
        EpochSource::Unknown => Some(format!(
            "no date for the image: no package was installed and the tree has no changelogs \
             in /usr/share/doc, so it is dated {date}; set SOURCE_DATE_EPOCH to date it"
        )),
    }
}

/// Refuses a base of `image` that names a file or directory that is not there, at its
/// `<type>` element, before any work (the base step would find it only after the stale sweep
/// and the reuse check).
fn check_bases(image: &ResolvedImage) -> Result<(), OpsError> {
    if image
        .build_type
        .derived_from
        .iter()
        .any(|u| is_registry_base(u))
    {
        let conf = crate::registry::registries_conf::RegistriesConf::load()
            .map_err(|source| OpsError::RegistryConf(Box::new(source)))?;
        for uri in image
            .build_type
            .derived_from
            .iter()
            .filter(|u| is_registry_base(u))
        {
            bases::qualify(&conf, image, uri)?;
        }
    }
    for uri in &image.build_type.derived_from {
        let resolved = crate::rootfs::prepare::resolve_base_uri(uri, &image.dir);
        // A URI that does not parse: the base step says what is wrong with it.
        let Ok(
            BaseSource::OciArchive(path)
            | BaseSource::DockerArchive(path)
            | BaseSource::OciLayout(path, _),
        ) = BaseSource::parse(&resolved)
        else {
            continue;
        };
        if !path.exists() {
            return Err(OpsError::MissingBase {
                location: description::Loc::describe(&image.build_type.loc),
                uri: uri.clone(),
                path,
            });
        }
    }
    Ok(())
}

/// What an operation writing `work` (the root tree or the image files) and, with packages,
/// the download cache needs of the host, running the programs of `image`'s architecture.
fn needs(
    work: &Path,
    what: &'static str,
    packages: Option<&Packages>,
    image: &ResolvedImage,
) -> preflight::Needs {
    let mut space = vec![preflight::Space {
        path: work.to_path_buf(),
        what,
        bytes: preflight::MIN_FREE_WORK,
    }];
    space.extend(packages.map(cache_space));
    preflight::Needs {
        sandbox: true,
        space,
        executes: Some(image.arch.clone()),
    }
}

/// The space the download cache of `packages` wants.
fn cache_space(packages: &Packages) -> preflight::Space {
    preflight::Space {
        path: packages.cache_dir.clone(),
        what: "download cache",
        bytes: preflight::MIN_FREE_CACHE,
    }
}

/// Turns the step names `prepare` and `create` announce into start and done events: a step
/// ends when the next begins, the last when [`Stages::finish`] is called (not when one fails).
struct Stages<'a> {
    reporter: &'a dyn Reporter,
    running: Option<(String, Instant)>,
}

impl<'a> Stages<'a> {
    fn new(reporter: &'a dyn Reporter) -> Self {
        Stages {
            reporter,
            running: None,
        }
    }

    fn start(&mut self, stage: &str) {
        self.finish();
        self.reporter.stage_start(stage);
        self.running = Some((stage.to_string(), Instant::now()));
    }

    fn finish(&mut self) {
        if let Some((stage, since)) = self.running.take() {
            self.reporter.stage_done(&stage, since.elapsed());
        }
    }
}

/// The directory `target` lives in (created when missing), with the work directories of
/// builds that were killed removed, one note each.
fn target_parent(target: &Path, reporter: &dyn Reporter) -> Result<PathBuf, OpsError> {
    let parent = crate::atomic::parent_dir(target).to_path_buf();
    std::fs::create_dir_all(&parent).map_err(|source| OpsError::CreateDir {
        path: parent.clone(),
        source,
    })?;
    for stale in workdir::remove_stale(&parent) {
        let whose = if stale.had_lock {
            "a build that was stopped"
        } else {
            "an older imgbuild"
        };
        match stale.error {
            None => reporter.info(&format!(
                "removed {}, left by {whose}",
                stale.path.display()
            )),
            Some(e) => reporter.info(&format!(
                "cannot remove {}, left by {whose}: {e}",
                stale.path.display()
            )),
        }
    }
    Ok(parent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Records every event as a line.
    #[derive(Default)]
    pub(crate) struct Recorder(pub(crate) RefCell<Vec<String>>);

    impl Reporter for Recorder {
        fn stage_start(&self, stage: &str) {
            self.0.borrow_mut().push(format!("start {stage}"));
        }
        fn stage_done(&self, stage: &str, _took: Duration) {
            self.0.borrow_mut().push(format!("done {stage}"));
        }
        fn info(&self, message: &str) {
            self.0.borrow_mut().push(format!("info {message}"));
        }
        fn warn(&self, message: &str) {
            self.0.borrow_mut().push(format!("warn {message}"));
        }
        fn progress(&self) -> Progress {
            Progress::Quiet
        }
        fn verbose(&self) -> bool {
            false
        }
    }

    #[test]
    fn a_stage_is_done_when_the_next_begins_or_at_the_finish() {
        let r = Recorder::default();
        let mut stages = Stages::new(&r);
        stages.start("a");
        stages.start("b");
        stages.finish();
        stages.finish();
        stages.start("c");
        drop(stages);
        assert_eq!(
            *r.0.borrow(),
            ["start a", "done a", "start b", "done b", "start c"]
        );
    }

    #[test]
    fn stale_work_directories_are_swept_beside_the_target() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("new/out");
        // An unlocked work directory older than the grace period counts as an older imgbuild's.
        let stale = t
            .path()
            .join("new")
            .join(format!("{}x", workdir::ROOT_PREFIX));
        std::fs::create_dir_all(&stale).unwrap();
        let old = std::time::SystemTime::now() - 2 * workdir::UNLOCKED_STALE_AFTER;
        std::fs::File::open(&stale)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let r = Recorder::default();
        assert_eq!(target_parent(&target, &r).unwrap(), t.path().join("new"));
        assert!(!stale.exists());
        assert_eq!(
            *r.0.borrow(),
            [format!(
                "info removed {}, left by an older imgbuild",
                stale.display()
            )]
        );
    }
}
