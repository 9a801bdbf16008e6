//! A client of the OCI distribution protocol (Docker registry v2): the `/v2/` ping, blob HEAD,
//! monolithic blob upload and manifest PUT, with anonymous or basic auth, over `ureq`
//! (synchronous, as the rest of imgbuild). Enough to push an image of the store or of an archive.
//!
//! HTTPS is tried first, verified against the system CAs plus the `ca.crt`-style files of a
//! certificate directory (containers' `certs.d/HOST/` by default). Plain HTTP is tried only after
//! that failed, and only for loopback registries or when TLS verification is turned off. Credentials never appear in errors or logs: errors
//! name the registry URL, the repository and the digest involved.

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use oci_spec::image::ImageManifest;
use sha2::{Digest as _, Sha256};

use crate::reference::{check_name, check_tag};
use crate::storage::StoreInput;

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
        let name = match self.host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(v6),
            None => self
                .host
                .rsplit_once(':')
                .map_or(self.host.as_str(), |(h, _)| h),
        };
        name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
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

/// How to connect to a registry.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Credentials for basic auth; `None` is anonymous.
    pub credentials: Option<Credentials>,
    /// `true` skips certificate verification and allows plain HTTP to any registry (as
    /// `--tls-verify=false`).
    pub insecure: bool,
    /// Extra CA certificates: every `*.crt` file in this directory. `None`:
    /// `/etc/containers/certs.d/HOST[:PORT]/` when it exists.
    pub cert_dir: Option<PathBuf>,
}

/// Where Debian, Fedora and others keep the system CA bundle.
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

fn certs_err(path: &Path, reason: &dyn std::fmt::Display) -> RegistryError {
    RegistryError::Certs {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Adds the certificates of the PEM file `path` to `out`.
fn read_pem(path: &Path, out: &mut Vec<ureq::tls::Certificate<'static>>) -> Result<()> {
    let pem = std::fs::read(path).map_err(|e| certs_err(path, &e))?;
    for item in ureq::tls::parse_pem(&pem) {
        if let ureq::tls::PemItem::Certificate(c) = item.map_err(|e| certs_err(path, &e))? {
            out.push(c);
        }
    }
    Ok(())
}

/// The CA roots: the first system bundle found, plus the `*.crt` files of `cert_dir`.
fn root_certs(cert_dir: Option<&Path>) -> Result<Vec<ureq::tls::Certificate<'static>>> {
    let mut certs = Vec::new();
    if let Some(bundle) = SYSTEM_BUNDLES.iter().map(Path::new).find(|p| p.is_file()) {
        read_pem(bundle, &mut certs)?;
    }
    if let Some(dir) = cert_dir {
        let entries = std::fs::read_dir(dir).map_err(|e| certs_err(dir, &e))?;
        let mut files = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| certs_err(dir, &e))?.path();
            if path.extension().is_some_and(|e| e == "crt") {
                files.push(path);
            }
        }
        files.sort();
        for f in files {
            read_pem(&f, &mut certs)?;
        }
    }
    Ok(certs)
}

/// A connection to one registry host.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    authorization: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

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

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn transport(url: &str, e: &ureq::Error) -> RegistryError {
    RegistryError::Transport {
        url: url.to_string(),
        message: e.to_string(),
    }
}

/// The registry's error body, short, for the message (registries answer JSON errors).
fn detail(resp: &mut ureq::http::Response<ureq::Body>) -> String {
    let text = resp
        .body_mut()
        .with_config()
        .limit(4096)
        .read_to_string()
        .unwrap_or_default();
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {}", text.chars().take(300).collect::<String>())
    }
}

impl Client {
    /// A client of `reference`'s host, pinged (`GET /v2/`) over HTTPS, or over plain HTTP when
    /// that failed to connect and the host is loopback or `opts.insecure` is set. An
    /// authentication failure is reported as such, never retried in plain HTTP.
    pub fn connect(reference: &Reference, opts: &ClientOptions) -> Result<Client> {
        let default_dir = PathBuf::from("/etc/containers/certs.d").join(&reference.host);
        let cert_dir = match &opts.cert_dir {
            Some(d) => Some(d.clone()),
            None => default_dir.is_dir().then_some(default_dir),
        };
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::Specific(Arc::new(root_certs(
                cert_dir.as_deref(),
            )?)))
            .disable_verification(opts.insecure)
            .build();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(concat!("imgbuild/", env!("CARGO_PKG_VERSION")))
            .accept_encoding("identity")
            .tls_config(tls)
            .build()
            .new_agent();
        let authorization = opts.credentials.as_ref().map(|c| {
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", c.user, c.password));
            format!("Basic {token}")
        });
        let mut client = Client {
            agent,
            base: format!("https://{}", reference.host),
            authorization,
        };
        match client.ping() {
            Err(RegistryError::Transport { url, message })
                if opts.insecure || reference.is_loopback() =>
            {
                client.base = format!("http://{}", reference.host);
                // A registry answering plain HTTP with 401 speaks HTTP: its answer is the
                // error. Anything else keeps the HTTPS failure first (a TLS registry answers
                // plain HTTP with 400, which would hide a certificate problem).
                client.ping().map_err(|e| match e {
                    RegistryError::Auth { .. } => e,
                    other => RegistryError::Transport {
                        url,
                        message: format!("{message}; over plain HTTP: {other}"),
                    },
                })?;
            }
            other => other?,
        }
        Ok(client)
    }

    /// The registry's base URL (`http(s)://HOST[:PORT]`).
    pub fn base(&self) -> &str {
        &self.base
    }

    fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.authorization {
            Some(a) => req.header("Authorization", a),
            None => req,
        }
    }

    fn unauthorized(&self, url: &str, resp: &ureq::http::Response<ureq::Body>) -> RegistryError {
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let reason = if challenge.to_ascii_lowercase().starts_with("bearer") {
            "the registry asks for a bearer token, which imgbuild does not support yet".to_string()
        } else if self.authorization.is_some() {
            "the registry refused the credentials (HTTP 401)".to_string()
        } else {
            "the registry requires credentials (HTTP 401); give --creds USER:PASS".to_string()
        };
        RegistryError::Auth {
            url: url.to_string(),
            reason,
        }
    }

    /// `GET /v2/`: the registry is there and accepts the credentials.
    pub fn ping(&self) -> Result<()> {
        let url = format!("{}/v2/", self.base);
        let mut resp = self
            .auth(self.agent.get(&url))
            .call()
            .map_err(|e| transport(&url, &e))?;
        match resp.status().as_u16() {
            200 => Ok(()),
            401 => Err(self.unauthorized(&url, &resp)),
            status => Err(RegistryError::Status {
                detail: detail(&mut resp),
                url,
                what: "ping".into(),
                status,
            }),
        }
    }

    /// `HEAD /v2/REPO/blobs/DIGEST`: whether the registry has the blob.
    pub fn blob_exists(&self, repository: &str, digest: &str) -> Result<bool> {
        let url = format!("{}/v2/{repository}/blobs/{digest}", self.base);
        let resp = self
            .auth(self.agent.head(&url))
            .call()
            .map_err(|e| transport(&url, &e))?;
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
        let url = format!("{}/v2/{repository}/blobs/uploads/", self.base);
        let mut resp = self
            .auth(self.agent.post(&url))
            .send_empty()
            .map_err(|e| transport(&url, &e))?;
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
            format!("{}{location}", self.base)
        } else {
            location.to_string()
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put_url = format!("{location}{sep}digest={digest}");
        let mut resp = self
            .auth(self.agent.put(&put_url))
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", size.to_string())
            .send(ureq::SendBody::from_reader(data))
            .map_err(|e| transport(&url, &e))?;
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
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base);
        let mut resp = self
            .auth(self.agent.put(&url))
            .header("Content-Type", media_type)
            .send(manifest)
            .map_err(|e| transport(&url, &e))?;
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

/// The manifest's own `mediaType`, else the OCI manifest type.
fn manifest_media_type(manifest: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(manifest)
        .ok()
        .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
        .unwrap_or_else(|| OCI_MANIFEST.to_string())
}

/// `sha256:<hex>` of `data`.
fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
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
