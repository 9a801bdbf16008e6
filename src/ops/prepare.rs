//! `prepare`: the root tree of a description, without an image.

use super::{
    OpsError, Packages, Reporter, Source, Stages, check_bases, epoch_warning, needs, preflight,
    prepare_root,
};
use crate::rootfs::prepare::{PrepareOptions, Prepared};
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
    // What the description asks for that cannot be built, before the host is looked at.
    crate::plan::check_supported(&req.source.image, &req.packages.overrides)?;
    check_bases(&req.source.image)?;
    preflight::check(
        &needs(
            &req.root,
            "root tree",
            Some(&req.packages),
            &req.source.image,
        ),
        reporter,
    )?;
    let opts = PrepareOptions {
        allow_existing_root: req.allow_existing_root,
        ..req.packages.prepare_options(
            &req.source.image,
            req.root.clone(),
            req.hook_timeout,
            reporter,
        )
    };
    let bases = super::bases::resolve(
        &req.source.image,
        &req.packages,
        &req.packages.bases,
        reporter,
    )?;
    let mut stages = Stages::new(reporter);
    let prepared = prepare_root(&req.source, &opts, &bases, true, &mut stages)?;
    stages.finish();
    for w in &prepared.plan.warnings {
        reporter.warn(w);
    }
    if let Some(w) = epoch_warning(&prepared.epoch) {
        reporter.warn(&w);
    }
    Ok(prepared)
}
