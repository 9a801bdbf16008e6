//! `prepare`: the root tree of a description, without an image.

use super::{OpsError, Packages, Reporter, Source, Stages, note_lock};
use crate::build::base::ImageBases;
use crate::rootfs::prepare::{self, PrepareOptions, Prepared};
use std::path::PathBuf;
use std::time::Duration;

/// What `prepare` is asked to do.
#[derive(Debug, Clone)]
pub struct PrepareRequest {
    /// The description, resolved.
    pub source: Source,
    /// Where the root tree is built.
    pub root: PathBuf,
    /// Build into an existing, non-empty root directory.
    pub allow_existing_root: bool,
    /// Where packages come from and how they are pinned.
    pub packages: Packages,
    /// The longest a KIWI hook may run; none: no limit.
    pub hook_timeout: Option<Duration>,
}

/// Build the root tree `req` describes; the plan's warnings are reported once it is done.
pub fn prepare(req: &PrepareRequest, reporter: &dyn Reporter) -> Result<Prepared, OpsError> {
    let Source { description, image } = &req.source;
    let opts = PrepareOptions {
        root: req.root.clone(),
        allow_existing_root: req.allow_existing_root,
        plan: req.packages.plan_options(image, reporter.progress()),
        overrides: req.packages.overrides.clone(),
        delete_packages: req.packages.delete_packages.clone(),
        hook_timeout: req.hook_timeout,
        verbose: reporter.verbose(),
    };
    note_lock(&opts.plan, reporter);
    let mut stages = Stages::new(reporter);
    let prepared = prepare::prepare(description, image, &opts, &ImageBases, &mut |s| {
        stages.start(s);
    })
    .map_err(|source| OpsError::Prepare {
        root: req.root.clone(),
        source: Box::new(source),
    })?;
    stages.finish();
    for w in &prepared.plan.warnings {
        reporter.warn(w);
    }
    Ok(prepared)
}
