//! The GET requests of a pull: a manifest (or index) by tag or digest, and a blob from an offset.
//! Both go through [`Client::send`] with `Access::Pull`, so authentication covers them.
//! Redirects (blob storage behind a registry) are followed by the HTTP agent, which drops the
//! `Authorization` header on every redirect, so a credential never reaches another host.

use ureq::http::Method;

use super::client::{Access, Payload, detail};
use super::{Client, RegistryError, Result};
use crate::image::limits::MAX_MANIFEST_SIZE;

/// The manifest media types a pull asks for: OCI image manifest and index, Docker schema 2
/// manifest and manifest list. Schema 1 is not asked for (and refused when served anyway).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// A manifest as the registry served it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The bytes, exactly as served (their sha256 is the manifest digest).
    pub bytes: Vec<u8>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The `Docker-Content-Digest` header, if any (never trusted alone).
    pub header_digest: Option<String>,
    /// The URL it was fetched from (for errors).
    pub url: String,
}

/// A blob response: its body from `offset`, or from 0 when the registry ignored the range.
pub struct BlobBody {
    /// Where the body starts in the blob.
    pub offset: u64,
    /// The body.
    pub body: ureq::Body,
}

fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The first byte of a `Content-Range: bytes FIRST-LAST/TOTAL` header.
fn content_range_start(value: &str) -> Option<u64> {
    value
        .trim()
        .strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

impl Client {
    /// `GET /v2/REPO/manifests/REFERENCE` (a tag or digest) with the media types of
    /// [`MANIFEST_ACCEPT`]; the body is bounded by the container tools' manifest limit.
    pub fn get_manifest(&self, repository: &str, reference: &str) -> Result<FetchedManifest> {
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base());
        let mut resp = self.send(
            Method::GET,
            &url,
            &Access::Pull(repository),
            &[("Accept", MANIFEST_ACCEPT)],
            Payload::Empty,
        )?;
        match resp.status().as_u16() {
            200 => {}
            401 => return Err(self.unauthorized(&url, &resp)),
            status => {
                return Err(RegistryError::Status {
                    detail: detail(&mut resp),
                    url,
                    what: format!("getting the manifest {reference}"),
                    status,
                });
            }
        }
        let content_type = header(&resp, "content-type");
        let header_digest = header(&resp, "docker-content-digest");
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_MANIFEST_SIZE)
            .read_to_vec()
            .map_err(|e| RegistryError::Transport {
                url: url.clone(),
                message: format!("reading the manifest {reference}: {e}"),
            })?;
        Ok(FetchedManifest {
            bytes,
            content_type,
            header_digest,
            url,
        })
    }

    /// The URL of blob `digest` in `repository`.
    pub fn blob_url(&self, repository: &str, digest: &str) -> String {
        format!("{}/v2/{repository}/blobs/{digest}", self.base())
    }

    /// `GET /v2/REPO/blobs/DIGEST`, from byte `offset` (`Range: bytes=OFFSET-`) when it is not
    /// 0. A registry that ignores the range answers the whole blob: the body then starts at 0.
    pub fn get_blob(&self, repository: &str, digest: &str, offset: u64) -> Result<BlobBody> {
        let url = self.blob_url(repository, digest);
        let range = format!("bytes={offset}-");
        let headers: &[(&str, &str)] = if offset > 0 {
            &[("Range", &range)]
        } else {
            &[]
        };
        let mut resp = self.send(
            Method::GET,
            &url,
            &Access::Pull(repository),
            headers,
            Payload::Empty,
        )?;
        let start = match resp.status().as_u16() {
            200 => 0,
            206 => header(&resp, "content-range")
                .as_deref()
                .and_then(content_range_start)
                .ok_or_else(|| RegistryError::Status {
                    url: url.clone(),
                    what: format!(
                        "getting blob {digest} from byte {offset} (no usable Content-Range)"
                    ),
                    status: 206,
                    detail: String::new(),
                })?,
            401 => return Err(self.unauthorized(&url, &resp)),
            status => {
                return Err(RegistryError::Status {
                    detail: detail(&mut resp),
                    url,
                    what: format!("getting blob {digest}"),
                    status,
                });
            }
        };
        if start != 0 && start != offset {
            return Err(RegistryError::Status {
                url,
                what: format!(
                    "getting blob {digest} from byte {offset} (the registry sent from byte {start})"
                ),
                status: 206,
                detail: String::new(),
            });
        }
        Ok(BlobBody {
            offset: start,
            body: resp.into_body(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_content_ranges() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes 0-0/*"), Some(0));
        assert_eq!(content_range_start("items 1-2/3"), None);
        assert_eq!(content_range_start("bytes x-1/2"), None);
    }
}
