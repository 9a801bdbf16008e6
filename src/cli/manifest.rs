//! `imgbuild manifest create|add|push|inspect|rm`, as `podman manifest`: multi-platform image
//! indexes assembled from single-platform images (local OCI layouts, oci-archives, imgbuild
//! result directories, or images in a registry) and pushed as one tag. A list is an OCI layout
//! directory (podman keeps lists by name in its local storage instead).

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use imgbuild::image::index::{IndexEntry, IndexPlatform, ManifestList};
use imgbuild::registry::{self, Client, PushOptions, Reference};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The `manifest` subcommands.
#[derive(Subcommand, Debug)]
pub enum ManifestCommand {
    /// Create a manifest list (an OCI layout directory) and add the images given.
    Create(CreateArgs),
    /// Add an image (every image of a multi-platform source) to a manifest list; an image of
    /// the same platform is replaced.
    Add(AddArgs),
    /// Push a manifest list and its images to a registry.
    Push(PushArgs),
    /// Print the image index of a manifest list, or the raw manifest of a registry reference.
    Inspect(InspectArgs),
    /// Remove manifest lists (their directories).
    #[command(alias = "remove")]
    Rm(RmArgs),
}

/// `manifest create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The list's directory (created; must not exist or be empty).
    #[arg(value_name = "LIST")]
    pub list: PathBuf,
    /// Images to add (see `manifest add`).
    #[arg(value_name = "SOURCE")]
    pub sources: Vec<String>,
    /// How to reach registries of `docker://` sources.
    #[command(flatten)]
    pub registry: super::registry_args::RegistryArgs,
}

/// `manifest add`.
#[derive(Args, Debug)]
pub struct AddArgs {
    /// The architecture to record instead of the image config's (e.g. arm64).
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// The OS to record instead of the image config's.
    #[arg(long, value_name = "OS")]
    pub os: Option<String>,
    /// The CPU variant to record instead of the image config's (e.g. v8).
    #[arg(long, value_name = "VARIANT")]
    pub variant: Option<String>,
    /// Accepted for podman compatibility: every image of a multi-platform source is added.
    #[arg(long)]
    pub all: bool,
    /// The list's directory.
    #[arg(value_name = "LIST")]
    pub list: PathBuf,
    /// `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, an imgbuild result directory, or
    /// `docker://HOST/REPO[:TAG|@DIGEST]` (only its manifest and config are fetched).
    #[arg(value_name = "SOURCE")]
    pub source: String,
    /// How to reach the registry of a `docker://` source.
    #[command(flatten)]
    pub registry: super::registry_args::RegistryArgs,
}

/// `manifest push`.
#[derive(Args, Debug)]
pub struct PushArgs {
    /// Accepted for podman compatibility: the images are always pushed with the list.
    #[arg(long)]
    pub all: bool,
    /// The list's directory.
    #[arg(value_name = "LIST")]
    pub list: PathBuf,
    /// The destination: `[docker://]HOST[:PORT]/REPOSITORY[:TAG]`.
    #[arg(value_name = "DEST")]
    pub dest: String,
    /// How to reach the registry.
    #[command(flatten)]
    pub registry: super::registry_args::RegistryArgs,
}

/// `manifest inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A list's directory, or `docker://HOST/REPO[:TAG|@DIGEST]`.
    #[arg(value_name = "LIST")]
    pub list: String,
    /// How to reach the registry of a `docker://` reference.
    #[command(flatten)]
    pub registry: super::registry_args::RegistryArgs,
}

/// `manifest rm`.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// The lists' directories.
    #[arg(value_name = "LIST", required = true)]
    pub lists: Vec<PathBuf>,
}

/// Runs a `manifest` subcommand; `storage_root` holds the record of which repositories of a
/// registry hold which blobs (mount sources for `push`, as `imgbuild push` uses it).
pub fn run(cmd: ManifestCommand, storage_root: Option<&Path>) -> anyhow::Result<ExitCode> {
    match cmd {
        ManifestCommand::Create(a) => {
            let mut list = ManifestList::create(&a.list)
                .with_context(|| format!("creating the manifest list {}", a.list.display()))?;
            for s in &a.sources {
                add_source(&mut list, s, None, &a.registry)?;
            }
            let digest = list.save(None)?;
            println!("{digest}");
            Ok(ExitCode::SUCCESS)
        }
        ManifestCommand::Add(a) => {
            let mut list = open(&a.list)?;
            let edit = PlatformEdit {
                os: a.os.clone(),
                architecture: a.arch.clone(),
                variant: a.variant.clone(),
            };
            add_source(&mut list, &a.source, Some(&edit), &a.registry)?;
            let digest = list.save(None)?;
            println!("{digest}");
            Ok(ExitCode::SUCCESS)
        }
        ManifestCommand::Push(a) => push(&a, storage_root),
        ManifestCommand::Inspect(a) => inspect(&a),
        ManifestCommand::Rm(a) => {
            for l in &a.lists {
                open(l)?;
                std::fs::remove_dir_all(l)
                    .with_context(|| format!("removing the manifest list {}", l.display()))?;
                println!("{}", l.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn open(dir: &Path) -> anyhow::Result<ManifestList> {
    ManifestList::open(dir).with_context(|| format!("opening the manifest list {}", dir.display()))
}

/// Fields of the platform given on the command line (the rest stay the image config's).
struct PlatformEdit {
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
}

impl PlatformEdit {
    fn is_empty(&self) -> bool {
        self.os.is_none() && self.architecture.is_none() && self.variant.is_none()
    }

    fn apply(&self, mut p: IndexPlatform) -> IndexPlatform {
        if let Some(os) = &self.os {
            p.os.clone_from(os);
        }
        if let Some(a) = &self.architecture {
            // A new architecture does not keep the old one's variant unless one is given.
            if *a != p.architecture {
                p.variant = None;
            }
            p.architecture.clone_from(a);
        }
        if let Some(v) = &self.variant {
            p.variant = Some(v.clone()).filter(|v| !v.is_empty());
        }
        p
    }
}

/// A source of images, as `manifest add` takes them.
#[derive(Debug, PartialEq, Eq)]
enum Source {
    Layout(PathBuf, Option<String>),
    Archive(PathBuf, Option<String>),
    Registry(String),
}

/// `PATH[:TAG]`: the tag is after the last `:` unless that `:` belongs to the path.
fn path_and_tag(rest: &str) -> (PathBuf, Option<String>) {
    match rest.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') && !p.is_empty() && !Path::new(rest).exists() => {
            (p.into(), Some(t.to_string()))
        }
        _ => (rest.into(), None),
    }
}

/// Parses a source; a plain directory is an imgbuild result directory (its OCI layout, else
/// its oci-archive) or an OCI layout.
fn parse_source(text: &str) -> anyhow::Result<Source> {
    if text.starts_with("docker://") {
        return Ok(Source::Registry(text.to_string()));
    }
    if let Some(rest) = text.strip_prefix("oci:") {
        let (p, t) = path_and_tag(rest);
        return Ok(Source::Layout(p, t));
    }
    if let Some(rest) = text.strip_prefix("oci-archive:") {
        let (p, t) = path_and_tag(rest);
        return Ok(Source::Archive(p, t));
    }
    if text.starts_with("docker-archive:") {
        bail!(
            "{text}: a docker-archive holds uncompressed layers, not the image a registry gets; \
             use the OCI layout or oci-archive of the build (build with --oci-dir or type oci)"
        );
    }
    let path = PathBuf::from(text);
    if path.join("result.json").is_file() {
        return result_source(&path);
    }
    if path.join("index.json").is_file() {
        return Ok(Source::Layout(path, None));
    }
    if path.is_file() {
        return Ok(Source::Archive(path, None));
    }
    bail!(
        "{text}: not a source: use oci:DIR[:TAG], oci-archive:FILE[:TAG], an imgbuild result \
         directory or docker://HOST/REPO[:TAG|@DIGEST]"
    )
}

/// The OCI layout, else the oci-archive, that `result.json` of a result directory lists.
fn result_source(dir: &Path) -> anyhow::Result<Source> {
    use imgbuild::build::{Created, ResultKind};
    let path = dir.join("result.json");
    let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let created: Created =
        serde_json::from_slice(&text).with_context(|| format!("{}: invalid", path.display()))?;
    let find = |k: ResultKind| created.files.iter().find(|f| f.kind == k);
    if let Some(f) = find(ResultKind::OciLayout) {
        return Ok(Source::Layout(dir.join(&f.name), None));
    }
    if let Some(f) = find(ResultKind::OciArchive) {
        return Ok(Source::Archive(dir.join(&f.name), None));
    }
    if find(ResultKind::DockerArchive).is_some() {
        bail!(
            "{}: the result has only a docker-archive, whose uncompressed layers are not the \
             image a registry gets; build with --oci-dir or image type oci",
            dir.display()
        );
    }
    bail!(
        "{}: the result has no OCI layout or oci-archive",
        path.display()
    )
}

/// Adds the images of `source` to `list`, printing each.
fn add_source(
    list: &mut ManifestList,
    source: &str,
    edit: Option<&PlatformEdit>,
    registry: &super::registry_args::RegistryArgs,
) -> anyhow::Result<()> {
    let added = (|| -> anyhow::Result<Vec<IndexEntry>> {
        Ok(match parse_source(source)? {
            Source::Layout(p, t) => list.add_layout(&p, t.as_deref(), None)?,
            Source::Archive(p, t) => list.add_oci_archive(&p, t.as_deref(), None)?,
            Source::Registry(r) => add_registry(list, &r, registry)?,
        })
    })()
    .with_context(|| format!("adding {source} to {}", list.dir().display()))?;
    let added = match edit.filter(|e| !e.is_empty()) {
        Some(edit) => {
            if added.len() != 1 {
                bail!(
                    "{source} holds {} images; --arch, --os and --variant apply to one image",
                    added.len()
                );
            }
            let e = &added[0];
            vec![list.set_platform(&e.digest, edit.apply(e.platform.clone()))?]
        }
        None => added,
    };
    for e in added {
        eprintln!("{} {}", e.platform, e.digest);
    }
    Ok(())
}

/// A manifest fetched by reference and checked against the digest it was asked by.
fn fetch_manifest(client: &Client, r: &Reference, reference: &str) -> anyhow::Result<Vec<u8>> {
    let m = client.get_manifest(&r.repository, reference)?;
    let digest = sha256(&m.bytes);
    if reference.starts_with("sha256:") && digest != reference {
        bail!(
            "{}: the registry sent a manifest of digest {digest}, not the {reference} asked for",
            m.url
        );
    }
    Ok(m.bytes)
}

fn sha256(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// Whether a manifest is an image index or manifest list (by its media type, else by its
/// `manifests` field).
fn is_index(json: &[u8]) -> anyhow::Result<bool> {
    let v: serde_json::Value = serde_json::from_slice(json).context("invalid JSON")?;
    Ok(match v.get("mediaType").and_then(|m| m.as_str()) {
        Some(mt) => mt.contains("image.index") || mt.contains("manifest.list"),
        None => v.get("manifests").is_some(),
    })
}

/// Adds the image (or every image of the index) at a registry reference: only manifests and
/// configs are fetched; the layers are recorded as in that repository.
fn add_registry(
    list: &mut ManifestList,
    text: &str,
    registry: &super::registry_args::RegistryArgs,
) -> anyhow::Result<Vec<IndexEntry>> {
    let r = Reference::parse(text)?;
    let client = Client::connect(&r, &registry.client_options()?)
        .with_context(|| format!("connecting to the registry of {text}"))?;
    let top = fetch_manifest(&client, &r, r.manifest_reference())?;
    let children: Vec<String> =
        if is_index(&top).with_context(|| format!("the manifest of {text}"))? {
            #[derive(serde::Deserialize)]
            struct Child {
                digest: String,
            }
            #[derive(serde::Deserialize)]
            struct Index {
                manifests: Vec<Child>,
            }
            let idx: Index =
                serde_json::from_slice(&top).with_context(|| format!("the index of {text}"))?;
            idx.manifests.into_iter().map(|c| c.digest).collect()
        } else {
            Vec::new()
        };
    let remote = format!("{}/{}", r.host, r.repository);
    let mut add_one = |manifest: &[u8]| -> anyhow::Result<IndexEntry> {
        #[derive(serde::Deserialize)]
        struct Config {
            digest: String,
            size: u64,
        }
        #[derive(serde::Deserialize)]
        struct Manifest {
            config: Config,
        }
        let m: Manifest = serde_json::from_slice(manifest)
            .with_context(|| format!("the manifest {} of {text}", sha256(manifest)))?;
        let limit = imgbuild::image::limits::MAX_CONFIG_SIZE;
        if m.config.size > limit {
            bail!(
                "{text}: config {} of {} bytes is larger than the {limit} allowed",
                m.config.digest,
                m.config.size
            );
        }
        let body = client.get_blob(&r.repository, &m.config.digest, 0)?;
        let mut config = Vec::new();
        body.body
            .into_reader()
            .take(m.config.size + 1)
            .read_to_end(&mut config)
            .with_context(|| format!("{text}: reading config {}", m.config.digest))?;
        Ok(list.add_manifest(manifest, &config, &remote, None)?)
    };
    if children.is_empty() {
        return Ok(vec![add_one(&top)?]);
    }
    let mut added = Vec::new();
    for c in &children {
        let m = fetch_manifest(&client, &r, c)?;
        added.push(add_one(&m)?);
    }
    Ok(added)
}

/// `manifest push`: the list's images by digest, then the index under the tag.
fn push(a: &PushArgs, storage_root: Option<&Path>) -> anyhow::Result<ExitCode> {
    let list = open(&a.list)?;
    if list.entries().is_empty() {
        bail!(
            "{}: the manifest list has no images to push",
            a.list.display()
        );
    }
    let dest = Reference::parse(&a.dest)?;
    let remote: BTreeMap<String, Reference> = list
        .remote_blobs()
        .iter()
        .map(|(d, from)| {
            Reference::parse(from)
                .map(|r| (d.clone(), r))
                .with_context(|| format!("{}: blob {d}", a.list.display()))
        })
        .collect::<anyhow::Result<_>>()?;
    let client = Client::connect(&dest, &a.registry.client_options()?)
        .with_context(|| format!("connecting to the registry of {}", a.dest))?;
    let log = super::transfer::TransferLog::new(false);
    let blob_root = super::push::store_root(storage_root);
    let opts = PushOptions {
        store_root: Some(&blob_root),
        remote_blobs: Some(&remote),
        ..PushOptions::new(&log)
    };
    let report = registry::push_layout(&client, &dest, &a.list, &opts)
        .with_context(|| format!("pushing {} to {}", a.list.display(), a.dest))?;
    eprintln!("Writing manifest list to image destination");
    println!("{}", report.manifest_digest);
    Ok(ExitCode::SUCCESS)
}

/// `manifest inspect`: the bytes of the index (or a registry's manifest) as stored.
fn inspect(a: &InspectArgs) -> anyhow::Result<ExitCode> {
    let bytes = if a.list.starts_with("docker://") {
        let r = Reference::parse(&a.list)?;
        let client = Client::connect(&r, &a.registry.client_options()?)
            .with_context(|| format!("connecting to the registry of {}", a.list))?;
        fetch_manifest(&client, &r, r.manifest_reference())
            .with_context(|| format!("inspecting {}", a.list))?
    } else {
        open(Path::new(&a.list))?.index_json()?.1
    };
    let text = String::from_utf8_lossy(&bytes);
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!(
            parse_source("oci:/x/l:v1").unwrap(),
            Source::Layout("/x/l".into(), Some("v1".into()))
        );
        assert_eq!(
            parse_source("oci-archive:/x/a.tar").unwrap(),
            Source::Archive("/x/a.tar".into(), None)
        );
        assert_eq!(
            parse_source("docker://h:5000/r:1").unwrap(),
            Source::Registry("docker://h:5000/r:1".into())
        );
        assert!(parse_source("docker-archive:/x").is_err());
        assert!(parse_source("/does/not/exist").is_err());
    }

    #[test]
    fn platform_edits_keep_what_is_not_given() {
        let p = IndexPlatform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: Some("v8".into()),
            os_version: None,
            os_features: None,
        };
        let e = PlatformEdit {
            os: None,
            architecture: Some("amd64".into()),
            variant: None,
        };
        let q = e.apply(p.clone());
        assert_eq!(
            (q.os.as_str(), q.architecture.as_str(), q.variant),
            ("linux", "amd64", None)
        );
        let e = PlatformEdit {
            os: None,
            architecture: None,
            variant: Some("v9".into()),
        };
        assert_eq!(e.apply(p).variant.as_deref(), Some("v9"));
    }
}
