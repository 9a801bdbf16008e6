//! `create`: a prepared root tree finished and written as image files.
//!
//! [`create`] runs `images.sh`, removes volatile files, then packs the tree in one streaming
//! pass into a layer and writes the result files KIWI writes
//! (`<name>.<arch>-<version>.docker.tar`, `.oci.tar`, `.tar.xz` for tbz), the `.packages` list,
//! the SBOM, a `.sha256` per result and `result.json`. Everything goes to a temporary directory
//! beside the target first and replaces the target in one rename, so a target directory is never
//! half written. A whole build (the reuse check, `prepare` into a work root, then this `create`)
//! is `crate::ops::build`.
//!
//! Only a result imgbuild wrote is ever replaced: an existing target must be empty or hold a
//! `result.json` of imgbuild's and nothing it does not list ([`check_target`]), unless the caller
//! opts in with [`CreateOptions::replace_target_dir`].

use crate::description::{Loc, ResolvedImage};
use crate::image::base::BaseImage;
use crate::image::config::{BaseRef, assemble};
use crate::image::output::{
    OutputFile, write_docker_archive, write_oci_archive, write_oci_layout, write_rootfs_tarball,
    write_sha256_line,
};
use crate::image::walk::Excludes;
use crate::image::{self, Compression, HistoryEntry, ImageSpec, LayerOptions};
use crate::rootfs::prepared::PreparedRoot;
use crate::rootfs::{RootfsError, cleanup, files, hooks};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod base;
pub mod kiwi_result;

/// Errors of `create`.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A base of a derived image could not be opened, or changed since `prepare`.
    #[error(transparent)]
    Base(#[from] base::BaseError),
    /// A root-tree step failed.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    /// `images.sh` failed.
    #[error(transparent)]
    Hook(#[from] hooks::HookError),
    /// A file `prepare` kept in the root is unreadable.
    #[error(transparent)]
    Prepared(#[from] crate::rootfs::prepared::PreparedError),
    /// Writing the image failed.
    #[error(transparent)]
    Image(#[from] image::ImageError),
    /// Volatile files could not be removed.
    #[error(transparent)]
    Cleanup(#[from] cleanup::CleanupError),
    /// The SBOM could not be written.
    #[error(transparent)]
    Sbom(#[from] crate::sbom::SbomError),
    /// The rpm database could not be read.
    #[error(transparent)]
    RpmDb(#[from] crate::rootfs::rpmdb::RpmDbError),
    /// A result directory could not be digested.
    #[error(transparent)]
    Digest(#[from] crate::digest::DigestError),
    /// The description asks for an output imgbuild does not write.
    #[error("{location}: {message}")]
    Unsupported {
        /// Where in the description.
        location: String,
        /// What is not supported.
        message: String,
    },
    /// The target directory holds files imgbuild did not write.
    #[error(
        "{path}: not replacing the target directory: {found} (give a new or empty directory, or --replace-target-dir to replace it with everything in it)"
    )]
    TargetNotOurs {
        /// The target directory.
        path: PathBuf,
        /// What was found: a file imgbuild did not write, or a missing or foreign `result.json`.
        found: String,
    },
    /// The target exists and is not a directory.
    #[error("{path}: the target exists and is not a directory ({kind}); give a directory path")]
    TargetNotDirectory {
        /// The target.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// A work directory beside the target could not be made.
    #[error(transparent)]
    WorkDir(#[from] crate::workdir::WorkDirError),
    /// An option value is malformed.
    #[error("{option}: {message}")]
    BadOption {
        /// The option.
        option: String,
        /// What is wrong.
        message: String,
    },
    /// `result.json` could not be serialised.
    #[error("{path}: {source}")]
    ResultJson {
        /// The file that was to be written.
        path: PathBuf,
        /// What went wrong.
        source: serde_json::Error,
    },
}

fn io(path: &Path, source: std::io::Error) -> BuildError {
    BuildError::Rootfs(RootfsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Options of `create` (and the create half of `build`).
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Directory the result files go to (replaced as a whole).
    pub target_dir: PathBuf,
    /// Layer compression (gzip by default, the widest compatibility; or zstd).
    pub layer_compression: Compression,
    /// Compression of the archives themselves (KIWI's `container: compress`); none by default.
    pub compress: Compression,
    /// Also write a plain OCI image layout directory.
    pub oci_dir: bool,
    /// `--set-container-tag`.
    pub tag: Option<String>,
    /// `--add-container-label`, added or overriding.
    pub labels: Vec<(String, String)>,
    /// `SOURCE_DATE_EPOCH`; default: the newest changelog date among the installed packages.
    pub source_date_epoch: Option<u64>,
    /// Compression threads (0: every core). The bytes do not depend on it.
    pub threads: usize,
    /// The inputs key recorded in `result.json` (see [`crate::reuse`]); none: not reusable.
    pub inputs: Option<String>,
    /// The longest `images.sh` may run; none: no limit.
    pub hook_timeout: Option<Duration>,
    /// Replace an existing target directory even when imgbuild did not write it.
    pub replace_target_dir: bool,
    /// Show the output of a successful `images.sh` on stderr too.
    pub verbose: bool,
}

impl CreateOptions {
    /// Checks the tag and label names by the rules a description's own obey (see
    /// [`crate::reference`]), so no archive is written that podman or docker would refuse.
    pub fn check(&self) -> Result<(), BuildError> {
        let bad = |option: &str, e: crate::reference::InvalidName| BuildError::BadOption {
            option: option.to_string(),
            message: e.to_string(),
        };
        if let Some(t) = &self.tag {
            crate::reference::check_tag(t).map_err(|e| bad("--set-container-tag", e))?;
        }
        for (name, _) in &self.labels {
            crate::reference::check_label_name(name)
                .map_err(|e| bad("--add-container-label", e))?;
        }
        Ok(())
    }
}

/// The image types imgbuild writes (`<type image=…>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageType {
    /// A docker-archive (`docker save`'s format).
    Docker,
    /// An oci-archive.
    Oci,
    /// A rootfs tarball, no container metadata.
    Tbz,
}

impl ImageType {
    /// The type `image` is resolved for; any other is an error naming its `<type>`.
    pub fn of(image: &ResolvedImage) -> Result<ImageType, BuildError> {
        match image.build_type.image.as_str() {
            "docker" => Ok(ImageType::Docker),
            "oci" => Ok(ImageType::Oci),
            "tbz" => Ok(ImageType::Tbz),
            other => Err(BuildError::Unsupported {
                location: Loc::describe(&image.build_type.loc),
                message: format!(
                    "image type {other:?} is not supported (imgbuild writes docker, oci and tbz)"
                ),
            }),
        }
    }
}

/// What a result file is, as `result.json` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResultKind {
    /// `docker-archive`: the image in `docker save`'s format.
    DockerArchive,
    /// `oci-archive`: a tar of an OCI image layout.
    OciArchive,
    /// `oci-layout`: an OCI image layout directory.
    OciLayout,
    /// `rootfs`: the root tree as a tarball (the `tbz` type).
    Rootfs,
    /// `packages`: the installed packages in KIWI's `.packages` format.
    Packages,
    /// `sbom`: the SPDX document of the installed packages.
    Sbom,
    /// `kiwi-result`: KIWI's result index, `kiwi.result.json` ([`kiwi_result`]).
    KiwiResult,
    /// `platform`: the directory of one architecture's result in a multi-architecture build.
    Platform,
}

/// One file written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultFile {
    /// What it is.
    pub kind: ResultKind,
    /// File name inside the target directory.
    pub name: String,
    /// sha256 of its bytes (none for a directory).
    pub sha256: Option<String>,
    /// Size in bytes (none for a directory).
    pub size: Option<u64>,
    /// For a directory: [`crate::digest::tree_digest`] of its contents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<String>,
}

impl ResultFile {
    /// The entry of a file the image writers wrote.
    fn written(kind: ResultKind, f: &OutputFile) -> ResultFile {
        ResultFile {
            kind,
            name: f
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sha256: Some(f.sha256.clone()),
            size: Some(f.size),
            tree: None,
        }
    }
}

/// What `create` made; also written as `result.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Created {
    /// Image name.
    pub name: String,
    /// Every `name:tag` of the image.
    pub tags: Vec<String>,
    /// `sha256:` digest of the manifest (the image's identity in registries).
    pub manifest_digest: Option<String>,
    /// `sha256:` digest of the config (the image id podman and docker show).
    pub config_digest: Option<String>,
    /// Layer digests, base first.
    pub layers: Vec<String>,
    /// The `SOURCE_DATE_EPOCH` used.
    pub source_date_epoch: u64,
    /// The files written.
    pub files: Vec<ResultFile>,
    /// The inputs key of the build (see [`crate::reuse`]), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<String>,
    /// Registry references the image was pushed to (`build --push`), with the manifest digest
    /// the registry holds; not part of the result's identity (reuse ignores it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pushed: Vec<Pushed>,
    /// A multi-architecture build's architectures, each in a directory of its own (listed in
    /// `files` as `platform`); `manifest_digest` is then the image index's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<PlatformImage>,
}

/// One architecture's image in a multi-architecture result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformImage {
    /// The `--target-arch` name (`x86_64`, `aarch64`).
    pub arch: String,
    /// The OCI platform (`linux/arm64/v8`).
    pub platform: String,
    /// The directory of its result files, relative to the target.
    pub dir: String,
    /// Its image manifest's digest (as a single-architecture build of it gives).
    pub manifest_digest: String,
}

/// A push of the built image, as `result.json` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pushed {
    /// The registry reference pushed to (no credentials).
    pub reference: String,
    /// The manifest digest pushed.
    pub digest: String,
}

/// Adds `pushed` to the `result.json` of `target` (replacing entries of the same reference),
/// written atomically; the listed files and the inputs key are unchanged, so the result stays
/// reusable.
pub fn record_pushed(target: &Path, pushed: &[Pushed]) -> Result<Created, BuildError> {
    let path = target.join("result.json");
    let text = std::fs::read(&path).map_err(|e| io(&path, e))?;
    let mut created: Created =
        serde_json::from_slice(&text).map_err(|source| BuildError::ResultJson {
            path: path.clone(),
            source,
        })?;
    for p in pushed {
        created.pushed.retain(|q| q.reference != p.reference);
        created.pushed.push(p.clone());
    }
    let json = serde_json::to_string_pretty(&created).map_err(|source| BuildError::ResultJson {
        path: path.clone(),
        source,
    })? + "\n";
    crate::atomic::write(&path, json.as_bytes()).map_err(|e| io(&path, e))?;
    Ok(created)
}

/// The KIWI file name stem: `<name>.<arch>-<version>`.
pub fn result_stem(image: &ResolvedImage) -> String {
    format!("{}.{}-{}", image.name, image.arch, image_version(image))
}

/// The image's `<version>`, KIWI's `1.0.0` when the description has none.
pub fn image_version(image: &ResolvedImage) -> String {
    image
        .preferences
        .version
        .as_ref()
        .map_or_else(|| "1.0.0".to_string(), |v| v.value.clone())
}

/// The OCI config and names for `image`, with KIWI's defaults where the description is silent.
pub fn image_spec(image: &ResolvedImage, opts: &CreateOptions, epoch: u64) -> ImageSpec {
    let cc = image.build_type.containerconfig.clone().unwrap_or_default();
    let derived = !image.build_type.derived_from.is_empty();
    let platform = crate::image::platform::Platform::for_machine(&image.arch);
    let command = |c: &crate::description::ContainerCommand| {
        c.execute.as_ref().map(|e| {
            std::iter::once(e.clone())
                .chain(c.arguments.iter().cloned())
                .collect()
        })
    };
    let entrypoint = cc.entrypoint.as_ref().and_then(command);
    let mut cmd = cc.subcommand.as_ref().and_then(command);
    let clear_entrypoint = cc.entrypoint.as_ref().is_some_and(|e| e.clear);
    let clear_cmd = cc.subcommand.as_ref().is_some_and(|e| e.clear);
    // KIWI: Cmd /bin/bash for a non-derived image with neither entrypoint nor subcommand.
    if !derived && entrypoint.is_none() && cmd.is_none() && !clear_cmd {
        cmd = Some(vec!["/bin/bash".to_string()]);
    }
    let mut labels: BTreeMap<String, String> = cc
        .labels
        .iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect();
    for (k, v) in &opts.labels {
        labels.insert(k.clone(), v.clone());
    }
    let desc_author = image.description.as_ref().and_then(|d| {
        d.author.as_ref().map(|a| match d.contacts.first() {
            Some(c) => format!("{a} <{c}>"),
            None => a.clone(),
        })
    });
    let author = cc.maintainer.clone().or(desc_author.clone());
    let history = cc.history.clone().unwrap_or_default();
    let version = image.preferences.version.as_ref().map(|v| v.value.clone());
    let mut annotations = BTreeMap::new();
    if let Some(v) = &version {
        annotations.insert("org.opencontainers.image.version".to_string(), v.clone());
    }
    annotations.insert(
        "org.opencontainers.image.title".to_string(),
        image
            .displayname
            .clone()
            .unwrap_or_else(|| image.name.clone()),
    );
    if let Some(spec) = image
        .description
        .as_ref()
        .and_then(|d| d.specification.clone())
    {
        annotations.insert("org.opencontainers.image.description".to_string(), spec);
    }
    if let Some(a) = &author {
        annotations.insert("org.opencontainers.image.authors".to_string(), a.clone());
    }
    ImageSpec {
        name: if cc.name.is_empty() {
            "kiwi-container".to_string()
        } else {
            cc.name.clone()
        },
        tag: opts
            .tag
            .clone()
            .or(cc.tag.clone())
            .unwrap_or_else(|| "latest".to_string()),
        additional_names: cc.additionalnames.clone(),
        entrypoint,
        clear_entrypoint,
        cmd,
        clear_cmd,
        env: cc
            .environment
            .iter()
            .map(|e| format!("{}={}", e.name, e.value))
            .collect(),
        labels,
        exposed_ports: cc.expose.clone(),
        volumes: cc.volumes.clone(),
        user: cc.user.clone(),
        working_dir: cc.workingdir.clone(),
        stop_signal: cc.stopsignal.clone(),
        author: author.clone(),
        created: epoch,
        // The OCI names (`arm64`/`v8`, `arm`/`v7`, `386`), which differ from Debian's.
        architecture: platform.architecture,
        os: platform.os,
        variant: platform.variant,
        history: vec![HistoryEntry {
            created_by: Some(
                history
                    .created_by
                    .unwrap_or_else(|| format!("imgbuild {}", env!("CARGO_PKG_VERSION"))),
            ),
            comment: history.comment,
            author: history.author.or(author),
            empty_layer: false,
        }],
        annotations,
        base: None,
    }
}

/// Refuse a `target` that a build must not replace: anything but a directory, and, unless
/// `replace` is set, a non-empty directory that is not a result imgbuild wrote (a `result.json`
/// that parses as one, and no entry it does not list). A missing or empty target is fine.
// File names are quoted with `{:?}` on purpose: a name with spaces or odd bytes stays readable.
#[allow(clippy::unnecessary_debug_formatting)]
pub fn check_target(target: &Path, replace: bool) -> Result<(), BuildError> {
    let meta = match target.symlink_metadata() {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(target, e)),
    };
    let ft = meta.file_type();
    if !ft.is_dir() {
        return Err(BuildError::TargetNotDirectory {
            path: target.to_path_buf(),
            kind: if ft.is_symlink() {
                "a symlink"
            } else if ft.is_file() {
                "a regular file"
            } else {
                "a special file"
            },
        });
    }
    if replace {
        return Ok(());
    }
    let mut names = Vec::new();
    for e in std::fs::read_dir(target).map_err(|e| io(target, e))? {
        names.push(e.map_err(|e| io(target, e))?.file_name());
    }
    if names.is_empty() {
        return Ok(());
    }
    let not_ours = |found: String| BuildError::TargetNotOurs {
        path: target.to_path_buf(),
        found,
    };
    let result = target.join("result.json");
    let created: Created = match result.symlink_metadata() {
        Ok(m) if m.is_file() => {
            let text = std::fs::read(&result).map_err(|e| io(&result, e))?;
            serde_json::from_slice(&text)
                .map_err(|_| not_ours("its result.json is not imgbuild's".to_string()))?
        }
        _ => {
            names.sort();
            return Err(not_ours(format!(
                "it holds {:?} and no result.json of an imgbuild build",
                names[0]
            )));
        }
    };
    let mut known: std::collections::BTreeSet<std::ffi::OsString> =
        std::iter::once("result.json".into()).collect();
    for f in &created.files {
        known.insert(f.name.clone().into());
        if f.sha256.is_some() {
            known.insert(format!("{}.sha256", f.name).into());
        }
    }
    names.sort();
    match names.iter().find(|n| !known.contains(*n)) {
        Some(foreign) => Err(not_ours(format!(
            "it holds {foreign:?}, which imgbuild did not write"
        ))),
        None => Ok(()),
    }
}

/// Finish the prepared root at `root` and write the image files for `image`, in phases: the
/// checks, `images.sh` and cleanup (stage `finish root`), then, in a work directory beside
/// the target (stage `pack`), the rootfs tarball or the container image (stage `write` once its
/// layer is packed), the `.packages` list, the SBOM, the `.sha256` files and `result.json`; the
/// work directory then replaces the target.
pub fn create(
    root: &Path,
    image: &ResolvedImage,
    opts: &CreateOptions,
    on_step: &mut dyn FnMut(&str),
) -> Result<Created, BuildError> {
    let image_type = check_request(image, opts)?;

    on_step("finish root");
    let epoch = finish_root(root, image, opts)?;

    on_step("pack");
    let pack = Pack::new(root, image, opts, epoch)?;
    let mut created = Created {
        name: image.name.clone(),
        tags: Vec::new(),
        manifest_digest: None,
        config_digest: None,
        layers: Vec::new(),
        source_date_epoch: epoch,
        files: Vec::new(),
        inputs: opts.inputs.clone(),
        pushed: Vec::new(),
        platforms: Vec::new(),
    };
    match image_type {
        ImageType::Tbz => created.files.push(pack.rootfs_tarball()?),
        ImageType::Docker | ImageType::Oci => {
            pack.container(image_type, &mut created, on_step)?;
        }
    }
    created.files.push(pack.packages_list()?);
    created
        .files
        .push(pack.sbom(created.manifest_digest.clone())?);
    created.files.push(pack.kiwi_result(&created)?);
    pack.checksums(&created.files)?;
    pack.result_json(&created)?;
    pack.replace_target()?;
    Ok(created)
}

/// Everything `create` checks before it changes the root: the target may be replaced, the
/// image type is one imgbuild writes (and a container type for a derived image), the names in
/// the options are valid.
fn check_request(image: &ResolvedImage, opts: &CreateOptions) -> Result<ImageType, BuildError> {
    check_target(&opts.target_dir, opts.replace_target_dir)?;
    let image_type = ImageType::of(image)?;
    opts.check()?;
    if image_type == ImageType::Tbz && !image.build_type.derived_from.is_empty() {
        return Err(BuildError::Unsupported {
            location: Loc::describe(&image.build_type.loc),
            message: "derived_from needs a container image type (docker or oci)".to_string(),
        });
    }
    Ok(image_type)
}

/// Runs `images.sh` when the root has one, removes the volatile files, and returns the
/// timestamp of the image: `SOURCE_DATE_EPOCH` if given, else the packages' date `prepare` kept
/// (see [`crate::rootfs::install::packages_epoch`]).
fn finish_root(
    root: &Path,
    image: &ResolvedImage,
    opts: &CreateOptions,
) -> Result<u64, BuildError> {
    if let Some(images_sh) = PreparedRoot::new(root).kept_hook("images.sh") {
        hooks::run_hook(
            root,
            &images_sh,
            "images.sh",
            &files::profile_vars(image),
            opts.hook_timeout,
            opts.verbose,
        )?;
    }
    cleanup::clean(root, image.build_type.ensure_empty_tmpdirs)?;
    if let Some(epoch) = opts.source_date_epoch {
        return Ok(epoch);
    }
    // The date `prepare` kept, taken before the hooks ran; a root prepared before it was kept
    // is dated from its tree as it is now.
    Ok(match PreparedRoot::new(root).epoch()? {
        Some(kept) => kept.seconds,
        None => crate::rootfs::install::package_epoch(root),
    })
}

/// The writing half of `create`: the finished root and what the result files are made from,
/// and the work directory beside the target that they are written into (`out/`, with the
/// image's blobs in `blobs/`) before it replaces the target.
struct Pack<'a> {
    root: &'a Path,
    image: &'a ResolvedImage,
    opts: &'a CreateOptions,
    epoch: u64,
    /// The KIWI file name stem ([`result_stem`]).
    stem: String,
    excludes: Excludes,
    /// Removed with what is left in it when `create` returns.
    work: crate::workdir::WorkDir,
    out: PathBuf,
    blobs: PathBuf,
}

impl<'a> Pack<'a> {
    /// Makes the work directory beside the target (and the target's parent, when missing).
    fn new(
        root: &'a Path,
        image: &'a ResolvedImage,
        opts: &'a CreateOptions,
        epoch: u64,
    ) -> Result<Pack<'a>, BuildError> {
        let parent = crate::atomic::parent_dir(&opts.target_dir);
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        let work = crate::workdir::WorkDir::create(parent, crate::workdir::RESULT_PREFIX)?;
        let out = work.path().join("out");
        let blobs = work.path().join("blobs/sha256");
        std::fs::create_dir_all(&out).map_err(|e| io(&out, e))?;
        std::fs::create_dir_all(&blobs).map_err(|e| io(&blobs, e))?;
        Ok(Pack {
            root,
            image,
            opts,
            epoch,
            stem: result_stem(image),
            excludes: Excludes {
                keep_tmpdirs: !image.build_type.ensure_empty_tmpdirs,
                patterns: Vec::new(),
            },
            work,
            out,
            blobs,
        })
    }

    /// The `tbz` type: the root as a tarball, xz-compressed unless another compression is asked.
    fn rootfs_tarball(&self) -> Result<ResultFile, BuildError> {
        let suffix = match self.opts.compress.suffix() {
            "" => ".xz",
            s => s,
        };
        let compression = if matches!(self.opts.compress, Compression::None) {
            Compression::Xz(6)
        } else {
            self.opts.compress
        };
        let f = write_rootfs_tarball(
            self.root,
            &self.out.join(format!("{}.tar{suffix}", self.stem)),
            &self.excludes,
            self.epoch,
            compression,
            self.opts.threads,
        )?;
        Ok(ResultFile::written(ResultKind::Rootfs, &f))
    }

    /// The `docker` and `oci` types: the root packed as one layer (a diff layer over the bases
    /// of a derived image), the image assembled, then (stage `write`) its archive and, when
    /// asked, an OCI layout directory. Records the names and digests in `created`.
    fn container(
        &self,
        image_type: ImageType,
        created: &mut Created,
        on_step: &mut dyn FnMut(&str),
    ) -> Result<(), BuildError> {
        let docker = image_type == ImageType::Docker;
        let layer_opts = LayerOptions {
            source_date_epoch: self.epoch,
            excludes: self.excludes.clone(),
            compression: self.opts.layer_compression,
            threads: self.opts.threads,
            keep_plain: docker.then(|| self.work.path().join("plain")),
        };
        let mut spec = image_spec(self.image, self.opts, self.epoch);
        let layer = if self.image.build_type.derived_from.is_empty() {
            image::write_layer(self.root, &self.blobs, &layer_opts)?
        } else {
            let snapshot =
                image::TreeSnapshot::load(&PreparedRoot::new(self.root).snapshot_path())?;
            let layer = image::write_diff_layer(&snapshot, self.root, &self.blobs, &layer_opts)?;
            // The base blobs are linked or copied into `blobs`, so the bases (whose blobs may
            // live in temp dirs) can go once the reference is made.
            let bases = base::open_bases(self.root)?;
            for b in &bases {
                b.copy_blobs_to(&self.blobs)?;
            }
            spec.base = Some(combined_base_ref(&bases)?);
            layer
        };
        let built = assemble(&spec, std::slice::from_ref(&layer), &self.blobs)?;
        created.tags.clone_from(&built.repo_tags);
        created.manifest_digest = Some(built.manifest.digest().to_string());
        created.config_digest = Some(built.config.digest().to_string());
        created.layers = built
            .layers
            .iter()
            .map(|l| l.descriptor.digest().to_string())
            .collect();

        on_step("write");
        let (compress, threads, epoch) = (self.opts.compress, self.opts.threads, self.epoch);
        let suffix = compress.suffix();
        let file = if docker {
            let path = self.out.join(format!("{}.docker.tar{suffix}", self.stem));
            let f = write_docker_archive(&built, &path, compress, threads, epoch)?;
            ResultFile::written(ResultKind::DockerArchive, &f)
        } else {
            let path = self.out.join(format!("{}.oci.tar{suffix}", self.stem));
            let f = write_oci_archive(&built, &path, compress, threads, epoch)?;
            ResultFile::written(ResultKind::OciArchive, &f)
        };
        created.files.push(file);
        if self.opts.oci_dir {
            let name = format!("{}.oci", self.stem);
            let dir = self.out.join(&name);
            write_oci_layout(&built, &dir)?;
            created.files.push(ResultFile {
                kind: ResultKind::OciLayout,
                name,
                sha256: None,
                size: None,
                tree: Some(crate::digest::tree_digest(&dir)?),
            });
        }
        Ok(())
    }

    /// `<stem>.packages`: the installed packages in KIWI's format ([`packages_list`]).
    fn packages_list(&self) -> Result<ResultFile, BuildError> {
        let packages = packages_list(self.root)?;
        let name = format!("{}.packages", self.stem);
        let path = self.out.join(&name);
        crate::atomic::write(&path, packages.as_bytes()).map_err(|e| io(&path, e))?;
        Ok(ResultFile {
            kind: ResultKind::Packages,
            name,
            sha256: Some(sha256_hex(packages.as_bytes())),
            size: Some(packages.len() as u64),
            tree: None,
        })
    }

    /// `<stem>.spdx.json`: the SBOM of the installed packages, naming the manifest digest.
    fn sbom(&self, manifest_digest: Option<String>) -> Result<ResultFile, BuildError> {
        let name = format!("{}.spdx.json", self.stem);
        let info = crate::sbom::ImageInfo {
            name: self.image.name.clone(),
            version: image_version(self.image),
            source_date_epoch: self.epoch,
            digest: manifest_digest,
        };
        let sbom = crate::sbom::write(self.root, &info, &self.out.join(&name))?;
        Ok(ResultFile {
            kind: ResultKind::Sbom,
            name,
            sha256: Some(sha256_hex(&sbom)),
            size: Some(sbom.len() as u64),
            tree: None,
        })
    }

    /// A `<file>.sha256` beside every file (not directory) of the result, and both readable by
    /// all, like files cp or tar would make: results are for sharing.
    fn checksums(&self, files: &[ResultFile]) -> Result<(), BuildError> {
        for f in files {
            if let Some(hexd) = &f.sha256 {
                write_sha256_line(&self.out.join(&f.name), hexd)?;
                for name in [f.name.clone(), format!("{}.sha256", f.name)] {
                    let p = self.out.join(name);
                    std::fs::set_permissions(
                        &p,
                        std::os::unix::fs::PermissionsExt::from_mode(0o644),
                    )
                    .map_err(|e| io(&p, e))?;
                }
            }
        }
        Ok(())
    }

    /// KIWI's `kiwi.result.json`, indexing the files written so far.
    fn kiwi_result(&self, created: &Created) -> Result<ResultFile, BuildError> {
        write_kiwi_result(&self.out, created, self.image, &self.opts.target_dir)
    }

    /// `result.json`: `created` as pretty JSON; a value that cannot be serialised is an error,
    /// never an empty file.
    fn result_json(&self, created: &Created) -> Result<(), BuildError> {
        write_result_json(&self.out, created)
    }

    /// The finished result in place of the target, in one rename.
    fn replace_target(&self) -> Result<(), BuildError> {
        replace_dir(&self.out, &self.opts.target_dir)
    }
}

/// Writes KIWI's `kiwi.result.json` into `dir`, indexing the files of `created` as they are
/// (or will be) in `target`; returns its entry for `result.json`.
fn write_kiwi_result(
    dir: &Path,
    created: &Created,
    image: &ResolvedImage,
    target: &Path,
) -> Result<ResultFile, BuildError> {
    let path = dir.join(kiwi_result::FILE_NAME);
    let json = kiwi_result::KiwiResult::of(created, image, target)
        .to_json()
        .map_err(|source| BuildError::ResultJson {
            path: path.clone(),
            source,
        })?;
    crate::atomic::write(&path, json.as_bytes()).map_err(|e| io(&path, e))?;
    Ok(ResultFile {
        kind: ResultKind::KiwiResult,
        name: kiwi_result::FILE_NAME.to_string(),
        sha256: Some(sha256_hex(json.as_bytes())),
        size: Some(json.len() as u64),
        tree: None,
    })
}

/// Makes the finished result in `dir` the one a build into `target` writes, for a result
/// written or fetched elsewhere and moved there: KIWI's `kiwi.result.json` names the files by
/// absolute path, so it (with its `.sha256` and its entry in `result.json`) is written again
/// for `target`, as `create` writes it; then `result.json`. Everything else is
/// content-addressed and stays.
pub fn relocate_result(
    dir: &Path,
    target: &Path,
    image: &ResolvedImage,
    mut created: Created,
) -> Result<Created, BuildError> {
    if let Some(i) = created
        .files
        .iter()
        .position(|f| f.kind == ResultKind::KiwiResult && f.name == kiwi_result::FILE_NAME)
    {
        let file = write_kiwi_result(dir, &created, image, target)?;
        let hexd = file.sha256.clone().unwrap_or_default();
        write_sha256_line(&dir.join(kiwi_result::FILE_NAME), &hexd)?;
        let side = dir.join(format!("{}.sha256", kiwi_result::FILE_NAME));
        std::fs::set_permissions(&side, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .map_err(|e| io(&side, e))?;
        created.files[i] = file;
    }
    write_result_json(dir, &created)?;
    Ok(created)
}

/// Writes `created` as `dir/result.json` (pretty JSON, atomically); a value that cannot be
/// serialised is an error, never an empty file.
pub fn write_result_json(dir: &Path, created: &Created) -> Result<(), BuildError> {
    let path = dir.join("result.json");
    let json = serde_json::to_string_pretty(created).map_err(|source| BuildError::ResultJson {
        path: path.clone(),
        source,
    })? + "\n";
    crate::atomic::write(&path, json.as_bytes()).map_err(|e| io(&path, e))
}

/// Lowercase hex sha256 of `data`.
fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}

/// One base reference for the bases of a comma-separated `derived_from`, applied in order:
/// their layers, `diff_ids` and history concatenated, the runtime config of the last one (as if
/// each had been built `FROM` the one before), names joined by commas and the last manifest
/// digest.
fn combined_base_ref(bases: &[BaseImage]) -> Result<BaseRef, BuildError> {
    let Some(last) = bases.last() else {
        return Err(BuildError::Unsupported {
            location: String::new(),
            message: "derived_from lists no base".to_string(),
        });
    };
    let mut combined = last.base_ref();
    if bases.len() > 1 {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        let mut history = Vec::new();
        for b in bases {
            layers.extend(b.layers.iter().map(|l| l.descriptor.clone()));
            diff_ids.extend(b.layers.iter().map(|l| l.diff_id.clone()));
            history.extend(b.history.iter().cloned());
        }
        let mut rootfs = combined.config.rootfs().clone();
        rootfs.set_diff_ids(diff_ids);
        combined.config.set_rootfs(rootfs);
        combined.config.set_history(Some(history));
        combined.layers = layers;
        combined.name = bases
            .iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>()
            .join(",");
    }
    Ok(combined)
}

/// `.packages` in KIWI's format: for Debian `name|None|version|None|arch|None|None`, for rpm
/// `name|epoch|version|release|arch|disturl|license` (rpm's `(none)` where a field is unset),
/// sorted. A root with dpkg's status file is Debian's; one without, rpm's.
pub fn packages_list(root: &Path) -> Result<String, BuildError> {
    let status = root.join("var/lib/dpkg/status");
    if !status.exists() {
        let mut lines: Vec<String> = crate::rootfs::rpmdb::installed(root)?
            .into_iter()
            .map(|p| {
                let none = |v: Option<String>| v.unwrap_or_else(|| "(none)".into());
                format!(
                    "{}|{}|{}|{}|{}|{}|{}",
                    p.name,
                    none(p.epoch.map(|e| e.to_string())),
                    p.version,
                    p.release,
                    p.arch,
                    none(p.disturl),
                    p.license
                )
            })
            .collect();
        if !lines.is_empty() {
            lines.sort();
            let mut s = lines.join("\n");
            s.push('\n');
            return Ok(s);
        }
    }
    let text = std::fs::read_to_string(&status).map_err(|e| io(&status, e))?;
    let paragraphs = crate::apt::control::parse(&text).map_err(|e| {
        io(
            &status,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        )
    })?;
    let mut lines: Vec<String> = paragraphs
        .iter()
        .filter(|p| p.get("Status").is_some_and(|s| s.ends_with(" installed")))
        .map(|p| {
            format!(
                "{}|None|{}|None|{}|None|None",
                p.get("Package").unwrap_or_default(),
                p.get("Version").unwrap_or_default(),
                p.get("Architecture").unwrap_or_default()
            )
        })
        .collect();
    lines.sort();
    let mut s = lines.join("\n");
    s.push('\n');
    Ok(s)
}

/// Put the finished directory `new` in place of `target`: an atomic exchange when the target
/// exists (the old result is then removed), a rename otherwise. `new` must be on the target's
/// file system (a work directory beside it); also how a result fetched from a registry cache
/// replaces the target.
pub fn replace_dir(new: &Path, target: &Path) -> Result<(), BuildError> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    if target.symlink_metadata().is_ok() {
        let a = CString::new(new.as_os_str().as_bytes())
            .map_err(|_| io(new, std::io::ErrorKind::InvalidInput.into()))?;
        let b = CString::new(target.as_os_str().as_bytes())
            .map_err(|_| io(target, std::io::ErrorKind::InvalidInput.into()))?;
        // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                a.as_ptr(),
                libc::AT_FDCWD,
                b.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if rc != 0 {
            return Err(io(target, std::io::Error::last_os_error()));
        }
        // `new` now holds the previous result.
        std::fs::remove_dir_all(new).map_err(|e| io(new, e))?;
        Ok(())
    } else {
        std::fs::rename(new, target).map_err(|e| io(target, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_options_refuse_bad_tags_and_label_names() {
        let ok = CreateOptions {
            target_dir: PathBuf::from("out"),
            layer_compression: Compression::None,
            compress: Compression::None,
            oci_dir: false,
            tag: Some("v1.2_3".into()),
            labels: vec![("org.example.a".into(), "any value".into())],
            source_date_epoch: None,
            threads: 0,
            inputs: None,
            hook_timeout: None,
            replace_target_dir: false,
            verbose: false,
        };
        assert!(ok.check().is_ok());
        for tag in ["bad tag/..", &"a".repeat(10_000)] {
            let opts = CreateOptions {
                tag: Some(tag.to_string()),
                ..ok.clone()
            };
            let e = opts.check().unwrap_err().to_string();
            assert!(e.starts_with("--set-container-tag: "), "{e}");
        }
        let opts = CreateOptions {
            labels: vec![("a b".into(), String::new())],
            ..ok
        };
        let e = opts.check().unwrap_err().to_string();
        assert!(
            e.contains("--add-container-label") && e.contains("\"a b\""),
            "{e}"
        );
    }

    /// A one-layer image holding `file` in an OCI layout at `dir`.
    fn layout(dir: &Path, file: &str, created_by: &str) -> BaseImage {
        let tree = dir.join("tree");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join(file), file).unwrap();
        let blobs = dir.join("work/blobs/sha256");
        let layer = image::write_layer(&tree, &blobs, &LayerOptions::default()).unwrap();
        let spec = ImageSpec {
            name: file.into(),
            tag: "1".into(),
            architecture: "amd64".into(),
            os: "linux".into(),
            cmd: Some(vec![format!("/{file}")]),
            history: vec![HistoryEntry {
                created_by: Some(created_by.into()),
                ..HistoryEntry::default()
            }],
            ..ImageSpec::default()
        };
        let built = assemble(&spec, &[layer], &blobs).unwrap();
        let out = dir.join("layout");
        write_oci_layout(&built, &out).unwrap();
        BaseImage::open(&format!("oci:{}", out.display())).unwrap()
    }

    #[test]
    fn only_an_imgbuild_result_is_replaced() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("out");
        check_target(&dir, false).unwrap();
        std::fs::create_dir(&dir).unwrap();
        check_target(&dir, false).unwrap();

        // The user's own files: refused, naming the directory and the file; the opt-in allows.
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        let e = check_target(&dir, false).unwrap_err();
        assert!(matches!(e, BuildError::TargetNotOurs { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&dir.display().to_string()) && msg.contains("notes.txt"));
        assert!(msg.contains("--replace-target-dir"), "{msg}");
        check_target(&dir, true).unwrap();

        // A result.json that is not imgbuild's.
        std::fs::remove_file(dir.join("notes.txt")).unwrap();
        std::fs::write(dir.join("result.json"), "{\"name\": 1}").unwrap();
        assert!(check_target(&dir, false).is_err());

        // imgbuild's result: every listed file with its .sha256, and result.json.
        let created = Created {
            name: "x".into(),
            tags: Vec::new(),
            manifest_digest: None,
            config_digest: None,
            layers: Vec::new(),
            source_date_epoch: 0,
            files: vec![
                ResultFile {
                    kind: ResultKind::DockerArchive,
                    name: "x.docker.tar".into(),
                    sha256: Some("00".into()),
                    size: Some(0),
                    tree: None,
                },
                ResultFile {
                    kind: ResultKind::OciLayout,
                    name: "x.oci".into(),
                    sha256: None,
                    size: None,
                    tree: Some("t".into()),
                },
            ],
            inputs: None,
            pushed: Vec::new(),
            platforms: Vec::new(),
        };
        std::fs::write(
            dir.join("result.json"),
            serde_json::to_string(&created).unwrap(),
        )
        .unwrap();
        for f in ["x.docker.tar", "x.docker.tar.sha256"] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        std::fs::create_dir(dir.join("x.oci")).unwrap();
        check_target(&dir, false).unwrap();
        // ... and nothing else.
        std::fs::write(dir.join("x.oci.sha256"), "").unwrap();
        let e = check_target(&dir, false).unwrap_err().to_string();
        assert!(e.contains("x.oci.sha256"), "{e}");

        // Not a directory: refused even with the opt-in.
        let file = t.path().join("file");
        std::fs::write(&file, "data").unwrap();
        for replace in [false, true] {
            let e = check_target(&file, replace).unwrap_err();
            assert!(matches!(e, BuildError::TargetNotDirectory { .. }), "{e}");
        }
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(matches!(
            check_target(&link, false),
            Err(BuildError::TargetNotDirectory { .. })
        ));
    }

    #[test]
    fn result_kinds_keep_their_names_in_result_json() {
        for (kind, name) in [
            (ResultKind::DockerArchive, "docker-archive"),
            (ResultKind::OciArchive, "oci-archive"),
            (ResultKind::OciLayout, "oci-layout"),
            (ResultKind::Rootfs, "rootfs"),
            (ResultKind::Packages, "packages"),
            (ResultKind::Sbom, "sbom"),
            (ResultKind::KiwiResult, "kiwi-result"),
        ] {
            let json = format!("\"{name}\"");
            assert_eq!(serde_json::to_string(&kind).unwrap(), json);
            assert_eq!(serde_json::from_str::<ResultKind>(&json).unwrap(), kind);
        }
        assert!(serde_json::from_str::<ResultKind>("\"tarball\"").is_err());
    }

    #[test]
    fn a_base_list_is_combined_in_order() {
        let t = tempfile::tempdir().unwrap();
        let a = layout(&t.path().join("a"), "first", "made first");
        let b = layout(&t.path().join("b"), "second", "made second");
        let one = combined_base_ref(std::slice::from_ref(&b)).unwrap();
        assert_eq!(one.manifest_digest, b.manifest_digest);
        assert_eq!(one.layers.len(), 1);

        let both = combined_base_ref(&[a, b]).unwrap();
        assert_eq!(both.layers.len(), 2);
        assert_eq!(both.config.rootfs().diff_ids().len(), 2);
        let history: Vec<String> = both
            .config
            .history()
            .clone()
            .unwrap_or_default()
            .iter()
            .filter_map(|h| h.created_by().clone())
            .collect();
        assert_eq!(history, ["made first", "made second"]);
        // The runtime config is the last base's.
        let cmd = both.config.config().as_ref().and_then(|c| c.cmd().clone());
        assert_eq!(cmd, Some(vec!["/second".to_string()]));
        assert!(both.name.contains(','), "{}", both.name);
        assert!(combined_base_ref(&[]).is_err());
    }
}
