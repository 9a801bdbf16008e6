//! `push`: an image of the store or an archive to a registry, blob by blob, then its manifest.

use oci_spec::image::ImageManifest;

use super::{Client, OCI_MANIFEST, Reference, RegistryError, Result, sha256};
use crate::storage::StoreInput;

/// What [`push`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    /// The digest of the manifest pushed.
    pub manifest_digest: String,
    /// Blobs uploaded (layers and config).
    pub uploaded: Vec<String>,
    /// Blobs the registry had already.
    pub skipped: Vec<String>,
}

/// The manifest's own `mediaType`, else the OCI manifest type.
fn manifest_media_type(manifest: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(manifest)
        .ok()
        .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
        .unwrap_or_else(|| OCI_MANIFEST.to_string())
}

/// Pushes `image` to `dest` through `client` (connected to its host): uploads each layer and the config unless the
/// registry has it already (HEAD), then puts the manifest byte for byte under the reference's
/// tag (or digest, or `latest`). The manifest digest is therefore the image's own.
pub fn push(client: &Client, dest: &Reference, image: StoreInput) -> Result<PushReport> {
    let manifest: ImageManifest = serde_json::from_slice(&image.manifest)
        .map_err(|e| RegistryError::Image(format!("the image's manifest cannot be read: {e}")))?;
    let manifest_digest = sha256(&image.manifest);
    if let Some(d) = &dest.digest
        && *d != manifest_digest
    {
        return Err(RegistryError::Image(format!(
            "the image's manifest is {manifest_digest}, not the digest {d} the destination names"
        )));
    }
    let repo = &dest.repository;
    let mut report = PushReport {
        manifest_digest,
        uploaded: Vec::new(),
        skipped: Vec::new(),
    };
    for layer in image.layers {
        let mut data = layer.data;
        if client.blob_exists(repo, &layer.digest)? {
            report.skipped.push(layer.digest);
        } else {
            let size = manifest
                .layers()
                .iter()
                .find(|d| d.digest().to_string() == layer.digest)
                .map(oci_spec::image::Descriptor::size)
                .ok_or_else(|| {
                    RegistryError::Image(format!(
                        "layer {} is not in the image's manifest",
                        layer.digest
                    ))
                })?;
            client.upload_blob(repo, &layer.digest, size, &mut data)?;
            report.uploaded.push(layer.digest);
        }
    }
    let config_digest = manifest.config().digest().to_string();
    if sha256(&image.config) != config_digest {
        return Err(RegistryError::Image(format!(
            "the image's config does not match its manifest's {config_digest}"
        )));
    }
    if client.blob_exists(repo, &config_digest)? {
        report.skipped.push(config_digest);
    } else {
        let size = image.config.len() as u64;
        client.upload_blob(repo, &config_digest, size, &mut image.config.as_slice())?;
        report.uploaded.push(config_digest);
    }
    client.put_manifest(
        repo,
        dest.manifest_reference(),
        &manifest_media_type(&image.manifest),
        &image.manifest,
    )?;
    Ok(report)
}
