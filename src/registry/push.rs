//! `push`: an image of the store or an archive to a registry, blob by blob, then its manifest.

use oci_spec::image::ImageManifest;

use super::{
    Client, Direction, OCI_MANIFEST, Reference, RegistryError, Result, TransferProgress, sha256,
};
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
pub fn push(
    client: &Client,
    dest: &Reference,
    image: StoreInput,
    progress: &dyn TransferProgress,
) -> Result<PushReport> {
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
            progress.skipped(&layer.digest, "already exists");
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
            progress.start(&layer.digest, size, Direction::Upload, 0);
            let mut counted = Counted {
                inner: &mut data,
                digest: &layer.digest,
                progress,
            };
            client.upload_blob(repo, &layer.digest, size, &mut counted)?;
            progress.done(&layer.digest);
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
        progress.skipped(&config_digest, "already exists");
        report.skipped.push(config_digest);
    } else {
        let size = image.config.len() as u64;
        progress.start(&config_digest, size, Direction::Upload, 0);
        client.upload_blob(repo, &config_digest, size, &mut image.config.as_slice())?;
        progress.advance(&config_digest, size);
        progress.done(&config_digest);
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

/// A blob's reader that reports the bytes read as progress.
struct Counted<'a> {
    inner: &'a mut dyn std::io::Read,
    digest: &'a str,
    progress: &'a dyn TransferProgress,
}

impl std::io::Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(self.digest, n as u64);
        Ok(n)
    }
}
