//! `imgbuild prepare` (KIWI's `system prepare`) and `imgbuild lock`, with the description and
//! package options they share with `build`.

use anyhow::Context;
use clap::Args;
use imgbuild::apt::fetch::Progress;
use imgbuild::build::base::ImageBases;
use imgbuild::description::{self, Description, ResolvedImage, Selection};
use imgbuild::plan::{self, Overrides, PlanOptions};
use imgbuild::rootfs::prepare::{self, PrepareOptions};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Instant;

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
    /// Target architecture (KIWI names: x86_64, aarch64, …); default: the host's.
    #[arg(long, value_name = "ARCH")]
    pub target_arch: Option<String>,
}

impl DescriptionArgs {
    /// Load and resolve the description.
    pub fn resolve(&self) -> anyhow::Result<(Description, ResolvedImage)> {
        let desc = description::load(&self.path)?;
        let sel = Selection {
            profiles: self.profiles.clone(),
            build_type: self.build_type.clone(),
            target_arch: self
                .target_arch
                .clone()
                .unwrap_or_else(Selection::host_arch),
        };
        let image = desc.resolve(&sel)?;
        Ok((desc, image))
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
}

impl PackageArgs {
    /// The plan options for `image`.
    pub fn plan_options(&self, image: &ResolvedImage) -> PlanOptions {
        PlanOptions {
            cache_dir: self.cache_dir.clone(),
            offline: self.offline,
            lock_path: self
                .lock
                .clone()
                .unwrap_or_else(|| image.dir.join("imgbuild.lock")),
            ignore_lock: self.no_lock,
            progress: if log_settings().quiet {
                Progress::Quiet
            } else if std::io::stderr().is_terminal() {
                Progress::Auto
            } else {
                Progress::Lines
            },
            apt_dir: PathBuf::from("/etc/apt"),
            allow_older_release: self.allow_older_release,
        }
    }

    /// The command-line repository and package overrides.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            set_repo: self.set_repo.clone(),
            add_repos: self.add_repos.clone(),
            add_packages: self.add_packages.clone(),
            add_bootstrap_packages: self.add_bootstrap_packages.clone(),
        }
    }
}

/// How long KIWI hooks may run.
#[derive(Args, Debug, Clone)]
pub struct HookArgs {
    /// Stop a KIWI hook (post_bootstrap.sh, config.sh, images.sh) that runs longer than this
    /// many seconds, failing the build; 0: no limit.
    #[arg(long, value_name = "SECONDS", default_value_t = prepare::DEFAULT_HOOK_TIMEOUT.as_secs())]
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
}

/// How stage lines are written on stderr.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `imgbuild: <stage> ...` and `imgbuild: <stage> done in <s> s`.
    #[default]
    Text,
    /// One JSON object per line: `{"stage":..,"event":"start|done","seconds":..}`.
    Json,
}

/// The global logging options (`-q`, `-v`, `--log-format`).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSettings {
    /// No stage lines, no download progress.
    pub quiet: bool,
    /// Maintainer-script and hook output too.
    pub verbose: bool,
    /// Text or JSON lines.
    pub format: LogFormat,
}

static LOG_SETTINGS: OnceLock<LogSettings> = OnceLock::new();

/// Set the logging options once, before any command runs; verbose also turns on the sandbox
/// output of successful maintainer scripts and hooks.
pub fn set_log_settings(settings: LogSettings) {
    imgbuild::rootfs::install::set_verbose(settings.verbose);
    let _ = LOG_SETTINGS.set(settings);
}

/// The logging options in effect.
pub fn log_settings() -> LogSettings {
    LOG_SETTINGS.get().copied().unwrap_or_default()
}

/// Print a stage line to stderr, with the time since the previous one, as the global logging
/// options say.
pub struct StageLog {
    start: Instant,
    last: Option<(String, Instant)>,
    settings: LogSettings,
}

impl Default for StageLog {
    fn default() -> Self {
        Self::new()
    }
}

impl StageLog {
    /// A log starting now.
    pub fn new() -> Self {
        StageLog {
            start: Instant::now(),
            last: None,
            settings: log_settings(),
        }
    }

    fn emit(&self, stage: &str, event: &str, seconds: Option<f64>) {
        if self.settings.quiet {
            return;
        }
        match self.settings.format {
            LogFormat::Text => match seconds {
                Some(s) => eprintln!("imgbuild: {stage} done in {s:.1} s"),
                None => eprintln!("imgbuild: {stage} ..."),
            },
            LogFormat::Json => {
                let mut v = serde_json::json!({"stage": stage, "event": event});
                if let Some(s) = seconds {
                    // Milliseconds are plenty and keep the lines short.
                    v["seconds"] = serde_json::json!((s * 1000.0).round() / 1000.0);
                }
                eprintln!("{v}");
            }
        }
    }

    /// A new stage begins.
    pub fn stage(&mut self, name: &str) {
        self.finish();
        self.emit(name, "start", None);
        self.last = Some((name.to_string(), Instant::now()));
    }

    /// Close the running stage.
    pub fn finish(&mut self) {
        if let Some((name, t)) = self.last.take() {
            self.emit(&name, "done", Some(t.elapsed().as_secs_f64()));
        }
    }

    /// A note outside the stages (text: `imgbuild: <message>`; json: `{"event":"info",..}`).
    pub fn info(&self, message: &str) {
        if self.settings.quiet {
            return;
        }
        match self.settings.format {
            LogFormat::Text => eprintln!("imgbuild: {message}"),
            LogFormat::Json => {
                eprintln!(
                    "{}",
                    serde_json::json!({"event": "info", "message": message})
                )
            }
        }
    }

    /// A warning: shown even with `-q` (text: `imgbuild: warning: <message>`; json:
    /// `{"event":"warning",..}`).
    pub fn warn(&self, message: &str) {
        match self.settings.format {
            LogFormat::Text => eprintln!("imgbuild: warning: {message}"),
            LogFormat::Json => {
                eprintln!(
                    "{}",
                    serde_json::json!({"event": "warning", "message": message})
                )
            }
        }
    }

    /// Seconds since the log started.
    pub fn total(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

/// Run `imgbuild prepare`.
pub fn run(args: PrepareArgs) -> anyhow::Result<ExitCode> {
    let (desc, image) = args.description.resolve()?;
    let opts = PrepareOptions {
        root: args.root.clone(),
        allow_existing_root: args.allow_existing_root,
        plan: args.packages.plan_options(&image),
        overrides: args.packages.overrides(),
        delete_packages: args.packages.delete_packages.clone(),
        hook_timeout: args.hooks.timeout(),
    };
    let mut log = StageLog::new();
    if opts.plan.lock_path.exists() && !opts.plan.ignore_lock {
        log.info(&format!(
            "using lock file {}",
            opts.plan.lock_path.display()
        ));
    }
    let prepared = prepare::prepare(&desc, &image, &opts, &ImageBases, &mut |s| log.stage(s))
        .with_context(|| format!("preparing {}", args.root.display()))?;
    log.finish();
    for w in &prepared.plan.warnings {
        log.warn(w);
    }
    log.info(&format!(
        "prepared {} ({} packages) in {:.1} s",
        args.root.display(),
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
pub fn run_lock(args: LockArgs) -> anyhow::Result<ExitCode> {
    let (_, image) = args.description.resolve()?;
    let mut opts = args.packages.plan_options(&image);
    opts.ignore_lock = true;
    let (cache, fetcher) = plan::open_cache(&opts)?;
    let p = plan::plan(&image, &args.packages.overrides(), &opts, &cache, &fetcher)?;
    p.lock_file().write(&opts.lock_path)?;
    let log = StageLog::new();
    for w in &p.warnings {
        log.warn(w);
    }
    log.info(&format!(
        "locked {} packages in {}",
        p.packages.len(),
        opts.lock_path.display()
    ));
    Ok(ExitCode::SUCCESS)
}
