//! KIWI's command line as aliases, so a script written for `kiwi-ng` runs with the command
//! renamed: `system build|prepare|create`, `image info`, `result list|bundle`, and KIWI's global
//! options before the subcommand (`--profile`, `--type`, `--target-arch`, `--kiwi-file`, the
//! logging flags). Exit codes are KIWI's: 0 done, 1 failed, 2 bad usage (an unknown option, a
//! missing required one, or a KIWI option imgbuild does not support, refused with the reason).

use super::build::{BuildArgs, CreateArgs, OutputArgs};
use super::log::{LogSettings, StageLog};
use super::prepare::{DescriptionArgs, HookArgs, PackageArgs, PrepareArgs, SnapshotArgs};
use super::{Cli, Command};
use anyhow::{Context, bail};
use clap::{Args, CommandFactory, Subcommand};
use imgbuild::build::kiwi_result::{self, KiwiResult};
use imgbuild::description::Selection;
use imgbuild::ops::{self, Reporter};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// KIWI's global options, given before the subcommand as `kiwi-ng` takes them.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "KIWI global options (before the subcommand)")]
pub struct GlobalArgs {
    /// Profile to activate (repeatable), for the description commands.
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
    /// Build type (`<type image=…>`), for the description commands.
    #[arg(long = "type", value_name = "TYPE")]
    pub build_type: Option<String>,
    /// Target architecture (KIWI names: `x86_64`, aarch64, …), for the description commands.
    #[arg(long, value_name = "ARCH")]
    pub target_arch: Option<String>,
    /// File name of the description inside --description [default: config.xml, else the one
    /// *.kiwi].
    #[arg(long, value_name = "NAME")]
    pub kiwi_file: Option<String>,
    /// Download cache directory (same as --cache-dir).
    #[arg(long, value_name = "DIR")]
    pub shared_cache_dir: Option<PathBuf>,
    /// Same as --verbose.
    #[arg(long)]
    pub debug: bool,
    /// KIWI's log level number: 10 or less is --verbose, 30 or more is --quiet.
    #[arg(long, value_name = "NUMBER")]
    pub loglevel: Option<u8>,
    /// Only `stdout` is accepted (the log goes to stderr); redirect stderr for a log file.
    #[arg(long, value_name = "FILE")]
    pub logfile: Option<String>,
    /// Accepted; the stage log has no colours.
    #[arg(long)]
    pub color_output: bool,
    /// Accepted; work directories are made beside the target directory.
    #[arg(long, value_name = "DIR")]
    pub temp_dir: Option<PathBuf>,
    /// Refused: KIWI's log socket.
    #[arg(long, value_name = "SOCKET")]
    pub logsocket: Option<PathBuf>,
    /// Refused: set variables in the environment of imgbuild instead.
    #[arg(long, value_name = "VAR=VALUE")]
    pub setenv: Vec<String>,
    /// Refused: imgbuild reads no KIWI runtime configuration.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Refused: scripts run in the build sandbox.
    #[arg(long)]
    pub debug_run_scripts_in_screen: bool,
}

/// Exit as clap does for bad usage (status 2), with `message` and the usage line.
fn usage_error(message: &str) -> ! {
    Cli::command()
        .error(clap::error::ErrorKind::ArgumentConflict, message)
        .exit()
}

/// One line per refused option, then the usage line; exits with status 2 when any is given.
fn refuse(refused: &[(&str, &str)]) {
    if refused.is_empty() {
        return;
    }
    let lines: Vec<String> = refused
        .iter()
        .map(|(flag, why)| format!("{flag}: KIWI's option is not supported by imgbuild: {why}"))
        .collect();
    usage_error(&lines.join("\n       "));
}

impl GlobalArgs {
    /// The log settings with `--debug`, `--loglevel` and `--logfile` applied; refuses the
    /// global options imgbuild does not support.
    pub fn log_settings(&self, mut settings: LogSettings) -> LogSettings {
        let mut refused = Vec::new();
        if self.logsocket.is_some() {
            refused.push((
                "--logsocket",
                "the log goes to stderr (--log-format json for CI)",
            ));
        }
        if !self.setenv.is_empty() {
            refused.push((
                "--setenv",
                "give the variables in imgbuild's environment (VAR=VALUE imgbuild …)",
            ));
        }
        if self.config.is_some() {
            refused.push((
                "--config",
                "imgbuild reads no KIWI runtime configuration file",
            ));
        }
        if self.debug_run_scripts_in_screen {
            refused.push((
                "--debug-run-scripts-in-screen",
                "scripts run in the build sandbox; --verbose shows their output",
            ));
        }
        if self.logfile.as_deref().is_some_and(|f| f != "stdout") {
            refused.push((
                "--logfile",
                "the log goes to stderr: redirect it (2>FILE), or --logfile stdout",
            ));
        }
        refuse(&refused);
        if self.debug || self.loglevel.is_some_and(|l| l <= 10) {
            settings.verbose = true;
        }
        if self.loglevel.is_some_and(|l| l >= 30) {
            settings.quiet = true;
        }
        settings
    }

    fn selecting(&self) -> bool {
        !self.profiles.is_empty() || self.build_type.is_some() || self.target_arch.is_some()
    }

    /// The selection options before the subcommand merged into the subcommand's own: profiles
    /// add up, a type or architecture given both ways must agree. A command that reads no
    /// description refuses them.
    pub fn apply(&self, command: &mut Command) {
        let (profiles, build_type, target_arch) = match command {
            Command::Build(a) => desc_fields(&mut a.description),
            Command::Prepare(a) => desc_fields(&mut a.description),
            Command::Lock(a) => desc_fields(&mut a.description),
            Command::Info(a) => (&mut a.profiles, &mut a.build_type, &mut a.target_arch),
            Command::System(_) | Command::Image(_) => return,
            _ if !self.selecting() => return,
            _ => usage_error(
                "--profile, --type and --target-arch before the subcommand are for the commands that read a description (system, image, build, prepare, lock, info)",
            ),
        };
        profiles.extend(self.profiles.iter().cloned());
        for (flag, global, own) in [
            ("--type", &self.build_type, build_type),
            ("--target-arch", &self.target_arch, target_arch),
        ] {
            match (global, &own) {
                (Some(g), Some(o)) if g != o => usage_error(&format!(
                    "{flag} is given twice, as {g:?} before the subcommand and as {o:?} after it"
                )),
                (Some(g), _) => *own = Some(g.clone()),
                (None, _) => {}
            }
        }
    }

    /// The description a `--description DIR` names, with `--kiwi-file`.
    fn description(&self, dir: &Path) -> DescriptionArgs {
        DescriptionArgs {
            path: match &self.kiwi_file {
                Some(f) => dir.join(f),
                None => dir.to_path_buf(),
            },
            profiles: self.profiles.clone(),
            build_type: self.build_type.clone(),
            target_arch: self.target_arch.clone(),
            platform: None,
        }
    }

    fn packages(&self, mut packages: PackageArgs) -> PackageArgs {
        if let Some(dir) = &self.shared_cache_dir {
            packages.cache_dir.clone_from(dir);
        }
        packages
    }
}

fn desc_fields(
    d: &mut DescriptionArgs,
) -> (&mut Vec<String>, &mut Option<String>, &mut Option<String>) {
    (&mut d.profiles, &mut d.build_type, &mut d.target_arch)
}

/// `system`: KIWI's build commands.
#[derive(Subcommand, Debug)]
pub enum SystemCommand {
    /// Build an image: prepare, then create (`imgbuild build`).
    Build(SystemBuildArgs),
    /// Build the root tree of a description (`imgbuild prepare`).
    Prepare(SystemPrepareArgs),
    /// Write the image files of a prepared root (`imgbuild create`).
    Create(SystemCreateArgs),
}

/// KIWI's options for repositories, keys and type attributes that imgbuild refuses.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "KIWI options imgbuild refuses (with the reason)")]
pub struct RefusedArgs {
    /// Refused: the description's repositories are always used.
    #[arg(long)]
    pub ignore_repos_used_for_build: bool,
    /// Refused: repository credentials are not supported.
    #[arg(long, value_name = "USER:PASS")]
    pub set_repo_credentials: Option<String>,
    /// Refused: repository credentials are not supported.
    #[arg(long, value_name = "USER:PASS")]
    pub add_repo_credentials: Vec<String>,
    /// Refused: change the `<type>` in the description (or a profile).
    #[arg(long, value_name = "ATTR=VALUE")]
    pub set_type_attr: Vec<String>,
    /// Refused: set `<release-version>` in the description.
    #[arg(long, value_name = "VERSION")]
    pub set_release_version: Option<String>,
    /// Refused: install certificates from config.sh or an overlay file.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Vec<PathBuf>,
    /// Refused, with --ca-cert.
    #[arg(long, value_name = "DIST")]
    pub ca_target_distribution: Option<String>,
}

impl RefusedArgs {
    fn check(&self) {
        let mut refused = Vec::new();
        if self.ignore_repos_used_for_build {
            refused.push((
                "--ignore-repos-used-for-build",
                "the description's repositories are always used",
            ));
        }
        if self.set_repo_credentials.is_some() || !self.add_repo_credentials.is_empty() {
            refused.push((
                "--set-repo-credentials/--add-repo-credentials",
                "repositories with credentials are not supported",
            ));
        }
        if !self.set_type_attr.is_empty() {
            refused.push((
                "--set-type-attr",
                "set the attribute on the <type> in the description or a profile",
            ));
        }
        if self.set_release_version.is_some() {
            refused.push((
                "--set-release-version",
                "set <release-version> in the description",
            ));
        }
        if !self.ca_cert.is_empty() || self.ca_target_distribution.is_some() {
            refused.push((
                "--ca-cert/--ca-target-distribution",
                "install certificates with an overlay file or config.sh",
            ));
        }
        refuse(&refused);
    }
}

/// `--target-dir` of `system build|create`: required, as KIWI has it.
const TARGET_DIR_HELP: &str = "Directory for the result files; replaced as a whole, so it must be new, empty or hold an earlier imgbuild result";
/// `--compress` of `system build|create`: xz by default, as KIWI compresses containers.
const COMPRESS_HELP: &str =
    "Compression of the archive files: none, gzip, zstd or xz (KIWI's default)";

/// `system build`: KIWI's options, and imgbuild's own (cache, lock, compression, reuse).
#[derive(Args, Debug)]
#[command(
    mut_arg("target_dir", |a| a.required(true).help(TARGET_DIR_HELP)),
    mut_arg("compress", |a| a.default_value("xz").help(COMPRESS_HELP))
)]
pub struct SystemBuildArgs {
    /// The description directory (config.xml, or the one *.kiwi; see --kiwi-file).
    #[arg(long, value_name = "DIR")]
    pub description: PathBuf,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Derive from this base image instead of the description's `derived_from`.
    #[arg(long, value_name = "URI")]
    pub set_container_derived_from: Option<String>,
    /// Accepted: the build's root is always a new one.
    #[arg(long)]
    pub allow_existing_root: bool,
    /// Accepted: repository indexes are always checked against their signed Release.
    #[arg(long)]
    pub clear_cache: bool,
    /// Build even when the target directory holds an intact result of the same inputs.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub packages: PackageArgs,
    #[command(flatten)]
    pub hooks: HookArgs,
    #[command(flatten)]
    pub snapshot: SnapshotArgs,
    #[command(flatten)]
    pub refused: RefusedArgs,
}

/// `system prepare`.
#[derive(Args, Debug)]
pub struct SystemPrepareArgs {
    /// The description directory (config.xml, or the one *.kiwi; see --kiwi-file).
    #[arg(long, value_name = "DIR")]
    pub description: PathBuf,
    /// Where to build the root tree.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Build into an existing, non-empty root directory.
    #[arg(long)]
    pub allow_existing_root: bool,
    /// Derive from this base image instead of the description's `derived_from`.
    #[arg(long, value_name = "URI")]
    pub set_container_derived_from: Option<String>,
    /// Refused: give it to `system build`, or `imgbuild create`.
    #[arg(long, value_name = "TAG")]
    pub set_container_tag: Option<String>,
    /// Refused: give it to `system build`, or `imgbuild create`.
    #[arg(long, value_name = "NAME=VALUE")]
    pub add_container_label: Vec<String>,
    /// Accepted: repository indexes are always checked against their signed Release.
    #[arg(long)]
    pub clear_cache: bool,
    #[command(flatten)]
    pub packages: PackageArgs,
    #[command(flatten)]
    pub hooks: HookArgs,
    #[command(flatten)]
    pub snapshot: SnapshotArgs,
    #[command(flatten)]
    pub refused: RefusedArgs,
}

/// `system create`.
#[derive(Args, Debug)]
#[command(
    mut_arg("target_dir", |a| a.required(true).help(TARGET_DIR_HELP)),
    mut_arg("compress", |a| a.default_value("xz").help(COMPRESS_HELP))
)]
pub struct SystemCreateArgs {
    /// The prepared root tree.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub hooks: HookArgs,
    /// Refused: create installs no packages.
    #[arg(long, value_name = "FILE")]
    pub signing_key: Vec<PathBuf>,
}

/// Run a `system` command through the native one it stands for.
pub fn system(
    cmd: SystemCommand,
    globals: &GlobalArgs,
    settings: LogSettings,
    storage_root: Option<&Path>,
    storage_driver: Option<&str>,
) -> anyhow::Result<ExitCode> {
    match cmd {
        SystemCommand::Build(a) => {
            a.refused.check();
            let args = BuildArgs {
                description: globals.description(&a.description),
                packages: globals.packages(a.packages),
                output: a.output,
                hooks: a.hooks,
                snapshot: a.snapshot,
                root: None,
                set_container_derived_from: a.set_container_derived_from,
                load: false,
                force: a.force,
                push: Vec::new(),
                push_default: None,
                test: Vec::new(),
                cache_from: Vec::new(),
                cache_to: Vec::new(),
            };
            super::build::exec(args, settings, storage_root, storage_driver)
        }
        SystemCommand::Prepare(a) => {
            a.refused.check();
            let mut refused = Vec::new();
            if a.set_container_tag.is_some() || !a.add_container_label.is_empty() {
                refused.push((
                    "--set-container-tag/--add-container-label",
                    "container names and labels are set when the image is written: give them to `system build` or `imgbuild create`",
                ));
            }
            refuse(&refused);
            let args = PrepareArgs {
                description: globals.description(&a.description),
                root: a.root,
                allow_existing_root: a.allow_existing_root,
                packages: globals.packages(a.packages),
                hooks: a.hooks,
                snapshot: a.snapshot,
            };
            super::prepare::exec_with(
                args,
                a.set_container_derived_from.as_deref(),
                settings,
                storage_root,
                storage_driver,
            )
        }
        SystemCommand::Create(a) => {
            if !a.signing_key.is_empty() {
                refuse(&[("--signing-key", "create installs no packages")]);
            }
            if globals.selecting() {
                StageLog::new(settings).warn(
                    "--profile, --type and --target-arch are ignored by system create: it uses the selection prepare kept in the root",
                );
            }
            let args = CreateArgs {
                root: a.root,
                output: a.output,
                hooks: a.hooks,
            };
            super::build::exec_create(args, settings)
        }
    }
}

/// `image`: KIWI's description queries.
#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Show a description's name, profiles, resolved packages or upgraded text, as KIWI does.
    Info(ImageInfoArgs),
}

/// `image info`.
#[derive(Args, Debug)]
pub struct ImageInfoArgs {
    /// The description directory (config.xml, or the one *.kiwi; see --kiwi-file).
    #[arg(long, value_name = "DIR")]
    pub description: PathBuf,
    /// Resolve the packages (dependencies included) and list them with version, arch and
    /// source.
    #[arg(long)]
    pub resolve_package_list: bool,
    /// List the profiles the description defines.
    #[arg(long)]
    pub list_profiles: bool,
    /// Add a repository (KIWI's tuple; repeatable), for --resolve-package-list.
    #[arg(long = "add-repo", value_name = "TUPLE")]
    pub add_repos: Vec<String>,
    /// Print the upgraded description as XML.
    #[arg(long)]
    pub print_xml: bool,
    /// Print the upgraded description as YAML.
    #[arg(long)]
    pub print_yaml: bool,
    /// Refused: imgbuild writes XML and YAML descriptions.
    #[arg(long)]
    pub print_toml: bool,
    /// Refused: the `/.profile` variables are written into the root by `prepare`.
    #[arg(long)]
    pub print_kiwi_env: bool,
    /// Refused: the description's repositories are always used.
    #[arg(long)]
    pub ignore_repos: bool,
    /// Refused: repository credentials are not supported.
    #[arg(long, value_name = "USER:PASS")]
    pub add_repo_credentials: Vec<String>,
}

/// JSON as KIWI prints it: keys sorted, four-space indent.
fn kiwi_json(value: &serde_json::Value) -> anyhow::Result<String> {
    use serde::Serialize;
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    value
        .serialize(&mut serde_json::Serializer::with_formatter(&mut out, fmt))
        .context("serialising the output")?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Run `image info`: `{"image": name}` with the lists asked for, as KIWI's JSON, then the
/// description text when asked.
pub fn image(
    cmd: ImageCommand,
    globals: &GlobalArgs,
    settings: LogSettings,
) -> anyhow::Result<ExitCode> {
    let ImageCommand::Info(a) = cmd;
    let mut refused = Vec::new();
    if a.print_toml {
        refused.push(("--print-toml", "use --print-xml or --print-yaml"));
    }
    if a.print_kiwi_env {
        refused.push((
            "--print-kiwi-env",
            "`imgbuild prepare` writes the variables into the root's /.profile",
        ));
    }
    if a.ignore_repos {
        refused.push((
            "--ignore-repos",
            "the description's repositories are always used",
        ));
    }
    if !a.add_repo_credentials.is_empty() {
        refused.push((
            "--add-repo-credentials",
            "repositories with credentials are not supported",
        ));
    }
    refuse(&refused);
    let d = globals.description(&a.description);
    let desc = imgbuild::description::load(&d.path)?;
    let selection = Selection {
        profiles: d.profiles.clone(),
        build_type: d.build_type.clone(),
        target_arch: d.target_arch.clone().unwrap_or_else(Selection::host_arch),
    };
    let image = desc.resolve(&selection)?;
    let mut out = serde_json::Map::new();
    out.insert("image".into(), image.name.clone().into());
    if a.list_profiles {
        let names = desc
            .profiles()
            .iter()
            .map(|p| serde_json::Value::from(p.name.clone()))
            .collect();
        out.insert("profile_names".into(), serde_json::Value::Array(names));
    }
    if a.resolve_package_list {
        out.insert(
            "resolved-packages".into(),
            resolve_packages(&image, globals, a.add_repos, settings)?,
        );
    }
    println!("{}", kiwi_json(&serde_json::Value::Object(out))?);
    if a.print_xml {
        print!("{}", desc.to_xml());
    } else if a.print_yaml {
        print!("{}", desc.to_yaml());
    }
    Ok(ExitCode::SUCCESS)
}

/// The packages of `image` resolved afresh (the lock file is not read), by name: version,
/// arch, where it is downloaded from, and whether the description lists it or the solver
/// added it.
fn resolve_packages(
    image: &imgbuild::description::ResolvedImage,
    globals: &GlobalArgs,
    add_repos: Vec<String>,
    settings: LogSettings,
) -> anyhow::Result<serde_json::Value> {
    if !image.build_type.derived_from.is_empty() {
        bail!(
            "--resolve-package-list: not for a derived image (its packages depend on the base image); `imgbuild lock` resolves it"
        );
    }
    let packages = ops::Packages {
        cache_dir: globals.shared_cache_dir.clone().unwrap_or_else(|| {
            std::env::var_os("IMGBUILD_CACHE_DIR").map_or_else(
                || PathBuf::from(imgbuild::apt::cache::DEFAULT_CACHE_DIR),
                PathBuf::from,
            )
        }),
        offline: false,
        lock: None,
        no_lock: true,
        allow_older_release: false,
        apt_dir: PathBuf::from(imgbuild::apt::hostsources::DEFAULT_APT_DIR),
        overrides: imgbuild::plan::Overrides {
            add_repos,
            ..Default::default()
        },
        delete_packages: Vec::new(),
        bases: ops::BaseAccess::default(),
        snapshots: None,
    };
    let log = StageLog::new(settings);
    let opts = packages.plan_options(image, log.progress());
    let (cache, fetcher) = imgbuild::plan::open_cache(&opts)?;
    let plan = imgbuild::plan::plan(image, &packages.overrides, &opts, &cache, &fetcher)?;
    for w in &plan.warnings {
        log.warn(w);
    }
    let listed: std::collections::BTreeSet<&str> =
        [&image.packages.bootstrap, &image.packages.image]
            .iter()
            .flat_map(|set| set.packages.iter().map(|p| p.name.as_str()))
            .collect();
    let mut out = BTreeMap::new();
    for p in &plan.packages {
        let status = if listed.contains(p.name.as_str()) {
            "listed_in_kiwi_description"
        } else {
            "added_by_dependency_solver"
        };
        out.insert(
            p.name.clone(),
            serde_json::json!({
                "source": p.url,
                "arch": p.architecture,
                "version": p.version,
                "status": status,
            }),
        );
    }
    Ok(serde_json::to_value(out)?)
}

/// `result`: KIWI's result commands, reading `kiwi.result.json`.
#[derive(Subcommand, Debug)]
pub enum ResultCommand {
    /// List the result files of a build, from its kiwi.result.json.
    List(ResultListArgs),
    /// Copy the results into a bundle directory, named with an id, each with a .sha256 file.
    Bundle(ResultBundleArgs),
}

/// `result list`.
#[derive(Args, Debug)]
pub struct ResultListArgs {
    /// The target directory of the build.
    #[arg(long, value_name = "DIR")]
    pub target_dir: PathBuf,
}

/// `result bundle`.
#[derive(Args, Debug)]
pub struct ResultBundleArgs {
    /// The target directory of the build.
    #[arg(long, value_name = "DIR")]
    pub target_dir: PathBuf,
    /// The bundle id: inserted after the version in each file name (`…-<version>-<id>.…`).
    #[arg(long, value_name = "ID")]
    pub id: String,
    /// Where to write the bundle (made if missing; must differ from the target directory).
    #[arg(long, value_name = "DIR")]
    pub bundle_dir: PathBuf,
    /// Name the files by this pattern instead (`%N` name, `%v` version, `%I` id, …); needs
    /// a result of a description with a `bundle_format`, which records the tags.
    #[arg(long, value_name = "FORMAT")]
    pub bundle_format: Option<String>,
    /// Do not xz-compress the results KIWI marks for compression.
    #[arg(long)]
    pub no_compress: bool,
    /// Refused: zsync control files are not written.
    #[arg(long, value_name = "URL")]
    pub zsync_source: Option<String>,
    /// Refused: no rpm packaging.
    #[arg(long)]
    pub package_as_rpm: bool,
}

/// Read `<target>/kiwi.result.json`.
fn read_kiwi_result(target: &Path) -> anyhow::Result<KiwiResult> {
    let path = target.join(kiwi_result::FILE_NAME);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no result information in {}: {}",
            target.display(),
            path.display()
        )
    })?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not KIWI's result index", path.display()))
}

/// Run `result list` or `result bundle`.
pub fn result(cmd: ResultCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ResultCommand::List(a) => {
            let r = read_kiwi_result(&a.target_dir)?;
            println!("Result files:");
            let mut lines: Vec<(String, String)> = r
                .files
                .iter()
                .map(|(k, f)| (k.clone(), f.filename.clone()))
                .collect();
            if let Some(b) = &r.bundle_format {
                lines.push(("bundle_format".into(), b.pattern.clone()));
            }
            lines.sort();
            for (k, v) in lines {
                println!("--> {k}: {v}");
            }
            Ok(ExitCode::SUCCESS)
        }
        ResultCommand::Bundle(a) => bundle(&a),
    }
}

/// The image name and version of the result in `target`: the name from `result.json`, the
/// version from the `.packages` file name (`<name>.<arch>-<version>.packages`).
fn name_and_version(target: &Path, r: &KiwiResult) -> anyhow::Result<(String, String)> {
    let path = target.join("result.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{}: needed for the image name and version (a result of kiwi-ng keeps them in its pickled kiwi.result, which imgbuild does not read)",
            path.display()
        )
    })?;
    let created: imgbuild::build::Created = serde_json::from_str(&text)
        .with_context(|| format!("{}: not imgbuild's", path.display()))?;
    let packages = r
        .files
        .get("image_packages")
        .map(|f| Path::new(&f.filename))
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned());
    let version = packages
        .as_deref()
        .and_then(|n| n.strip_prefix(&format!("{}.", created.name)))
        .and_then(|n| n.strip_suffix(".packages"))
        .and_then(|n| n.split_once('-'))
        .map(|(_arch, v)| v.to_string())
        .with_context(|| {
            format!(
                "{}: no image_packages entry named <name>.<arch>-<version>.packages",
                target.join(kiwi_result::FILE_NAME).display()
            )
        })?;
    Ok((created.name, version))
}

/// The extension KIWI keeps when it renames a result by a bundle format.
fn bundle_extension(filename: &str) -> String {
    let parts: Vec<&str> = filename.split('.').collect();
    let tail = |n: usize| parts[parts.len().saturating_sub(n)..].join(".");
    if [".oci.tar.", ".docker.tar."]
        .iter()
        .any(|e| filename.contains(e))
    {
        tail(3)
    } else if [".oci.tar", ".docker.tar"]
        .iter()
        .any(|e| filename.contains(e))
    {
        tail(2)
    } else if filename.contains(".tar.") {
        format!("tar.{}", parts.last().unwrap_or(&""))
    } else {
        (*parts.last().unwrap_or(&"")).to_string()
    }
}

/// The bundle name of `basename`: by the bundle format when there is one, else with `-<id>`
/// after each occurrence of the version in the part after the image name.
fn bundle_name(
    basename: &str,
    name: &str,
    version: &str,
    id: &str,
    format: Option<&str>,
) -> String {
    if let Some(f) = format {
        return format!("{f}.{}", bundle_extension(basename));
    }
    match basename.split_once(name) {
        Some((before, after)) => {
            format!(
                "{before}{name}{}",
                after.replace(version, &format!("{version}-{id}"))
            )
        }
        None => basename.to_string(),
    }
}

/// A bundle format pattern with the tags filled in.
fn expand_format(pattern: &str, tags: &BTreeMap<String, String>, id: &str) -> String {
    let mut out = pattern.to_string();
    for t in ["N", "P", "A", "T", "M", "m", "p", "v"] {
        if let Some(v) = tags.get(t) {
            out = out.replace(&format!("%{t}"), v);
        }
    }
    out.replace("%I", id)
}

/// Run `result bundle`.
fn bundle(a: &ResultBundleArgs) -> anyhow::Result<ExitCode> {
    let mut refused = Vec::new();
    if a.zsync_source.is_some() {
        refused.push(("--zsync-source", "zsync control files are not written"));
    }
    if a.package_as_rpm {
        refused.push(("--package-as-rpm", "bundles are not packaged as rpm"));
    }
    refuse(&refused);
    let target = std::path::absolute(&a.target_dir)
        .with_context(|| format!("{}: cannot make it absolute", a.target_dir.display()))?;
    let bundle_dir = std::path::absolute(&a.bundle_dir)
        .with_context(|| format!("{}: cannot make it absolute", a.bundle_dir.display()))?;
    if target == bundle_dir {
        bail!(
            "--bundle-dir {}: must differ from the target directory",
            a.bundle_dir.display()
        );
    }
    let r = read_kiwi_result(&target)?;
    let (name, version) = name_and_version(&target, &r)?;
    let format = match (&a.bundle_format, &r.bundle_format) {
        (Some(p), Some(b)) => Some(expand_format(p, &b.tags, &a.id)),
        (None, Some(b)) => Some(expand_format(&b.pattern, &b.tags, &a.id)),
        (Some(_), None) => bail!(
            "--bundle-format: the result records no name tags (only a description with a <type bundle_format=…> records them); the default naming inserts -{} after the version",
            a.id
        ),
        (None, None) => None,
    };
    std::fs::create_dir_all(&bundle_dir).with_context(|| {
        format!(
            "{}: cannot create the bundle directory",
            bundle_dir.display()
        )
    })?;
    // Copy every file first, then rewrite references to the original names in the text ones.
    let mut copied = Vec::new();
    for f in r.files.values().filter(|f| f.use_for_bundle) {
        let src = PathBuf::from(&f.filename);
        let src = if src.is_absolute() && src.exists() {
            src
        } else {
            // A result directory that was moved: the file is beside kiwi.result.json.
            target.join(src.file_name().unwrap_or_default())
        };
        let base = src
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dest_name = bundle_name(&base, &name, &version, &a.id, format.as_deref());
        let dest = bundle_dir.join(&dest_name);
        std::fs::copy(&src, &dest)
            .with_context(|| format!("copying {} to {}", src.display(), dest.display()))?;
        copied.push((f, base, dest));
    }
    for (_, base, dest) in &copied {
        let dest_name = dest.file_name().map(|n| n.to_string_lossy().into_owned());
        if Some(base) == dest_name.as_ref() {
            continue;
        }
        for (_, _, other) in &copied {
            rename_references(other, base, dest_name.as_deref().unwrap_or_default())?;
        }
    }
    for (f, _, dest) in copied {
        let mut file = dest;
        if f.compress && !a.no_compress {
            file = xz_file(&file)?;
        }
        if f.shasum {
            let digest = imgbuild::digest::file_sha256(&file)
                .with_context(|| format!("{}: reading it for its sha256", file.display()))?;
            let base = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut side = file.clone().into_os_string();
            side.push(".sha256");
            let side = PathBuf::from(side);
            std::fs::write(&side, format!("{}  {base}\n", hex::encode(digest)))
                .with_context(|| format!("{}: writing it", side.display()))?;
            println!("{}", side.display());
        }
        println!("{}", file.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// In a text file (valid UTF-8 without NUL bytes), every `from` replaced by `to`.
fn rename_references(file: &Path, from: &str, to: &str) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("{}: reading it", file.display()))?;
    let Ok(text) = String::from_utf8(bytes) else {
        return Ok(());
    };
    if text.contains('\0') || !text.contains(from) {
        return Ok(());
    }
    std::fs::write(file, text.replace(from, to))
        .with_context(|| format!("{}: writing it", file.display()))
}

/// `file` compressed to `file.xz` (the original removed), as KIWI compresses bundle files.
fn xz_file(file: &Path) -> anyhow::Result<PathBuf> {
    let mut dest = file.as_os_str().to_owned();
    dest.push(".xz");
    let dest = PathBuf::from(dest);
    let mut input =
        std::fs::File::open(file).with_context(|| format!("{}: opening it", file.display()))?;
    let out =
        std::fs::File::create(&dest).with_context(|| format!("{}: creating it", dest.display()))?;
    let mut enc = liblzma::write::XzEncoder::new(out, 6);
    std::io::copy(&mut input, &mut enc)
        .and_then(|_| enc.finish())
        .with_context(|| format!("{}: compressing into it", dest.display()))?;
    std::fs::remove_file(file).with_context(|| format!("{}: removing it", file.display()))?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_names_as_kiwi() {
        let n = |b: &str, f: Option<&str>| bundle_name(b, "img", "1.2.3", "Build7", f);
        assert_eq!(
            n("img.x86_64-1.2.3.docker.tar.xz", None),
            "img.x86_64-1.2.3-Build7.docker.tar.xz"
        );
        assert_eq!(
            n("img.x86_64-1.2.3.packages", None),
            "img.x86_64-1.2.3-Build7.packages"
        );
        assert_eq!(n("other.txt", None), "other.txt");
        assert_eq!(
            n("img.x86_64-1.2.3.docker.tar.xz", Some("X")),
            "X.docker.tar.xz"
        );
        assert_eq!(n("img.x86_64-1.2.3.oci.tar", Some("X")), "X.oci.tar");
        assert_eq!(n("img.x86_64-1.2.3.tar.xz", Some("X")), "X.tar.xz");
        assert_eq!(n("img.x86_64-1.2.3.packages", Some("X")), "X.packages");
    }

    #[test]
    fn the_command_tree_is_consistent() {
        // Every subcommand, the KIWI aliases' `mut_arg`s and flattened option groups included:
        // clap checks names, conflicts and defaults only for the subcommand it parses.
        Cli::command().debug_assert();
    }

    #[test]
    fn bundle_format_tags_expand() {
        let tags = [("N", "img"), ("v", "1.2.3"), ("A", "x86_64")]
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        assert_eq!(
            expand_format("%N-%v-%A-%I", &tags, "b1"),
            "img-1.2.3-x86_64-b1"
        );
    }
}
