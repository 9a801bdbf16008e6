//! `imgbuild build` (KIWI's `system build`) and `imgbuild create` (`system create`).

use super::prepare::{DescriptionArgs, HookArgs, PackageArgs, StageLog};
use anyhow::{Context, bail};
use clap::Args;
use imgbuild::build::base::ImageBases;
use imgbuild::build::{self, CreateOptions};
use imgbuild::description;
use imgbuild::image::Compression;
use imgbuild::reuse;
use imgbuild::rootfs::prepare::{self, PrepareOptions};
use imgbuild::workdir::{self, WorkDir};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// How the image files are written.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Directory for the result files [default: ./<image name>]; replaced as a whole, so it
    /// must be new, empty or hold an earlier imgbuild result.
    #[arg(long, value_name = "DIR")]
    pub target_dir: Option<PathBuf>,
    /// Replace the target directory even when it holds files imgbuild did not write.
    #[arg(long)]
    pub replace_target_dir: bool,
    /// Compression of the archive files: none, gzip, zstd or xz [default: none].
    #[arg(long, value_name = "ALGO", default_value = "none")]
    pub compress: String,
    /// Compression of the layers: gzip (widest compatibility) or zstd.
    #[arg(long, value_name = "ALGO", default_value = "gzip")]
    pub layer_compression: String,
    /// Also write a plain OCI image layout directory `<name>.<arch>-<version>.oci`.
    #[arg(long)]
    pub oci_dir: bool,
    /// Override the container tag.
    #[arg(long, value_name = "TAG")]
    pub set_container_tag: Option<String>,
    /// Add or override a container label (repeatable).
    #[arg(long = "add-container-label", value_name = "NAME=VALUE")]
    pub labels: Vec<String>,
}

impl OutputArgs {
    fn options(&self, default_target: &Path) -> anyhow::Result<CreateOptions> {
        let parse = |what: &str, v: &str| {
            Compression::parse(v).with_context(|| {
                format!("--{what}: unknown compression {v:?} (none, gzip, zstd, xz)")
            })
        };
        let layer_compression = parse("layer-compression", &self.layer_compression)?;
        if matches!(layer_compression, Compression::Xz(_) | Compression::None) {
            bail!("--layer-compression: layers are gzip or zstd");
        }
        // Names are checked before any work starts, by the rules the description's own obey.
        if let Some(t) = &self.set_container_tag {
            imgbuild::reference::check_tag(t).map_err(|e| {
                anyhow::anyhow!("--set-container-tag {}: {}", e.shown_value(), e.reason)
            })?;
        }
        let mut labels = Vec::new();
        for l in &self.labels {
            let Some((k, v)) = l.split_once('=') else {
                bail!("--add-container-label {l:?}: expected NAME=VALUE");
            };
            imgbuild::reference::check_label_name(k)
                .map_err(|e| anyhow::anyhow!("--add-container-label: {e}"))?;
            labels.push((k.to_string(), v.to_string()));
        }
        let source_date_epoch =
            match std::env::var("SOURCE_DATE_EPOCH") {
                Ok(v) => Some(v.trim().parse().with_context(|| {
                    format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds")
                })?),
                Err(_) => None,
            };
        Ok(CreateOptions {
            target_dir: self
                .target_dir
                .clone()
                .unwrap_or_else(|| default_target.to_path_buf()),
            layer_compression,
            compress: parse("compress", &self.compress)?,
            oci_dir: self.oci_dir,
            tag: self.set_container_tag.clone(),
            labels,
            source_date_epoch,
            threads: 0,
            inputs: None,
            hook_timeout: None,
            replace_target_dir: self.replace_target_dir,
        })
    }
}

/// Build an image from a description: prepare a root, then create the image files.
#[derive(Args, Debug)]
pub struct BuildArgs {
    #[command(flatten)]
    pub description: DescriptionArgs,
    #[command(flatten)]
    pub packages: PackageArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub hooks: HookArgs,
    /// Keep the prepared root tree in this directory instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Derive from this base image instead of the description's `derived_from` (only for a
    /// description that has one); a relative path is taken from the working directory.
    #[arg(long, value_name = "URI")]
    pub set_container_derived_from: Option<String>,
    /// Also load the built image into the local image store (see `imgbuild images`).
    #[arg(long)]
    pub load: bool,
    /// Build even when the target directory holds an intact result of the same inputs.
    #[arg(long, alias = "no-reuse")]
    pub force: bool,
}

fn print_result(c: &build::Created, target: &Path, log: &StageLog) {
    for f in &c.files {
        println!("{}", target.join(&f.name).display());
    }
    if let Some(d) = &c.manifest_digest {
        log.info(&format!("manifest {d}"));
    }
    log.info(&format!("done in {:.1} s", log.total()));
}

/// Load what `create` wrote into the store: the OCI layout if one was written, else the
/// docker- or oci-archive, with every name of the image.
fn load_result(
    store: &imgbuild::storage::Store,
    c: &build::Created,
    target: &Path,
) -> anyhow::Result<()> {
    let pick = ["oci-layout", "docker-archive", "oci-archive"]
        .iter()
        .find_map(|k| c.files.iter().find(|f| f.kind == *k));
    let Some(file) = pick else {
        bail!(
            "--load: the build wrote no container image (only a docker or oci type can be loaded)"
        );
    };
    super::store::load_into(store, &target.join(&file.name), &c.tags)?;
    Ok(())
}

/// The directory the target lives in (created when missing), with the work directories of
/// builds that were killed removed, one log line each.
fn target_parent(target: &Path, log: &StageLog) -> anyhow::Result<PathBuf> {
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    for stale in workdir::remove_stale(&parent) {
        let whose = if stale.had_lock {
            "a build that was stopped"
        } else {
            "an older imgbuild"
        };
        match stale.error {
            None => log.info(&format!(
                "removed {}, left by {whose}",
                stale.path.display()
            )),
            Some(e) => log.info(&format!(
                "cannot remove {}, left by {whose}: {e}",
                stale.path.display()
            )),
        }
    }
    Ok(parent)
}

/// Run `imgbuild build`; with `--load` the result goes into the store the global options name.
pub fn run(
    args: BuildArgs,
    storage_root: Option<&Path>,
    storage_driver: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let (desc, mut image) = args.description.resolve()?;
    if let Some(uri) = &args.set_container_derived_from {
        if image.build_type.derived_from.is_empty() {
            bail!(
                "--set-container-derived-from: the description of {} has no derived_from",
                image.name
            );
        }
        let cwd = std::env::current_dir().context("reading the working directory")?;
        let resolved = prepare::resolve_base_uri(uri, &cwd);
        // Checked before any work: the transport, that the base exists, and a layout's tag.
        let source = imgbuild::image::base::BaseSource::parse(&resolved)
            .with_context(|| format!("--set-container-derived-from {uri:?}"))?;
        if let imgbuild::image::base::BaseSource::OciLayout(_, Some(tag)) = &source {
            imgbuild::reference::check_tag(tag).map_err(|e| {
                anyhow::anyhow!(
                    "--set-container-derived-from {}: {}",
                    e.shown_value(),
                    e.reason
                )
            })?;
        }
        image.build_type.derived_from = vec![resolved];
    }
    let mut create = args.output.options(Path::new(&image.name))?;
    create.hook_timeout = args.hooks.timeout();
    // Before anything is written or downloaded: a target that is not ours is never replaced.
    build::check_target(&create.target_dir, create.replace_target_dir)?;
    // Open the store next, so a store that cannot be used fails before a long build.
    let store = if args.load {
        Some(super::store::open_store(storage_root, storage_driver)?)
    } else {
        None
    };
    let mut log = StageLog::new();
    let parent = target_parent(&create.target_dir, &log)?;
    let tmp;
    let root = match &args.root {
        Some(r) => r.clone(),
        None => {
            tmp = WorkDir::create(&parent, workdir::ROOT_PREFIX)
                .with_context(|| format!("creating a work directory in {}", parent.display()))?;
            tmp.path().join("root")
        }
    };
    let overrides = args.packages.overrides();
    let plan_opts = args.packages.plan_options(&image);
    let inputs = reuse::BuildInputs {
        description: &desc,
        image: &image,
        overrides: &overrides,
        delete_packages: &args.packages.delete_packages,
        plan: &plan_opts,
        output: reuse::OutputOptions::from(&create),
        tool: reuse::tool_identity(),
        skip: std::iter::once(&create.target_dir)
            .chain(args.root.as_ref())
            .map(|p| reuse::absolute(p))
            .collect(),
    };
    // Checked once the target's parent is known to be writable (the work directory exists), so
    // a build that cannot write its result fails before touching the cache. The key is recorded
    // even when this build may not reuse (`--force`, `--root`), so the next plain build can.
    match reuse::inputs_key(&inputs) {
        Ok(reuse::InputsKey::Known(key)) => {
            if args.force || args.root.is_some() {
                create.inputs = Some(key);
            } else {
                match reuse::check(&create.target_dir, &key) {
                    reuse::Verdict::Reuse(created) => {
                        log.info(&format!("up to date (inputs {key})"));
                        print_result(&created, &create.target_dir, &log);
                        if let Some(store) = &store {
                            load_result(store, &created, &create.target_dir)?;
                        }
                        return Ok(ExitCode::SUCCESS);
                    }
                    reuse::Verdict::Rebuild(reason) => {
                        if create.target_dir.join("result.json").exists() {
                            log.info(&format!("rebuilding: {reason}"));
                        }
                        create.inputs = Some(key);
                    }
                }
            }
        }
        Ok(reuse::InputsKey::Unknown(reason)) => {
            log.info(&format!("the result cannot be reused: {reason}"));
        }
        Err(e) => log.info(&format!("not checking for a reusable result: {e}")),
    }
    let opts = PrepareOptions {
        root: root.clone(),
        allow_existing_root: false,
        plan: plan_opts,
        overrides,
        delete_packages: args.packages.delete_packages.clone(),
        hook_timeout: args.hooks.timeout(),
    };
    if opts.plan.lock_path.exists() && !opts.plan.ignore_lock {
        log.info(&format!(
            "using lock file {}",
            opts.plan.lock_path.display()
        ));
    }
    let prepared = prepare::prepare(&desc, &image, &opts, &ImageBases, &mut |s| log.stage(s))
        .with_context(|| format!("preparing {}", root.display()))?;
    for w in &prepared.plan.warnings {
        log.warn(w);
    }
    let created = build::create(&root, &image, &create, &mut |s| log.stage(s))
        .with_context(|| format!("writing {}", create.target_dir.display()))?;
    log.finish();
    print_result(&created, &create.target_dir, &log);
    if let Some(store) = &store {
        load_result(store, &created, &create.target_dir)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Write the image files of a root made by `imgbuild prepare`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The prepared root tree.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub hooks: HookArgs,
}

/// Run `imgbuild create`: the description and selection kept in `<root>/image` are resolved again.
pub fn run_create(args: CreateArgs) -> anyhow::Result<ExitCode> {
    let kept = imgbuild::rootfs::prepared::PreparedRoot::new(&args.root);
    let selection = kept.selection()?.selection();
    let desc = description::load(&kept.description_path())?;
    let image = desc.resolve(&selection)?;
    let mut create = args.output.options(Path::new(&image.name))?;
    create.hook_timeout = args.hooks.timeout();
    build::check_target(&create.target_dir, create.replace_target_dir)?;
    let mut log = StageLog::new();
    target_parent(&create.target_dir, &log)?;
    let created = build::create(&args.root, &image, &create, &mut |s| log.stage(s))
        .with_context(|| format!("writing {}", create.target_dir.display()))?;
    log.finish();
    print_result(&created, &create.target_dir, &log);
    Ok(ExitCode::SUCCESS)
}
