//! `images`, `inspect`, `rmi`, `tag`, `load` and `save`: the local image store's commands.

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use imgbuild::storage::archive::{self, SaveFormat};
use imgbuild::storage::{DEFAULT_ROOT, ImageRecord, Removal, Store, StoreOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Output formats of `images`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// Aligned columns, one line per tag.
    Table,
    /// The image records as a JSON array.
    Json,
}

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
    /// List the images in the local store.
    Images {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show an image's record, config and manifest as JSON.
    Inspect {
        /// `name[:tag]`, image id, unique id prefix or manifest digest.
        image: String,
    },
    /// Remove images: a name that is one of several tags of an image is only untagged.
    Rmi {
        /// Images to remove.
        #[arg(required = true)]
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
        /// The archive to write (replaced only once complete).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
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
    let root = root.map_or_else(|| PathBuf::from(DEFAULT_ROOT), Path::to_path_buf);
    let driver = driver.map(str::parse).transpose()?;
    Store::open(&StoreOptions {
        root: root.clone(),
        driver,
    })
    .with_context(|| format!("opening the image store at {}", root.display()))
}

fn human_size(bytes: u64) -> String {
    // Decimal units, as `docker images` prints them.
    let units = ["B", "kB", "MB", "GB", "TB"];
    // Shown with three significant digits, so f64's 52-bit mantissa loses nothing visible.
    #[allow(clippy::cast_precision_loss)]
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + units[i]
    }
}

fn table(images: &[ImageRecord]) -> String {
    let mut rows = vec![[
        "REPOSITORY".to_string(),
        "TAG".to_string(),
        "IMAGE ID".to_string(),
        "CREATED".to_string(),
        "SIZE".to_string(),
    ]];
    for img in images {
        let id = img.id.trim_start_matches("sha256:");
        let short = id.get(..12).unwrap_or(id).to_string();
        let created = img.created.clone().unwrap_or_else(|| "-".to_string());
        let size = human_size(img.size);
        let names: Vec<(String, String)> = if img.tags.is_empty() {
            vec![("<none>".to_string(), "<none>".to_string())]
        } else {
            img.tags
                .iter()
                .map(|t| {
                    let (n, tag) = t.rsplit_once(':').unwrap_or((t.as_str(), ""));
                    (n.to_string(), tag.to_string())
                })
                .collect()
        };
        for (name, tag) in names {
            rows.push([name, tag, short.clone(), created.clone(), size.clone()]);
        }
    }
    super::columns(&rows)
}

/// Refuses a `name[:tag]` the store would refuse, naming the argument it came from.
fn check_reference(arg: &str, reference: &str) -> anyhow::Result<()> {
    imgbuild::reference::normalize_tagged(reference)
        .map(drop)
        .map_err(|e| anyhow::anyhow!("{arg} {}: {}", e.shown_value(), e.reason))
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
        _ => {}
    }
    let store = open_store(root, driver)?;
    match command {
        StoreCommand::Images { format } => {
            let images = store.images()?;
            match format {
                Format::Table => print!("{}", table(&images)),
                Format::Json => println!("{}", serde_json::to_string_pretty(&images)?),
            }
        }
        StoreCommand::Inspect { image } => {
            let details = store.inspect(&image)?;
            println!("{}", serde_json::to_string_pretty(&[details])?);
        }
        StoreCommand::Rmi { images } => {
            let mut failed = false;
            for image in images {
                match store.remove_image(&image) {
                    Ok(done) => {
                        for r in done {
                            match r {
                                Removal::Untagged(t) => println!("Untagged: {t}"),
                                Removal::Deleted(id) => println!("Deleted: {id}"),
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("imgbuild: error: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                return Ok(ExitCode::from(1));
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
            archive::save_image(&store, &image, &output, format)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_like_docker() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(12_345_678), "12.346MB");
    }

    #[test]
    fn table_lists_one_line_per_tag() {
        let img = ImageRecord {
            id: format!("sha256:{}", "ab".repeat(32)),
            manifest_digest: String::new(),
            manifest_media_type: String::new(),
            tags: vec!["a:1".into(), "localhost:5000/b:2".into()],
            architecture: None,
            os: None,
            created: None,
            size: 2000,
            layers: vec![],
        };
        let t = table(&[img]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[2].starts_with("localhost:5000/b   2     abababababab"),
            "{t}"
        );
    }
}
