//! A token server of the Docker registry token specification for the bearer-auth tests: a small
//! HTTP server on a loopback port, in a thread, stopped on drop. It checks basic credentials
//! ([`USER`]/[`PASSWORD`]), grants pull (and push, unless told not to) on the scopes asked, and
//! answers RS256-signed JWTs carrying its certificate in `x5c`, which the real registry
//! verifies against the same certificate as its `rootcertbundle` (the `x5c` form needs no
//! libtrust key id). Signing runs `openssl dgst`. A `POST` with the `OAuth2` refresh-token grant
//! and [`REFRESH_TOKEN`] is granted too (the `identitytoken` of auth files).

use super::registry::{PASSWORD, USER};
use super::run;
use base64::Engine as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The refresh token (Docker's `identitytoken`) the server takes in the `OAuth2` grant.
pub const REFRESH_TOKEN: &str = "refresh-T0ken-s3cret";
/// The `service` the registry and the token server agree on.
pub const SERVICE: &str = "imgbuild-test-registry";
const ISSUER: &str = "imgbuild-test-issuer";
/// The registry accepts tokens up to this long after their `exp` (distribution's leeway).
pub const REGISTRY_LEEWAY: u64 = 60;

/// What the server grants and how long its tokens live.
#[derive(Default, Clone)]
pub struct Policy {
    /// Grant pull only, never push.
    pub pull_only: bool,
    /// 1-based numbers of the tokens (in the order issued) that are stale: already past their
    /// expiry (and the registry's leeway) when issued, while the answer says `expires_in: 300`
    /// (as a token server whose clock is off, or a token revoked early, would).
    pub stale: Vec<usize>,
    /// Every token stale.
    pub all_stale: bool,
    /// Tokens the registry takes for this long only (the answer still says 300 s), so that a
    /// client's cached token expires while it holds it.
    pub life: Option<u64>,
}

/// One token request as received.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The `scope` parameters.
    pub scopes: Vec<String>,
    /// The user of the basic credentials, if any were given.
    pub user: Option<String>,
    /// The status answered.
    pub status: u16,
    /// The token issued, if any.
    pub token: Option<String>,
    /// Its `exp` claim.
    pub exp: u64,
}

struct Shared {
    policy: Mutex<Policy>,
    requests: Mutex<Vec<TokenRequest>>,
}

/// The running token server, stopped on drop.
pub struct TokenServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The certificate the registry trusts (`rootcertbundle`).
    pub cert: PathBuf,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Percent-decoding of a query value.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

impl TokenServer {
    /// Makes an RSA key and a self-signed certificate under `dir` and starts serving with
    /// `policy`.
    pub fn start(dir: &Path, policy: Policy) -> TokenServer {
        let key = dir.join("token.key");
        let cert = dir.join("token.crt");
        let der = dir.join("token.der");
        run(Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=imgbuild test token issuer", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert));
        run(Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .arg("-out")
            .arg(&der));
        let x5c = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&der).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            policy: Mutex::new(policy),
            requests: Mutex::new(Vec::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, stop) = (Arc::clone(&shared), Arc::clone(&stop));
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    // Drop wakes the accept with a connection of its own after setting the flag.
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    serve(conn.unwrap(), &shared, &key, &x5c);
                }
            })
        };
        TokenServer {
            port,
            cert,
            shared,
            stop,
            thread: Some(thread),
        }
    }

    /// The realm URL.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The registry configuration (`auth: token:`) that trusts this server.
    pub fn registry_yaml(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.realm(),
            self.cert.display()
        )
    }

    /// Replaces the policy.
    pub fn set_policy(&self, policy: Policy) {
        *self.shared.policy.lock().unwrap() = policy;
    }

    /// The token requests so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Every token issued so far.
    pub fn tokens(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter_map(|r| r.token)
            .collect()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers one request on `conn` and closes it.
fn serve(conn: TcpStream, shared: &Shared, key: &Path, x5c: &str) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let post = line.starts_with("POST ");
    let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut authorization = None;
    let mut length = 0;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_string());
            } else if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
    }
    // GET: the parameters in the query; POST (the OAuth2 refresh-token grant): in the form.
    let mut form = vec![0; length];
    std::io::Read::read_exact(&mut reader, &mut form).unwrap();
    let query = if post {
        String::from_utf8(form).unwrap()
    } else {
        target.split_once('?').map_or("", |(_, q)| q).to_string()
    };
    let params: Vec<(String, String)> = query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    let refresh = post
        && param("grant_type").as_deref() == Some("refresh_token")
        && param("refresh_token").as_deref() == Some(REFRESH_TOKEN);
    let creds = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let user = if post {
        Some("refresh_token".to_string())
    } else {
        creds
            .as_deref()
            .map(|c| c.split_once(':').map_or(c, |(u, _)| u).to_string())
    };
    let mut record = TokenRequest {
        scopes: scopes.clone(),
        user: user.clone(),
        status: 401,
        token: None,
        exp: 0,
    };
    let body;
    if !target.starts_with("/token") {
        record.status = 404;
        body = String::new();
    } else if !refresh && (post || creds.as_deref() != Some(&format!("{USER}:{PASSWORD}"))) {
        body = r#"{"details":"incorrect username or password"}"#.to_string();
    } else {
        let policy = shared.policy.lock().unwrap().clone();
        let number = shared
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.token.is_some())
            .count()
            + 1;
        let stale = policy.all_stale || policy.stale.contains(&number);
        let now = now();
        let exp = if stale {
            now - REGISTRY_LEEWAY - 60
        } else if let Some(life) = policy.life {
            now + life - REGISTRY_LEEWAY
        } else {
            now + 300
        };
        let access: Vec<serde_json::Value> = scopes
            .iter()
            .flat_map(|s| s.split(' '))
            .filter_map(|s| {
                let mut parts = s.splitn(3, ':');
                let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                let granted: Vec<&str> = actions
                    .split(',')
                    .filter(|a| *a == "pull" || (*a == "push" && !policy.pull_only))
                    .collect();
                Some(serde_json::json!({"type": kind, "name": name, "actions": granted}))
            })
            .collect();
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": USER,
            "aud": SERVICE,
            "exp": exp,
            "nbf": exp.min(now) - 10,
            "iat": exp.min(now) - 10,
            "jti": format!("token-{number}"),
            "access": access,
        });
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let mut sign = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        sign.stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let signature = sign.wait_with_output().unwrap();
        assert!(signature.status.success(), "openssl dgst -sign failed");
        let token = format!("{input}.{}", b64url(&signature.stdout));
        // OAuth2's answer names the token `access_token`.
        body = if post {
            serde_json::json!({"access_token": token, "expires_in": 300})
        } else {
            serde_json::json!({"token": token, "expires_in": 300})
        }
        .to_string();
        record.status = 200;
        record.token = Some(token);
        record.exp = exp;
    }
    let status = record.status;
    shared.requests.lock().unwrap().push(record);
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Unauthorized",
    };
    let mut conn = conn;
    let _ = write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
