//! `imgbuild push`: an image of the store, or an archive or OCI layout, to a registry.

use anyhow::Context;
use imgbuild::registry::{self, Client, ClientOptions, Credentials, Reference};
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
    /// Basic-auth credentials `USER:PASSWORD` (anonymous without).
    #[arg(
        long,
        value_name = "USER:PASSWORD",
        env = "IMGBUILD_REGISTRY_CREDS",
        hide_env_values = true
    )]
    pub creds: Option<String>,
    /// `false`: do not verify the registry's certificate, and fall back to plain HTTP (as
    /// loopback registries do).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub tls_verify: bool,
    /// A directory of extra CA certificates (`*.crt`) [default:
    /// /etc/containers/certs.d/HOST[:PORT] when it exists].
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
}

/// Runs `push`: prints each blob's fate on stderr and the manifest digest on stdout.
pub fn run(args: &PushArgs, root: Option<&Path>, driver: Option<&str>) -> anyhow::Result<ExitCode> {
    let dest = Reference::parse(&args.dest)?;
    let credentials = match &args.creds {
        Some(c) => Some(
            Credentials::parse(c)
                .context("--creds: expected USER:PASSWORD with a non-empty user")?,
        ),
        None => None,
    };
    let client = Client::connect(
        &dest,
        &ClientOptions {
            credentials,
            insecure: !args.tls_verify,
            cert_dir: args.cert_dir.clone(),
        },
    )
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
