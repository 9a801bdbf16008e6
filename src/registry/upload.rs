//! Blob and manifest requests of a push: blob HEAD, monolithic upload, manifest PUT.

use std::io::Read;

use ureq::http::Method;

use super::client::{Access, Payload, detail};
use super::{Client, RegistryError, Result};

impl Client {
    /// `HEAD /v2/REPO/blobs/DIGEST`: whether the registry has the blob.
    pub fn blob_exists(&self, repository: &str, digest: &str) -> Result<bool> {
        let url = format!("{}/v2/{repository}/blobs/{digest}", self.base());
        let resp = self.send(
            Method::HEAD,
            &url,
            &Access::Pull(repository),
            &[],
            Payload::Empty,
        )?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            401 => Err(self.unauthorized(&url, &resp)),
            status => Err(RegistryError::Status {
                url,
                what: format!("checking blob {digest}"),
                status,
                detail: String::new(),
            }),
        }
    }

    /// Uploads the blob `digest` of `size` bytes in one request: `POST` to start the upload,
    /// then `PUT` of the whole blob to the upload's location with `?digest=`. The registry
    /// verifies the digest (and the length against `Content-Length`, which some registries need).
    pub fn upload_blob(
        &self,
        repository: &str,
        digest: &str,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<()> {
        let url = format!("{}/v2/{repository}/blobs/uploads/", self.base());
        let mut resp = self.send(
            Method::POST,
            &url,
            &Access::Push(repository),
            &[("Content-Length", "0")],
            Payload::Empty,
        )?;
        match resp.status().as_u16() {
            202 => {}
            401 => return Err(self.unauthorized(&url, &resp)),
            status => {
                return Err(RegistryError::Status {
                    detail: detail(&mut resp),
                    url,
                    what: format!("starting the upload of {digest}"),
                    status,
                });
            }
        }
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Status {
                url: url.clone(),
                what: format!("starting the upload of {digest} (no Location header)"),
                status: 202,
                detail: String::new(),
            })?;
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base())
        } else {
            location.to_string()
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put_url = format!("{location}{sep}digest={digest}");
        let length = size.to_string();
        let mut resp = self.send(
            Method::PUT,
            &put_url,
            &Access::Push(repository),
            &[
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", &length),
            ],
            Payload::Stream(data),
        )?;
        match resp.status().as_u16() {
            201 => Ok(()),
            401 => Err(self.unauthorized(&url, &resp)),
            status => Err(RegistryError::Status {
                detail: detail(&mut resp),
                url,
                what: format!("uploading blob {digest}"),
                status,
            }),
        }
    }

    /// `PUT /v2/REPO/manifests/REFERENCE` of `manifest` as `media_type`.
    pub fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        manifest: &[u8],
    ) -> Result<()> {
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base());
        let length = manifest.len().to_string();
        let mut resp = self.send(
            Method::PUT,
            &url,
            &Access::Push(repository),
            &[("Content-Type", media_type), ("Content-Length", &length)],
            Payload::Bytes(manifest),
        )?;
        match resp.status().as_u16() {
            200 | 201 => Ok(()),
            401 => Err(self.unauthorized(&url, &resp)),
            status => Err(RegistryError::Status {
                detail: detail(&mut resp),
                url,
                what: format!("putting the manifest {reference}"),
                status,
            }),
        }
    }
}
