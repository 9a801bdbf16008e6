//! `imgbuild prepare` (KIWI's `system prepare`) and `imgbuild lock`, with the description and
//! package options they share with `build`.

use super::log::{LogSettings, StageLog};
use anyhow::Context;
use clap::Args;
use imgbuild::description::Selection;
use imgbuild::ops::{self, Reporter};
use imgbuild::plan::Overrides;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Which description, and how to resolve it.
#[derive(Args, Debug, Clone)]
pub struct DescriptionArgs {
    /// Description file, or a directory holding config.xml or one *.kiwi / *.yaml file.
    pub path: PathBuf,
    /// Profile to activate (repeatable); default: the profiles marked import="true".
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
    /// Build type (`<type image=…>`); default: primary="true", else the first.
    #[arg(long = "type", value_name = "TYPE")]
    pub build_type: Option<String>,
    /// Target architecture (KIWI names: `x86_64`, aarch64, armv7l, …); default: the host's.
    /// `build` and `lock` take several, comma-separated, for a multi-architecture image.
    #[arg(long, value_name = "ARCH[,ARCH...]", conflicts_with = "platform")]
    pub target_arch: Option<String>,
    /// The target architectures as OCI platforms (`linux/amd64,linux/arm64`), instead of
    /// --target-arch.
    #[arg(long, value_name = "OS/ARCH[/VARIANT][,...]")]
    pub platform: Option<String>,
}

impl DescriptionArgs {
    /// The architectures asked for, in the order given, as KIWI names them; the host's by default.
    pub fn archs(&self) -> anyhow::Result<Vec<String>> {
        let mut archs: Vec<String> = Vec::new();
        let mut add = |option: &str, given: &str, arch: String| -> anyhow::Result<()> {
            if archs.contains(&arch) {
                anyhow::bail!("{option} {given}: {arch} is named twice");
            }
            archs.push(arch);
            Ok(())
        };
        if let Some(list) = &self.platform {
            for item in list.split(',') {
                let p = imgbuild::image::platform::Platform::parse(item.trim())
                    .with_context(|| format!("--platform {list}"))?;
                let Some(arch) = p.kiwi_arch() else {
                    anyhow::bail!(
                        "--platform {list}: {p} is not a platform imgbuild builds (linux/amd64, \
                         linux/arm64, linux/arm/v7, linux/arm/v6, linux/386, linux/ppc64le, \
                         linux/s390x, linux/riscv64)"
                    );
                };
                add("--platform", list, arch.to_string())?;
            }
        } else if let Some(list) = &self.target_arch {
            for item in list.split(',') {
                let arch = item.trim();
                if arch.is_empty() || !arch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    anyhow::bail!("--target-arch {list}: {arch:?} is not an architecture name");
                }
                add("--target-arch", list, arch.to_string())?;
            }
        } else {
            archs.push(Selection::host_arch());
        }
        Ok(archs)
    }

    /// Load and resolve the description for its one architecture.
    pub fn load(&self) -> anyhow::Result<ops::Source> {
        let mut all = self.load_each()?;
        if all.len() > 1 {
            anyhow::bail!(
                "--target-arch: several architectures are built by `imgbuild build` and locked by \
                 `imgbuild lock`; this command takes one"
            );
        }
        Ok(all.remove(0))
    }

    /// Load and resolve the description once per architecture asked for.
    pub fn load_each(&self) -> anyhow::Result<Vec<ops::Source>> {
        self.archs()?
            .into_iter()
            .map(|target_arch| {
                let selection = Selection {
                    profiles: self.profiles.clone(),
                    build_type: self.build_type.clone(),
                    target_arch,
                };
                Ok(ops::Source::load(&self.path, &selection)?)
            })
            .collect()
    }
}

/// Where packages come from and how they are pinned.
#[derive(Args, Debug, Clone)]
pub struct PackageArgs {
    /// Download cache (content-addressed, shared between builds).
    #[arg(long, value_name = "DIR", default_value = imgbuild::apt::cache::DEFAULT_CACHE_DIR, env = "IMGBUILD_CACHE_DIR")]
    pub cache_dir: PathBuf,
    /// Use only the cache and the lock file; never touch the network.
    #[arg(long)]
    pub offline: bool,
    /// Lock file pinning every package [default: imgbuild.lock beside the description].
    #[arg(long, value_name = "FILE")]
    pub lock: Option<PathBuf>,
    /// Ignore an existing lock file and resolve afresh.
    #[arg(long)]
    pub no_lock: bool,
    /// Accept a signed Release file older than the newest this cache has seen for its
    /// repository (a rolled-back mirror), with a warning; refused by default as a replay.
    #[arg(
        long,
        env = imgbuild::apt::release::ENV_ALLOW_OLDER_RELEASE,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub allow_older_release: bool,
    /// Replace the first repository (KIWI's 11-field tuple: source,type,alias,priority,…).
    #[arg(long, value_name = "TUPLE")]
    pub set_repo: Option<String>,
    /// Trust this OpenPGP key file for every repository's signed metadata, besides the keys
    /// the description names (KIWI's option; repeatable).
    #[arg(long = "signing-key", value_name = "FILE")]
    pub signing_keys: Vec<PathBuf>,
    /// Use none of the description's repositories, only those given with --add-repo (for
    /// descriptions written for the Open Build Service, whose `obsrepositories:/` it fills in).
    #[arg(long)]
    pub ignore_repos: bool,
    /// Add a repository (KIWI's tuple; repeatable).
    #[arg(long = "add-repo", value_name = "TUPLE")]
    pub add_repos: Vec<String>,
    /// Add an image package (repeatable).
    #[arg(long = "add-package", value_name = "NAME")]
    pub add_packages: Vec<String>,
    /// Add a bootstrap package (repeatable).
    #[arg(long = "add-bootstrap-package", value_name = "NAME")]
    pub add_bootstrap_packages: Vec<String>,
    /// Remove a package at the end, forced, as `<packages type="delete">` (repeatable).
    #[arg(long = "delete-package", value_name = "NAME")]
    pub delete_packages: Vec<String>,
    /// How to reach the registry of a base (`derived_from="docker://…"`).
    #[command(flatten)]
    pub registry: super::registry_args::RegistryArgs,
}

impl PackageArgs {
    /// The package options of the operations; registry bases are cached in the image store
    /// the global options name.
    pub fn packages(
        self,
        storage_root: Option<&Path>,
        storage_driver: Option<&str>,
    ) -> anyhow::Result<ops::Packages> {
        let bases = ops::BaseAccess {
            store: super::store::store_options(storage_root, storage_driver)?,
            client: self.registry.client_options()?,
        };
        Ok(ops::Packages {
            cache_dir: self.cache_dir,
            offline: self.offline,
            lock: self.lock,
            no_lock: self.no_lock,
            allow_older_release: self.allow_older_release,
            apt_dir: PathBuf::from(imgbuild::apt::hostsources::DEFAULT_APT_DIR),
            overrides: Overrides {
                set_repo: self.set_repo,
                ignore_repos: self.ignore_repos,
                signing_keys: self.signing_keys,
                add_repos: self.add_repos,
                add_packages: self.add_packages,
                add_bootstrap_packages: self.add_bootstrap_packages,
            },
            delete_packages: self.delete_packages,
            bases,
            snapshots: None,
        })
    }
}

/// The package-stage snapshot cache of `build` and `prepare`.
#[derive(Args, Debug, Clone)]
pub struct SnapshotArgs {
    /// Install the packages even when the snapshot cache holds the same package stage, and
    /// keep no snapshot of this one.
    #[arg(long)]
    pub no_snapshot: bool,
    /// The most the package-stage snapshots in the cache directory may take; least recently
    /// used ones are removed after a build adds one (bytes, or with k, m, g, t).
    #[arg(long, value_name = "SIZE", default_value = "4g", env = "IMGBUILD_SNAPSHOT_CACHE_SIZE", value_parser = super::run::parse_memory)]
    pub snapshot_cache_size: u64,
}

impl SnapshotArgs {
    /// The cap for `ops::Packages::snapshots`: none when snapshots are off.
    pub fn snapshots(&self) -> Option<u64> {
        (!self.no_snapshot).then_some(self.snapshot_cache_size)
    }
}

/// How long KIWI hooks may run.
#[derive(Args, Debug, Clone)]
pub struct HookArgs {
    /// Stop a KIWI hook (`post_bootstrap.sh`, config.sh, images.sh) that runs longer than this
    /// many seconds, failing the build; 0: no limit.
    #[arg(long, value_name = "SECONDS", default_value_t = imgbuild::rootfs::prepare::DEFAULT_HOOK_TIMEOUT.as_secs())]
    pub hook_timeout: u64,
}

impl HookArgs {
    /// The timeout, none for no limit.
    pub fn timeout(&self) -> Option<std::time::Duration> {
        (self.hook_timeout > 0).then(|| std::time::Duration::from_secs(self.hook_timeout))
    }
}

/// Build the root tree of a description (no image is written).
#[derive(Args, Debug)]
pub struct PrepareArgs {
    #[command(flatten)]
    pub description: DescriptionArgs,
    /// Where to build the root tree.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Build into an existing, non-empty root directory.
    #[arg(long)]
    pub allow_existing_root: bool,
    #[command(flatten)]
    pub packages: PackageArgs,
    #[command(flatten)]
    pub hooks: HookArgs,
    #[command(flatten)]
    pub snapshot: SnapshotArgs,
}

/// Run `imgbuild prepare`.
pub fn exec(
    args: PrepareArgs,
    settings: LogSettings,
    storage_root: Option<&Path>,
    storage_driver: Option<&str>,
) -> anyhow::Result<ExitCode> {
    exec_with(args, None, settings, storage_root, storage_driver)
}

/// Run `prepare`, deriving from `derived_from` instead of the description's base when given
/// (KIWI's `--set-container-derived-from` of `system prepare`).
pub fn exec_with(
    args: PrepareArgs,
    derived_from: Option<&str>,
    settings: LogSettings,
    storage_root: Option<&Path>,
    storage_driver: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let mut source = args.description.load()?;
    if let Some(uri) = derived_from {
        source.set_derived_from(uri)?;
    }
    let request = ops::PrepareRequest {
        source,
        root: args.root,
        allow_existing_root: args.allow_existing_root,
        packages: ops::Packages {
            snapshots: args.snapshot.snapshots(),
            ..args.packages.packages(storage_root, storage_driver)?
        },
        hook_timeout: args.hooks.timeout(),
    };
    let log = StageLog::new(settings);
    let prepared = ops::prepare(&request, &log)?;
    log.info(&format!(
        "prepared {} ({} packages) in {:.1} s",
        request.root.display(),
        prepared.plan.packages.len(),
        log.total()
    ));
    Ok(ExitCode::SUCCESS)
}

/// Resolve a description's packages and write the lock file.
#[derive(Args, Debug)]
pub struct LockArgs {
    #[command(flatten)]
    pub description: DescriptionArgs,
    #[command(flatten)]
    pub packages: PackageArgs,
}

/// Run `imgbuild lock`: always resolves afresh, then writes the lock file.
pub fn exec_lock(
    args: LockArgs,
    settings: LogSettings,
    storage_root: Option<&Path>,
    storage_driver: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let packages = args.packages.packages(storage_root, storage_driver)?;
    let requests: Vec<ops::LockRequest> = args
        .description
        .load_each()?
        .into_iter()
        .map(|source| ops::LockRequest {
            source,
            packages: packages.clone(),
        })
        .collect();
    let log = StageLog::new(settings);
    for (req, locked) in requests.iter().zip(ops::lock_all(&requests, &log)?) {
        log.info(&format!(
            "locked {} packages for {} in {}",
            locked.plan.packages.len(),
            req.source.image.arch,
            locked.path.display()
        ));
    }
    Ok(ExitCode::SUCCESS)
}
