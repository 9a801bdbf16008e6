//! The connection to one registry host: TLS roots, the `/v2/` ping, and the authorization every
//! request carries (basic auth, or bearer tokens per scope: see `auth`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;

use super::auth::{self, AuthState, Realm, Scheme};
use super::credentials::{AuthFiles, IDENTITY_TOKEN_USER};
use super::{Credentials, Reference, RegistryError, Result};

/// How to connect to a registry.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Credentials (for basic auth, or for the token server of a bearer registry); `None`:
    /// those `auth_files` have for the registry, else anonymous.
    pub credentials: Option<Credentials>,
    /// The auth files (containers' `auth.json`, Docker's `config.json`) to look credentials up
    /// in when `credentials` is `None`; empty: none.
    pub auth_files: AuthFiles,
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

/// Where a registry's API is served: Docker Hub's names (`docker.io`, `index.docker.io`) serve
/// no `/v2/` themselves; its API is at `registry-1.docker.io`, as the Docker and containers
/// tools know.
fn api_host(host: &str) -> &str {
    match host {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
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
    /// A cross-repository mount: writing `repo` and reading `from`.
    Mount {
        /// The repository written.
        repo: &'a str,
        /// The repository the blob is mounted from.
        from: &'a str,
    },
}

impl Access<'_> {
    /// What the access is, for errors: `push access to repository REPO`.
    fn describe(&self) -> String {
        match self {
            Access::Ping => "access to the registry".to_string(),
            Access::Pull(repo) => format!("pull access to repository {repo}"),
            Access::Push(repo) => format!("push access to repository {repo}"),
            Access::Mount { repo, from } => {
                format!("push access to repository {repo} and pull access to repository {from}")
            }
        }
    }
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

/// A connection to one registry host. `Debug` shows neither credentials nor tokens.
pub struct Client {
    pub(super) agent: ureq::Agent,
    base: String,
    credentials: Option<Credentials>,
    /// Whether credentials may go to a plain-HTTP token server that is not loopback.
    insecure: bool,
    auth: AuthState,
    /// Held while a token is fetched before a request, so that transfers running in parallel
    /// for one scope wait for the first one's token instead of each fetching their own.
    fetching: std::sync::Mutex<()>,
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

fn auth_err(url: &str, reason: String) -> RegistryError {
    RegistryError::Auth {
        url: url.to_string(),
        reason,
    }
}

impl Client {
    /// A client of `reference`'s host, pinged (`GET /v2/`) over HTTPS, or over plain HTTP when
    /// that failed to connect and the host is loopback or `opts.insecure` is set. An
    /// authentication failure is reported as such, never retried in plain HTTP. Without
    /// `opts.credentials`, the credentials are looked up in `opts.auth_files` for the
    /// reference's host and repository.
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
        let credentials = match &opts.credentials {
            Some(c) => Some(c.clone()),
            None => opts
                .auth_files
                .lookup(&reference.host, &reference.repository)?,
        };
        let mut client = Client {
            agent,
            base: format!("https://{}", api_host(&reference.host)),
            credentials,
            insecure: opts.insecure,
            auth: AuthState::default(),
            fetching: std::sync::Mutex::new(()),
        };
        match client.ping() {
            Err(RegistryError::Transport { url, message })
                if opts.insecure || reference.is_loopback() =>
            {
                client.base = format!("http://{}", api_host(&reference.host));
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

    fn basic(&self) -> Option<String> {
        self.credentials.as_ref().map(|c| {
            let pair = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", c.user, c.password));
            format!("Basic {pair}")
        })
    }

    /// The `Authorization` header for `access` before the request is sent: basic auth once the
    /// registry asked for it; for a bearer registry a cached token of the scope, else a new
    /// one (so that a streamed body, which cannot be sent twice, goes out authorized).
    fn authorization(&self, access: &Access<'_>, fetched: &mut bool) -> Result<Option<String>> {
        match self.auth.scheme() {
            Scheme::Unknown => Ok(None),
            Scheme::Basic => Ok(self.basic()),
            Scheme::Bearer(realm) => {
                if let Some(t) = self.auth.cached(access, SystemTime::now()) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let _one_at_a_time = self
                    .fetching
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                // Another transfer may have fetched it while this one waited.
                if let Some(t) = self.auth.cached(access, SystemTime::now()) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                *fetched = true;
                self.fetch_token(&realm, access).map(Some)
            }
        }
    }

    /// Gets a token for `access` from the token server of `realm` (basic auth with the
    /// credentials, anonymous without), caches it, and returns the `Authorization` value.
    fn fetch_token(&self, realm: &Realm, access: &Access<'_>) -> Result<String> {
        let url = realm.url.as_str();
        let uri: ureq::http::Uri = url.parse().map_err(|_| {
            auth_err(
                url,
                "the registry names a token server (realm) that is not a URL".to_string(),
            )
        })?;
        let plain = uri.scheme_str() != Some("https");
        if plain && uri.scheme_str() != Some("http") {
            return Err(auth_err(
                url,
                "the registry's token server (realm) is neither https nor http".to_string(),
            ));
        }
        if self.credentials.is_some()
            && plain
            && !self.insecure
            && !uri.host().is_some_and(super::is_loopback_host)
        {
            return Err(auth_err(
                url,
                "the token server is plain HTTP; credentials are sent over plain HTTP only to a loopback host or with --tls-verify=false".to_string(),
            ));
        }
        let scopes = auth::scopes(access);
        let scope = (!scopes.is_empty()).then(|| scopes.join(" "));
        let mut resp = match &self.credentials {
            // An identity token: the OAuth2 refresh-token grant (a form POST to the realm).
            Some(c) if c.user == IDENTITY_TOKEN_USER => {
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", c.password.as_str()),
                    ("client_id", "imgbuild"),
                ];
                if let Some(service) = &realm.service {
                    form.push(("service", service));
                }
                if let Some(scope) = &scope {
                    form.push(("scope", scope));
                }
                self.agent.post(url).send_form(form)
            }
            creds => {
                let mut req = self.agent.get(url);
                if let Some(service) = &realm.service {
                    req = req.query("service", service);
                }
                // One `scope` parameter per scope, as the token spec's GET form has them.
                for scope in &scopes {
                    req = req.query("scope", scope);
                }
                if let Some(c) = creds {
                    req = req.query("account", &c.user);
                    if let Some(basic) = self.basic() {
                        req = req.header("Authorization", basic);
                    }
                }
                req.call()
            }
        }
        .map_err(|e| transport(url, &e))?;
        let status = resp.status().as_u16();
        match status {
            200 => {}
            // OAuth2 answers a refused refresh token with 400 (`invalid_grant`).
            400 | 401 | 403 if self.credentials.is_some() => {
                return Err(auth_err(
                    url,
                    format!("the token server refused the credentials (HTTP {status})"),
                ));
            }
            401 | 403 => {
                return Err(auth_err(
                    url,
                    format!(
                        "the token server requires credentials (HTTP {status}); give --creds USER:PASS or log in with `imgbuild login`"
                    ),
                ));
            }
            _ => {
                return Err(RegistryError::Status {
                    detail: detail(&mut resp),
                    url: url.to_string(),
                    what: format!("getting a token for {}", access.describe()),
                    status,
                });
            }
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| transport(url, &e))?;
        let token = auth::read_token(&body, SystemTime::now()).ok_or_else(|| {
            auth_err(
                url,
                "the token server's answer is not JSON with a token".to_string(),
            )
        })?;
        let value = format!("Bearer {}", token.value);
        self.auth.store(access, token);
        Ok(value)
    }

    /// Sends one request to the registry with the authorization `access` needs. Every request
    /// of the client goes through here, so that authentication is decided in one place.
    ///
    /// A 401 whose challenge asks for basic auth is answered with the credentials, one whose
    /// challenge asks for a bearer token with a token of `access`'s scope; a token the registry
    /// refuses (expired, revoked) is replaced once. A streamed body is never sent again, so it
    /// goes out authorized (a token is fetched before when none is cached). A 401 (or a 403
    /// naming `insufficient_scope`) that remains is an [`RegistryError::Auth`].
    // `method` by value: every caller names a constant, and a retry sends a clone.
    #[allow(clippy::needless_pass_by_value)]
    pub(super) fn send(
        &self,
        method: ureq::http::Method,
        url: &str,
        access: &Access<'_>,
        headers: &[(&str, &str)],
        mut payload: Payload<'_>,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let mut fetched = false;
        let mut refreshed = false;
        let mut retried = false;
        let mut tries = 0;
        let mut authorization = self.authorization(access, &mut fetched)?;
        loop {
            let stream = matches!(payload, Payload::Stream(_));
            let resp = self.send_once(
                method.clone(),
                url,
                authorization.as_deref(),
                headers,
                &mut payload,
            )?;
            let status = resp.status().as_u16();
            if status != 401 && status != 403 {
                return Ok(resp);
            }
            let challenges = auth::challenges(&resp);
            let bearer = challenges
                .iter()
                .find(|c| c.scheme == "bearer" && c.param("realm").is_some());
            let insufficient =
                bearer.is_some_and(|b| b.param("error") == Some("insufficient_scope"));
            if status == 403 && !insufficient {
                return Ok(resp);
            }
            if let Some(b) = bearer {
                let realm = Realm {
                    url: b.param("realm").unwrap_or_default().to_string(),
                    service: b.param("service").map(str::to_string),
                };
                self.auth.set_scheme(Scheme::Bearer(realm.clone()));
                let used_token = authorization
                    .as_deref()
                    .is_some_and(|a| a.starts_with("Bearer "));
                if insufficient && used_token && (fetched || stream) {
                    return Err(auth_err(
                        url,
                        format!(
                            "the token from {} does not grant {} (the registry answered insufficient_scope)",
                            realm.url,
                            access.describe(),
                        ),
                    ));
                }
                // A token refused once is replaced once; the first challenge (no token sent
                // yet) is not a refusal.
                if stream || (used_token && refreshed) || tries >= 2 {
                    let error = match b.param("error") {
                        Some("invalid_token") => {
                            "invalid_token: expired, or not signed by a key the registry trusts"
                        }
                        Some(e) => e,
                        None => "no error named",
                    };
                    return Err(auth_err(
                        url,
                        format!(
                            "the registry refused the token from {} for {} ({error}, HTTP {status})",
                            realm.url,
                            access.describe(),
                        ),
                    ));
                }
                refreshed |= used_token;
                tries += 1;
                authorization = Some(self.fetch_token(&realm, access)?);
                fetched = true;
                continue;
            }
            if challenges.iter().any(|c| c.scheme == "basic")
                && self
                    .credentials
                    .as_ref()
                    .is_some_and(|c| c.user == IDENTITY_TOKEN_USER)
            {
                return Err(auth_err(
                    url,
                    "the registry asks for basic auth, and the credentials found are an identity token, which only a registry using bearer tokens takes".to_string(),
                ));
            }
            if !stream
                && !retried
                && self.credentials.is_some()
                && self.auth.scheme() != Scheme::Basic
                && challenges.iter().any(|c| c.scheme == "basic")
            {
                self.auth.set_scheme(Scheme::Basic);
                authorization = self.basic();
                retried = true;
                continue;
            }
            return Err(self.unauthorized(url, &resp));
        }
    }

    /// One request, with `authorization` when given.
    fn send_once(
        &self,
        method: ureq::http::Method,
        url: &str,
        authorization: Option<&str>,
        headers: &[(&str, &str)],
        payload: &mut Payload<'_>,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let mut builder = ureq::http::Request::builder().method(method).uri(url);
        if let Some(a) = authorization {
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
            Payload::Bytes(b) => self.agent.run(builder.body(*b).map_err(bad)?),
            Payload::Stream(r) => self.agent.run(
                builder
                    .body(ureq::SendBody::from_reader(&mut **r))
                    .map_err(bad)?,
            ),
        }
        .map_err(|e| transport(url, &e))
    }

    /// The error of a 401 the request path could not resolve.
    pub(super) fn unauthorized(
        &self,
        url: &str,
        resp: &ureq::http::Response<ureq::Body>,
    ) -> RegistryError {
        let bearer = auth::challenges(resp).iter().any(|c| c.scheme == "bearer");
        let reason = if bearer {
            "the registry refused the bearer token (HTTP 401)".to_string()
        } else if self.credentials.is_some() {
            "the registry refused the credentials (HTTP 401)".to_string()
        } else {
            "the registry requires credentials (HTTP 401); give --creds USER:PASS or log in with `imgbuild login`".to_string()
        };
        auth_err(url, reason)
    }

    /// `GET /v2/`: the registry is there and accepts the credentials (for a bearer registry:
    /// the token server gives a token for them, which the registry accepts).
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
            status => Err(RegistryError::Status {
                detail: detail(&mut resp),
                url,
                what: "ping".into(),
                status,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_client_is_shared_between_transfer_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<super::Client>();
    }
}
