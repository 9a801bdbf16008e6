//! Planning an image of rpm packages (`<packagemanager>` zypper, dnf, dnf4, dnf5, microdnf or
//! yum): the rpm-md repositories' signed metadata, the rpm solver, and the same lock file, cache
//! and phases as for Debian.
//!
//! The requests map as KIWI maps them for zypper: `<package>`s by name (or any capability
//! rpm accepts: `name >= 1.0`, `/usr/bin/sh`), `<namedCollection name="x">` as the pattern
//! `pattern() = x`, `<product name="x">` as `product() = x`, `<ignore>` as packages never
//! installed; weak dependencies (Recommends, Supplements) only with
//! `patternType="plusRecommended"`, since KIWI runs zypper with `--no-recommends` otherwise.
//! The bootstrap phase is what the bootstrap section asks for (there is no rpm minbase: the
//! `filesystem` and shell packages come in as dependencies or by name); the image phase is
//! solved on top of it.

use super::{
    InstalledPackage, Overrides, Phase, Plan, PlanError, PlanOptions, PlannedPackage,
    UnknownPackage, debian_arch, inputs_digest, locked_packages, repository_specs,
};
use crate::apt::cache::Cache;
use crate::apt::fetch::Fetcher;
use crate::apt::lock::LockFile;
use crate::apt::repo::RepoSpec;
use crate::description::{Diagnostic, Loc, PackageSet, ResolvedImage};
use crate::rpm::package::Requirement;
use crate::rpm::repo::{self, RpmContext, RpmMetadata};
use crate::rpm::solver::{PackageId, Request, Universe};
use std::collections::BTreeSet;
use std::path::Path;

/// zypper's repository priority when none is given (a lower number wins).
pub const DEFAULT_PRIORITY: i32 = 99;

/// Refuses a repository the rpm engine cannot read (its scheme, an Open Build Service source).
pub(super) fn check_spec(spec: &RepoSpec) -> Result<(), PlanError> {
    repo::check_source(spec).map_err(PlanError::from)
}

/// `source` with the variables dnf and KIWI expand in repository paths: `$basearch` and `$arch`
/// (the target architecture), `$releasever` (`<release-version>`, which it then needs).
pub(super) fn expand_source(
    source: &str,
    image: &ResolvedImage,
    location: &str,
) -> Result<String, PlanError> {
    let mut out = source
        .replace("$basearch", &image.arch)
        .replace("$arch", &image.arch);
    if out.contains("$releasever") {
        let Some(v) = &image.preferences.release_version else {
            return Err(PlanError::Unsupported {
                location: location.to_string(),
                message: format!(
                    "source {source:?} uses $releasever, but the description sets no <release-version>"
                ),
            });
        };
        out = out.replace("$releasever", &v.value);
    }
    Ok(out)
}

/// What the rpm engine cannot do for `image`, each at its element: `<collectionModule>`s (dnf
/// modularity needs repository module metadata imgbuild does not read).
pub(super) fn blockers(image: &ResolvedImage) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let p = &image.packages;
    let zypper = package_manager(image) == "zypper";
    for set in [&p.bootstrap, &p.image, &p.image_type] {
        if !zypper {
            for c in &set.collections {
                out.push(Diagnostic::new(
                    c.loc.clone().unwrap_or_else(|| image.loc.clone()),
                    "namedCollection",
                    format!(
                        "group {:?}: dnf package groups (comps metadata) are not supported yet; list the group's packages instead",
                        c.name
                    ),
                ));
            }
        }
        for m in &set.collection_modules {
            out.push(Diagnostic::new(
                m.loc.clone().unwrap_or_else(|| image.loc.clone()),
                "collectionModule",
                format!(
                    "dnf module {:?} cannot be enabled: imgbuild does not read modular repository metadata",
                    m.name
                ),
            ));
        }
    }
    out
}

/// The package manager `image` names; zypper (KIWI's default) when it names none.
fn package_manager(image: &ResolvedImage) -> &str {
    image
        .preferences
        .packagemanager
        .as_ref()
        .map_or("zypper", |p| p.value.as_str())
}

/// One request with where it was asked for.
struct Asked {
    location: String,
    text: String,
}

/// The requests of one package section: packages, collections as patterns, products.
fn section(set: &PackageSet) -> Vec<Asked> {
    let at = |loc: &Option<Loc>| Loc::describe(loc);
    let mut out: Vec<Asked> = set
        .packages
        .iter()
        .map(|p| Asked {
            location: at(&p.loc),
            text: p.name.clone(),
        })
        .collect();
    out.extend(set.collections.iter().map(|c| Asked {
        location: at(&c.loc),
        text: format!("pattern() = {}", c.name),
    }));
    out.extend(set.products.iter().map(|c| Asked {
        location: at(&c.loc),
        text: format!("product() = {}", c.name),
    }));
    out
}

/// The bootstrap and image requests of `image` with the command line's additions.
fn requests(image: &ResolvedImage, overrides: &Overrides) -> (Vec<Asked>, Vec<Asked>) {
    let mut boot = section(&image.packages.bootstrap);
    boot.extend(overrides.add_bootstrap_packages.iter().map(|n| Asked {
        location: "--add-bootstrap-package".into(),
        text: n.clone(),
    }));
    let mut img = section(&image.packages.image);
    img.extend(section(&image.packages.image_type));
    img.extend(overrides.add_packages.iter().map(|n| Asked {
        location: "--add-package".into(),
        text: n.clone(),
    }));
    (boot, img)
}

/// `<ignore>` names of every applicable section: never installed.
fn ignored(image: &ResolvedImage) -> Vec<String> {
    let p = &image.packages;
    let mut names: Vec<String> = [&p.bootstrap, &p.image, &p.image_type]
        .into_iter()
        .flat_map(|s| s.ignores.iter().map(|i| i.name.clone()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Parses the requests into requirements, each error at its element.
fn parse(asked: &[Asked]) -> Result<Vec<Requirement>, PlanError> {
    asked
        .iter()
        .map(|a| {
            crate::rpm::deps::parse_requirement(&a.text).map_err(|e| PlanError::Unsupported {
                location: a.location.clone(),
                message: format!("package request {:?}: {e}", a.text),
            })
        })
        .collect()
}

/// Plans `image` from its rpm-md repositories (or the lock file when it matches).
pub(super) fn plan(
    image: &ResolvedImage,
    overrides: &Overrides,
    opts: &PlanOptions,
    cache: &Cache,
    fetcher: &Fetcher,
    base: Option<&[InstalledPackage]>,
) -> Result<Plan, PlanError> {
    let arch = debian_arch(&image.arch);
    let specs = repository_specs(image, overrides)?;
    let (boot, img) = requests(image, overrides);
    let weak = image.packages.pattern_type == "plusRecommended";
    let boot_weak = image.packages.bootstrap_pattern_type == "plusRecommended";
    let excluded = ignored(image);
    let texts = |v: &[Asked]| v.iter().map(|a| a.text.clone()).collect::<Vec<_>>();
    let mut boot_texts = texts(&boot);
    // The lock is only used while everything that decides the package set is the same.
    boot_texts.extend(excluded.iter().map(|e| format!("\0ignore {e}")));
    boot_texts.push("\0format rpm".into());
    boot_texts.push(format!("\0bootstrap recommends {boot_weak}"));
    boot_texts.push(format!("\0arch {}", image.arch));
    let inputs = inputs_digest(&arch, &specs, &boot_texts, &texts(&img), weak, base);
    let ctx = RpmContext::new(cache, fetcher, &image.dir);

    if !opts.ignore_lock && opts.lock_path.exists() {
        let lock = LockFile::read_for(&opts.lock_path, &image.arch)?;
        if lock.inputs != inputs {
            return Err(PlanError::StaleLock {
                path: opts.lock_path.clone(),
            });
        }
        return from_lock(&lock, &opts.lock_path, arch, specs, inputs, &ctx);
    }

    let mut boot = boot;
    let manager_package = match package_manager(image) {
        "dnf" | "dnf4" => "dnf",
        other => other,
    };
    let boot_req = parse(&boot)?;
    let img_req = parse(&img)?;
    let mut metas: Vec<RpmMetadata> = Vec::new();
    let mut priorities = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        // Indices stay those of `specs`; an image-only repository contributes no package.
        priorities.push(spec.priority.unwrap_or(DEFAULT_PRIORITY));
        if spec.imageonly {
            continue;
        }
        metas.push(repo::fetch_metadata(spec, i, &ctx)?);
    }
    let files: Vec<String> = boot
        .iter()
        .chain(&img)
        .filter(|a| a.text.starts_with('/'))
        .map(|a| a.text.clone())
        .collect();
    repo::add_file_provides(&mut metas, &files, &ctx)?;
    let packages: Vec<crate::rpm::package::Package> = metas
        .iter()
        .flat_map(|m| m.packages.iter().cloned())
        .collect();
    let universe = Universe::new(packages, &priorities, &image.arch);

    let unknown: Vec<UnknownPackage> = {
        let mut seen = BTreeSet::new();
        let mut unknown: Vec<UnknownPackage> = boot
            .iter()
            .chain(&img)
            .filter(|a| !a.text.contains([' ', '(', '<', '>', '=']))
            .filter(|a| !universe.knows(&a.text) && seen.insert(a.text.clone()))
            .map(|a| UnknownPackage {
                location: a.location.clone(),
                name: a.text.clone(),
                suggestion: universe.closest(&a.text).map(str::to_string),
            })
            .collect();
        // Patterns and products are provides (`pattern() = NAME`): one must exist.
        for a in boot.iter().chain(&img) {
            let Some((kind, name)) = a.text.split_once("() = ") else {
                continue;
            };
            if !matches!(kind, "pattern" | "product") || a.text.contains(['<', '>']) {
                continue;
            }
            let dep = crate::rpm::package::Dep {
                name: format!("{kind}()"),
                version: Some((
                    crate::rpm::package::Cmp::Eq,
                    crate::rpm::version::Evr::parse(name),
                )),
                pre: false,
            };
            if !(0..universe.len()).any(|id| universe.satisfies(id, &dep))
                && seen.insert(a.text.clone())
            {
                unknown.push(UnknownPackage {
                    location: a.location.clone(),
                    name: a.text.clone(),
                    suggestion: None,
                });
            }
        }
        unknown
    };
    if !unknown.is_empty() {
        return Err(PlanError::UnknownPackages(unknown));
    }

    let solve =
        |phase: &'static str, install: Vec<Requirement>, installed: Vec<PackageId>, weak: bool| {
            universe
                .solve(&Request {
                    install,
                    installed,
                    weak,
                    excluded: excluded.clone(),
                })
                .map_err(|source| PlanError::RpmSolve {
                    phase,
                    source: Box::new(source),
                })
        };
    // What the image packages add on top of `installed`.
    let added = |img_req: Vec<Requirement>, installed: Vec<PackageId>| {
        if img_req.is_empty() {
            return Ok(Vec::new());
        }
        let have: BTreeSet<PackageId> = installed.iter().copied().collect();
        Ok::<_, PlanError>(
            solve("image", img_req, installed, weak)?
                .packages
                .into_iter()
                .filter(|id| !have.contains(id))
                .collect::<Vec<_>>(),
        )
    };
    let phases: Vec<(Phase, Vec<PackageId>)> = if let Some(base) = base {
        // A derived image: the base's packages that the repositories hold are installed; only
        // what the image packages add to them is planned (no bootstrap phase). A base package
        // the repositories do not hold stays as it is.
        let installed: Vec<PackageId> = base
            .iter()
            .filter_map(|p| universe.find(&p.name, &p.architecture, &p.version))
            .collect();
        vec![(Phase::Image, added(img_req, installed)?)]
    } else {
        // KIWI installs the image packages with the image's own package manager, so it adds
        // that to the bootstrap set of a description with image packages; so does imgbuild,
        // for the same image, where the repositories have it.
        let mut boot_req = boot_req;
        if !img.is_empty()
            && universe.knows(manager_package)
            && !excluded.iter().any(|e| e == manager_package)
            && !boot.iter().any(|a| a.text == manager_package)
        {
            boot.push(Asked {
                location: "packagemanager".into(),
                text: manager_package.to_string(),
            });
            boot_req.extend(parse(&boot[boot.len() - 1..])?);
        }
        let boot_ids = if boot_req.is_empty() {
            Vec::new()
        } else {
            solve("bootstrap", boot_req, Vec::new(), boot_weak)?.packages
        };
        let image_ids = added(img_req, boot_ids.clone())?;
        vec![(Phase::Bootstrap, boot_ids), (Phase::Image, image_ids)]
    };
    let mut planned = Vec::new();
    for (phase, ids) in &phases {
        for id in universe.install_order(ids) {
            let p = universe.package(id);
            let meta = metas
                .iter()
                .find(|m| m.repo_index == p.repo)
                .ok_or_else(|| PlanError::Unsupported {
                    location: "repositories".into(),
                    message: format!("package {} has no repository", p.nevra()),
                })?;
            planned.push(planned_package(p, meta, &specs[p.repo], *phase)?);
        }
    }
    Ok(Plan {
        format: super::PackageFormat::Rpm,
        arch,
        repositories: Vec::new(),
        rpm_repositories: specs,
        packages: planned,
        from_lock: false,
        inputs,
        warnings: Vec::new(),
    })
}

/// The plan entry of `p`: its download by the sha256 the signed metadata gives.
fn planned_package(
    p: &crate::rpm::package::Package,
    meta: &RpmMetadata,
    spec: &RepoSpec,
    phase: Phase,
) -> Result<PlannedPackage, PlanError> {
    if p.checksum.kind != "sha256" {
        return Err(PlanError::Incomplete {
            name: p.name.clone(),
            version: p.evr.to_string(),
            repo: spec.name(),
            field: "sha256 checksum",
        });
    }
    Ok(PlannedPackage {
        name: p.name.clone(),
        version: p.evr.to_string(),
        architecture: p.arch.clone(),
        repository: spec.name(),
        url: meta.file_url(p),
        filename: p.location.clone(),
        sha256: p.checksum.hex.clone(),
        size: p.size,
        phase,
    })
}

/// The plan a matching lock file pins: every package by sha256, no metadata read.
fn from_lock(
    lock: &LockFile,
    path: &Path,
    arch: String,
    specs: Vec<RepoSpec>,
    inputs: String,
    ctx: &RpmContext<'_>,
) -> Result<Plan, PlanError> {
    let packages = locked_packages(lock, path, |l| {
        specs
            .iter()
            .find(|s| s.name() == l.repository)
            .map(|spec| Ok(format!("{}/{}", repo::base_url(spec, ctx)?, l.filename)))
            .transpose()
    })?;
    Ok(Plan {
        format: super::PackageFormat::Rpm,
        arch,
        repositories: Vec::new(),
        rpm_repositories: specs,
        packages,
        from_lock: true,
        inputs,
        warnings: Vec::new(),
    })
}
