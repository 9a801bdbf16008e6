//! `images`, `inspect`, `rmi`, `tag`, `load` and `save`: the local image store's commands.

use super::report::{self, Format};
use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use imgbuild::storage::archive::{self, SaveFormat};
use imgbuild::storage::{
    DEFAULT_ROOT, ImageDetails, ImageRecord, Removal, StorageError, Store, StoreOptions,
};
use serde_json::{Map, Value as Json, json};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Archive formats of `save`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SaveFormatArg {
    /// `docker save`'s format (`manifest.json`, uncompressed layer tars).
    DockerArchive,
    /// A tar of an OCI image layout.
    OciArchive,
}

/// The store's subcommands.
#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// List the images in the local store, one line per tag.
    Images {
        /// `table` (the default), `json`, a Go template (`{{.Repository}}:{{.Tag}}`) or
        /// `table` and a template (`table {{.ID}}\t{{.Size}}`).
        #[arg(long, value_name = "FORMAT")]
        format: Option<String>,
        /// Print no header line.
        #[arg(long = "noheading", short = 'n')]
        noheading: bool,
        /// Print only the image ids.
        #[arg(short, long)]
        quiet: bool,
        /// Print full image ids.
        #[arg(long)]
        no_trunc: bool,
    },
    /// Show images' config and details as JSON, as `podman image inspect` does.
    Inspect {
        /// `json` (the default) or a Go template (`{{.Config.Env}}`), applied to each image.
        #[arg(short, long, value_name = "FORMAT")]
        format: Option<String>,
        /// `name[:tag]`, image id, unique id prefix or manifest digest, or a registry
        /// reference `HOST[:PORT]/REPOSITORY[:TAG|@DIGEST]` (pulled as `--pull` says).
        #[arg(required = true)]
        images: Vec<String>,
        /// When to pull a registry image: `missing` (not in the store), `always`, `never`.
        #[arg(long, value_enum, value_name = "POLICY", default_value_t = super::pull::PullPolicy::Missing)]
        pull: super::pull::PullPolicy,
        /// How to reach the registry of a registry image.
        #[command(flatten)]
        registry: super::registry_args::RegistryArgs,
    },
    /// Remove images, all or nothing: a name that is one of several tags of an image is only
    /// untagged; if any image named cannot be removed, none is.
    Rmi {
        /// Also remove the containers made from the images, and every tag of an image named
        /// by id.
        #[arg(short, long)]
        force: bool,
        /// Remove every image.
        #[arg(short, long)]
        all: bool,
        /// Images to remove.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        images: Vec<String>,
    },
    /// Give an image another name.
    Tag {
        /// The image to tag.
        source: String,
        /// The new `name[:tag]`.
        target: String,
    },
    /// Load an image from a docker-archive, an oci-archive (plain or compressed) or an OCI
    /// layout directory.
    Load {
        /// The archive file or layout directory.
        #[arg(value_name = "ARCHIVE")]
        archive: PathBuf,
        /// Also give the image this `name[:tag]` (repeatable).
        #[arg(long = "tag", value_name = "NAME[:TAG]")]
        tags: Vec<String>,
    },
    /// Write an image of the store as an archive.
    Save {
        /// `name[:tag]`, image id, unique id prefix or manifest digest.
        image: String,
        /// The archive to write (replaced only once complete); `-` or none: standard output,
        /// which must not be a terminal.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        /// Archive format.
        #[arg(long, value_enum, default_value = "docker-archive")]
        format: SaveFormatArg,
    },
}

/// Load an archive into `store` and print what was loaded, as `docker load` does.
pub fn load_into(store: &Store, archive: &Path, tags: &[String]) -> anyhow::Result<ImageRecord> {
    let loaded = archive::load_archive(store, archive, tags)?;
    if loaded.tags.is_empty() {
        println!("Loaded image ID: {}", loaded.record.id);
    }
    for t in &loaded.tags {
        println!("Loaded image: {t}");
    }
    Ok(loaded.record)
}

/// Open the store the global options name.
pub fn open_store(root: Option<&Path>, driver: Option<&str>) -> anyhow::Result<Store> {
    let opts = store_options(root, driver)?;
    Store::open(&opts)
        .with_context(|| format!("opening the image store at {}", opts.root.display()))
}

/// The store the global options name (the default root; the store's own driver unless one is
/// asked for), not opened yet.
pub fn store_options(root: Option<&Path>, driver: Option<&str>) -> anyhow::Result<StoreOptions> {
    Ok(StoreOptions {
        root: root.map_or_else(|| PathBuf::from(DEFAULT_ROOT), Path::to_path_buf),
        driver: driver.map(str::parse).transpose()?,
    })
}

/// The template fields of an `images` row, as podman's.
const IMAGE_FIELDS: [&str; 15] = [
    "Repository",
    "Tag",
    "ID",
    "Digest",
    "Created",
    "CreatedSince",
    "CreatedAt",
    "Size",
    "VirtualSize",
    "SharedSize",
    "Names",
    "Labels",
    "Containers",
    "ReadOnly",
    "Dangling",
];
const IMAGE_HEADERS: [(&str, &str); 3] = [
    ("ID", "IMAGE ID"),
    ("ReadOnly", "R/O"),
    ("CreatedSince", "CREATED"),
];
const IMAGES_TABLE: &str = "{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Created}}\t{{.Size}}";

/// The image's hex id, the first 12 digits unless `full`.
fn short_id(id: &str, full: bool) -> String {
    let hex = id.trim_start_matches("sha256:");
    if full {
        hex.to_string()
    } else {
        hex.get(..12).unwrap_or(hex).to_string()
    }
}

/// `name:tag` split as podman shows it: `<none>` for both when untagged.
fn repo_tag(tag: Option<&String>) -> (String, String) {
    match tag {
        None => ("<none>".to_string(), "<none>".to_string()),
        Some(t) => {
            let (n, t) = t.rsplit_once(':').unwrap_or((t.as_str(), ""));
            (n.to_string(), t.to_string())
        }
    }
}

/// What `images` knows of one image beyond its record.
struct ImageInfo {
    record: ImageRecord,
    labels: Json,
    containers: usize,
}

/// The rows of `images`: one per tag (one `<none>` row for an untagged image).
fn image_rows(images: &[ImageInfo], now: u64, full: bool) -> Vec<Map<String, Json>> {
    let mut rows = Vec::new();
    for img in images {
        let r = &img.record;
        let created = r.created.as_deref().and_then(report::parse_time);
        let since = created.map_or_else(String::new, |t| report::ago(t, now));
        let tags: Vec<Option<&String>> = if r.tags.is_empty() {
            vec![None]
        } else {
            r.tags.iter().map(Some).collect()
        };
        for tag in tags {
            let (repo, tag) = repo_tag(tag);
            let size = report::human_size(r.size);
            let row = json!({
                "Repository": repo,
                "Tag": tag,
                "ID": short_id(&r.id, full),
                "Digest": r.manifest_digest,
                "Created": since,
                "CreatedSince": since,
                "CreatedAt": created.map(report::go_time).unwrap_or_default(),
                "Size": size,
                "VirtualSize": size,
                "SharedSize": report::human_size(0),
                "Names": r.tags,
                "Labels": img.labels,
                "Containers": img.containers,
                "ReadOnly": false,
                "Dangling": r.tags.is_empty(),
            });
            if let Json::Object(m) = row {
                rows.push(m);
            }
        }
    }
    rows
}

/// `images --format json`: podman's image summaries.
fn images_json(images: &[ImageInfo]) -> Json {
    Json::Array(
        images
            .iter()
            .map(|img| {
                let r = &img.record;
                json!({
                    "Id": short_id(&r.id, true),
                    "ParentId": "",
                    "RepoTags": r.tags,
                    "RepoDigests": repo_digests(r),
                    "Size": r.size,
                    "SharedSize": 0,
                    "VirtualSize": r.size,
                    "Labels": img.labels,
                    "Containers": img.containers,
                    "Names": r.tags,
                    "Digest": r.manifest_digest,
                    "Created": r.created.as_deref().and_then(report::parse_time),
                    "CreatedAt": r.created,
                })
            })
            .collect(),
    )
}

fn repo_digests(r: &ImageRecord) -> Vec<String> {
    let mut names: Vec<&str> = r
        .tags
        .iter()
        .map(|t| t.rsplit_once(':').map_or(t.as_str(), |(n, _)| n))
        .collect();
    names.dedup();
    names
        .into_iter()
        .map(|n| format!("{n}@{}", r.manifest_digest))
        .collect()
}

/// `inspect`'s object for an image, with podman's field names.
fn inspect_json(d: &ImageDetails, driver: &str) -> Json {
    let r = &d.record;
    let c = &d.config;
    let inner = c.get("config").cloned().unwrap_or_else(|| json!({}));
    let text = |v: Option<&Json>| v.and_then(Json::as_str).unwrap_or_default().to_string();
    json!({
        "Id": short_id(&r.id, true),
        "Digest": r.manifest_digest,
        "RepoTags": r.tags,
        "RepoDigests": repo_digests(r),
        "Parent": "",
        "Comment": text(c.get("comment")),
        "Created": r.created,
        "Config": inner,
        "Version": "",
        "Author": text(c.get("author")),
        "Architecture": r.architecture,
        "Os": r.os,
        "Size": r.size,
        "VirtualSize": r.size,
        "GraphDriver": {"Name": driver, "Data": {}},
        "RootFS": {
            "Type": "layers",
            "Layers": r.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
        },
        "Labels": inner.get("Labels").cloned().unwrap_or(Json::Null),
        "Annotations": d.manifest.get("annotations").cloned().unwrap_or_else(|| json!({})),
        "ManifestType": r.manifest_media_type,
        "User": text(inner.get("User")),
        "History": c.get("history").cloned().unwrap_or_else(|| json!([])),
        "NamesHistory": r.tags,
    })
}

/// The config fields a template sees even when the image leaves them out, with the values
/// podman's (Go) structs print for them: `{{.Config.Env}}` is `[]`, not `<no value>`.
fn with_zero_config(mut row: Map<String, Json>) -> Map<String, Json> {
    if let Some(Json::Object(config)) = row.get_mut("Config") {
        for (key, zero) in [
            ("User", json!("")),
            ("ExposedPorts", json!({})),
            ("Env", json!([])),
            ("Entrypoint", json!([])),
            ("Cmd", json!([])),
            ("Volumes", json!({})),
            ("WorkingDir", json!("")),
            ("Labels", json!({})),
            ("StopSignal", json!("")),
        ] {
            config.entry(key).or_insert(zero);
        }
    }
    row
}

/// The exit code of a refused `rmi`, as podman's: 1 when an image was not found, 2 when one
/// is in use, 125 otherwise.
fn rmi_code(errors: &[StorageError]) -> u8 {
    if errors
        .iter()
        .any(|e| matches!(e, StorageError::ImageInUse { .. }))
    {
        2
    } else if errors
        .iter()
        .all(|e| matches!(e, StorageError::ImageNotFound(_)))
    {
        1
    } else {
        125
    }
}

/// Remove the runtime's containers made from the images `rmi --force` will remove, so none
/// is left pointing at a deleted image. Nothing is removed if any name fails to resolve.
fn remove_containers_of(
    store: Store,
    images: &[String],
    all: bool,
) -> anyhow::Result<Option<Store>> {
    let mut ids = Vec::new();
    if all {
        ids.extend(store.images()?.into_iter().map(|r| r.id));
    } else {
        for name in images {
            match store.image(name) {
                Ok(r) => ids.push(r.id),
                // The removal itself reports every name that fails, and removes nothing.
                Err(_) => return Ok(Some(store)),
            }
        }
    }
    let rt = imgbuild::runtime::Runtime::new(store)?;
    for c in rt.containers(true)? {
        if ids.contains(&c.image) {
            rt.remove(&c.id, true)?;
        }
    }
    Ok(None)
}

/// Refuses a `name[:tag]` the store would refuse, naming the argument it came from.
fn check_reference(arg: &str, reference: &str) -> anyhow::Result<()> {
    imgbuild::reference::normalize_tagged(reference)
        .map(drop)
        .map_err(|e| anyhow::anyhow!("{arg} {}: {}", e.shown_value(), e.reason))
}

/// Write the archive to standard output: the same writer as for a file, into a private
/// temporary directory, then copied out (the archive writers write
/// a named file, replaced only once complete).
fn save_to_stdout(store: &Store, image: &str, format: SaveFormat) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary directory for save")?;
    let path = dir.path().join("archive.tar");
    archive::save_image(store, image, &path, format)?;
    let mut file = std::fs::File::open(&path).context("reading the saved archive")?;
    let mut out = std::io::stdout().lock();
    let copied = std::io::copy(&mut file, &mut out).and_then(|_| std::io::Write::flush(&mut out));
    drop(out);
    drop(file);
    match copied {
        // The reader went away (`save -o - | head -c 10`): end as other tools do, once the
        // temporary copy is removed.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            drop(dir);
            super::out::die_of_sigpipe()
        }
        other => other
            .map(drop)
            .context("writing the archive to standard output"),
    }
}

/// Run a store command against the store the global options name.
pub fn run(
    command: StoreCommand,
    root: Option<&Path>,
    driver: Option<&str>,
) -> anyhow::Result<ExitCode> {
    // Names given are checked before the store is opened or an archive read.
    match &command {
        StoreCommand::Tag { target, .. } => check_reference("tag: TARGET", target)?,
        StoreCommand::Load { tags, .. } => {
            for t in tags {
                check_reference("--tag", t)?;
            }
        }
        StoreCommand::Save { output, .. }
            if output.as_ref().is_none_or(|o| o.as_os_str() == "-")
                && std::io::stdout().is_terminal() =>
        {
            anyhow::bail!(
                "save: refusing to write an archive to a terminal: use -o FILE or redirect the output"
            );
        }
        _ => {}
    }
    let store = open_store(root, driver)?;
    match command {
        StoreCommand::Images {
            format,
            noheading,
            quiet,
            no_trunc,
        } => {
            let format = if quiet {
                Format::Template("{{.ID}}\n".to_string())
            } else {
                Format::parse(format.as_deref(), IMAGES_TABLE)
            };
            let containers = store.containers()?;
            let mut images = Vec::new();
            for record in store.images()? {
                let labels = store
                    .inspect(&record.id)?
                    .config
                    .pointer("/config/Labels")
                    .cloned()
                    .unwrap_or(Json::Null);
                let containers = containers.iter().filter(|c| c.image == record.id).count();
                images.push(ImageInfo {
                    record,
                    labels,
                    containers,
                });
            }
            // Newest first, as podman sorts (`--sort created`); equal times keep the store's
            // order (by first tag).
            images.sort_by_key(|i| {
                std::cmp::Reverse(i.record.created.as_deref().and_then(report::parse_time))
            });
            print!(
                "{}",
                report::render(
                    &format,
                    &image_rows(&images, report::now(), no_trunc),
                    &IMAGE_FIELDS,
                    &IMAGE_HEADERS,
                    noheading,
                    &images_json(&images),
                )?
            );
        }
        StoreCommand::Inspect {
            format,
            images,
            pull,
            registry,
        } => {
            let driver = store.driver_kind().name();
            let mut all = Vec::new();
            for image in &images {
                // As podman's inspect: a name no image has may be a container's.
                if matches!(
                    store.image(image),
                    Err(imgbuild::storage::StorageError::ImageNotFound(_))
                ) {
                    let rt = imgbuild::runtime::Runtime::new(open_store(root, Some(driver))?)?;
                    if let Ok(c) = rt.container(image) {
                        all.push(super::container::inspect_json(&rt, &c));
                        continue;
                    }
                }
                let found = super::pull::ensure_image(&store, image, pull, &registry)?;
                all.push(inspect_json(&store.inspect(&found)?, driver));
            }
            let format = match format.as_deref() {
                None | Some("json") => Format::Json,
                Some(f) => Format::parse(Some(f), ""),
            };
            let rows: Vec<Map<String, Json>> = all
                .iter()
                .filter_map(|v| v.as_object().cloned())
                .map(with_zero_config)
                .collect();
            print!(
                "{}",
                report::render(&format, &rows, &[], &[], true, &Json::Array(all))?
            );
        }
        StoreCommand::Rmi { images, force, all } => {
            let store = if force {
                match remove_containers_of(store, &images, all)? {
                    Some(s) => s,
                    None => open_store(root, driver)?,
                }
            } else {
                store
            };
            match store.remove_images(&images, all, force) {
                Ok(done) => {
                    for r in done {
                        match r {
                            Removal::Untagged(t) => println!("Untagged: {t}"),
                            Removal::Deleted(id) => println!("Deleted: {}", short_id(&id, true)),
                        }
                    }
                }
                Err(StorageError::NotRemoved(errors)) => {
                    for e in &errors {
                        eprintln!("imgbuild: error: {e}");
                    }
                    eprintln!("imgbuild: nothing was removed");
                    return Ok(ExitCode::from(rmi_code(&errors)));
                }
                Err(e) => return Err(e.into()),
            }
        }
        StoreCommand::Tag { source, target } => {
            store.tag(&source, &target)?;
        }
        StoreCommand::Load { archive, tags } => {
            load_into(&store, &archive, &tags)?;
        }
        StoreCommand::Save {
            image,
            output,
            format,
        } => {
            let format = match format {
                SaveFormatArg::DockerArchive => SaveFormat::DockerArchive,
                SaveFormatArg::OciArchive => SaveFormat::OciArchive,
            };
            match output.filter(|o| o.as_os_str() != "-") {
                Some(output) => {
                    archive::save_image(&store, &image, &output, format)?;
                }
                None => save_to_stdout(&store, &image, format)?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tags: &[&str], size: u64, created: Option<&str>) -> ImageRecord {
        ImageRecord {
            id: format!("sha256:{}", "ab".repeat(32)),
            manifest_digest: format!("sha256:{}", "cd".repeat(32)),
            manifest_media_type: String::new(),
            tags: tags.iter().map(ToString::to_string).collect(),
            architecture: None,
            os: None,
            created: created.map(ToString::to_string),
            size,
            layers: vec![],
        }
    }

    fn info(r: ImageRecord) -> ImageInfo {
        ImageInfo {
            record: r,
            labels: Json::Null,
            containers: 0,
        }
    }

    #[test]
    fn table_lists_one_line_per_tag_as_podman() {
        let created = "2026-01-01T00:00:00Z";
        let now = report::parse_time(created).unwrap() + 15 * 86400;
        let images = [
            info(record(
                &["a:1", "localhost:5000/b:2"],
                139_228_000,
                Some(created),
            )),
            info(record(&[], 2000, None)),
        ];
        let t = report::render(
            &Format::parse(None, IMAGES_TABLE),
            &image_rows(&images, now, false),
            &IMAGE_FIELDS,
            &IMAGE_HEADERS,
            false,
            &Json::Null,
        )
        .unwrap();
        assert_eq!(
            t,
            "REPOSITORY        TAG         IMAGE ID      CREATED      SIZE\n\
             a                 1           abababababab  2 weeks ago  139 MB\n\
             localhost:5000/b  2           abababababab  2 weeks ago  139 MB\n\
             <none>            <none>      abababababab               2 kB\n"
        );
    }

    #[test]
    fn json_and_inspect_use_podman_field_names() {
        let r = record(&["a:1", "a:2"], 5, Some("2026-01-01T00:00:00Z"));
        let j = images_json(&[info(r.clone())]);
        assert_eq!(j[0]["Id"], "ab".repeat(32));
        assert_eq!(j[0]["RepoTags"], json!(["a:1", "a:2"]));
        assert_eq!(
            j[0]["RepoDigests"],
            json!([format!("a@sha256:{}", "cd".repeat(32))])
        );
        assert_eq!(j[0]["Created"], 1_767_225_600);
        let d = ImageDetails {
            record: r,
            config: json!({"config": {"Env": ["A=1", "B=2"], "User": "u"}}),
            manifest: json!({}),
        };
        let v = inspect_json(&d, "vfs");
        assert_eq!(v["Config"]["Env"], json!(["A=1", "B=2"]));
        assert_eq!(v["User"], "u");
        assert_eq!(v["GraphDriver"]["Name"], "vfs");
        let rows = [v.as_object().unwrap().clone()];
        let out = report::render(
            &Format::parse(Some("{{.Config.Env}} {{.Id}}"), ""),
            &rows,
            &[],
            &[],
            true,
            &Json::Null,
        )
        .unwrap();
        assert_eq!(out, format!("[A=1 B=2] {}\n", "ab".repeat(32)));
        // Fields the config leaves out print as podman's zero values.
        let rows = [with_zero_config(rows[0].clone())];
        let out = report::render(
            &Format::parse(
                Some("{{.Config.Cmd}}|{{.Config.WorkingDir}}|{{.Config.Labels}}"),
                "",
            ),
            &rows,
            &[],
            &[],
            true,
            &Json::Null,
        )
        .unwrap();
        assert_eq!(out, "[]||map[]\n");
    }

    #[test]
    fn rmi_exit_codes_follow_podman() {
        let missing = StorageError::ImageNotFound("x".into());
        let in_use = StorageError::ImageInUse {
            image: "i".into(),
            container: "c".into(),
        };
        let tags = StorageError::SeveralTags {
            reference: "r".into(),
            tags: vec![],
        };
        assert_eq!(rmi_code(&[missing]), 1);
        assert_eq!(
            rmi_code(&[StorageError::ImageNotFound("x".into()), in_use]),
            2
        );
        assert_eq!(rmi_code(&[tags]), 125);
    }
}
