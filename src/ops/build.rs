//! `build`: the reuse check, then `prepare` into a work root beside the target, then `create`.

use super::{OpsError, Packages, Reporter, Source, Stages, note_lock, target_parent};
use crate::build::base::ImageBases;
use crate::build::{CreateOptions, Created};
use crate::plan::PlanOptions;
use crate::reuse;
use crate::rootfs::prepare::{self, PrepareOptions};
use crate::workdir::{self, WorkDir};
use std::path::PathBuf;
use std::time::Duration;

/// What `build` is asked to do.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The description, resolved (and its base overridden, see [`Source::set_derived_from`]).
    pub source: Source,
    /// Where packages come from and how they are pinned.
    pub packages: Packages,
    /// The result files and where they go; `build` sets the inputs key, the hook timeout and
    /// the verbosity itself (from the request and the reporter).
    pub output: CreateOptions,
    /// The longest a KIWI hook may run; none: no limit.
    pub hook_timeout: Option<Duration>,
    /// Keep the prepared root here instead of in a work directory beside the target (the
    /// result is then never reused).
    pub root: Option<PathBuf>,
    /// Build even when the target holds an intact result of the same inputs.
    pub force: bool,
}

impl BuildRequest {
    /// The checks `build` makes before it writes or downloads anything: a target that is not
    /// imgbuild's is never replaced. A caller with more to check (a store to open) can make
    /// these first, so the errors come in the same order.
    pub fn check(&self) -> Result<(), OpsError> {
        crate::build::check_target(&self.output.target_dir, self.output.replace_target_dir)?;
        Ok(())
    }
}

/// What `build` did.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The image was built; its result replaced the target.
    Built(Created),
    /// The target held an intact result of the same inputs, which stays.
    Reused(Created),
}

impl Outcome {
    /// The result in the target directory, built or reused.
    pub fn created(&self) -> &Created {
        match self {
            Outcome::Built(c) | Outcome::Reused(c) => c,
        }
    }
}

/// Build the image `req` describes: reuse the result in the target when its inputs are the
/// same, else prepare a root (removed afterwards unless `req.root` keeps it) and create the
/// image files from it.
pub fn build(req: &BuildRequest, reporter: &dyn Reporter) -> Result<Outcome, OpsError> {
    req.check()?;
    let Source { description, image } = &req.source;
    let target = &req.output.target_dir;
    let parent = target_parent(target, reporter)?;
    let work;
    let root = match &req.root {
        Some(r) => r.clone(),
        None => {
            work = WorkDir::create(&parent, workdir::ROOT_PREFIX).map_err(|source| {
                OpsError::WorkDir {
                    dir: parent.clone(),
                    source,
                }
            })?;
            work.path().join("root")
        }
    };
    let plan = req.packages.plan_options(image, reporter.progress());
    let mut output = CreateOptions {
        inputs: None,
        hook_timeout: req.hook_timeout,
        verbose: reporter.verbose(),
        ..req.output.clone()
    };
    match reuse_or_key(req, &plan, &output, reporter) {
        Reuse::Result(created) => return Ok(Outcome::Reused(created)),
        Reuse::Rebuild(key) => output.inputs = key,
    }

    let opts = PrepareOptions {
        root: root.clone(),
        allow_existing_root: false,
        plan,
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
        root: root.clone(),
        source: Box::new(source),
    })?;
    // Said while the last prepare stage still runs: its time includes them, as it always has.
    for w in &prepared.plan.warnings {
        reporter.warn(w);
    }
    let created = crate::build::create(&root, image, &output, &mut |s| stages.start(s)).map_err(
        |source| OpsError::Create {
            target: target.clone(),
            source: Box::new(source),
        },
    )?;
    stages.finish();
    Ok(Outcome::Built(created))
}

/// The reuse check's answer.
enum Reuse {
    /// The target's result is intact and of the same inputs.
    Result(Created),
    /// Build, recording this inputs key (none when the build has none).
    Rebuild(Option<String>),
}

/// Compares the inputs key of `req` with the result in its target, with one note for every
/// answer but a plain first build. Checked once the target's parent is known to be writable (the
/// work directory exists), so a build that cannot write its result fails before touching the
/// cache. The key is recorded even when this build may not reuse (`force`, a kept root), so the
/// next plain build can; a key that cannot be computed only means no reuse.
fn reuse_or_key(
    req: &BuildRequest,
    plan: &PlanOptions,
    output: &CreateOptions,
    reporter: &dyn Reporter,
) -> Reuse {
    let target = &output.target_dir;
    let inputs = reuse::BuildInputs {
        description: &req.source.description,
        image: &req.source.image,
        overrides: &req.packages.overrides,
        delete_packages: &req.packages.delete_packages,
        plan,
        output: reuse::OutputOptions::from(output),
        tool: reuse::tool_identity(),
        skip: std::iter::once(target)
            .chain(req.root.as_ref())
            .map(|p| reuse::absolute(p))
            .collect(),
    };
    match reuse::inputs_key(&inputs) {
        Ok(reuse::InputsKey::Known(key)) => {
            if req.force || req.root.is_some() {
                return Reuse::Rebuild(Some(key));
            }
            match reuse::check(target, &key) {
                reuse::Verdict::Reuse(created) => {
                    reporter.info(&format!("up to date (inputs {key})"));
                    Reuse::Result(created)
                }
                reuse::Verdict::Rebuild(reason) => {
                    if target.join("result.json").exists() {
                        reporter.info(&format!("rebuilding: {reason}"));
                    }
                    Reuse::Rebuild(Some(key))
                }
            }
        }
        Ok(reuse::InputsKey::Unknown(reason)) => {
            reporter.info(&format!("the result cannot be reused: {reason}"));
            Reuse::Rebuild(None)
        }
        Err(e) => {
            reporter.info(&format!("not checking for a reusable result: {e}"));
            Reuse::Rebuild(None)
        }
    }
}
