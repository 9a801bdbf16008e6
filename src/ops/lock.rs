//! `lock`: a description's packages resolved afresh and written as its lock file.

use super::{OpsError, Packages, Reporter, Source, cache_space, preflight};
use crate::apt::lock::LockFile;
use crate::plan::{self, Plan, PlanError};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What `lock` is asked to do.
#[derive(Debug, Clone)]
pub struct LockRequest {
    /// The description, resolved.
    pub source: Source,
    /// Where packages come from, and the lock file to write (an existing one is not read).
    pub packages: Packages,
}

/// What `lock` wrote.
#[derive(Debug, Clone)]
pub struct Locked {
    /// The plan the lock file pins.
    pub plan: Plan,
    /// The lock file.
    pub path: PathBuf,
}

/// Resolve the packages of `req` afresh and write the lock file; the plan's warnings are
/// reported once it is written.
pub fn lock(req: &LockRequest, reporter: &dyn Reporter) -> Result<Locked, OpsError> {
    let mut locked = lock_all(std::slice::from_ref(req), reporter)?;
    Ok(locked.remove(0))
}

/// Resolve the packages of each request (one per architecture, all naming the same lock file)
/// afresh, then write the lock file once with every architecture's pins (see
/// [`crate::apt::lock::write_merged`]: the pins of other architectures already in it stay); the
/// plans' warnings are reported once it is written.
pub fn lock_all(reqs: &[LockRequest], reporter: &dyn Reporter) -> Result<Vec<Locked>, OpsError> {
    let mut planned = Vec::new();
    for req in reqs {
        planned.push(plan_lock(req, reporter)?);
    }
    let mut by_path: BTreeMap<PathBuf, BTreeMap<String, LockFile>> = BTreeMap::new();
    for (req, (file, locked)) in reqs.iter().zip(&planned) {
        by_path
            .entry(locked.path.clone())
            .or_default()
            .insert(req.source.image.arch.clone(), file.clone());
    }
    for (path, fresh) in by_path {
        crate::apt::lock::write_merged(&path, fresh).map_err(PlanError::from)?;
    }
    let locked: Vec<Locked> = planned.into_iter().map(|(_, l)| l).collect();
    for l in &locked {
        for w in &l.plan.warnings {
            reporter.warn(w);
        }
    }
    Ok(locked)
}

/// The plan of `req`, resolved afresh, and the lock file body pinning it (not written).
fn plan_lock(req: &LockRequest, reporter: &dyn Reporter) -> Result<(LockFile, Locked), OpsError> {
    let image = &req.source.image;
    // Resolving needs no sandbox, only room for the indexes.
    let needs = preflight::Needs {
        sandbox: false,
        space: vec![cache_space(&req.packages)],
        executes: None,
    };
    preflight::check(&needs, reporter)?;
    let mut opts = req.packages.plan_options(image, reporter.progress());
    opts.ignore_lock = true;
    let (cache, fetcher) = plan::open_cache(&opts)?;
    let mut lock_file;
    let p = if image.build_type.derived_from.is_empty() {
        let p = plan::plan(image, &req.packages.overrides, &opts, &cache, &fetcher)?;
        lock_file = p.lock_file();
        p
    } else {
        // A derived image is planned on its bases' packages: the bases are resolved afresh
        // (registry ones pulled), pinned, and their dpkg status read from their layers.
        let fresh = Packages {
            no_lock: true,
            ..req.packages.clone()
        };
        let bases = super::bases::resolve(image, &fresh, &req.packages.bases, reporter)?;
        let (pins, db) = super::bases::lock_bases(image, &bases)?;
        let installed = match (db.dpkg_status, db.rpmdb) {
            (Some(text), _) => plan::installed_packages(&text).map_err(OpsError::BaseStatus)?,
            (None, Some((dbpath, bytes))) => base_rpms(&dbpath, &bytes)?,
            (None, None) => Vec::new(),
        };
        let p = plan::plan_on_base(
            image,
            &req.packages.overrides,
            &opts,
            &cache,
            &fetcher,
            &installed,
        )?;
        lock_file = p.lock_file();
        lock_file.bases = pins;
        p
    };
    Ok((
        lock_file,
        Locked {
            plan: p,
            path: opts.lock_path,
        },
    ))
}

/// The installed set of a base's rpm database (the sqlite file from its layers): written into a
/// scratch tree at its place and read with rpm there.
fn base_rpms(dbpath: &str, bytes: &[u8]) -> Result<Vec<plan::InstalledPackage>, OpsError> {
    let scratch = tempfile::tempdir().map_err(|source| OpsError::Scratch {
        path: std::env::temp_dir(),
        source,
    })?;
    let dir = scratch.path().join(dbpath.trim_start_matches('/'));
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("rpmdb.sqlite"), bytes)
    };
    write().map_err(|source| OpsError::Scratch {
        path: dir.clone(),
        source,
    })?;
    let pkgs = crate::rootfs::rpmdb::installed_at(scratch.path(), dbpath)
        .map_err(|e| OpsError::BaseRpmDb(Box::new(e)))?;
    Ok(crate::rootfs::base::installed_rpms(&pkgs))
}
