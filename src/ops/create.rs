//! `create`: the image files of a root `prepare` made.

use super::{OpsError, Reporter, Source, Stages, needs, preflight, target_parent};
use crate::build::{CreateOptions, Created};
use std::path::PathBuf;
use std::time::Duration;

/// What `create` is asked to do.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// The prepared root tree.
    pub root: PathBuf,
    /// Its description, as `prepare` kept it ([`Source::prepared`]).
    pub source: Source,
    /// The result files and where they go; `create` sets the hook timeout and the verbosity
    /// itself (from the request and the reporter).
    pub output: CreateOptions,
    /// The longest `images.sh` may run; none: no limit.
    pub hook_timeout: Option<Duration>,
}

/// Finish the prepared root and write its image files into the target directory, which a
/// result not imgbuild's never replaces.
pub fn create(req: &CreateRequest, reporter: &dyn Reporter) -> Result<Created, OpsError> {
    let output = CreateOptions {
        hook_timeout: req.hook_timeout,
        verbose: reporter.verbose(),
        ..req.output.clone()
    };
    crate::build::check_target(&output.target_dir, output.replace_target_dir)?;
    preflight::check(
        &needs(
            &output.target_dir,
            "target directory",
            None,
            &req.source.image,
        ),
        reporter,
    )?;
    target_parent(&output.target_dir, reporter)?;
    let mut stages = Stages::new(reporter);
    let created = crate::build::create(&req.root, &req.source.image, &output, &mut |s| {
        stages.start(s);
    })
    .map_err(|source| OpsError::Create {
        target: output.target_dir.clone(),
        source: Box::new(source),
    })?;
    stages.finish();
    Ok(created)
}
