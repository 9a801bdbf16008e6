//! `lock`: a description's packages resolved afresh and written as its lock file.

use super::{OpsError, Packages, Reporter, Source, cache_space, preflight};
use crate::plan::{self, Plan, PlanError};
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
    lock_file.write(&opts.lock_path).map_err(PlanError::from)?;
    for w in &p.warnings {
        reporter.warn(w);
    }
    Ok(Locked {
        plan: p,
        path: opts.lock_path,
    })
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
