//! The connection to one registry host: TLS roots, the `/v2/` ping, and the authorization every
//! request carries.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;

use super::{Credentials, Reference, RegistryError, Result};

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

/// What a request needs to be allowed: the scopes of the token-auth flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access<'a> {
    /// The `/v2/` ping: no repository.
    Ping,
    /// Reading a repository (blob and manifest GET/HEAD).
    Pull(&'a str),
    /// Writing a repository (uploads, manifest PUT); includes reading it.
    Push(&'a str),
}

/// A request's body.
pub(super) enum Payload<'a> {
    /// No body.
    Empty,
    /// A body in memory (can be sent again).
    Bytes(&'a [u8]),
    /// A streamed body (sent once; its length is in a `Content-Length` header).
    Stream(&'a mut dyn std::io::Read),
}

/// A connection to one registry host.
pub struct Client {
    pub(super) agent: ureq::Agent,
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

pub(super) fn transport(url: &str, e: &ureq::Error) -> RegistryError {
    RegistryError::Transport {
        url: url.to_string(),
        message: e.to_string(),
    }
}

/// The registry's error body, short, for the message (registries answer JSON errors).
pub(super) fn detail(resp: &mut ureq::http::Response<ureq::Body>) -> String {
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

    /// Sends one request to the registry with the authorization `access` needs. Every request
    /// of the client goes through here, so that authentication is decided in one place.
    pub(super) fn send(
        &self,
        method: ureq::http::Method,
        url: &str,
        access: &Access<'_>,
        headers: &[(&str, &str)],
        payload: Payload<'_>,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        // One authorization for the whole host for now (basic auth); `access` names what a
        // bearer token for this request would have to grant.
        let _ = access;
        let mut builder = ureq::http::Request::builder().method(method).uri(url);
        if let Some(a) = &self.authorization {
            builder = builder.header("Authorization", a);
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let bad = |e: ureq::http::Error| RegistryError::Transport {
            url: url.to_string(),
            message: e.to_string(),
        };
        match payload {
            Payload::Empty => self.agent.run(builder.body(()).map_err(bad)?),
            Payload::Bytes(b) => self.agent.run(builder.body(b).map_err(bad)?),
            Payload::Stream(r) => self
                .agent
                .run(builder.body(ureq::SendBody::from_reader(r)).map_err(bad)?),
        }
        .map_err(|e| transport(url, &e))
    }

    pub(super) fn unauthorized(
        &self,
        url: &str,
        resp: &ureq::http::Response<ureq::Body>,
    ) -> RegistryError {
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
        let mut resp = self.send(
            ureq::http::Method::GET,
            &url,
            &Access::Ping,
            &[],
            Payload::Empty,
        )?;
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
}
