//! The build plan: from a resolved description to the exact packages to install, in order, for
//! each phase — solved from the repositories' signed indexes, or read from the lock file.
//!
//! Repositories come from the description (`apt-host:/` resolved against this host's apt
//! sources), with KIWI's `--set-repo` replacing the first and `--add-repo` adding more. The
//! bootstrap phase is the minbase set (every `Essential: yes` and `Priority: required` package,
//! plus `apt` and the description's bootstrap packages, with `usr-is-merged` for the merged-/usr
//! layout the root is given); the image phase adds the image and type packages on top, without
//! Recommends unless `patternType="plusRecommended"`.
//!
//! A derived image (`derived_from`) has no bootstrap phase: the base's dpkg database is the
//! installed set ([`plan_on_base`]), and only what the image packages add to it is planned.

use crate::apt::cache::{Cache, CacheMode, Sha256Digest};
use crate::apt::fetch::{Download, FetchOptions, Fetcher, Progress};
use crate::apt::index::{self, Package};
use crate::apt::lock::{LockFile, LockedPackage};
use crate::apt::packed;
use crate::apt::release::{self, RepoContext, RepoMetadata, ResolvedRepo};
use crate::apt::repo::RepoSpec;
use crate::apt::solver::{PackageId, Request, Universe};
use crate::description::{Diagnostic, Loc, ResolvedImage};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

mod rpm;

/// Errors while planning.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The description asks for something this stage cannot do.
    #[error("{location}: {message}")]
    Unsupported {
        /// `file:line:column` of the element involved.
        location: String,
        /// What is not supported.
        message: String,
    },
    /// The description asks for things imgbuild cannot build: every one, each at its element.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Blocked(Vec<Diagnostic>),
    /// A repository given on the command line or in the description is unusable.
    #[error(transparent)]
    Repo(#[from] crate::apt::repo::RepoError),
    /// Repository metadata could not be fetched or verified.
    #[error(transparent)]
    Release(#[from] release::ReleaseError),
    /// The download cache could not be opened.
    #[error(transparent)]
    Cache(#[from] crate::apt::cache::CacheError),
    /// A Packages index does not parse.
    #[error("{url}: {source}")]
    Index {
        /// The index.
        url: String,
        /// What is wrong.
        source: index::IndexError,
    },
    /// A Packages index could not be packed, or its packed form could not be read.
    #[error(transparent)]
    Packed(crate::apt::packed::PackedError),
    /// A packed index passed its checks but held a record that does not decode (altered in
    /// the cache); it has been removed, so the next build packs the index again.
    #[error("{path}: damaged packed index, removed (run the build again): {message}")]
    PackedDamaged {
        /// The packed index file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// Packages the description or the command line asks for that no repository has: every
    /// one, each where it was asked for, with the closest name the repositories do have.
    #[error("{}", unknown_lines(.0))]
    UnknownPackages(Vec<UnknownPackage>),
    /// The requested packages cannot be installed together.
    #[error("{phase} packages: {source}")]
    Solve {
        /// `bootstrap` or `image`.
        phase: &'static str,
        /// The solver's explanation.
        source: crate::apt::solver::SolveError,
    },
    /// An rpm-md repository is unusable, or its metadata could not be fetched or verified.
    #[error(transparent)]
    RpmRepo(Box<crate::rpm::repo::RpmRepoError>),
    /// The requested rpm packages cannot be installed together.
    #[error("{phase} packages: {source}")]
    RpmSolve {
        /// `bootstrap` or `image`.
        phase: &'static str,
        /// The solver's explanation.
        source: Box<crate::rpm::solver::SolveError>,
    },
    /// The lock file is unusable or does not match the description.
    #[error(transparent)]
    Lock(#[from] crate::apt::lock::LockError),
    /// The lock file was made for other packages or repositories.
    #[error(
        "{path}: the lock file does not match the description (packages or repositories changed); run `imgbuild lock` again"
    )]
    StaleLock {
        /// The lock file.
        path: PathBuf,
    },
    /// A lock entry names a repository the description no longer has.
    #[error(
        "{path}: package {package} comes from repository {alias}, which the description does not have"
    )]
    LockRepo {
        /// The lock file.
        path: PathBuf,
        /// The package.
        package: String,
        /// The repository alias.
        alias: String,
    },
    /// A package lacks the fields needed to download it.
    #[error("package {name} {version} in {repo} has no {field} field")]
    Incomplete {
        /// Package name.
        name: String,
        /// Its version.
        version: String,
        /// Repository alias.
        repo: String,
        /// The missing field.
        field: &'static str,
    },
}

impl From<crate::rpm::repo::RpmRepoError> for PlanError {
    fn from(e: crate::rpm::repo::RpmRepoError) -> Self {
        PlanError::RpmRepo(Box::new(e))
    }
}

/// Which install phase a package belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// The minbase set, unpacked before any hook runs.
    Bootstrap,
    /// Packages installed on top after `post_bootstrap.sh`.
    Image,
}

impl Phase {
    /// The name used in the lock file.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Bootstrap => "bootstrap",
            Phase::Image => "image",
        }
    }
}

/// One package to download and install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPackage {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Architecture.
    pub architecture: String,
    /// Alias of its repository.
    pub repository: String,
    /// Where to download it.
    pub url: String,
    /// Repository-relative path (`Filename`).
    pub filename: String,
    /// Expected sha256.
    pub sha256: String,
    /// Expected size.
    pub size: u64,
    /// Its phase.
    pub phase: Phase,
}

/// Command-line adjustments to the description's packages and repositories (KIWI's names).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--set-repo`: replaces the first repository.
    pub set_repo: Option<String>,
    /// `--add-repo`: more repositories.
    pub add_repos: Vec<String>,
    /// `--add-package`: more image packages.
    pub add_packages: Vec<String>,
    /// `--add-bootstrap-package`: more bootstrap packages.
    pub add_bootstrap_packages: Vec<String>,
    /// `--ignore-repos`: the description's repositories are not used (only `--add-repo`
    /// ones), as for descriptions made for the Open Build Service (`obsrepositories:/`).
    pub ignore_repos: bool,
    /// `--signing-key`: key files trusted for every repository, besides its own.
    pub signing_keys: Vec<PathBuf>,
}

/// A requested package name that no repository has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPackage {
    /// `file:line:col` of its `<package>` element, or the option that added it.
    pub location: String,
    /// The name as written.
    pub name: String,
    /// The closest name the repositories have, when one is close.
    pub suggestion: Option<String>,
}

fn unknown_lines(unknown: &[UnknownPackage]) -> String {
    let lines: Vec<String> = unknown
        .iter()
        .map(|u| {
            let hint = u
                .suggestion
                .as_ref()
                .map(|s| format!("; did you mean {s:?}?"))
                .unwrap_or_default();
            format!(
                "{}: package {:?} is not in the repositories (no package or provider of that name){hint}",
                u.location, u.name
            )
        })
        .collect();
    lines.join("\n")
}

/// Every bare package name of the requests (`name` or `name:arch`; relations with versions or
/// alternatives are left to the solver) that `universe` does not know, where it was asked for.
fn unknown_packages(
    universe: &Universe,
    image: &ResolvedImage,
    overrides: &Overrides,
    base: bool,
) -> Vec<UnknownPackage> {
    let sets = [
        (!base).then_some(&image.packages.bootstrap),
        Some(&image.packages.image),
        Some(&image.packages.image_type),
    ];
    let described = sets
        .into_iter()
        .flatten()
        .flat_map(|set| &set.packages)
        .map(|p| (Loc::describe(&p.loc), p.name.as_str()));
    let boot_opts = overrides
        .add_bootstrap_packages
        .iter()
        .filter(|_| !base)
        .map(|n| ("--add-bootstrap-package".to_string(), n.as_str()));
    let opts = overrides
        .add_packages
        .iter()
        .map(|n| ("--add-package".to_string(), n.as_str()));
    let mut seen = BTreeSet::new();
    described
        .chain(boot_opts)
        .chain(opts)
        .filter(|(_, name)| !name.is_empty() && !name.contains([' ', '(', '|', '[', '<', '>', '=']))
        .filter(|(_, name)| !universe.knows(name) && seen.insert(name.to_string()))
        .map(|(location, name)| UnknownPackage {
            location,
            name: name.to_string(),
            suggestion: universe.closest(name).map(str::to_string),
        })
        .collect()
}

/// Where the plan's inputs live.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// The download cache directory.
    pub cache_dir: PathBuf,
    /// Use only the cache (and the lock file); never touch the network.
    pub offline: bool,
    /// The lock file to read when it exists (and to write with `imgbuild lock`).
    pub lock_path: PathBuf,
    /// Ignore an existing lock file and solve afresh.
    pub ignore_lock: bool,
    /// How downloads report progress.
    pub progress: Progress,
    /// The host's apt configuration directory (for `apt-host:/` and default keyrings).
    pub apt_dir: PathBuf,
    /// Accept a signed Release older than the newest this cache has seen for its repository,
    /// with a warning, instead of refusing it (`--allow-older-release`).
    pub allow_older_release: bool,
}

/// A package the base image of a derived build has installed (from its dpkg database).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct InstalledPackage {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Architecture (`all` or a Debian architecture).
    pub architecture: String,
}

/// The packages dpkg's `status` file (`/var/lib/dpkg/status` text) records as installed,
/// sorted. Paragraphs that do not parse as a control file are an error of the caller's file.
pub fn installed_packages(
    status: &str,
) -> Result<Vec<InstalledPackage>, crate::apt::control::ParseError> {
    let mut out: Vec<InstalledPackage> = crate::apt::control::parse(status)?
        .iter()
        .filter(|p| p.get("Status").is_some_and(|s| s.ends_with(" installed")))
        .filter_map(|p| {
            Some(InstalledPackage {
                name: p.get("Package")?.to_string(),
                version: p.get("Version")?.to_string(),
                architecture: p.get("Architecture").unwrap_or("all").to_string(),
            })
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// The result of planning.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Debian or rpm packages.
    pub format: PackageFormat,
    /// Debian architecture of the image.
    pub arch: String,
    /// apt repositories, resolved, in description order (none for rpm).
    pub repositories: Vec<ResolvedRepo>,
    /// rpm-md repositories, in description order (none for Debian).
    pub rpm_repositories: Vec<RepoSpec>,
    /// Packages in install order: bootstrap phase first, Pre-Depends before dependents.
    pub packages: Vec<PlannedPackage>,
    /// True when the packages came from the lock file.
    pub from_lock: bool,
    /// Digest of what was asked for (packages and repositories); recorded in the lock.
    pub inputs: String,
    /// What the user should hear about, such as an older Release accepted as allowed.
    pub warnings: Vec<String>,
}

impl Plan {
    /// The packages of one phase, in install order.
    pub fn phase(&self, phase: Phase) -> impl Iterator<Item = &PlannedPackage> {
        self.packages.iter().filter(move |p| p.phase == phase)
    }

    /// The lock file recording this plan.
    pub fn lock_file(&self) -> LockFile {
        LockFile::new(
            self.inputs.clone(),
            self.packages
                .iter()
                .map(|p| LockedPackage {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    architecture: p.architecture.clone(),
                    repository: p.repository.clone(),
                    filename: p.filename.clone(),
                    sha256: p.sha256.clone(),
                    size: p.size,
                    phase: p.phase.as_str().to_string(),
                })
                .collect(),
        )
    }

    /// Download every package into `cache` (verified by sha256), returning the cache paths in
    /// plan order.
    pub fn download(&self, cache: &Cache, fetcher: &Fetcher) -> Result<Vec<PathBuf>, PlanError> {
        let mut items = Vec::with_capacity(self.packages.len());
        for p in &self.packages {
            let digest: Sha256Digest = p.sha256.parse().map_err(|_| PlanError::Incomplete {
                name: p.name.clone(),
                version: p.version.clone(),
                repo: p.repository.clone(),
                field: "SHA256",
            })?;
            let creds = self
                .repositories
                .iter()
                .map(|r| &r.spec)
                .chain(&self.rpm_repositories)
                .find(|r| r.name() == p.repository)
                .and_then(|r| r.credentials.clone());
            items.push(Download {
                url: p.url.clone(),
                expected: crate::apt::cache::Expected {
                    sha256: digest,
                    size: Some(p.size),
                },
                credentials: creds,
            });
        }
        fetcher
            .fetch_many(cache, &items)
            .map_err(|e| PlanError::Release(release::ReleaseError::from(e)))
    }
}

/// The Debian architecture for a KIWI (uname-style) architecture name.
pub fn debian_arch(kiwi_arch: &str) -> String {
    match kiwi_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "i686" | "i586" | "ix86" => "i386",
        "ppc64le" => "ppc64el",
        "armv7l" | "armv7hl" => "armhf",
        other => other,
    }
    .to_string()
}

/// The repositories of `image` after the command-line overrides, as specs.
pub fn repository_specs(
    image: &ResolvedImage,
    overrides: &Overrides,
) -> Result<Vec<RepoSpec>, PlanError> {
    let format = package_format(image);
    let mut specs = Vec::new();
    let described = if overrides.ignore_repos {
        &[][..]
    } else {
        &image.repositories[..]
    };
    for r in described {
        let location = Loc::describe(&r.loc);
        if r.kind != format.repository_type() {
            return Err(PlanError::Unsupported {
                location,
                message: format!(
                    "repository type {:?} is not supported with {} (only {})",
                    r.kind,
                    format.manager(image),
                    format.repository_type()
                ),
            });
        }
        let source = match format {
            PackageFormat::Deb => r.source.clone(),
            PackageFormat::Rpm => rpm::expand_source(&r.source, image, &location)?,
        };
        let mut spec = RepoSpec::new(source);
        spec.alias.clone_from(&r.alias);
        spec.repo_type.clone_from(&r.kind);
        spec.sourcetype = r.attributes.get("sourcetype").cloned();
        spec.distribution.clone_from(&r.distribution);
        if !r.components.is_empty() {
            spec.components.clone_from(&r.components);
        }
        spec.architectures.clone_from(&r.architectures);
        spec.priority = r
            .priority
            .map(|p| {
                i32::try_from(p).map_err(|_| PlanError::Unsupported {
                    location: location.clone(),
                    message: format!("repository priority {p} is out of range"),
                })
            })
            .transpose()?;
        spec.repository_gpgcheck = r.repository_gpgcheck;
        spec.package_gpgcheck = r.package_gpgcheck;
        spec.signing_keys.clone_from(&r.signing_keys);
        spec.imageinclude = r.imageinclude;
        spec.imageonly = r.imageonly;
        specs.push(spec);
    }
    let rpm_typed = |t: &str, mut spec: RepoSpec| {
        // A tuple without a type takes the package manager's kind.
        if format == PackageFormat::Rpm && t.split(',').nth(1).is_none_or(str::is_empty) {
            spec.repo_type = "rpm-md".into();
        }
        spec
    };
    if let Some(t) = &overrides.set_repo {
        let spec = rpm_typed(t, RepoSpec::parse_tuple(t)?);
        if specs.is_empty() {
            specs.push(spec);
        } else {
            specs[0] = spec;
        }
    }
    for t in &overrides.add_repos {
        specs.push(rpm_typed(t, RepoSpec::parse_tuple(t)?));
    }
    for spec in &mut specs {
        for k in &overrides.signing_keys {
            spec.signing_keys.push(format!("file:{}", k.display()));
        }
    }
    for s in &specs {
        match format {
            PackageFormat::Deb => s.check_supported()?,
            PackageFormat::Rpm => rpm::check_spec(s)?,
        }
    }
    Ok(specs)
}

/// Which kind of packages an image is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageFormat {
    /// Debian packages from apt repositories (`<packagemanager>apt</packagemanager>`).
    Deb,
    /// rpm packages from rpm-md repositories (zypper, dnf, dnf4, dnf5, microdnf, yum).
    Rpm,
}

impl PackageFormat {
    /// The KIWI repository type this format reads.
    pub fn repository_type(self) -> &'static str {
        match self {
            PackageFormat::Deb => "apt-deb",
            PackageFormat::Rpm => "rpm-md",
        }
    }

    /// The package manager `image` names (or the one its repositories imply).
    fn manager(self, image: &ResolvedImage) -> String {
        image.preferences.packagemanager.as_ref().map_or_else(
            || match self {
                PackageFormat::Deb => "apt".into(),
                PackageFormat::Rpm => "zypper".into(),
            },
            |p| p.value.clone(),
        )
    }
}

/// The package managers imgbuild's rpm engine stands in for, as KIWI names them.
pub const RPM_MANAGERS: &[&str] = &["zypper", "dnf", "dnf4", "dnf5", "microdnf", "yum"];

/// The package format of `image`: its `<packagemanager>`; without one, KIWI's default
/// (zypper) unless a repository is an apt one.
pub fn package_format(image: &ResolvedImage) -> PackageFormat {
    match image
        .preferences
        .packagemanager
        .as_ref()
        .map(|p| p.value.as_str())
    {
        Some(pm) if RPM_MANAGERS.contains(&pm) => PackageFormat::Rpm,
        Some(_) => PackageFormat::Deb,
        None if image.repositories.iter().any(|r| r.kind == "apt-deb") => PackageFormat::Deb,
        None if image.repositories.is_empty() => PackageFormat::Deb,
        None => PackageFormat::Rpm,
    }
}

/// Fail, before any work, with every blocker of `image` and the command-line repositories
/// together ([`blockers`]).
pub fn check_supported(image: &ResolvedImage, overrides: &Overrides) -> Result<(), PlanError> {
    let blocked = blockers(image, overrides);
    if !blocked.is_empty() {
        return Err(PlanError::Blocked(blocked));
    }
    check_arch(&image.arch)?;
    // The command line's repository tuples too, before anything reads a repository.
    repository_specs(image, overrides).map(drop)
}

/// Architecture names `--target-arch` takes: KIWI's, and Debian's own.
const ARCHES: &[&str] = &[
    "x86_64",
    "aarch64",
    "i686",
    "i586",
    "ix86",
    "ppc64le",
    "armv7l",
    "armv7hl",
    "armv6l",
    "armv6hl",
    "armv5tel",
    "riscv64",
    "s390x",
    "loongarch64",
    "amd64",
    "arm64",
    "i386",
    "ppc64el",
    "armhf",
    "armel",
    "mips64el",
    "loong64",
];

/// Refuses an architecture no Debian port has, naming the closest one.
fn check_arch(arch: &str) -> Result<(), PlanError> {
    if ARCHES.contains(&arch) {
        return Ok(());
    }
    let closest = ARCHES
        .iter()
        .map(|a| (strsim::osa_distance(arch, a), *a))
        .filter(|(d, _)| *d <= (arch.chars().count() / 3).max(1))
        .min();
    Err(PlanError::Unsupported {
        location: "--target-arch".into(),
        message: format!(
            "unknown architecture {arch:?}{}; one of: {}",
            closest
                .map(|(_, a)| format!(" (did you mean {a:?}?)"))
                .unwrap_or_default(),
            ARCHES.join(", ")
        ),
    })
}

/// Everything in `image` this stage cannot build, each at its element: a package manager other
/// than apt, repositories of another type or with a source apt cannot read (the first one not
/// when `--set-repo` replaces it), and no repository at all.
pub fn blockers(image: &ResolvedImage, overrides: &Overrides) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let format = package_format(image);
    if let Some(pm) = &image.preferences.packagemanager
        && pm.value != "apt"
        && pm.value != "apt-get"
        && !RPM_MANAGERS.contains(&pm.value.as_str())
    {
        out.push(Diagnostic::new(
            pm.loc.clone().unwrap_or_else(|| image.loc.clone()),
            "packagemanager",
            format!(
                "{} is not supported (imgbuild installs Debian packages for apt and rpm packages for {})",
                pm.value,
                RPM_MANAGERS.join(", ")
            ),
        ));
    }
    let replaced = if overrides.ignore_repos {
        image.repositories.len()
    } else {
        usize::from(overrides.set_repo.is_some())
    };
    for r in image.repositories.iter().skip(replaced) {
        let loc = r.loc.clone().unwrap_or_else(|| image.loc.clone());
        if r.kind != format.repository_type() {
            out.push(Diagnostic::new(
                loc.clone(),
                "repository@type",
                format!(
                    "{:?} is not supported with {} (only {})",
                    r.kind,
                    format.manager(image),
                    format.repository_type()
                ),
            ));
            continue;
        }
        let mut spec = RepoSpec::new(r.source.clone());
        spec.alias.clone_from(&r.alias);
        spec.repo_type.clone_from(&r.kind);
        let checked = match format {
            PackageFormat::Deb => spec.check_supported().map_err(PlanError::from),
            PackageFormat::Rpm => rpm::check_spec(&spec),
        };
        match checked {
            Err(PlanError::Repo(crate::apt::repo::RepoError::Source {
                source_path,
                message,
                ..
            })) => out.push(Diagnostic::new(
                loc,
                "source@path",
                format!("{source_path:?}: {message}"),
            )),
            Err(e) => out.push(Diagnostic::new(loc, "repository", e.to_string())),
            Ok(()) => {}
        }
    }
    if format == PackageFormat::Rpm {
        out.extend(rpm::blockers(image));
    }
    // A derived image that adds no packages needs no repository; anything else does.
    let (boot, img) = requests(image, overrides);
    let needs_repository =
        image.build_type.derived_from.is_empty() || !boot.is_empty() || !img.is_empty();
    if needs_repository
        && (image.repositories.is_empty() || overrides.ignore_repos)
        && overrides.set_repo.is_none()
        && overrides.add_repos.is_empty()
    {
        out.push(Diagnostic::new(
            image.loc.clone(),
            "image",
            match format {
                PackageFormat::Deb => {
                    "no <repository>: there is nothing to install packages from; add a \
             <repository type=\"apt-deb\"> element, or pass \
             --add-repo SOURCE,apt-deb,ALIAS,,,,,main,DISTRIBUTION"
                        .into()
                }
                PackageFormat::Rpm => {
                    "no <repository>: there is nothing to install packages from; add a \
             <repository type=\"rpm-md\"> element, or pass --add-repo SOURCE,rpm-md,ALIAS"
                        .into()
                }
            },
        ));
    }
    out
}

fn names(set: &crate::description::PackageSet) -> Vec<String> {
    set.packages.iter().map(|p| p.name.clone()).collect()
}

/// The bootstrap and image package requests of `image`, with overrides.
fn requests(image: &ResolvedImage, overrides: &Overrides) -> (Vec<String>, Vec<String>) {
    let mut boot = names(&image.packages.bootstrap);
    boot.extend(overrides.add_bootstrap_packages.iter().cloned());
    let mut img = names(&image.packages.image);
    img.extend(names(&image.packages.image_type));
    img.extend(overrides.add_packages.iter().cloned());
    (boot, img)
}

/// A digest of everything that decides the package set: the requests, the repositories and the
/// architecture. A lock file is only used while this matches.
fn inputs_digest(
    arch: &str,
    specs: &[RepoSpec],
    boot: &[String],
    img: &[String],
    recommends: bool,
    base: Option<&[InstalledPackage]>,
) -> String {
    let mut h = Sha256::new();
    let mut feed = |tag: &str, s: &str| {
        h.update(tag.as_bytes());
        h.update([0]);
        h.update(s.as_bytes());
        h.update([0]);
    };
    feed("arch", arch);
    for s in specs {
        feed("repo", &s.name());
        feed("source", &s.source);
        feed("dist", s.distribution.as_deref().unwrap_or("./"));
        feed("components", &s.components.join(" "));
        feed("priority", &s.priority.unwrap_or(500).to_string());
    }
    let sorted = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
    for b in sorted(boot) {
        feed("bootstrap", &b);
    }
    for i in sorted(img) {
        feed("image", &i);
    }
    feed("recommends", if recommends { "yes" } else { "no" });
    // A derived image's plan depends on what its base has installed.
    if let Some(base) = base {
        feed("derived", "yes");
        for p in base {
            feed(
                "base",
                &format!("{} {} {}", p.name, p.version, p.architecture),
            );
        }
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// Make the plan for `image`: from the lock file at `opts.lock_path` when it exists and matches,
/// else by fetching the repositories' metadata and solving.
pub fn plan(
    image: &ResolvedImage,
    overrides: &Overrides,
    opts: &PlanOptions,
    cache: &Cache,
    fetcher: &Fetcher,
) -> Result<Plan, PlanError> {
    if !image.build_type.derived_from.is_empty() {
        // Without the base's package set the plan would be a full bootstrap: wrong, and a lock
        // file written from it would not match the build.
        return Err(PlanError::Unsupported {
            location: Loc::describe(&image.build_type.loc),
            message: "a derived image is planned on its base's packages; use `imgbuild build`"
                .to_string(),
        });
    }
    plan_with(image, overrides, opts, cache, fetcher, None)
}

/// Make the plan for a derived `image` on top of `base`, the packages its base image has
/// installed: no bootstrap phase; the image packages are solved with the base's packages that
/// the repositories hold (same name, version and architecture) as installed, and only what is
/// new or upgraded is planned. A base package the repositories do not hold stays as it is.
pub fn plan_on_base(
    image: &ResolvedImage,
    overrides: &Overrides,
    opts: &PlanOptions,
    cache: &Cache,
    fetcher: &Fetcher,
    base: &[InstalledPackage],
) -> Result<Plan, PlanError> {
    plan_with(image, overrides, opts, cache, fetcher, Some(base))
}

fn plan_with(
    image: &ResolvedImage,
    overrides: &Overrides,
    opts: &PlanOptions,
    cache: &Cache,
    fetcher: &Fetcher,
    base: Option<&[InstalledPackage]>,
) -> Result<Plan, PlanError> {
    check_supported(image, overrides)?;
    if package_format(image) == PackageFormat::Rpm {
        return rpm::plan(image, overrides, opts, cache, fetcher, base);
    }
    let arch = debian_arch(&image.arch);
    let specs = repository_specs(image, overrides)?;
    let (boot, img) = requests(image, overrides);
    let recommends = image.packages.pattern_type == "plusRecommended";
    let inputs = inputs_digest(&arch, &specs, &boot, &img, recommends, base);
    let repositories = specs
        .iter()
        .map(|s| ResolvedRepo::resolve(s, &opts.apt_dir))
        .collect::<Result<Vec<_>, _>>()?;

    // A lock pins every package by sha256: no repository metadata is read, so neither a replayed
    // nor a rolled-back Release can change what is installed.
    if !opts.ignore_lock && opts.lock_path.exists() {
        let lock = LockFile::read_for(&opts.lock_path, &image.arch)?;
        if lock.inputs != inputs {
            return Err(PlanError::StaleLock {
                path: opts.lock_path.clone(),
            });
        }
        return from_lock(&lock, &opts.lock_path, arch, repositories, inputs);
    }

    let ctx = RepoContext {
        apt_dir: opts.apt_dir.clone(),
        allow_older_release: opts.allow_older_release,
        ..RepoContext::new(cache, fetcher)
    };
    let usable: Vec<RepoSpec> = specs.iter().filter(|s| !s.imageonly).cloned().collect();
    let metadata = release::fetch_all_metadata(&usable, std::slice::from_ref(&arch), &ctx)?;
    let warnings: Vec<String> = metadata
        .iter()
        .filter_map(|m| m.older.as_ref().map(std::string::ToString::to_string))
        .collect();
    let (universe, meta_of_repo) = universe(&metadata, &arch, cache)?;
    let planned = plan_packages(
        &universe,
        &meta_of_repo,
        &metadata,
        (&boot, &img, recommends),
        image,
        overrides,
        base,
    );
    // A damaged record stands in as an empty one: whatever was planned from it is discarded.
    if let Some((i, message)) = universe.damage() {
        let idx = metadata.iter().flat_map(|m| &m.packages).nth(i);
        let path = idx.map_or_else(PathBuf::new, |idx| cache.packed_path(&idx.expected.sha256));
        let _ = std::fs::remove_file(&path);
        return Err(PlanError::PackedDamaged {
            path,
            message: message.to_string(),
        });
    }
    let packages = planned?;
    drop(universe);
    release_freed_memory();
    Ok(Plan {
        format: PackageFormat::Deb,
        arch,
        repositories,
        rpm_repositories: Vec::new(),
        packages,
        from_lock: false,
        inputs,
        warnings,
    })
}

/// Return the heap the universe held (tens of MB of names and maps, freed in many small
/// pieces) to the system: glibc keeps freed memory for reuse, so without this every later
/// stage of the build would carry the planning peak along.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only hands free heap pages back to the kernel; no live allocation
    // is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The packages to install, in order, from `universe`: the image's on top of the base's
/// packages for a derived image, else the bootstrap then the image phase.
fn plan_packages(
    universe: &Universe,
    meta_of_repo: &[usize],
    metadata: &[RepoMetadata],
    (boot, img, recommends): (&[String], &[String], bool),
    image: &ResolvedImage,
    overrides: &Overrides,
    base: Option<&[InstalledPackage]>,
) -> Result<Vec<PlannedPackage>, PlanError> {
    let unknown = unknown_packages(universe, image, overrides, base.is_some());
    if !unknown.is_empty() {
        return Err(PlanError::UnknownPackages(unknown));
    }

    if let Some(base) = base {
        let installed: Vec<PackageId> = base
            .iter()
            .filter_map(|p| universe.find(&p.name, Some(&p.architecture), &p.version))
            .collect();
        let image_ids = solve_image(universe, img, installed, recommends)?;
        let mut packages = Vec::with_capacity(image_ids.len());
        for id in universe.install_order(&image_ids) {
            let p = universe.package(id);
            let meta = &metadata[meta_of_repo[p.repo]];
            packages.push(planned(p, meta, Phase::Image)?);
        }
        return Ok(packages);
    }

    // The description's own packages mean those real packages; the minbase extras are
    // dependencies: `usr-is-merged` is satisfied by whatever provides it (trixie's base-files,
    // as in debootstrap), and only pulls in the real package where nothing else does (bookworm).
    let mut boot_req: Vec<String> = pin_real(universe, boot);
    for extra in ["apt", "usr-is-merged"] {
        if universe.candidate(extra).is_some() {
            boot_req.push(extra.to_string());
        }
    }
    let mut request = Request::install(&boot_req).map_err(|source| PlanError::Solve {
        phase: "bootstrap",
        source,
    })?;
    request.bootstrap = true;
    let boot_res = universe
        .solve(&request)
        .map_err(|source| PlanError::Solve {
            phase: "bootstrap",
            source,
        })?;
    let image_ids = solve_image(universe, img, boot_res.packages.clone(), recommends)?;
    let mut packages = Vec::with_capacity(boot_res.packages.len() + image_ids.len());
    for (phase, ids) in [
        (Phase::Bootstrap, &boot_res.packages),
        (Phase::Image, &image_ids),
    ] {
        for id in universe.install_order(ids) {
            let p = universe.package(id);
            let meta = &metadata[meta_of_repo[p.repo]];
            packages.push(planned(p, meta, phase)?);
        }
    }
    Ok(packages)
}

/// A package asked for by its bare name means that real package, as in `apt-get install NAME`,
/// even where an installed package `Provides` the name (trixie's base-files provides
/// `usr-is-merged`): pin such names to their candidate version, which no unversioned Provides can
/// satisfy. Requests with constraints or alternatives are left as written.
fn pin_real(universe: &Universe, requests: &[String]) -> Vec<String> {
    requests
        .iter()
        .map(|r| {
            let bare = !r.is_empty() && !r.contains([' ', '(', '|', ':', '[', '<']);
            match universe.candidate(r) {
                Some(id) if bare => format!("{r} (= {})", universe.package(id).version.as_str()),
                _ => r.clone(),
            }
        })
        .collect()
}

/// Solves the image packages `img` on top of `installed`; returns what is not installed yet.
fn solve_image(
    universe: &Universe,
    img: &[String],
    installed: Vec<PackageId>,
    recommends: bool,
) -> Result<Vec<PackageId>, PlanError> {
    if img.is_empty() {
        return Ok(Vec::new());
    }
    let mut request =
        Request::install(&pin_real(universe, img)).map_err(|source| PlanError::Solve {
            phase: "image",
            source,
        })?;
    let have: BTreeSet<PackageId> = installed.iter().copied().collect();
    request.installed = installed;
    request.with_recommends = recommends;
    let res = universe
        .solve(&request)
        .map_err(|source| PlanError::Solve {
            phase: "image",
            source,
        })?;
    Ok(res
        .packages
        .into_iter()
        .filter(|id| !have.contains(id))
        .collect())
}

/// Every package of every repository's indexes, with repository priorities as apt pins them.
/// The indexes are read in their packed form (made and kept in the cache on first use): only
/// the records the solver touches are decoded.
fn universe(
    metadata: &[RepoMetadata],
    arch: &str,
    cache: &Cache,
) -> Result<(Universe, Vec<usize>), PlanError> {
    let mut indexes = Vec::new();
    let mut priorities = Vec::new();
    let mut meta_of_repo = Vec::new();
    for (mi, meta) in metadata.iter().enumerate() {
        for idx in &meta.packages {
            let repo = priorities.len();
            priorities.push(meta.repo.spec.priority.unwrap_or(500));
            meta_of_repo.push(mi);
            let packed =
                packed::open_or_pack(cache, &idx.expected, &idx.url).map_err(|e| match e {
                    packed::PackedError::Index(source) => PlanError::Index {
                        url: idx.url.clone(),
                        source,
                    },
                    packed::PackedError::Cache(e) => PlanError::Cache(e),
                    e => PlanError::Packed(e),
                })?;
            indexes.push((packed, repo));
        }
    }
    Ok((
        Universe::from_packed(indexes, &priorities, arch, &[]),
        meta_of_repo,
    ))
}

fn planned(p: &Package, meta: &RepoMetadata, phase: Phase) -> Result<PlannedPackage, PlanError> {
    let repo = meta.repo.spec.name();
    let missing = |field| PlanError::Incomplete {
        name: p.name.clone(),
        version: p.version.as_str().to_string(),
        repo: repo.clone(),
        field,
    };
    let filename = p.filename.clone().ok_or_else(|| missing("Filename"))?;
    Ok(PlannedPackage {
        name: p.name.clone(),
        version: p.version.as_str().to_string(),
        architecture: p.architecture.clone(),
        url: meta.repo.file_url(&filename),
        filename,
        sha256: p.sha256.clone().ok_or_else(|| missing("SHA256"))?,
        size: p.size.ok_or_else(|| missing("Size"))?,
        repository: repo,
        phase,
    })
}

fn from_lock(
    lock: &LockFile,
    path: &Path,
    arch: String,
    repositories: Vec<ResolvedRepo>,
    inputs: String,
) -> Result<Plan, PlanError> {
    let packages = locked_packages(lock, path, |l| {
        Ok(repositories
            .iter()
            .find(|r| r.spec.name() == l.repository)
            .map(|r| r.file_url(&l.filename)))
    })?;
    Ok(Plan {
        format: PackageFormat::Deb,
        arch,
        repositories,
        rpm_repositories: Vec::new(),
        packages,
        from_lock: true,
        inputs,
        warnings: Vec::new(),
    })
}

/// The packages a lock file pins, in its order (phases kept apart), each downloaded from the URL
/// `url` gives for it: `None` when the description no longer has its repository.
fn locked_packages(
    lock: &LockFile,
    path: &Path,
    url: impl Fn(&LockedPackage) -> Result<Option<String>, PlanError>,
) -> Result<Vec<PlannedPackage>, PlanError> {
    let mut packages = Vec::with_capacity(lock.packages.len());
    for l in &lock.packages {
        let url = url(l)?.ok_or_else(|| PlanError::LockRepo {
            path: path.to_path_buf(),
            package: l.name.clone(),
            alias: l.repository.clone(),
        })?;
        packages.push(PlannedPackage {
            name: l.name.clone(),
            version: l.version.clone(),
            architecture: l.architecture.clone(),
            repository: l.repository.clone(),
            url,
            filename: l.filename.clone(),
            sha256: l.sha256.clone(),
            size: l.size,
            phase: if l.phase == "bootstrap" {
                Phase::Bootstrap
            } else {
                Phase::Image
            },
        });
    }
    // The lock keeps install order; a stable sort only guards the phase boundary.
    packages.sort_by_key(|p| p.phase);
    Ok(packages)
}

/// A fetcher and cache for `opts`.
pub fn open_cache(opts: &PlanOptions) -> Result<(Cache, Fetcher), PlanError> {
    let mode = if opts.offline {
        CacheMode::Offline
    } else {
        CacheMode::Online
    };
    let cache = Cache::open(&opts.cache_dir, mode)?;
    let fetcher = Fetcher::new(FetchOptions {
        progress: opts.progress.clone(),
        ..FetchOptions::default()
    });
    Ok((cache, fetcher))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_packages_reads_only_installed_entries_sorted() {
        let status = "Package: zlib1g\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:1.2.13\n\n\
Package: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1\n\n\
Package: base-files\nStatus: install ok installed\nArchitecture: amd64\nVersion: 12.4\n\n\
Package: half\nStatus: install ok unpacked\nArchitecture: all\nVersion: 2\n";
        let got = installed_packages(status).unwrap();
        let names: Vec<(&str, &str, &str)> = got
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str(), p.architecture.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("base-files", "12.4", "amd64"),
                ("zlib1g", "1:1.2.13", "amd64")
            ]
        );
    }

    #[test]
    fn the_base_package_set_is_part_of_the_inputs() {
        let base = [InstalledPackage {
            name: "libc6".into(),
            version: "2.36".into(),
            architecture: "amd64".into(),
        }];
        let img = ["hello".to_string()];
        let plain = inputs_digest("amd64", &[], &[], &img, false, None);
        let derived = inputs_digest("amd64", &[], &[], &img, false, Some(&base));
        let other = [InstalledPackage {
            version: "2.37".into(),
            ..base[0].clone()
        }];
        assert_ne!(plain, derived);
        assert_ne!(
            derived,
            inputs_digest("amd64", &[], &[], &img, false, Some(&other))
        );
    }

    #[test]
    fn every_unknown_package_is_named_where_it_was_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<image schemaversion="8.5" name="t">
    <description type="system">
        <author>a</author><contact>c</contact><specification>s</specification>
    </description>
    <preferences>
        <version>1.0.0</version>
        <packagemanager>apt</packagemanager>
        <type image="docker"/>
    </preferences>
    <repository type="apt-deb"><source path="http://deb.example/debian"/></repository>
    <packages type="image">
        <package name="pyhton3-minimal"/>
        <package name="mawk"/>
        <package name="awk"/>
        <package name="libc6 (>= 2)"/>
        <package name="zzzzzzzz"/>
    </packages>
    <packages type="bootstrap">
        <package name="mawk"/>
    </packages>
</image>
"#;
        std::fs::write(dir.path().join("config.xml"), xml).unwrap();
        let desc = crate::description::load(dir.path()).unwrap();
        let image = desc
            .resolve(&crate::description::Selection::default())
            .unwrap();
        let text = "Package: python3-minimal\nVersion: 1\nArchitecture: amd64\n\n\
Package: mawk\nVersion: 1\nArchitecture: amd64\nProvides: awk\n";
        let universe = Universe::new(
            crate::apt::index::parse_packages(text, 0).unwrap(),
            &[500],
            "amd64",
            &[],
        );
        let overrides = Overrides {
            add_packages: vec!["mawk".into(), "mwak".into(), "zzzzzzzz".into()],
            ..Overrides::default()
        };
        let unknown = unknown_packages(&universe, &image, &overrides, false);
        let file = dir.path().join("config.xml").display().to_string();
        assert_eq!(
            unknown,
            [
                UnknownPackage {
                    location: format!("{file}:13:9"),
                    name: "pyhton3-minimal".into(),
                    suggestion: Some("python3-minimal".into()),
                },
                UnknownPackage {
                    location: format!("{file}:17:9"),
                    name: "zzzzzzzz".into(),
                    suggestion: None,
                },
                UnknownPackage {
                    location: "--add-package".into(),
                    name: "mwak".into(),
                    suggestion: Some("mawk".into()),
                },
            ]
        );
        let shown = PlanError::UnknownPackages(unknown).to_string();
        assert_eq!(shown.lines().count(), 3, "{shown}");
        assert!(shown.starts_with(&format!(
            "{file}:13:9: package \"pyhton3-minimal\" is not in the repositories"
        )));
        assert!(shown.contains("did you mean \"mawk\"?"), "{shown}");
    }

    #[test]
    fn unknown_architectures_are_refused_with_the_closest_name() {
        assert!(check_arch("x86_64").is_ok() && check_arch("arm64").is_ok());
        let e = check_arch("aarch46").unwrap_err().to_string();
        assert!(
            e.starts_with(
                "--target-arch: unknown architecture \"aarch46\" (did you mean \"aarch64\"?)"
            ),
            "{e}"
        );
        let e = check_arch("sparc99").unwrap_err().to_string();
        assert!(!e.contains("did you mean"), "{e}");
    }
}
