//! A client of the OCI distribution protocol (Docker registry v2), over `ureq` (synchronous, as
//! the rest of imgbuild): registry references, the connection and its authentication
//! (`client`, with the bearer-token flow in `auth` and the auth files and credential helpers in
//! `credentials`), blob and manifest requests (`upload` for a push, `fetch` for a pull), `push` of
//! a store or archive image or of an OCI layout's image index, `pull` of an image (one platform of
//! an index, or all) into the store, `blobinfo`, the record of which repositories hold which blobs
//! (the sources of cross-repository mounts), and short names and mirrors (`registries_conf`).
//!
//! HTTPS is tried first, verified against the system CAs plus the `ca.crt`-style files of a
//! certificate directory (containers' `certs.d/HOST/` by default). Plain HTTP is tried only after
//! that failed, and only for loopback registries or when TLS verification is turned off.
//! Credentials never appear in errors or logs: errors name the registry URL, the repository and
//! the digest involved.

mod auth;
pub mod blobinfo;
mod client;
pub mod credentials;
mod fetch;
mod pull;
mod push;
pub mod registries_conf;
mod transfer;
mod upload;

pub use client::{Client, ClientOptions};
pub use fetch::MANIFEST_ACCEPT;
pub use pull::{Platform, PullError, PullOptions, PullReport, Resolved, pull, resolve};
pub use push::{PushImage, PushOptions, PushReport, push, push_layout};
pub use transfer::{Direction, NoProgress, TransferProgress};

use std::net::IpAddr;
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use crate::reference::{check_name, check_tag};

/// Errors of talking to a registry; each names the registry URL and, where one is involved, the
/// repository and digest. None carries a credential.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The destination reference could not be parsed.
    #[error("invalid registry reference {reference:?}: {reason}")]
    Reference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry could not be reached or the connection failed.
    #[error("{url}: {message}")]
    Transport {
        /// The URL requested.
        url: String,
        /// The transport's error.
        message: String,
    },
    /// The registry wants credentials and none were given, or refused the ones given.
    #[error("{url}: {reason}")]
    Auth {
        /// The URL requested.
        url: String,
        /// What the registry said (never the credential).
        reason: String,
    },
    /// The registry answered with an unexpected status.
    #[error("{url}: {what} failed: HTTP {status}{detail}")]
    Status {
        /// The URL requested.
        url: String,
        /// The operation, naming the digest or tag.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The registry's error text, if any (prefixed with ": ").
        detail: String,
    },
    /// A CA certificate file could not be read.
    #[error("{path}: {reason}")]
    Certs {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Credentials could not be read from an auth file or a credential helper.
    #[error(transparent)]
    Credentials(#[from] credentials::CredentialsError),
    /// A registries configuration file could not be read or is invalid.
    #[error("{path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong (with the line for syntax errors).
        reason: String,
    },
    /// The image to push is not usable (its manifest cannot be parsed or a blob's size is off).
    #[error("{0}")]
    Image(String),
}

/// Result alias for registry operations.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// A registry reference: `HOST[:PORT]/REPO[:TAG|@DIGEST]`, optionally prefixed `docker://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `HOST[:PORT]`.
    pub host: String,
    /// The repository path, e.g. `library/debian`.
    pub repository: String,
    /// The tag, if given.
    pub tag: Option<String>,
    /// The digest, if given.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses `text`. The host is required (no short names): the first path component must
    /// contain a `.` or `:` or be `localhost`.
    pub fn parse(text: &str) -> Result<Reference> {
        let bad = |reason: &str| RegistryError::Reference {
            reference: text.to_string(),
            reason: reason.to_string(),
        };
        let rest = text.strip_prefix("docker://").unwrap_or(text);
        let (host, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("expected HOST[:PORT]/REPOSITORY[:TAG|@DIGEST]; short names are not resolved, use a full name"))?;
        if host.is_empty()
            || !(host.contains('.') || host.contains(':') || host == "localhost")
            || host.chars().any(|c| c.is_whitespace() || c == '@')
        {
            return Err(bad(
                "the first component must be a registry host (with a '.' or ':' or localhost); use a full name",
            ));
        }
        let (path, digest) = match path.split_once('@') {
            Some((p, d)) => {
                let hex = d
                    .strip_prefix("sha256:")
                    .ok_or_else(|| bad("only sha256 digests are supported"))?;
                if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    return Err(bad(
                        "the digest must be sha256: and 64 lowercase hex digits",
                    ));
                }
                (p, Some(d.to_string()))
            }
            None => (path, None),
        };
        let (repository, tag) = match path.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, Some(t.to_string())),
            _ => (path, None),
        };
        check_name(&format!("{host}/{repository}")).map_err(|e| bad(&e.to_string()))?;
        if let Some(t) = &tag {
            check_tag(t).map_err(|e| bad(&e.to_string()))?;
        }
        Ok(Reference {
            host: host.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// The tag or digest a manifest is put under: the tag, else the digest, else `latest`.
    pub fn manifest_reference(&self) -> &str {
        self.tag
            .as_deref()
            .or(self.digest.as_deref())
            .unwrap_or("latest")
    }

    /// Whether the host is a loopback address (`localhost`, 127.0.0.0/8, `::1`).
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.host)
    }
}

/// Whether `host` (`NAME[:PORT]`, `[V6]:PORT` or a bare name or address) is loopback.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None if host.matches(':').count() > 1 => host,
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A user name and password for basic auth. `Debug` does not show the password.
#[derive(Clone)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Parses `USER:PASS` (the password may contain ':').
    pub fn parse(text: &str) -> Option<Credentials> {
        let (user, password) = text.split_once(':')?;
        (!user.is_empty()).then(|| Credentials {
            user: user.to_string(),
            password: password.to_string(),
        })
    }
}

/// `sha256:<hex>` of `data`.
fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The OCI image manifest media type.
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r = Reference::parse("docker://127.0.0.1:5000/a/b:1.0").unwrap();
        assert_eq!(r.host, "127.0.0.1:5000");
        assert_eq!(r.repository, "a/b");
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        assert!(r.is_loopback());
        let r = Reference::parse("registry.example.org/debian").unwrap();
        assert_eq!(r.manifest_reference(), "latest");
        assert!(!r.is_loopback());
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("localhost/x@{d}")).unwrap();
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert!(r.is_loopback());
        assert!(Reference::parse("[::1]:5000/x").unwrap().is_loopback());
    }

    #[test]
    fn refuses_bad_references() {
        for bad in [
            "debian:12",
            "docker://debian",
            "example.org/UPPER",
            "example.org/x:bad tag",
            "example.org/x@sha256:zz",
            "example.org/",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_hide_the_password() {
        let c = Credentials::parse("me:s3cr:et").unwrap();
        assert_eq!(c.password, "s3cr:et");
        assert!(!format!("{c:?}").contains("s3cr"));
        assert!(Credentials::parse(":x").is_none());
        assert!(Credentials::parse("nocolon").is_none());
    }
}
