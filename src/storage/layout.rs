//! Stored images as OCI layouts: `layouts/<manifest hex>/` under the store root, its blobs hard
//! links to the store's own. A derived build reads its registry base from there, so the base is
//! cached by digest in the store and read with the same code as any local layout base.

use super::fsutil::remove_any;
use super::store::Store;
use super::{Result, StorageError};
use std::path::PathBuf;

impl Store {
    /// The OCI layout of the image `reference` names (made on first use), with the image's
    /// manifest as the one entry of its `index.json`. Made in the store's tmp directory and
    /// renamed into place, so a layout that exists is complete.
    pub fn oci_layout(&self, reference: &str) -> Result<PathBuf> {
        let record = self.image(reference)?;
        let hex = record
            .manifest_digest
            .strip_prefix("sha256:")
            .unwrap_or(&record.manifest_digest)
            .to_string();
        let layouts = self.root().join("layouts");
        let dest = layouts.join(&hex);
        if dest.join("index.json").is_file() {
            return Ok(dest);
        }
        std::fs::create_dir_all(&layouts).map_err(|e| StorageError::io(&layouts, e))?;
        let tmp_dir = self.root().join("tmp");
        let tmp = tempfile::Builder::new()
            .prefix("layout-")
            .tempdir_in(&tmp_dir)
            .map_err(|e| StorageError::io(&tmp_dir, e))?;
        let blobs = tmp.path().join("blobs/sha256");
        std::fs::create_dir_all(&blobs).map_err(|e| StorageError::io(&blobs, e))?;
        let digests = record
            .layers
            .iter()
            .map(|l| l.digest.as_str())
            .chain([record.id.as_str(), record.manifest_digest.as_str()]);
        for digest in digests {
            let name = digest.strip_prefix("sha256:").unwrap_or(digest);
            let from = self.root().join("blobs/sha256").join(name);
            let to = blobs.join(name);
            if to.exists() {
                continue;
            }
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to).map_err(|e| StorageError::io(&from, e))?;
            }
        }
        let manifest_size = std::fs::metadata(blobs.join(&hex))
            .map_err(|e| StorageError::io(blobs.join(&hex), e))?
            .len();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": record.manifest_media_type,
                "digest": record.manifest_digest,
                "size": manifest_size,
            }],
        });
        let write = |name: &str, text: String| {
            let p = tmp.path().join(name);
            std::fs::write(&p, text).map_err(|e| StorageError::io(&p, e))
        };
        write(
            "oci-layout",
            r#"{"imageLayoutVersion":"1.0.0"}"#.to_string(),
        )?;
        write("index.json", index.to_string())?;
        let made = tmp.keep();
        match std::fs::rename(&made, &dest) {
            Ok(()) => Ok(dest),
            // Another command made it meanwhile: theirs is as good.
            Err(_) if dest.join("index.json").is_file() => {
                remove_any(&made)?;
                Ok(dest)
            }
            Err(e) => {
                let _ = remove_any(&made);
                Err(StorageError::io(&dest, e))
            }
        }
    }
}
