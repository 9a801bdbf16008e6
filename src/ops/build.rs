//! `build`: the reuse check, then `prepare` into a work root beside the target, then `create`.

use super::{
    OpsError, Packages, Reporter, Source, Stages, check_bases, epoch_warning, needs, preflight,
    prepare_root, target_parent,
};
use crate::build::base::{ImageBases, PinnedBase};
use crate::build::{CreateOptions, Created};
use crate::plan::PlanOptions;
use crate::remote_cache::{self, RegistryCache};
use crate::reuse;
use crate::workdir::{self, WorkDir};
use std::collections::BTreeMap;
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
    /// Absolute paths that are not inputs even inside the description directory, besides the
    /// target and a kept root (the whole target of a multi-architecture build).
    pub not_inputs: Vec<PathBuf>,
    /// Registry caches: results fetched from (when the target's own cannot be reused) and
    /// stored to (after the build or reuse); see [`crate::remote_cache`].
    pub cache: Option<RegistryCache>,
}

impl BuildRequest {
    /// The checks `build` makes before it writes or downloads anything: a target that is not
    /// imgbuild's is never replaced. A caller with more to check (a store to open) can make
    /// these first, so the errors come in the same order.
    pub fn check(&self) -> Result<(), OpsError> {
        crate::build::check_target(&self.output.target_dir, self.output.replace_target_dir)?;
        // Every blocker of the description at once, before the reuse check reads repositories.
        crate::plan::check_supported(&self.source.image, &self.packages.overrides)?;
        check_bases(&self.source.image)
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
    let image = &req.source.image;
    let target = &req.output.target_dir;
    preflight::check(
        &needs(target, "target directory", Some(&req.packages), image),
        reporter,
    )?;
    let parent = target_parent(target, reporter)?;
    let work;
    let root = if let Some(r) = &req.root {
        r.clone()
    } else {
        work =
            WorkDir::create(&parent, workdir::ROOT_PREFIX).map_err(|source| OpsError::WorkDir {
                dir: parent.clone(),
                source,
            })?;
        work.path().join("root")
    };
    let plan = req.packages.plan_options(image, reporter.progress());
    let mut output = CreateOptions {
        inputs: None,
        hook_timeout: req.hook_timeout,
        verbose: reporter.verbose(),
        ..req.output.clone()
    };
    let bases = super::bases::resolve(image, &req.packages, &req.packages.bases, reporter)?;
    match reuse_or_key(req, &plan, &output, &bases, reporter) {
        Reuse::Result(created) => {
            cache_to(req, &created, reporter);
            return Ok(Outcome::Reused(created));
        }
        Reuse::Rebuild(key) => {
            if let Some(created) = cache_from(req, key.as_deref(), reporter) {
                cache_to(req, &created, reporter);
                return Ok(Outcome::Reused(created));
            }
            output.inputs = key;
        }
    }

    let opts = req
        .packages
        .prepare_options(image, root.clone(), req.hook_timeout, reporter);
    let mut stages = Stages::new(reporter);
    let prepared = prepare_root(&req.source, &opts, &bases, req.root.is_some(), &mut stages)?;
    // Said while the last prepare stage still runs: its time includes them, as it always has.
    for w in &prepared.plan.warnings {
        reporter.warn(w);
    }
    if output.source_date_epoch.is_none()
        && let Some(w) = epoch_warning(&prepared.epoch)
    {
        reporter.warn(&w);
    }
    let created = crate::build::create(&root, image, &output, &mut |s| stages.start(s)).map_err(
        |source| OpsError::Create {
            target: target.clone(),
            source: Box::new(source),
        },
    )?;
    stages.finish();
    cache_to(req, &created, reporter);
    Ok(Outcome::Built(created))
}

/// `--cache-from`: the first registry cache that holds a verified result of `key`, put in
/// place of the target. Not for `--force` or a kept root (those must prepare); a cache that
/// cannot give the result is a warning, and the build goes on.
fn cache_from(req: &BuildRequest, key: Option<&str>, reporter: &dyn Reporter) -> Option<Created> {
    let (Some(cache), Some(key)) = (&req.cache, key) else {
        return None;
    };
    if req.force || req.root.is_some() {
        return None;
    }
    let target = &req.output.target_dir;
    for from in &cache.from {
        match remote_cache::fetch(target, key, from, &cache.client, &req.source.image) {
            Ok(created) => {
                reporter.info(&format!(
                    "up to date from the registry cache {} (inputs {key})",
                    remote_cache::shown(from)
                ));
                return Some(created);
            }
            Err(remote_cache::CacheError::Missing { .. }) => reporter.info(&format!(
                "the registry cache {} has no result of inputs {key}",
                remote_cache::shown(from)
            )),
            Err(e) => reporter.warn(&format!(
                "not using the registry cache {}: {e}",
                remote_cache::shown(from)
            )),
        }
    }
    None
}

/// `--cache-to`: stores the result in the target (built, reused or fetched) in each registry
/// cache, when it has an inputs key. A cache that cannot take it is a warning: the build
/// itself succeeded.
fn cache_to(req: &BuildRequest, created: &Created, reporter: &dyn Reporter) {
    let (Some(cache), Some(key)) = (&req.cache, &created.inputs) else {
        return;
    };
    for to in &cache.to {
        match remote_cache::store(&req.output.target_dir, key, to, &cache.client) {
            Ok(stored) => reporter.info(&format!(
                "stored in the registry cache as {} ({}; {} blobs uploaded, {} present)",
                stored.reference, stored.manifest_digest, stored.uploaded, stored.skipped
            )),
            Err(e) => reporter.warn(&format!(
                "not stored in the registry cache {}: {e}",
                remote_cache::shown(to)
            )),
        }
    }
}

/// Everything the build of `req` reads, for its inputs key: the target and a kept root are
/// not inputs even inside the description directory.
fn build_inputs<'a>(
    req: &'a BuildRequest,
    plan: &'a PlanOptions,
    output: &CreateOptions,
    bases: &'a BTreeMap<String, PinnedBase>,
) -> reuse::BuildInputs<'a> {
    reuse::BuildInputs {
        description: &req.source.description,
        image: &req.source.image,
        overrides: &req.packages.overrides,
        delete_packages: &req.packages.delete_packages,
        plan,
        output: reuse::OutputOptions::from(output),
        tool: reuse::tool_identity(),
        skip: std::iter::once(&output.target_dir)
            .chain(req.root.as_ref())
            .map(|p| reuse::absolute(p))
            .chain(req.not_inputs.iter().cloned())
            .collect(),
        bases,
    }
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
    bases: &ImageBases,
    reporter: &dyn Reporter,
) -> Reuse {
    let target = &output.target_dir;
    match reuse::inputs_key(&build_inputs(req, plan, output, &bases.pinned)) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apt::fetch::Progress;
    use crate::build::{ResultFile, ResultKind};
    use crate::description::Selection;
    use crate::image::Compression;
    use crate::ops::tests::Recorder;
    use std::fs;
    use std::path::Path;

    /// A description whose inputs key needs no repository: its lock file pins the packages.
    const XML: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<image schemaversion="8.5" name="ops-test">
    <description type="system">
        <author>t</author>
        <contact>t@localhost</contact>
        <specification>ops test</specification>
    </description>
    <preferences>
        <version>1.0.0</version>
        <packagemanager>apt</packagemanager>
        <type image="docker"/>
    </preferences>
    <repository type="apt-deb" distribution="trixie" components="main">
        <source path="http://127.0.0.1:9/debian"/>
    </repository>
    <packages type="bootstrap">
        <package name="base-files"/>
    </packages>
</image>
"#;

    /// A build of the description in `dir` (written here) into `dir/out`.
    fn request(dir: &Path, apt_dir: &Path) -> BuildRequest {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("config.xml"), XML).unwrap();
        fs::write(dir.join("imgbuild.lock"), "lock v1\n").unwrap();
        let selection = Selection {
            profiles: Vec::new(),
            build_type: None,
            target_arch: "x86_64".into(),
        };
        BuildRequest {
            source: Source::load(dir, &selection).unwrap(),
            packages: Packages {
                cache_dir: dir.join("cache"),
                offline: true,
                lock: None,
                no_lock: false,
                allow_older_release: false,
                apt_dir: apt_dir.to_path_buf(),
                overrides: crate::plan::Overrides::default(),
                delete_packages: Vec::new(),
                bases: super::super::BaseAccess::default(),
                snapshots: None,
            },
            output: CreateOptions {
                target_dir: dir.join("out"),
                layer_compression: Compression::default(),
                compress: Compression::None,
                oci_dir: false,
                tag: None,
                labels: Vec::new(),
                source_date_epoch: Some(1),
                threads: 0,
                inputs: None,
                hook_timeout: None,
                replace_target_dir: false,
                verbose: false,
            },
            hook_timeout: None,
            root: None,
            force: false,
            not_inputs: Vec::new(),
            cache: None,
        }
    }

    /// The entries of `dir` that are work directories.
    fn work_dirs(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".imgbuild-"))
            .collect()
    }

    #[test]
    fn a_foreign_target_fails_before_any_work() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("d");
        let req = request(&dir, t.path());
        fs::create_dir_all(dir.join("out")).unwrap();
        fs::write(dir.join("out/notes.txt"), "mine").unwrap();
        let r = Recorder::default();
        let e = build(&req, &r).unwrap_err();
        assert!(matches!(e, OpsError::Target(_)), "{e}");
        assert!(r.0.borrow().is_empty(), "{:?}", r.0.borrow());
        assert!(work_dirs(&dir).is_empty());
    }

    #[test]
    // The preflight asks for root before the reuse check, which may download Release files.
    #[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
    fn an_intact_result_of_the_same_inputs_is_reused() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("d");
        let req = request(&dir, t.path());
        let plan = req
            .packages
            .plan_options(&req.source.image, Progress::Quiet);
        let key = match reuse::inputs_key(&build_inputs(&req, &plan, &req.output, &BTreeMap::new()))
            .unwrap()
        {
            reuse::InputsKey::Known(k) => k,
            reuse::InputsKey::Unknown(why) => panic!("no key: {why}"),
        };
        // The result a build of these inputs left: one file, its .sha256 and result.json.
        let out = dir.join("out");
        fs::create_dir_all(&out).unwrap();
        let data = b"image bytes";
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data));
        fs::write(out.join("img.tar"), data).unwrap();
        fs::write(out.join("img.tar.sha256"), format!("{sha}  img.tar\n")).unwrap();
        let created = Created {
            name: "ops-test".into(),
            tags: vec!["ops-test:latest".into()],
            manifest_digest: None,
            config_digest: None,
            layers: Vec::new(),
            source_date_epoch: 1,
            files: vec![ResultFile {
                kind: ResultKind::DockerArchive,
                name: "img.tar".into(),
                sha256: Some(sha),
                size: Some(data.len() as u64),
                tree: None,
            }],
            inputs: Some(key.clone()),
            pushed: Vec::new(),
            platforms: Vec::new(),
        };
        fs::write(
            out.join("result.json"),
            serde_json::to_string(&created).unwrap(),
        )
        .unwrap();

        let r = Recorder::default();
        match build(&req, &r).unwrap() {
            Outcome::Reused(c) => assert_eq!(c.files[0].name, "img.tar"),
            Outcome::Built(_) => panic!("rebuilt an intact result"),
        }
        assert_eq!(*r.0.borrow(), [format!("info up to date (inputs {key})")]);
        // The work root made for the build that did not happen is gone.
        assert!(work_dirs(&dir).is_empty());
    }

    #[test]
    fn a_base_override_needs_a_derived_description() {
        let t = tempfile::tempdir().unwrap();
        let mut req = request(&t.path().join("d"), t.path());
        let e = req.source.set_derived_from("oci:/nonexistent").unwrap_err();
        assert_eq!(
            e.to_string(),
            "--set-container-derived-from: the description of ops-test has no derived_from"
        );
    }
}
