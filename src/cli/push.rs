//! `imgbuild push`: an image of the store, or an archive or OCI layout, to a registry.

use anyhow::Context;
use imgbuild::registry::{self, Client, Reference};
use imgbuild::storage::archive;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `push`.
#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// An image of the store (`name[:tag]`, id or digest), or a docker-archive, oci-archive or
    /// OCI layout directory (taken when the path exists).
    #[arg(value_name = "SOURCE")]
    pub source: String,
    /// The destination: `[docker://]HOST[:PORT]/REPOSITORY[:TAG|@DIGEST]`.
    #[arg(value_name = "DEST")]
    pub dest: String,
    /// How to reach the registry.
    #[command(flatten)]
    pub registry: super::registry_args::RegistryArgs,
}

/// Runs `push`: prints each blob's fate on stderr and the manifest digest on stdout.
pub fn run(args: &PushArgs, root: Option<&Path>, driver: Option<&str>) -> anyhow::Result<ExitCode> {
    let dest = Reference::parse(&args.dest)?;
    let opts = args.registry.client_options()?;
    let client = Client::connect(&dest, &opts)
        .with_context(|| format!("connecting to the registry of {}", args.dest))?;
    let log = super::transfer::TransferLog::new(false);
    let path = PathBuf::from(&args.source);
    let report = if path.exists() {
        let img = archive::open_archive(&path)?;
        registry::push(&client, &dest, img.input, &log)
    } else {
        let store = super::store::open_store(root, driver)?;
        let input = store
            .export(&args.source)
            .with_context(|| format!("reading {} from the store", args.source))?;
        registry::push(&client, &dest, input, &log)
    }
    .with_context(|| format!("pushing {} to {}", args.source, args.dest))?;
    eprintln!("Writing manifest to image destination");
    println!("{}", report.manifest_digest);
    Ok(ExitCode::SUCCESS)
}
