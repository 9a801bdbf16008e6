//! `imgbuild pull`: an image from a registry into the local store; and the pull on demand of
//! `run` and `inspect` (`--pull missing|always|never`).

use anyhow::Context;
use imgbuild::registry::registries_conf::RegistriesConf;
use imgbuild::registry::{self, Client, Platform, PullOptions, PullReport, Reference};
use imgbuild::storage::{StorageError, Store};
use std::path::Path;
use std::process::ExitCode;

/// Arguments of `pull`.
#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// The image: `[docker://]HOST[:PORT]/REPOSITORY[:TAG|@DIGEST]` (tag `latest` by default).
    #[arg(value_name = "REFERENCE")]
    pub reference: String,
    /// The platform to choose from a multi-platform image, `OS/ARCH[/VARIANT]` [default: the
    /// host's].
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Pull the image of every platform of a multi-platform image (the tag goes to the chosen
    /// platform's image; the others are stored untagged).
    #[arg(long)]
    pub all_platforms: bool,
    /// How to reach the registry.
    #[command(flatten)]
    pub registry: super::registry_args::RegistryArgs,
}

/// When `run` and `inspect` pull their image, as podman's `--pull`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    /// Pull when the store does not have the image.
    #[default]
    Missing,
    /// Pull every time (downloads nothing when the registry's image is the stored one).
    Always,
    /// Never pull: the image must be in the store.
    Never,
}

/// Pulls `text` into `store`, printing podman's lines on stderr (nothing when `quiet`). A short
/// name goes through the registries configuration (aliases, search registries), and each full
/// name through its mirrors first; the first place that serves the image wins, and the image is
/// stored under the name asked for, not the mirror's.
fn pull_into(
    store: &Store,
    text: &str,
    opts: &PullOptions,
    registry: &super::registry_args::RegistryArgs,
    quiet: bool,
) -> anyhow::Result<PullReport> {
    let conf = RegistriesConf::load()?;
    let candidates = conf.qualify(text)?;
    let client_opts = registry.client_options()?;
    let mut failures: Vec<anyhow::Error> = Vec::new();
    for candidate in &candidates {
        for source in conf.sources(candidate)? {
            let opts_here = imgbuild::registry::ClientOptions {
                insecure: client_opts.insecure || source.insecure,
                ..client_opts.clone()
            };
            match pull_from(store, &source.reference, &opts_here, opts, quiet) {
                Ok(report) => {
                    if source.reference != *candidate && candidate.digest.is_none() {
                        store.tag(&report.image_id, &store_name(candidate))?;
                    }
                    return Ok(report);
                }
                Err(e) => failures.push(e),
            }
        }
    }
    match failures.len() {
        1 => Err(failures.remove(0)),
        _ => Err(anyhow::anyhow!(
            "{}",
            failures
                .iter()
                .map(|e| format!("{e:#}"))
                .collect::<Vec<_>>()
                .join("\n")
        ))
        .context(format!("pulling {text}: every place failed")),
    }
}

/// Pulls `reference` from its own registry.
fn pull_from(
    store: &Store,
    reference: &Reference,
    client_opts: &imgbuild::registry::ClientOptions,
    opts: &PullOptions,
    quiet: bool,
) -> anyhow::Result<PullReport> {
    let name = store_name(reference);
    if !quiet {
        eprintln!("Trying to pull {name}...");
    }
    let client = Client::connect(reference, client_opts)
        .with_context(|| format!("connecting to the registry of {name}"))?;
    let log = super::transfer::TransferLog::new(quiet);
    if !quiet {
        eprintln!("Getting image source signatures");
    }
    // Every error of a pull names the reference or the URL and digest involved.
    let report = registry::pull(&client, reference, opts, store, &log)?;
    if !quiet {
        if let (Some(wanted), Some(got)) = (&opts.platform, &report.platform)
            && !wanted.matches(got)
        {
            eprintln!(
                "WARNING: image platform ({got}) does not match the expected platform ({wanted})"
            );
        }
        eprintln!("Writing manifest to image destination");
    }
    Ok(report)
}

/// The store's name of a registry reference: `HOST/REPO:TAG`, or `HOST/REPO@DIGEST` for a
/// pull by digest (found by its manifest digest).
fn store_name(r: &Reference) -> String {
    match (&r.tag, &r.digest) {
        (_, Some(d)) => format!("{}/{}@{d}", r.host, r.repository),
        (Some(t), None) => format!("{}/{}:{t}", r.host, r.repository),
        (None, None) => format!("{}/{}:latest", r.host, r.repository),
    }
}

/// Runs `pull`: the image id on stdout (only that with `--quiet`).
pub fn run(
    args: &PullArgs,
    root: Option<&Path>,
    driver: Option<&str>,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let platform = args
        .platform
        .as_deref()
        .map(Platform::parse)
        .transpose()
        .context("--platform")?;
    let opts = PullOptions {
        platform,
        all_platforms: args.all_platforms,
    };
    // The reference is checked (a short name resolved) before the store is opened or the
    // registry asked.
    RegistriesConf::load()?.qualify(&args.reference)?;
    let store = super::store::open_store(root, driver)?;
    let report = pull_into(&store, &args.reference, &opts, &args.registry, quiet)?;
    println!("{}", report.image_id.trim_start_matches("sha256:"));
    Ok(ExitCode::SUCCESS)
}

/// The image `image` names in `store`, pulled first as `policy` says when it is a registry
/// reference (`HOST/REPO[:TAG|@DIGEST]`). Returns what to look the image up by in the store. A
/// short name is never pulled: when the store lacks it, the error says to use a full name.
pub fn ensure_image(
    store: &Store,
    image: &str,
    policy: PullPolicy,
    registry: &super::registry_args::RegistryArgs,
) -> anyhow::Result<String> {
    ensure_image_for(store, image, policy, registry, &PullOptions::default())
}

/// [`ensure_image`] pulling with `opts` (the platform of `run --platform`).
pub fn ensure_image_for(
    store: &Store,
    image: &str,
    policy: PullPolicy,
    registry: &super::registry_args::RegistryArgs,
    opts: &PullOptions,
) -> anyhow::Result<String> {
    let reference = Reference::parse(image).ok();
    let local = reference
        .as_ref()
        .map_or_else(|| image.to_string(), store_name);
    let found = match store.image(&local) {
        Ok(record) => Some(record.id),
        Err(StorageError::ImageNotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    match (policy, found, reference) {
        (PullPolicy::Never | PullPolicy::Missing, Some(id), _) => Ok(id),
        (PullPolicy::Never, None, _) => Err(StorageError::ImageNotFound(image.to_string()))
            .context("--pull never: the image is not in the store"),
        (_, _, Some(_)) => Ok(pull_into(store, image, opts, registry, false)?.image_id),
        (PullPolicy::Always, Some(_), None) => anyhow::bail!(
            "--pull always: {image} is not a registry reference; use a full name \
             (HOST[:PORT]/REPOSITORY[:TAG]) or --pull missing"
        ),
        // A short name the store lacks: pulled as the registries configuration resolves it.
        (_, None, None) if RegistriesConf::load()?.qualify(image).is_ok() => {
            Ok(pull_into(store, image, opts, registry, false)?.image_id)
        }
        (_, None, None) => anyhow::bail!(
            "{} (to pull it, use a full name: HOST[:PORT]/REPOSITORY[:TAG])",
            StorageError::ImageNotFound(image.to_string())
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_pulled_images_as_podman() {
        let r = |s| store_name(&Reference::parse(s).unwrap());
        assert_eq!(
            r("docker://127.0.0.1:5000/a/b"),
            "127.0.0.1:5000/a/b:latest"
        );
        assert_eq!(r("example.org/a:1"), "example.org/a:1");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            r(&format!("example.org/a:1@{d}")),
            format!("example.org/a@{d}")
        );
    }
}
