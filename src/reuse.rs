//! Rebuild avoidance: a build whose inputs have not changed reuses the result already in its
//! target directory, as `make` does.
//!
//! The inputs key is a sha256 over a canonical, versioned serialisation of everything that can
//! change the output: imgbuild itself, the description (its spliced text, every file of its
//! directory and every file it names outside it), the selection, the command-line options that
//! shape the image, `SOURCE_DATE_EPOCH`, the repositories as resolved (with their keyrings), the
//! lock file when one is used — else each repository's signed (In)Release as the mirror serves
//! it now — and the bytes of every local base image of a derived build. `create` records the key
//! in `result.json`; [`check`] accepts a previous result only when its key matches and every file
//! it lists is intact.

use crate::apt::cache::CacheError;
use crate::apt::fetch::Progress;
use crate::apt::release::{self, ReleaseError, RepoContext, ResolvedRepo};
use crate::build::base::PinnedBase;
use crate::build::{CreateOptions, Created};
use crate::description::{Description, ResolvedImage};
use crate::digest::{DigestError, KeyWriter, file_sha256, tree_digest};
use crate::image::base::BaseSource;
use crate::image::{Compression, ImageError};
use crate::plan::{self, Overrides, PlanError, PlanOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use crate::digest::FORMAT;

/// Errors while computing the inputs key.
#[derive(Debug, thiserror::Error)]
pub enum ReuseError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file or directory could not be digested.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// The repositories could not be resolved.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A repository's Release file could not be fetched or verified.
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// The download cache could not be opened.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A base image reference is unusable.
    #[error("{uri}: {source}")]
    Base {
        /// The `derived_from` URI.
        uri: String,
        /// What is wrong.
        source: ImageError,
    },
}

fn io(path: &Path, source: std::io::Error) -> ReuseError {
    ReuseError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Everything a build reads, as given to `imgbuild build`.
#[derive(Debug, Clone)]
pub struct BuildInputs<'a> {
    /// The loaded description (includes spliced).
    pub description: &'a Description,
    /// The description resolved for the selection (after `--set-container-derived-from`).
    pub image: &'a ResolvedImage,
    /// `--set-repo`, `--add-repo`, `--add-package`, `--add-bootstrap-package`.
    pub overrides: &'a Overrides,
    /// `--delete-package`.
    pub delete_packages: &'a [String],
    /// Lock file and cache settings (the cache location does not enter the key).
    pub plan: &'a PlanOptions,
    /// The output options that shape the image.
    pub output: OutputOptions,
    /// Identity of the program building ([`tool_identity`]).
    pub tool: String,
    /// Paths inside the description directory that are not inputs (the target directory, a
    /// kept root); absolute.
    pub skip: Vec<PathBuf>,
    /// Registry bases resolved to a digest in the store, by their `derived_from` value.
    pub bases: &'a BTreeMap<String, PinnedBase>,
}

/// The options of `create` that shape the image, all of which enter the key; where the result
/// goes, how many threads write it and how long hooks may run do not change its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputOptions {
    /// Layer compression.
    pub layer_compression: Compression,
    /// Compression of the archives themselves.
    pub compress: Compression,
    /// Whether a plain OCI image layout directory is written too.
    pub oci_dir: bool,
    /// `--set-container-tag`.
    pub tag: Option<String>,
    /// `--add-container-label`, in the order given.
    pub labels: Vec<(String, String)>,
    /// `SOURCE_DATE_EPOCH`, when set.
    pub source_date_epoch: Option<u64>,
}

impl From<&CreateOptions> for OutputOptions {
    fn from(c: &CreateOptions) -> OutputOptions {
        OutputOptions {
            layer_compression: c.layer_compression,
            compress: c.compress,
            oci_dir: c.oci_dir,
            tag: c.tag.clone(),
            labels: c.labels.clone(),
            source_date_epoch: c.source_date_epoch,
        }
    }
}

/// The inputs key of a build, or why none can be given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputsKey {
    /// `sha256:<hex>` over every input.
    Known(String),
    /// An input cannot be pinned down locally (a base image in a registry); never reuse.
    Unknown(String),
}

/// imgbuild's version plus the digest of the source it was compiled from (`build.rs` computes
/// it over `src/`, `Cargo.toml`, `Cargo.lock` and `build.rs`): a changed imgbuild does not reuse
/// older results, and the same imgbuild built anywhere gives the same key (no executable path or
/// time in it), so results can be shared between machines ([`crate::remote_cache`]).
pub fn tool_identity() -> String {
    format!(
        "imgbuild {} {}",
        env!("CARGO_PKG_VERSION"),
        env!("IMGBUILD_SOURCE_DIGEST")
    )
}

/// The absolute form of `p` with its existing parent resolved (the path itself may not exist).
pub fn absolute(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    if let Ok(real) = std::fs::canonicalize(&abs) {
        return real;
    }
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|d| d.join(name))
            .unwrap_or(abs.clone()),
        _ => abs,
    }
}

/// Computes the inputs key of a build. Without a lock file in use this fetches each
/// repository's (In)Release and checks its signature (only the Release file, no index); offline,
/// the cached Release files stand in, since those are what an offline build would solve from.
///
/// The key is written in phases, in this order (the order is part of the key): the tool, the
/// description, the description's files, the command-line options, the repositories, the
/// package set, the base images.
pub fn inputs_key(inputs: &BuildInputs<'_>) -> Result<InputsKey, ReuseError> {
    let mut w = KeyWriter::new();
    w.str("tool", &inputs.tool);
    key_description(&mut w, inputs);
    key_description_files(&mut w, inputs)?;
    key_options(&mut w, inputs)?;
    if plan::package_format(inputs.image) == plan::PackageFormat::Rpm {
        key_rpm_packages(&mut w, inputs)?;
    } else {
        let repos = key_repositories(&mut w, inputs)?;
        key_package_set(&mut w, inputs, &repos)?;
    }
    if let Some(reason) = key_bases(&mut w, inputs.image, inputs.bases)? {
        return Ok(InputsKey::Unknown(reason));
    }
    Ok(InputsKey::Known(w.finish()))
}

/// The description: the spliced text (which covers included files wherever they live) and the
/// selection it was resolved for.
fn key_description(w: &mut KeyWriter, inputs: &BuildInputs<'_>) {
    let image = inputs.image;
    w.str("description", &inputs.description.to_xml());
    w.str("profiles", &image.profiles.join("\n"));
    w.str("type", &image.build_type.image);
    w.str("arch", &image.arch);
}

/// Every file of the description directory, what a top-level symlink points to (`root/`,
/// `config.sh`, … are read through their links), and the `<archive>` and `<file>` sources,
/// which may lie outside the directory. Paths inside the directory enter the key relative to
/// it, so a copy of the description elsewhere has the same key ([`key_path`]).
fn key_description_files(w: &mut KeyWriter, inputs: &BuildInputs<'_>) -> Result<(), ReuseError> {
    let image = inputs.image;
    let dir = std::fs::canonicalize(&image.dir).map_err(|e| io(&image.dir, e))?;
    w.field("dir", b"");
    w.tree(&dir, &inputs.skip)?;
    for l in &top_level_links(&dir)? {
        w.followed_as("linked", &key_path(&dir, l), l, &inputs.skip)?;
    }
    for set in [&image.packages.bootstrap, &image.packages.image] {
        for a in &set.archives {
            let p = dir.join(&a.name);
            w.followed_as("archive", &key_path(&dir, &p), &p, &inputs.skip)?;
        }
        for f in &set.files {
            let p = dir.join(&f.name);
            w.followed_as("file", &key_path(&dir, &p), &p, &inputs.skip)?;
        }
    }
    Ok(())
}

/// How `path` is named in the key: relative to the description directory `dir` when it lies
/// inside it (lexically: only plain components below `dir`), else absolute with its parent
/// resolved. A path outside the description directory is machine-specific by nature (another
/// machine may keep other content there), so it stays absolute.
fn key_path(dir: &Path, path: &Path) -> PathBuf {
    if let Ok(rel) = path.strip_prefix(dir)
        && rel
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
    {
        return rel.to_path_buf();
    }
    absolute(path)
}

/// The symlinks directly in `dir`, sorted.
fn top_level_links(dir: &Path) -> Result<Vec<PathBuf>, ReuseError> {
    let mut links = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let e = e.map_err(|e| io(dir, e))?;
        if e.file_type()
            .map_err(|err| io(&e.path(), err))?
            .is_symlink()
        {
            links.push(e.path());
        }
    }
    links.sort();
    Ok(links)
}

/// Command-line options that shape the image, in the order given (later labels override).
fn key_options(w: &mut KeyWriter, inputs: &BuildInputs<'_>) -> Result<(), ReuseError> {
    let o = inputs.overrides;
    w.str("set-repo", o.set_repo.as_deref().unwrap_or("\0none"));
    w.str("ignore-repos", if o.ignore_repos { "yes" } else { "no" });
    let dir = absolute(&inputs.image.dir);
    for k in &o.signing_keys {
        let k = absolute(k);
        w.followed_as("signing-key", &key_path(&dir, &k), &k, &[])?;
    }
    for (tag, list) in [
        ("add-repo", &o.add_repos),
        ("add-package", &o.add_packages),
        ("add-bootstrap-package", &o.add_bootstrap_packages),
    ] {
        w.str(tag, &list.join("\n"));
    }
    w.str("delete-package", &inputs.delete_packages.join("\n"));
    let c = &inputs.output;
    w.str("layer-compression", &format!("{:?}", c.layer_compression));
    w.str("compress", &format!("{:?}", c.compress));
    w.str("oci-dir", if c.oci_dir { "yes" } else { "no" });
    w.str("tag", c.tag.as_deref().unwrap_or("\0none"));
    for (k, v) in &c.labels {
        w.str("label", &format!("{k}={v}"));
    }
    w.str(
        "source-date-epoch",
        &c.source_date_epoch
            .map_or_else(|| "\0none".to_string(), |e| e.to_string()),
    );
    Ok(())
}

/// The repositories as resolved (`apt-host:/` through this host's sources), with their keys;
/// returns them for the package set.
fn key_repositories(
    w: &mut KeyWriter,
    inputs: &BuildInputs<'_>,
) -> Result<Vec<ResolvedRepo>, ReuseError> {
    let specs = plan::repository_specs(inputs.image, inputs.overrides)?;
    let repos = specs
        .iter()
        .map(|s| ResolvedRepo::resolve(s, &inputs.plan.apt_dir))
        .collect::<Result<Vec<_>, _>>()?;
    for r in &repos {
        w.str("repo", &format!("{:?}", r.spec));
        w.str("base-uri", &r.base_uri);
        w.str("inline-key", r.inline_key.as_deref().unwrap_or("\0none"));
        for k in &r.keyrings {
            w.followed("keyring", k, &[])?;
        }
    }
    Ok(repos)
}

/// The package set: pinned by the lock file, or decided by the repositories' current state
/// (their signed Release files).
fn key_package_set(
    w: &mut KeyWriter,
    inputs: &BuildInputs<'_>,
    repos: &[ResolvedRepo],
) -> Result<(), ReuseError> {
    let lock = &inputs.plan.lock_path;
    if !inputs.plan.ignore_lock && lock.exists() {
        w.field("lock", &std::fs::read(lock).map_err(|e| io(lock, e))?);
        return Ok(());
    }
    let usable: Vec<&ResolvedRepo> = repos.iter().filter(|r| !r.spec.imageonly).collect();
    if usable.is_empty() {
        return Ok(());
    }
    for f in fetch_releases(&usable, inputs.plan)? {
        let f = f?;
        w.str("release-url", &f.url);
        w.field("release", &f.raw);
    }
    Ok(())
}

/// The rpm side of the repositories and package set: each repository as specified with its
/// key files, then the lock, or each repository's signed `repomd.xml` as fetched and verified
/// now (it names the checksum of every metadata file, so it decides the package set).
fn key_rpm_packages(w: &mut KeyWriter, inputs: &BuildInputs<'_>) -> Result<(), ReuseError> {
    let specs = plan::repository_specs(inputs.image, inputs.overrides)?;
    for s in &specs {
        w.str("rpm-repo", &format!("{s:?}"));
        for k in s.signing_key_paths().map_err(PlanError::from)? {
            w.followed("keyring", &k, &[])?;
        }
    }
    let lock = &inputs.plan.lock_path;
    if !inputs.plan.ignore_lock && lock.exists() {
        w.field("lock", &std::fs::read(lock).map_err(|e| io(lock, e))?);
        return Ok(());
    }
    let opts = PlanOptions {
        progress: Progress::Quiet,
        ..inputs.plan.clone()
    };
    let (cache, fetcher) = plan::open_cache(&opts)?;
    let ctx = crate::rpm::repo::RpmContext::new(&cache, &fetcher, &inputs.image.dir);
    // repomd.xml alone (signature checked): it pins every metadata file, so the packages the
    // plan would choose are decided without reading them.
    for s in specs.iter().filter(|s| !s.imageonly) {
        let repomd = crate::rpm::repo::fetch_repomd(s, &ctx).map_err(PlanError::from)?;
        w.str("repomd-url", &repomd.repomd_url);
        w.str("repomd", &repomd.repomd_digest.to_hex());
    }
    Ok(())
}

/// Each repository's (In)Release, fetched in parallel and checked as the plan checks it, in the
/// order of `repos`.
fn fetch_releases(
    repos: &[&ResolvedRepo],
    plan_opts: &PlanOptions,
) -> Result<Vec<Result<release::FetchedRelease, ReleaseError>>, ReuseError> {
    let opts = PlanOptions {
        progress: Progress::Quiet,
        ..plan_opts.clone()
    };
    let (cache, fetcher) = plan::open_cache(&opts)?;
    // The same date checks as the plan's: a replayed Release must not select an old result
    // either. The key need not see the override: it holds the Release itself.
    let ctx = RepoContext {
        apt_dir: opts.apt_dir.clone(),
        allow_older_release: opts.allow_older_release,
        ..RepoContext::new(&cache, &fetcher)
    };
    Ok(std::thread::scope(|s| {
        let handles: Vec<_> = repos
            .iter()
            .map(|r| s.spawn(|| release::fetch_release(r, &ctx)))
            .collect();
        handles
            .into_iter()
            .zip(repos)
            .map(|(h, r)| {
                h.join().unwrap_or_else(|_| {
                    Err(ReleaseError::Parse {
                        url: r.dist_url(),
                        message: "release worker panicked".into(),
                    })
                })
            })
            .collect()
    }))
}

/// Base images of a derived build: the reference and the bytes behind it. Returns why the key
/// cannot be known when a base cannot be pinned down locally (a base in a registry).
fn key_bases(
    w: &mut KeyWriter,
    image: &ResolvedImage,
    pinned: &BTreeMap<String, PinnedBase>,
) -> Result<Option<String>, ReuseError> {
    for given in &image.build_type.derived_from {
        // A registry base is the image its manifest digest names (content-addressed).
        if let Some(p) = pinned.get(given.trim()) {
            w.str("base", given.trim());
            w.str("base-digest", &p.manifest_digest);
            continue;
        }
        let uri = crate::rootfs::base::resolve_base_uri(given.trim(), &image.dir);
        w.str("base", &uri);
        let source = match BaseSource::parse(&uri) {
            Ok(s) => s,
            Err(ImageError::Option { reason, .. }) => {
                return Ok(Some(format!("base image {reason}")));
            }
            Err(source) => return Err(ReuseError::Base { uri, source }),
        };
        match source {
            BaseSource::OciArchive(p) | BaseSource::DockerArchive(p) => {
                w.followed("base-archive", &p, &[])?;
            }
            BaseSource::OciLayout(d, tag) => {
                w.str("base-tag", tag.as_deref().unwrap_or("\0none"));
                w.followed("base-layout", &d, &[])?;
            }
        }
    }
    Ok(None)
}

/// Whether the result in a target directory can be reused.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// The result is complete, intact and built from the same inputs.
    Reuse(Created),
    /// It cannot be reused, and why.
    Rebuild(String),
}

/// Checks the result in `target_dir` against `key`: `result.json` must record this inputs key
/// and every file it lists must be there with its recorded size and sha256 (and a matching
/// `.sha256` file), every directory with its recorded tree digest. Anything unreadable means
/// rebuild.
pub fn check(target_dir: &Path, key: &str) -> Verdict {
    match check_result(target_dir, key) {
        Ok(c) => Verdict::Reuse(c),
        Err(reason) => Verdict::Rebuild(reason),
    }
}

fn check_result(target: &Path, key: &str) -> Result<Created, String> {
    let rj = target.join("result.json");
    let text = match std::fs::read_to_string(&rj) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("no previous result in {}", target.display()));
        }
        Err(e) => return Err(format!("{}: {e}", rj.display())),
    };
    let created: Created =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", rj.display()))?;
    if created.inputs.as_deref() != Some(key) {
        return Err("the inputs changed".to_string());
    }
    if created.files.is_empty() {
        return Err(format!("{} lists no files", rj.display()));
    }
    for f in &created.files {
        let plain = Path::new(&f.name)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if f.name.is_empty() || !plain {
            return Err(format!("{}: bad file name {:?}", rj.display(), f.name));
        }
        let path = target.join(&f.name);
        let bad = |what: &str| format!("{}: {what}", path.display());
        let meta = path.symlink_metadata().map_err(|e| bad(&e.to_string()))?;
        match (&f.sha256, f.size, &f.tree) {
            (Some(sha), Some(size), _) => {
                if !meta.is_file() || meta.len() != size {
                    return Err(bad("size differs from the recorded one"));
                }
                let got = hex::encode(file_sha256(&path).map_err(|e| e.to_string())?);
                if &got != sha {
                    return Err(bad("content differs from the recorded sha256"));
                }
                let side = target.join(format!("{}.sha256", f.name));
                let want = format!("{sha}  {}\n", f.name);
                match std::fs::read_to_string(&side) {
                    Ok(t) if t == want => {}
                    _ => return Err(format!("{}: missing or changed", side.display())),
                }
            }
            (None, None, Some(tree)) => {
                if !meta.is_dir() {
                    return Err(bad("not a directory"));
                }
                if &tree_digest(&path).map_err(|e| e.to_string())? != tree {
                    return Err(bad("contents differ from the recorded tree digest"));
                }
            }
            _ => return Err(bad("no digest recorded")),
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{ResultFile, ResultKind};
    use crate::description::{self, Selection};
    use sha2::{Digest, Sha256};
    use std::fs;

    const XML: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<image schemaversion="8.5" name="reuse-test">
    <description type="system">
        <author>t</author>
        <contact>t@localhost</contact>
        <specification>reuse test</specification>
    </description>
    <preferences>
        <version>1.0.0</version>
        <packagemanager>apt</packagemanager>
        <type image="docker"/>
    </preferences>
    <repository type="apt-deb" distribution="trixie" components="main">
        <source path="http://127.0.0.1:9/debian"/>
    </repository>
    <packages type="image">
        <package name="hello"/>
    </packages>
    <packages type="bootstrap">
        <package name="base-files"/>
    </packages>
</image>
"#;

    /// A description directory with config.xml, config.sh, a lock file (so no repository is
    /// asked) and a `root/` overlay, its files written in `order`.
    fn description_dir(dir: &Path, reversed: bool) {
        let mut files: Vec<(&str, &[u8])> = vec![
            ("config.xml", XML.as_bytes()),
            ("config.sh", b"#!/bin/sh\necho configured\n"),
            ("imgbuild.lock", b"lock v1\n"),
            ("root/etc/motd", b"hello\n"),
            ("root/etc/issue", b"issue\n"),
        ];
        if reversed {
            files.reverse();
        }
        for (name, data) in files {
            let p = dir.join(name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, data).unwrap();
        }
    }

    struct Setup {
        desc: Description,
        image: ResolvedImage,
        overrides: Overrides,
        plan: PlanOptions,
        create: CreateOptions,
        apt: tempfile::TempDir,
        bases: BTreeMap<String, PinnedBase>,
    }

    fn setup(dir: &Path) -> Setup {
        let desc = description::load(dir).unwrap();
        let image = desc
            .resolve(&Selection {
                profiles: Vec::new(),
                build_type: None,
                target_arch: "x86_64".into(),
            })
            .unwrap();
        let apt = tempfile::tempdir().unwrap();
        let plan = PlanOptions {
            cache_dir: dir.join("no-cache"),
            offline: false,
            lock_path: dir.join("imgbuild.lock"),
            ignore_lock: false,
            progress: Progress::Quiet,
            apt_dir: apt.path().to_path_buf(),
            allow_older_release: false,
        };
        let create = CreateOptions {
            target_dir: dir.join("out"),
            layer_compression: Compression::default(),
            compress: Compression::None,
            oci_dir: false,
            tag: None,
            labels: Vec::new(),
            source_date_epoch: None,
            threads: 0,
            inputs: None,
            hook_timeout: None,
            replace_target_dir: false,
            verbose: false,
        };
        Setup {
            desc,
            image,
            overrides: Overrides::default(),
            plan,
            create,
            apt,
            bases: BTreeMap::new(),
        }
    }

    fn inputs_of(s: &Setup, skip: Vec<PathBuf>) -> BuildInputs<'_> {
        BuildInputs {
            description: &s.desc,
            image: &s.image,
            overrides: &s.overrides,
            delete_packages: &[],
            plan: &s.plan,
            output: OutputOptions::from(&s.create),
            tool: "imgbuild test".into(),
            skip,
            bases: &s.bases,
        }
    }

    fn key_of(s: &Setup) -> String {
        let inputs = inputs_of(s, vec![absolute(&s.create.target_dir)]);
        match inputs_key(&inputs).unwrap() {
            InputsKey::Known(k) => k,
            InputsKey::Unknown(r) => panic!("no key: {r}"),
        }
    }

    fn key_in(dir: &Path) -> String {
        let s = setup(dir);
        let _ = &s.apt;
        key_of(&s)
    }

    #[test]
    fn the_key_ignores_write_order_location_mtimes_and_the_target_dir() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("elsewhere/b"));
        description_dir(&a, false);
        description_dir(&b, true);
        let ka = key_in(&a);
        assert!(ka.starts_with("sha256:") && ka.len() == 71, "{ka}");
        assert_eq!(ka, key_in(&b));
        // Touching a file, or a result written into the (default) target dir inside the
        // description directory, changes nothing.
        let f = fs::File::options()
            .write(true)
            .open(a.join("config.sh"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        fs::create_dir_all(a.join("out")).unwrap();
        fs::write(a.join("out/result.json"), "{}").unwrap();
        fs::create_dir_all(a.join(".imgbuild-root-x/root")).unwrap();
        assert_eq!(ka, key_in(&a));
    }

    #[test]
    fn archives_inside_the_directory_are_named_relative_to_it() {
        let t = tempfile::tempdir().unwrap();
        let with_archive = XML.replace(
            "<package name=\"hello\"/>",
            "<package name=\"hello\"/>\n        <archive name=\"overlay.tar\"/>",
        );
        let keys: Vec<String> = ["a", "elsewhere/deeper/b"]
            .iter()
            .map(|d| {
                let dir = t.path().join(d);
                description_dir(&dir, false);
                fs::write(dir.join("config.xml"), &with_archive).unwrap();
                fs::write(dir.join("overlay.tar"), "tar").unwrap();
                key_in(&dir)
            })
            .collect();
        assert_eq!(keys[0], keys[1]);
        // The archive's content is in the key.
        fs::write(t.path().join("a/overlay.tar"), "TAR").unwrap();
        assert_ne!(key_in(&t.path().join("a")), keys[0]);
        // A path outside the directory stays absolute.
        let dir = t.path().join("a");
        assert_eq!(key_path(&dir, &dir.join("x/y")), Path::new("x/y"));
        assert_eq!(key_path(&dir, &dir.join("../o")), t.path().join("o"));
    }

    #[test]
    fn the_tool_is_the_version_and_the_source_not_the_executable() {
        let id = tool_identity();
        assert!(id.starts_with(&format!("imgbuild {} sha256:", env!("CARGO_PKG_VERSION"))));
        assert_eq!(
            id.len(),
            format!("imgbuild {} ", env!("CARGO_PKG_VERSION")).len() + 71
        );
        let exe = std::env::current_exe().unwrap();
        assert!(!id.contains(&*exe.to_string_lossy()), "{id}");
    }

    #[test]
    fn every_description_file_is_in_the_key() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("d");
        description_dir(&dir, false);
        let base = key_in(&dir);
        let mut seen = vec![base.clone()];
        let mut changed = |what: &str, change: &dyn Fn(&Path), undo: &dyn Fn(&Path)| {
            change(&dir);
            let k = key_in(&dir);
            assert!(!seen.contains(&k), "{what} did not change the key");
            seen.push(k);
            undo(&dir);
            assert_eq!(key_in(&dir), base, "undoing {what}");
        };
        changed(
            "a byte of config.sh",
            &|d| fs::write(d.join("config.sh"), b"#!/bin/sh\necho configureD\n").unwrap(),
            &|d| fs::write(d.join("config.sh"), b"#!/bin/sh\necho configured\n").unwrap(),
        );
        changed(
            "a byte of config.xml",
            &|d| fs::write(d.join("config.xml"), XML.replace("hello", "hellp")).unwrap(),
            &|d| fs::write(d.join("config.xml"), XML).unwrap(),
        );
        changed(
            "a byte under root/",
            &|d| fs::write(d.join("root/etc/motd"), b"hellO\n").unwrap(),
            &|d| fs::write(d.join("root/etc/motd"), b"hello\n").unwrap(),
        );
        changed(
            "a mode under root/",
            &|d| {
                fs::set_permissions(
                    d.join("root/etc/motd"),
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                )
                .unwrap();
            },
            &|d| {
                fs::set_permissions(
                    d.join("root/etc/motd"),
                    std::os::unix::fs::PermissionsExt::from_mode(0o644),
                )
                .unwrap();
            },
        );
        changed(
            "a new empty file",
            &|d| fs::write(d.join("images.sh"), b"").unwrap(),
            &|d| fs::remove_file(d.join("images.sh")).unwrap(),
        );
        changed(
            "a file renamed",
            &|d| fs::rename(d.join("root/etc/issue"), d.join("root/etc/issue.net")).unwrap(),
            &|d| fs::rename(d.join("root/etc/issue.net"), d.join("root/etc/issue")).unwrap(),
        );
        changed(
            "a symlink target",
            &|d| std::os::unix::fs::symlink("motd", d.join("root/etc/link")).unwrap(),
            &|d| fs::remove_file(d.join("root/etc/link")).unwrap(),
        );
        changed(
            "the lock file",
            &|d| fs::write(d.join("imgbuild.lock"), b"lock v2\n").unwrap(),
            &|d| fs::write(d.join("imgbuild.lock"), b"lock v1\n").unwrap(),
        );
    }

    #[test]
    fn a_linked_overlay_outside_the_directory_is_followed() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("d");
        description_dir(&dir, false);
        fs::remove_dir_all(dir.join("root")).unwrap();
        let outside = t.path().join("overlay");
        fs::create_dir_all(outside.join("etc")).unwrap();
        fs::write(outside.join("etc/motd"), "one").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("root")).unwrap();
        let k1 = key_in(&dir);
        fs::write(outside.join("etc/motd"), "two").unwrap();
        assert_ne!(k1, key_in(&dir));
    }

    #[test]
    fn output_options_and_the_epoch_are_in_the_key() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("d");
        description_dir(&dir, false);
        let mut s = setup(&dir);
        let base = key_of(&s);
        let mut seen = vec![base.clone()];
        let mut check = |what: &str, s: &Setup| {
            let k = key_of(s);
            assert!(!seen.contains(&k), "{what} did not change the key");
            seen.push(k);
        };
        s.create.labels = vec![("a".into(), "1".into())];
        check("a label", &s);
        s.create.labels = vec![("a".into(), "2".into())];
        check("a label value", &s);
        s.create.labels = vec![("a".into(), "2".into()), ("b".into(), "1".into())];
        check("a second label", &s);
        s.create.layer_compression = Compression::Zstd(3);
        check("--layer-compression zstd", &s);
        s.create.compress = Compression::Gzip(6);
        check("--compress gzip", &s);
        s.create.oci_dir = true;
        check("--oci-dir", &s);
        s.create.tag = Some("t".into());
        check("--set-container-tag", &s);
        s.create.source_date_epoch = Some(1);
        check("SOURCE_DATE_EPOCH=1", &s);
        s.create.source_date_epoch = Some(2);
        check("SOURCE_DATE_EPOCH=2", &s);
        s.overrides.add_packages = vec!["curl".into()];
        check("--add-package", &s);
        s.overrides.add_repos = vec!["http://127.0.0.1:9/other,apt-deb,o".into()];
        check("--add-repo", &s);
        // What does not change the output stays out: threads, cache dir and target dir.
        let k = key_of(&s);
        s.create.threads = 7;
        s.create.target_dir = dir.join("other-target");
        s.plan.cache_dir = dir.join("other-cache");
        assert_eq!(key_of(&s), k);
        // Ignoring the lock file means reading the repository's Release: offline, from the
        // cache, which has none here.
        s.plan.ignore_lock = true;
        s.plan.offline = true;
        assert!(inputs_key(&inputs_of(&s, Vec::new())).is_err());
    }

    /// A result directory as `create` writes it: a file with its `.sha256`, an OCI-layout-like
    /// directory and result.json with `key`.
    fn result_dir(dir: &Path, key: &str) {
        fs::create_dir_all(dir.join("img.oci/blobs")).unwrap();
        fs::write(dir.join("img.oci/blobs/x"), "blob").unwrap();
        let data = b"image bytes";
        fs::write(dir.join("img.tar"), data).unwrap();
        let sha = hex::encode(Sha256::digest(data));
        fs::write(dir.join("img.tar.sha256"), format!("{sha}  img.tar\n")).unwrap();
        let created = Created {
            name: "img".into(),
            tags: vec!["img:1".into()],
            manifest_digest: None,
            config_digest: None,
            layers: Vec::new(),
            source_date_epoch: 1,
            files: vec![
                ResultFile {
                    kind: ResultKind::DockerArchive,
                    name: "img.tar".into(),
                    sha256: Some(sha),
                    size: Some(data.len() as u64),
                    tree: None,
                },
                ResultFile {
                    kind: ResultKind::OciLayout,
                    name: "img.oci".into(),
                    sha256: None,
                    size: None,
                    tree: Some(tree_digest(&dir.join("img.oci")).unwrap()),
                },
            ],
            inputs: Some(key.into()),
            pushed: Vec::new(),
            platforms: Vec::new(),
        };
        fs::write(
            dir.join("result.json"),
            serde_json::to_string(&created).unwrap(),
        )
        .unwrap();
    }

    fn reused(dir: &Path, key: &str) -> bool {
        match check(dir, key) {
            Verdict::Reuse(c) => {
                assert_eq!(c.tags, ["img:1"]);
                true
            }
            Verdict::Rebuild(reason) => {
                assert!(!reason.is_empty());
                false
            }
        }
    }

    #[test]
    fn only_an_intact_result_of_the_same_inputs_is_reused() {
        type Breakage<'a> = (&'a str, Box<dyn Fn() + 'a>);
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("out");
        assert!(!reused(&dir, "sha256:k"), "no result at all");
        let fresh = || {
            let _ = fs::remove_dir_all(&dir);
            result_dir(&dir, "sha256:k");
            assert!(reused(&dir, "sha256:k"));
        };
        fresh();
        assert!(!reused(&dir, "sha256:other"), "other inputs");

        let breakages: Vec<Breakage> = vec![
            (
                "truncated",
                Box::new(|| fs::write(dir.join("img.tar"), b"image").unwrap()),
            ),
            (
                "corrupted, same size",
                Box::new(|| fs::write(dir.join("img.tar"), b"image bytez").unwrap()),
            ),
            (
                "deleted",
                Box::new(|| fs::remove_file(dir.join("img.tar")).unwrap()),
            ),
            (
                "checksum file changed",
                Box::new(|| fs::write(dir.join("img.tar.sha256"), "0  img.tar\n").unwrap()),
            ),
            (
                "checksum file deleted",
                Box::new(|| fs::remove_file(dir.join("img.tar.sha256")).unwrap()),
            ),
            (
                "layout blob changed",
                Box::new(|| fs::write(dir.join("img.oci/blobs/x"), "blub").unwrap()),
            ),
            (
                "layout file added",
                Box::new(|| fs::write(dir.join("img.oci/blobs/y"), "").unwrap()),
            ),
            (
                "result.json garbled",
                Box::new(|| fs::write(dir.join("result.json"), "{").unwrap()),
            ),
            (
                "result.json without inputs",
                Box::new(|| {
                    let p = dir.join("result.json");
                    let mut v: serde_json::Value =
                        serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
                    v.as_object_mut().unwrap().remove("inputs");
                    fs::write(&p, v.to_string()).unwrap();
                }),
            ),
            (
                "a file name leaving the directory",
                Box::new(|| {
                    let p = dir.join("result.json");
                    let text = fs::read_to_string(&p).unwrap();
                    fs::write(&p, text.replace("\"img.tar\"", "\"../out/img.tar\"")).unwrap();
                }),
            ),
        ];
        for (what, breakage) in &breakages {
            fresh();
            breakage();
            assert!(!reused(&dir, "sha256:k"), "{what}: reused");
        }
    }
}
