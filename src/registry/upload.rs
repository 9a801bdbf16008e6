//! Blob and manifest requests of a push: blob HEAD, upload start (with a cross-repository
//! mount), monolithic PUT, chunked PATCH, upload status, manifest PUT.

use ureq::http::Method;

use super::client::{Access, Payload, detail};
use super::{Client, RegistryError, Result, sha256};

/// What `POST /v2/REPO/blobs/uploads/` gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Started {
    /// The blob was mounted from the other repository (201): nothing to upload.
    Mounted,
    /// An upload session at this absolute URL (202), and the registry's minimum chunk size.
    Upload {
        /// The upload's URL.
        location: String,
        /// `OCI-Chunk-Min-Length`, if the registry said.
        min_chunk: Option<u64>,
    },
}

/// `url` with `?key=value` or `&key=value` appended.
fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={value}")
}

/// The offset after `Range: 0-N` (N+1). `0-0` is taken as nothing received: registries send
/// it for an empty upload, and sending one byte again costs nothing.
fn next_offset(range: &str) -> u64 {
    range
        .trim()
        .trim_start_matches("bytes=")
        .split_once('-')
        .and_then(|(_, end)| end.trim().parse::<u64>().ok())
        .map_or(0, |end| if end == 0 { 0 } else { end + 1 })
}

impl Client {
    /// An absolute URL for a `Location` header (registries answer relative paths).
    fn absolute(&self, location: &str) -> String {
        if location.starts_with('/') {
            format!("{}{location}", self.base())
        } else {
            location.to_string()
        }
    }

    fn location(
        &self,
        url: &str,
        resp: &ureq::http::Response<ureq::Body>,
        what: &str,
    ) -> Result<String> {
        resp.headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(|l| self.absolute(l))
            .ok_or_else(|| RegistryError::Status {
                url: url.to_string(),
                what: format!("{what} (no Location header)"),
                status: resp.status().as_u16(),
                detail: String::new(),
            })
    }

    fn failed(
        &self,
        url: &str,
        resp: &mut ureq::http::Response<ureq::Body>,
        what: String,
    ) -> RegistryError {
        match resp.status().as_u16() {
            401 => self.unauthorized(url, resp),
            status => RegistryError::Status {
                detail: detail(resp),
                url: url.to_string(),
                what,
                status,
            },
        }
    }

    /// `HEAD /v2/REPO/blobs/DIGEST`: whether the registry has the blob. A server error (5xx)
    /// counts as absent: the check only saves an upload, and a registry restarted after a crash
    /// answers 500 for a blob whose upload it lost half-way, which uploading again repairs.
    pub fn blob_exists(&self, repository: &str, digest: &str) -> Result<bool> {
        let url = format!("{}/v2/{repository}/blobs/{digest}", self.base());
        let mut resp = self.send(
            Method::HEAD,
            &url,
            &Access::Pull(repository),
            &[],
            Payload::Empty,
        )?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 | 500..=599 => Ok(false),
            _ => Err(self.failed(&url, &mut resp, format!("checking blob {digest}"))),
        }
    }

    /// `POST /v2/REPO/blobs/uploads/`, with `?mount=DIGEST&from=OTHER` when `mount_from` names
    /// a repository of the same registry that holds the blob. A registry that cannot mount it
    /// starts an ordinary upload instead (202).
    pub(super) fn start_upload(
        &self,
        repository: &str,
        digest: &str,
        mount_from: Option<&str>,
    ) -> Result<Started> {
        let mut url = format!("{}/v2/{repository}/blobs/uploads/", self.base());
        if let Some(from) = mount_from {
            url = with_query(&with_query(&url, "mount", digest), "from", from);
        }
        // Mounting reads the other repository: a bearer token must grant both.
        let access = match mount_from {
            Some(from) => Access::Mount {
                repo: repository,
                from,
            },
            None => Access::Push(repository),
        };
        let mut resp = self.send(
            Method::POST,
            &url,
            &access,
            &[("Content-Length", "0")],
            Payload::Empty,
        )?;
        match resp.status().as_u16() {
            201 if mount_from.is_some() => Ok(Started::Mounted),
            202 => Ok(Started::Upload {
                location: self.location(
                    &url,
                    &resp,
                    &format!("starting the upload of {digest}"),
                )?,
                min_chunk: resp
                    .headers()
                    .get("oci-chunk-min-length")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok()),
            }),
            _ => Err(self.failed(&url, &mut resp, format!("starting the upload of {digest}"))),
        }
    }

    /// `PUT LOCATION?digest=` with `body` (the whole blob, or the empty rest of a chunked
    /// upload): the registry verifies the digest and commits the blob. `counted` sees the
    /// bytes as they are sent.
    pub(super) fn finish_upload(
        &self,
        repository: &str,
        location: &str,
        digest: &str,
        body: &mut dyn std::io::Read,
        length: u64,
    ) -> Result<()> {
        let url = with_query(location, "digest", digest);
        let length = length.to_string();
        let mut resp = self.send(
            Method::PUT,
            &url,
            &Access::Push(repository),
            &[
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", &length),
            ],
            Payload::Stream(body),
        )?;
        match resp.status().as_u16() {
            201 => Ok(()),
            _ => Err(self.failed(location, &mut resp, format!("uploading blob {digest}"))),
        }
    }

    /// `PATCH LOCATION` of the bytes `start..start+length` of the blob: returns the upload's
    /// next location.
    pub(super) fn upload_chunk(
        &self,
        repository: &str,
        location: &str,
        digest: &str,
        start: u64,
        body: &mut dyn std::io::Read,
        length: u64,
    ) -> Result<String> {
        let range = format!("{start}-{}", start + length - 1);
        let len = length.to_string();
        let mut resp = self.send(
            Method::PATCH,
            location,
            &Access::Push(repository),
            &[
                ("Content-Type", "application/octet-stream"),
                ("Content-Range", &range),
                ("Content-Length", &len),
            ],
            Payload::Stream(body),
        )?;
        match resp.status().as_u16() {
            202 => self.location(location, &resp, &format!("uploading blob {digest}")),
            _ => Err(self.failed(
                location,
                &mut resp,
                format!("uploading bytes {range} of blob {digest}"),
            )),
        }
    }

    /// `GET LOCATION`: how much of the upload the registry has (`Range: 0-N` → N+1) and its
    /// current location; `None` when the registry no longer knows the upload (404).
    pub(super) fn upload_status(
        &self,
        repository: &str,
        location: &str,
        digest: &str,
    ) -> Result<Option<(u64, String)>> {
        let mut resp = self.send(
            Method::GET,
            location,
            &Access::Push(repository),
            &[],
            Payload::Empty,
        )?;
        match resp.status().as_u16() {
            204 | 200 => {
                let next = resp
                    .headers()
                    .get("range")
                    .and_then(|v| v.to_str().ok())
                    .map_or(0, next_offset);
                let location = resp
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .map_or_else(|| location.to_string(), |l| self.absolute(l));
                Ok(Some((next, location)))
            }
            404 => Ok(None),
            _ => Err(self.failed(
                location,
                &mut resp,
                format!("asking for the state of the upload of {digest}"),
            )),
        }
    }

    /// `PUT /v2/REPO/manifests/REFERENCE` of `manifest` as `media_type`. The registry's
    /// `Docker-Content-Digest`, when it sends one, must be the manifest's own digest.
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
            200 | 201 => {
                let ours = sha256(manifest);
                match resp
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                {
                    Some(theirs) if theirs.trim() != ours => Err(RegistryError::Status {
                        url,
                        what: format!("putting the manifest {reference}"),
                        status: resp.status().as_u16(),
                        detail: format!(
                            ": the registry stored it as {}, not as its digest {ours}",
                            theirs.trim()
                        ),
                    }),
                    _ => Ok(()),
                }
            }
            _ => Err(self.failed(&url, &mut resp, format!("putting the manifest {reference}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_appended() {
        assert_eq!(
            with_query("http://h/u", "digest", "d"),
            "http://h/u?digest=d"
        );
        assert_eq!(
            with_query("http://h/u?_state=x", "digest", "d"),
            "http://h/u?_state=x&digest=d"
        );
    }

    #[test]
    fn ranges_give_the_next_offset() {
        assert_eq!(next_offset("0-1023"), 1024);
        assert_eq!(next_offset("bytes=0-9"), 10);
        assert_eq!(next_offset("0-0"), 0);
        assert_eq!(next_offset("junk"), 0);
    }
}
