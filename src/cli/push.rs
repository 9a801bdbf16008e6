//! `imgbuild push`: an image of the store, or an archive or OCI layout, to a registry.

use anyhow::Context;
use imgbuild::registry::{self, Client, PushImage, PushOptions, PushReport, Reference};
use imgbuild::storage::{StoreInput, archive};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `push`.
#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// An image of the store (`name[:tag]`, id or digest), or a docker-archive, oci-archive or
    /// OCI layout directory (taken when the path exists). A layout whose `index.json` names
    /// several images or an image index is pushed as an index.
    #[arg(value_name = "SOURCE")]
    pub source: String,
    /// The destination: `[docker://]HOST[:PORT]/REPOSITORY[:TAG|@DIGEST]`.
    #[arg(value_name = "DEST")]
    pub dest: String,
    /// How to reach the registry.
    #[command(flatten)]
    pub registry: super::registry_args::RegistryArgs,
}

/// The store root whose blob record names mount sources (the store need not exist).
pub fn store_root(root: Option<&Path>) -> PathBuf {
    root.map_or_else(
        || PathBuf::from(imgbuild::storage::DEFAULT_ROOT),
        Path::to_path_buf,
    )
}

/// Pushes the archive or OCI layout at `path` to `dest`.
pub fn push_path(
    client: &Client,
    dest: &Reference,
    path: &Path,
    opts: &PushOptions<'_>,
) -> anyhow::Result<PushReport> {
    if path.is_dir() {
        return Ok(registry::push_layout(client, dest, path, opts)?);
    }
    let mut img = archive::open_archive(path)?;
    let files = img.layer_files();
    // The archive's temporary copy (in `img`) must outlive the push: take only the input.
    let input = StoreInput {
        manifest: std::mem::take(&mut img.input.manifest),
        config: std::mem::take(&mut img.input.config),
        layers: std::mem::take(&mut img.input.layers),
    };
    let report = registry::push(client, dest, PushImage { input, files }, opts)?;
    drop(img);
    Ok(report)
}

/// Runs `push`: prints each blob's fate on stderr and the manifest digest on stdout.
pub fn run(args: &PushArgs, root: Option<&Path>, driver: Option<&str>) -> anyhow::Result<ExitCode> {
    let dest = Reference::parse(&args.dest)?;
    let client_opts = args.registry.client_options()?;
    let client = Client::connect(&dest, &client_opts)
        .with_context(|| format!("connecting to the registry of {}", args.dest))?;
    let log = super::transfer::TransferLog::new(false);
    let blob_root = store_root(root);
    let opts = PushOptions {
        store_root: Some(&blob_root),
        ..PushOptions::new(&log)
    };
    let path = PathBuf::from(&args.source);
    let report = if path.exists() {
        push_path(&client, &dest, &path, &opts)
    } else {
        (|| {
            let store = super::store::open_store(root, driver)?;
            let input = store
                .export(&args.source)
                .with_context(|| format!("reading {} from the store", args.source))?;
            let files = input
                .layers
                .iter()
                .map(|l| (l.digest.clone(), store.blob_file(&l.digest)))
                .collect();
            Ok(registry::push(
                &client,
                &dest,
                PushImage { input, files },
                &opts,
            )?)
        })()
    }
    .with_context(|| format!("pushing {} to {}", args.source, args.dest))?;
    eprintln!("Writing manifest to image destination");
    println!("{}", report.manifest_digest);
    Ok(ExitCode::SUCCESS)
}
