//! `imgbuild build` (KIWI's `system build`) and `imgbuild create` (`system create`).

use super::log::{LogSettings, StageLog};
use super::prepare::{DescriptionArgs, HookArgs, PackageArgs, SnapshotArgs};
use anyhow::{Context, bail};
use clap::Args;
use imgbuild::build::{CreateOptions, Created, ResultKind};
use imgbuild::image::Compression;
use imgbuild::ops::{self, Reporter};
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
    /// Compression of the archive files: none, gzip, zstd or xz.
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
            verbose: false,
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
    #[command(flatten)]
    pub snapshot: SnapshotArgs,
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
    /// After the build (or its reuse), run this container-structure-test config on the image
    /// (repeatable); a failing test fails the command, before `--load` and `--push`.
    #[arg(long = "test", value_name = "FILE")]
    pub test: Vec<PathBuf>,
    /// Build even when the target directory holds an intact result of the same inputs.
    #[arg(long, alias = "no-reuse")]
    pub force: bool,
    /// After the build (or its reuse), push the image to this registry reference
    /// `[docker://]HOST[:PORT]/REPO[:TAG]` (repeatable).
    #[arg(long = "push", value_name = "REF")]
    pub push: Vec<String>,
    /// Also push to `HOST[/PREFIX]/NAME:TAG` for each of the image's names (the description's
    /// container name with its tag and additional names, as `--load` names it).
    #[arg(long, value_name = "HOST[/PREFIX]")]
    pub push_default: Option<String>,
    /// Before building, look for the result of the same inputs in this registry cache
    /// `[docker://]HOST[:PORT]/REPO` (repeatable, tried in order); a verified one replaces the
    /// target instead of a build, anything else is a warning and the build goes on.
    #[arg(long = "cache-from", value_name = "REF")]
    pub cache_from: Vec<String>,
    /// After the build (or its reuse), store the result in this registry cache
    /// `[docker://]HOST[:PORT]/REPO`, tagged by its inputs key (repeatable).
    #[arg(long = "cache-to", value_name = "REF")]
    pub cache_to: Vec<String>,
}

/// The registry caches `--cache-from` and `--cache-to` name, parsed (a bad one fails here,
/// before the build), reached with the registry options `--push` uses.
fn registry_cache(args: &BuildArgs) -> anyhow::Result<Option<ops::RegistryCache>> {
    if args.cache_from.is_empty() && args.cache_to.is_empty() {
        return Ok(None);
    }
    let parse = |flag: &str, list: &[String]| {
        list.iter()
            .map(|r| {
                imgbuild::remote_cache::parse_reference(r).with_context(|| format!("{flag} {r}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()
    };
    Ok(Some(ops::RegistryCache {
        from: parse("--cache-from", &args.cache_from)?,
        to: parse("--cache-to", &args.cache_to)?,
        client: args.packages.registry.client_options()?,
    }))
}

/// The references `--push` and `--push-default` name, parsed (a bad one fails here, before
/// the build).
fn push_destinations(
    args: &BuildArgs,
    source: &ops::Source,
    output: &imgbuild::build::CreateOptions,
) -> anyhow::Result<Vec<imgbuild::registry::Reference>> {
    let mut refs = Vec::new();
    for r in &args.push {
        refs.push(imgbuild::registry::Reference::parse(r).with_context(|| format!("--push {r}"))?);
    }
    if let Some(prefix) = &args.push_default {
        let prefix = prefix.strip_prefix("docker://").unwrap_or(prefix);
        let prefix = prefix.trim_end_matches('/');
        let spec = imgbuild::build::image_spec(&source.image, output, 0);
        for name in
            imgbuild::image::config::repo_tags(&spec.name, &spec.tag, &spec.additional_names)
        {
            let full = format!("{prefix}/{name}");
            refs.push(
                imgbuild::registry::Reference::parse(&full)
                    .with_context(|| format!("--push-default {prefix}: {full}"))?,
            );
        }
    }
    Ok(refs)
}

/// Pushes the built image (its OCI layout, which `--push` makes the build write; else its
/// oci-archive, else its docker-archive) to each of `dests`, prints each reference with its digest, and records them in `result.json`.
fn push_result(
    dests: &[imgbuild::registry::Reference],
    registry: &super::registry_args::RegistryArgs,
    storage_root: Option<&Path>,
    c: &Created,
    target: &Path,
) -> anyhow::Result<()> {
    let pick = [
        ResultKind::OciLayout,
        ResultKind::OciArchive,
        ResultKind::DockerArchive,
    ]
    .iter()
    .find_map(|k| c.files.iter().find(|f| f.kind == *k));
    let Some(file) = pick else {
        bail!(
            "--push: the build wrote no container image (only a docker or oci type can be pushed)"
        );
    };
    let path = target.join(&file.name);
    let client_opts = registry.client_options()?;
    let log = super::transfer::TransferLog::new(false);
    let blob_root = super::push::store_root(storage_root);
    let opts = imgbuild::registry::PushOptions {
        store_root: Some(&blob_root),
        ..imgbuild::registry::PushOptions::new(&log)
    };
    let mut pushed = Vec::new();
    for dest in dests {
        let shown = format!(
            "{}/{}:{}",
            dest.host,
            dest.repository,
            dest.manifest_reference()
        );
        let client = imgbuild::registry::Client::connect(dest, &client_opts)
            .with_context(|| format!("connecting to the registry of {shown}"))?;
        let report = super::push::push_path(&client, dest, &path, &opts)
            .with_context(|| format!("pushing {} to {shown}", path.display()))?;
        println!("{shown} {}", report.manifest_digest);
        pushed.push(imgbuild::build::Pushed {
            reference: shown,
            digest: report.manifest_digest,
        });
    }
    imgbuild::build::record_pushed(target, &pushed)?;
    Ok(())
}

fn print_result(c: &Created, target: &Path, log: &StageLog) {
    for f in &c.files {
        println!("{}", target.join(&f.name).display());
    }
    if let Some(d) = &c.manifest_digest {
        let what = if c.platforms.is_empty() {
            "manifest"
        } else {
            "index"
        };
        log.info(&format!("{what} {d}"));
    }
    log.info(&format!("done in {:.1} s", log.total()));
}

/// Load what `create` wrote into the store: the OCI layout if one was written, else the
/// docker- or oci-archive, with every name of the image.
fn load_result(store: &imgbuild::storage::Store, c: &Created, target: &Path) -> anyhow::Result<()> {
    let Some(file) = image_file(c, target) else {
        bail!(
            "--load: the build wrote no container image (only a docker or oci type can be loaded)"
        );
    };
    super::store::load_into(store, &file, &c.tags)?;
    Ok(())
}

/// The image `create` wrote that a store can load: the OCI layout if one was written, else the
/// docker- or oci-archive.
fn image_file(c: &Created, target: &Path) -> Option<PathBuf> {
    [
        ResultKind::OciLayout,
        ResultKind::DockerArchive,
        ResultKind::OciArchive,
    ]
    .iter()
    .find_map(|k| c.files.iter().find(|f| f.kind == *k))
    .map(|f| target.join(&f.name))
}

/// `--test`: load the fresh image into a store of its own beside the result (removed
/// afterwards) and run the configs on it, the report on stdout. `Ok(false)` when a test failed.
fn test_result(
    configs: &[imgbuild::structure_test::Config],
    c: &Created,
    target: &Path,
    log: &StageLog,
) -> anyhow::Result<bool> {
    let Some(file) = image_file(c, target) else {
        bail!(
            "--test: the build wrote no container image (only a docker or oci type can be tested)"
        );
    };
    log.info(&format!(
        "testing the image with {} config file(s)",
        configs.len()
    ));
    let dir = tempfile::Builder::new()
        .prefix(".imgbuild-test-")
        .tempdir_in(target)
        .with_context(|| format!("creating a test store in {}", target.display()))?;
    let store = imgbuild::storage::Store::open(&imgbuild::storage::StoreOptions {
        root: dir.path().to_path_buf(),
        driver: None,
    })?;
    let id = imgbuild::storage::archive::load_archive(&store, &file, &[])?
        .record
        .id;
    let report =
        super::test::run_tests(&store, &id, configs, super::test::ReportFormat::Text, None)?;
    drop(store);
    dir.close()
        .with_context(|| format!("removing the test store in {}", target.display()))?;
    Ok(report.success())
}

/// The store `--load` loads into and the `--test` configs, opened and read before the build:
/// a store that cannot be used or a typo in a config costs no build.
fn store_and_tests(
    load: bool,
    test: &[PathBuf],
    storage_root: Option<&Path>,
    storage_driver: Option<&str>,
) -> anyhow::Result<(
    Option<imgbuild::storage::Store>,
    Vec<imgbuild::structure_test::Config>,
)> {
    let store = if load {
        Some(super::store::open_store(storage_root, storage_driver)?)
    } else {
        None
    };
    Ok((store, super::test::load_configs(test)?))
}

/// Run `imgbuild build`; with `--load` the result goes into the store the global options name.
pub fn exec(
    args: BuildArgs,
    settings: LogSettings,
    storage_root: Option<&Path>,
    storage_driver: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let mut sources = args.description.load_each()?;
    for source in &mut sources {
        if let Some(uri) = &args.set_container_derived_from {
            source.set_derived_from(uri)?;
        }
    }
    if sources.len() > 1 {
        return exec_platforms(args, sources, settings, storage_root, storage_driver);
    }
    let source = sources.remove(0);
    let mut output = args.output.options(Path::new(&source.image.name))?;
    // Every destination and the credentials are checked before the build.
    let push_to = push_destinations(&args, &source, &output)?;
    if !push_to.is_empty() {
        args.packages.registry.client_options()?;
        // What is pushed is the image `result.json` describes, with its compressed layers and
        // manifest digest: its OCI layout (a docker-archive holds neither).
        output.oci_dir = true;
    }
    let registry = args.packages.registry.clone();
    let cache = registry_cache(&args)?;
    let request = ops::BuildRequest {
        source,
        packages: ops::Packages {
            snapshots: args.snapshot.snapshots(),
            ..args.packages.packages(storage_root, storage_driver)?
        },
        output,
        hook_timeout: args.hooks.timeout(),
        root: args.root,
        force: args.force,
        not_inputs: Vec::new(),
        cache,
    };
    // Before anything is written or downloaded: a target that is not ours is never replaced.
    request.check()?;
    let (store, tests) = store_and_tests(args.load, &args.test, storage_root, storage_driver)?;
    let log = StageLog::new(settings);
    let outcome = ops::build(&request, &log)?;
    let target = &request.output.target_dir;
    print_result(outcome.created(), target, &log);
    if !tests.is_empty() && !test_result(&tests, outcome.created(), target, &log)? {
        eprintln!(
            "imgbuild: error: the image's structure tests failed; the result stays in {} but was \
             not loaded or pushed",
            target.display()
        );
        return Ok(ExitCode::from(1));
    }
    if let Some(store) = &store {
        load_result(store, outcome.created(), target)?;
    }
    if !push_to.is_empty() {
        push_result(&push_to, &registry, storage_root, outcome.created(), target)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `imgbuild build` for several architectures: each built into `<target>/<arch>`, concurrently,
/// then one image index over them; `--load` loads the host's architecture, `--test` tests
/// every architecture's image, `--push` pushes the index.
fn exec_platforms(
    args: BuildArgs,
    sources: Vec<ops::Source>,
    settings: LogSettings,
    storage_root: Option<&Path>,
    storage_driver: Option<&str>,
) -> anyhow::Result<ExitCode> {
    if args.root.is_some() {
        bail!("--root keeps one root tree: give one --target-arch with it");
    }
    let output = args.output.options(Path::new(&sources[0].image.name))?;
    let push_to = push_destinations(&args, &sources[0], &output)?;
    if !push_to.is_empty() {
        args.packages.registry.client_options()?;
    }
    let host = imgbuild::image::platform::Platform::host();
    let host_arch = sources.iter().position(|s| {
        host.matches(&imgbuild::image::platform::Platform::for_machine(
            &s.image.arch,
        ))
    });
    if args.load && host_arch.is_none() {
        bail!(
            "--load loads the image of the host's architecture ({host}), which is not among those \
             built; load another with `imgbuild load <target>/<arch>/…`"
        );
    }
    let registry = args.packages.registry.clone();
    // Each architecture is looked up in and stored to the registry caches under its own key.
    let cache = registry_cache(&args)?;
    let packages = ops::Packages {
        snapshots: args.snapshot.snapshots(),
        ..args.packages.packages(storage_root, storage_driver)?
    };
    let builds: Vec<ops::BuildRequest> = sources
        .into_iter()
        .map(|source| ops::BuildRequest {
            source,
            packages: packages.clone(),
            output: output.clone(),
            hook_timeout: args.hooks.timeout(),
            root: None,
            force: args.force,
            not_inputs: Vec::new(),
            cache: cache.clone(),
        })
        .collect();
    let request = ops::PlatformsRequest {
        target_dir: output.target_dir.clone(),
        replace_target_dir: output.replace_target_dir,
        builds,
        jobs: 0,
    };
    let (store, tests) = store_and_tests(args.load, &args.test, storage_root, storage_driver)?;
    let log = StageLog::new(settings);
    let logs: Vec<StageLog> = request
        .builds
        .iter()
        .map(|b| StageLog::for_arch(settings, &b.source.image.arch))
        .collect();
    let reporters: Vec<&(dyn Reporter + Sync)> =
        logs.iter().map(|l| l as &(dyn Reporter + Sync)).collect();
    let outcome = ops::build_platforms(&request, &reporters, &log)?;
    let target = &request.target_dir;
    for (arch, o) in &outcome.builds {
        for f in &o.created().files {
            println!("{}", target.join(arch).join(&f.name).display());
        }
    }
    print_result(&outcome.created, target, &log);
    if !tests.is_empty() {
        for (arch, o) in &outcome.builds {
            if !test_result(&tests, o.created(), &target.join(arch), &log)? {
                eprintln!(
                    "imgbuild: error: the {arch} image's structure tests failed; the result stays \
                     in {} but was not loaded or pushed",
                    target.display()
                );
                return Ok(ExitCode::from(1));
            }
        }
    }
    if let (Some(store), Some(i)) = (&store, host_arch) {
        let (arch, o) = &outcome.builds[i];
        load_result(store, o.created(), &target.join(arch))?;
    }
    if !push_to.is_empty() {
        push_result(&push_to, &registry, storage_root, &outcome.created, target)?;
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
pub fn exec_create(args: CreateArgs, settings: LogSettings) -> anyhow::Result<ExitCode> {
    let source = ops::Source::prepared(&args.root)?;
    let output = args.output.options(Path::new(&source.image.name))?;
    let request = ops::CreateRequest {
        root: args.root,
        source,
        output,
        hook_timeout: args.hooks.timeout(),
    };
    let log = StageLog::new(settings);
    let created = ops::create(&request, &log)?;
    print_result(&created, &request.output.target_dir, &log);
    Ok(ExitCode::SUCCESS)
}
