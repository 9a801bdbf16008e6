//! Registry credentials from the files podman, skopeo and docker keep them in
//! (containers-auth.json(5): `auths` keyed by `HOST[:PORT]` or `HOST/REPO…`, `credHelpers` per
//! host, `credsStore` as the default helper), and the `docker-credential-NAME` helper protocol
//! (`get`/`store`/`erase`, the server on stdin, JSON on stdout).
//!
//! Written here: the `docker_credential` crate (1.4) reads one file at its fixed place (Docker's
//! `config.json`, or podman's `auth.json`) for a server, not the ordered files with an
//! `--authfile` override and `HOST/REPO` keys, and it cannot `store` or `erase` (login, logout);
//! the format is a JSON object and a pipe to a program.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

use super::Credentials;

/// The user name that marks [`Credentials`] whose password is an identity token (an `OAuth2`
/// refresh token, Docker's `identitytoken`): the credential helpers' convention. Such
/// credentials are exchanged at a bearer registry's token server (the `OAuth2` refresh-token
/// grant), never sent as basic auth.
pub const IDENTITY_TOKEN_USER: &str = "<token>";

/// Errors of reading or writing credentials; none carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// An auth file could not be read, parsed or written.
    #[error("{path}: {reason}")]
    File {
        /// The auth file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// An entry of an auth file is not usable.
    #[error("{path}: the entry for {key:?}: {reason}")]
    Entry {
        /// The auth file.
        path: PathBuf,
        /// The entry's key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `docker-credential-*` helper failed.
    #[error("credential helper docker-credential-{helper} ({action} for {server}): {reason}")]
    Helper {
        /// The helper's name (the program's suffix).
        helper: String,
        /// `get`, `store` or `erase`.
        action: &'static str,
        /// The server asked about.
        server: String,
        /// What went wrong.
        reason: String,
    },
}

type Result<T, E = CredentialsError> = std::result::Result<T, E>;

fn file_err(path: &Path, reason: impl std::fmt::Display) -> CredentialsError {
    CredentialsError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The auth files credentials are looked up in, first match winning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthFiles {
    /// The files, in order.
    pub files: Vec<PathBuf>,
}

/// The primary (read/write) auth file, as podman chooses it: `authfile` (`--authfile`), else
/// `$REGISTRY_AUTH_FILE`, else `${XDG_RUNTIME_DIR}/containers/auth.json`, else
/// `/run/containers/UID/auth.json`.
pub fn primary_auth_file(authfile: Option<&Path>) -> PathBuf {
    primary_with(
        authfile,
        &|k| std::env::var_os(k),
        nix::unistd::getuid().as_raw(),
    )
}

fn primary_with(
    authfile: Option<&Path>,
    var: &dyn Fn(&str) -> Option<OsString>,
    uid: u32,
) -> PathBuf {
    let set = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(f) = authfile {
        return f.to_path_buf();
    }
    if let Some(f) = set("REGISTRY_AUTH_FILE") {
        return f;
    }
    match set("XDG_RUNTIME_DIR") {
        Some(dir) => dir.join("containers/auth.json"),
        None => PathBuf::from(format!("/run/containers/{uid}/auth.json")),
    }
}

impl AuthFiles {
    /// The files podman and skopeo read, in their order: the primary file (see
    /// [`primary_auth_file`]; `--authfile` or `$REGISTRY_AUTH_FILE` replace it), then
    /// `${XDG_CONFIG_HOME:-~/.config}/containers/auth.json`, then Docker's
    /// `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`).
    pub fn from_env(authfile: Option<&Path>) -> AuthFiles {
        Self::with(
            authfile,
            &|k| std::env::var_os(k),
            nix::unistd::getuid().as_raw(),
        )
    }

    fn with(authfile: Option<&Path>, var: &dyn Fn(&str) -> Option<OsString>, uid: u32) -> Self {
        let set = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let mut files = vec![primary_with(authfile, var, uid)];
        let home = set("HOME");
        if let Some(config) =
            set("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config")))
        {
            files.push(config.join("containers/auth.json"));
        }
        if let Some(docker) =
            set("DOCKER_CONFIG").or_else(|| home.as_ref().map(|h| h.join(".docker")))
        {
            files.push(docker.join("config.json"));
        }
        files.dedup();
        AuthFiles { files }
    }

    /// The credentials for `repository` at `host`: from the first file that has some, by its
    /// `credHelpers` entry for the host, else its most specific `auths` key
    /// (`HOST/A/B/C`, `HOST/A/B`, …, `HOST`), else its `credsStore`. Missing files are skipped.
    pub fn lookup(&self, host: &str, repository: &str) -> Result<Option<Credentials>> {
        for path in &self.files {
            if let Some(c) = lookup_file(path, host, repository)? {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }
}

/// An `auths` entry.
#[derive(Deserialize, Default)]
struct Entry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// The parts of an auth file that are read.
#[derive(Deserialize, Default)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

/// A key as registries are compared: without `http(s)://` (and then without the URL's path,
/// as Docker writes `https://index.docker.io/v1/`), Docker Hub's names as `docker.io`.
fn normalize_key(key: &str) -> String {
    let key = match key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
    {
        Some(url) => url.split('/').next().unwrap_or(url),
        None => key,
    };
    let key = key.trim_end_matches('/');
    let (host, rest) = key.split_once('/').map_or((key, ""), |(h, r)| (h, r));
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        h => h,
    };
    if rest.is_empty() {
        host.to_string()
    } else {
        format!("{host}/{rest}")
    }
}

/// The keys that may hold `repository` at `host`, most specific first.
fn candidate_keys(host: &str, repository: &str) -> Vec<String> {
    let host = normalize_key(host);
    let mut keys = Vec::new();
    let mut path = repository.trim_matches('/');
    while !path.is_empty() {
        keys.push(format!("{host}/{path}"));
        path = path.rsplit_once('/').map_or("", |(p, _)| p);
    }
    keys.push(host);
    keys
}

fn read_file(path: &Path) -> Result<Option<AuthFile>> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(Some(AuthFile::default())),
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| file_err(path, format_args!("not a valid auth file: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_err(path, e)),
    }
}

fn lookup_file(path: &Path, host: &str, repository: &str) -> Result<Option<Credentials>> {
    let Some(file) = read_file(path)? else {
        return Ok(None);
    };
    let server = normalize_key(host);
    // A host with a helper of its own takes its credentials from it only (containers-auth.json).
    if let Some((_, helper)) = file
        .cred_helpers
        .iter()
        .find(|(k, _)| normalize_key(k) == server)
    {
        return helper_get(helper, host);
    }
    for key in candidate_keys(host, repository) {
        let Some((raw_key, entry)) = file.auths.iter().find(|(k, _)| normalize_key(k) == key)
        else {
            continue;
        };
        let bad = |reason: &str| CredentialsError::Entry {
            path: path.to_path_buf(),
            key: raw_key.clone(),
            reason: reason.to_string(),
        };
        // Docker writes `auth` as `USER:` (no password) beside an identity token: the token wins.
        if let Some(token) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credentials {
                user: IDENTITY_TOKEN_USER.to_string(),
                password: token.to_string(),
            }));
        }
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| bad("`auth` is not base64"))?;
            let text = String::from_utf8(decoded).map_err(|_| bad("`auth` is not UTF-8"))?;
            return Credentials::parse(&text)
                .map(Some)
                .ok_or_else(|| bad("`auth` is not base64 of USER:PASSWORD"));
        }
        // An empty entry marks credentials kept by `credsStore`, asked below.
    }
    match &file.creds_store {
        Some(store) if !store.is_empty() => helper_get(store, host),
        _ => Ok(None),
    }
}

/// The helper's answer to `get`.
#[derive(Deserialize)]
struct HelperCreds {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Runs `docker-credential-HELPER ACTION` with `input` on stdin; its stdout on success.
fn run_helper(
    helper: &str,
    action: &'static str,
    server: &str,
    input: &[u8],
) -> Result<Result<Vec<u8>, String>> {
    let err = |reason: String| CredentialsError::Helper {
        helper: helper.to_string(),
        action,
        server: server.to_string(),
        reason,
    };
    if helper.is_empty()
        || !helper
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(err("not a helper name".to_string()));
    }
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => err(format!("{program} is not on the PATH")),
            _ => err(format!("cannot run {program}: {e}")),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input is judged by its exit status.
        let _ = stdin.write_all(input);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| err(format!("cannot run {program}: {e}")))?;
    if out.status.success() {
        return Ok(Ok(out.stdout));
    }
    // The helpers print their error on stdout (the protocol) or stderr; never the secret.
    let text = String::from_utf8_lossy(if out.stdout.is_empty() {
        &out.stderr
    } else {
        &out.stdout
    })
    .trim()
    .chars()
    .take(200)
    .collect::<String>();
    Ok(Err(format!("{} ({})", text, out.status)))
}

/// `get`: the helper's credentials for `server`, `None` when it has none.
fn helper_get(helper: &str, server: &str) -> Result<Option<Credentials>> {
    let err = |reason: &str| CredentialsError::Helper {
        helper: helper.to_string(),
        action: "get",
        server: server.to_string(),
        reason: reason.to_string(),
    };
    match run_helper(helper, "get", server, server.as_bytes())? {
        Ok(stdout) => {
            let creds: HelperCreds = serde_json::from_slice(&stdout)
                .map_err(|_| err("its answer is not JSON with Username and Secret"))?;
            // `<token>`: the secret is an identity token, kept as such (see IDENTITY_TOKEN_USER).
            Ok(Credentials::parse(&format!(
                "{}:{}",
                creds.username, creds.secret
            )))
        }
        Err(text) if text.contains("credentials not found") => Ok(None),
        Err(text) => Err(err(&text)),
    }
}

/// Where [`store`] put the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// In the auth file.
    File(PathBuf),
    /// With this credential helper (the program's suffix), configured in the auth file.
    Helper(String),
}

/// The helper `file` configures for `key`'s host: its `credHelpers` entry, else `credsStore`.
fn helper_for(file: &serde_json::Value, key: &str) -> Option<String> {
    let host = normalize_key(key.split('/').next().unwrap_or(key));
    file.get("credHelpers")
        .and_then(serde_json::Value::as_object)
        .and_then(|h| h.iter().find(|(k, _)| normalize_key(k) == host))
        .and_then(|(_, v)| v.as_str())
        .or_else(|| file.get("credsStore").and_then(serde_json::Value::as_str))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn read_value(path: &Path) -> Result<serde_json::Value> {
    let value = match std::fs::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => serde_json::json!({}),
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| file_err(path, format_args!("not a valid auth file: {e}")))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        Err(e) => return Err(file_err(path, e)),
    };
    if !value.is_object() {
        return Err(file_err(path, "not a valid auth file: not a JSON object"));
    }
    Ok(value)
}

/// Writes `value` to `path` atomically, mode 0600, creating its directory (mode 0700).
fn write_value(path: &Path, value: &serde_json::Value) -> Result<()> {
    let dir = crate::atomic::parent_dir(path);
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| file_err(dir, e))?;
    }
    let mut text = serde_json::to_vec_pretty(value).map_err(|e| file_err(path, e))?;
    text.push(b'\n');
    crate::atomic::write_private(path, &text).map_err(|e| file_err(path, e))
}

/// Stores `creds` for `key` (`HOST[:PORT]` or `HOST/REPO…`) as `podman login` does: with the
/// helper `file` configures for the host, else as `auths[key].auth` in `file` (written
/// atomically, mode 0600, other entries kept).
pub fn store(file: &Path, key: &str, creds: &Credentials) -> Result<Stored> {
    let key = normalize_key(key);
    let mut value = read_value(file)?;
    if let Some(helper) = helper_for(&value, &key) {
        let input = serde_json::json!({
            "ServerURL": key,
            "Username": creds.user,
            "Secret": creds.password,
        });
        run_helper(&helper, "store", &key, input.to_string().as_bytes())?.map_err(|reason| {
            CredentialsError::Helper {
                helper: helper.clone(),
                action: "store",
                server: key.clone(),
                reason,
            }
        })?;
        return Ok(Stored::Helper(helper));
    }
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", creds.user, creds.password));
    let obj = value
        .as_object_mut()
        .ok_or_else(|| file_err(file, "not a JSON object"))?;
    let auths = obj.entry("auths").or_insert_with(|| serde_json::json!({}));
    let auths = auths
        .as_object_mut()
        .ok_or_else(|| file_err(file, "`auths` is not a JSON object"))?;
    // An old key for the same registry written differently (`https://HOST`) goes.
    auths.retain(|k, _| normalize_key(k) != key);
    auths.insert(key, serde_json::json!({ "auth": auth }));
    write_value(file, &value)?;
    Ok(Stored::File(file.to_path_buf()))
}

/// Removes the credentials of `key` (`None`: of every registry) from `file` and from the helper
/// it configures; whether there were any.
pub fn remove(file: &Path, key: Option<&str>) -> Result<bool> {
    let mut value = read_value(file)?;
    let key = key.map(normalize_key);
    let mut keys: Vec<String> = value
        .get("auths")
        .and_then(serde_json::Value::as_object)
        .map(|a| a.keys().cloned().collect())
        .unwrap_or_default();
    if let Some(helpers) = value
        .get("credHelpers")
        .and_then(serde_json::Value::as_object)
    {
        keys.extend(helpers.keys().cloned());
    }
    let keys: Vec<String> = if let Some(k) = &key {
        vec![k.clone()]
    } else {
        let mut k: Vec<String> = keys.iter().map(|k| normalize_key(k)).collect();
        k.sort();
        k.dedup();
        k
    };
    let mut removed = false;
    for k in &keys {
        if let Some(helper) = helper_for(&value, k) {
            match run_helper(&helper, "erase", k, k.as_bytes())? {
                Ok(_) => removed = true,
                Err(text) if text.contains("credentials not found") => {}
                Err(reason) => {
                    return Err(CredentialsError::Helper {
                        helper,
                        action: "erase",
                        server: k.clone(),
                        reason,
                    });
                }
            }
        }
    }
    if let Some(auths) = value
        .get_mut("auths")
        .and_then(serde_json::Value::as_object_mut)
    {
        let before = auths.len();
        auths.retain(|k, _| key.as_ref().is_some_and(|key| normalize_key(k) != *key));
        if auths.len() != before {
            removed = true;
            write_value(file, &value)?;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn the_files_podman_reads_in_its_order() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let all = env(&[
            ("REGISTRY_AUTH_FILE", "/r/auth.json"),
            ("XDG_RUNTIME_DIR", "/run/user/7"),
            ("XDG_CONFIG_HOME", "/cfg"),
            ("HOME", "/home/u"),
            ("DOCKER_CONFIG", "/dock"),
        ]);
        let files =
            |a: Option<&Path>, v: &dyn Fn(&str) -> Option<OsString>| AuthFiles::with(a, v, 7).files;
        assert_eq!(
            files(Some(Path::new("/given.json")), &all),
            [
                Path::new("/given.json"),
                Path::new("/cfg/containers/auth.json"),
                Path::new("/dock/config.json")
            ]
        );
        assert_eq!(files(None, &all)[0], Path::new("/r/auth.json"));
        let xdg = env(&[("XDG_RUNTIME_DIR", "/run/user/7"), ("HOME", "/home/u")]);
        assert_eq!(
            files(None, &xdg),
            [
                Path::new("/run/user/7/containers/auth.json"),
                Path::new("/home/u/.config/containers/auth.json"),
                Path::new("/home/u/.docker/config.json")
            ]
        );
        let bare = env(&[]);
        assert_eq!(
            files(None, &bare),
            [Path::new("/run/containers/7/auth.json")]
        );
        assert_eq!(
            primary_with(None, &bare, 0),
            Path::new("/run/containers/0/auth.json")
        );
    }

    #[test]
    fn the_most_specific_key_and_the_first_file_win() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("first.json");
        let second = dir.path().join("second.json");
        std::fs::write(
            &first,
            serde_json::json!({"auths": {
                "reg.example.org/team/app": {"auth": b64("app:pa55")},
                "reg.example.org/team": {"auth": b64("team:pa55")},
                "other.example.org:5000": {"auth": b64("other:x:y")},
            }})
            .to_string(),
        )
        .unwrap();
        std::fs::write(
            &second,
            serde_json::json!({"auths": {
                "https://reg.example.org": {"auth": b64("host:pa55")},
                "https://index.docker.io/v1/": {"auth": b64("hub:pa55")},
                "id.example.org": {"auth": b64("someone:"), "identitytoken": "refresh-secret"},
            }})
            .to_string(),
        )
        .unwrap();
        let files = AuthFiles {
            files: vec![dir.path().join("missing.json"), first, second.clone()],
        };
        let user = |host: &str, repo: &str| files.lookup(host, repo).unwrap().map(|c| c.user);
        assert_eq!(user("reg.example.org", "team/app").as_deref(), Some("app"));
        assert_eq!(
            user("reg.example.org", "team/app/sub").as_deref(),
            Some("app")
        );
        assert_eq!(
            user("reg.example.org", "team/other").as_deref(),
            Some("team")
        );
        assert_eq!(user("reg.example.org", "solo").as_deref(), Some("host"));
        assert_eq!(user("docker.io", "library/debian").as_deref(), Some("hub"));
        let other = files
            .lookup("other.example.org:5000", "x")
            .unwrap()
            .unwrap();
        assert_eq!(
            (other.user.as_str(), other.password.as_str()),
            ("other", "x:y")
        );
        assert_eq!(user("other.example.org", "x"), None);
        assert_eq!(user("nowhere.example.org", "x"), None);
        let id = files.lookup("id.example.org", "x").unwrap().unwrap();
        assert_eq!(
            (id.user.as_str(), id.password.as_str()),
            (IDENTITY_TOKEN_USER, "refresh-secret")
        );

        std::fs::write(&second, "{ not json").unwrap();
        let err = files.lookup("nowhere.example.org", "x").unwrap_err();
        assert!(err.to_string().contains("second.json"), "{err}");
    }

    #[test]
    fn store_and_remove_keep_other_entries() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/auth.json");
        let creds = Credentials::parse("me:s3cret").unwrap();
        assert_eq!(
            store(&file, "a.example.org:5000", &creds).unwrap(),
            Stored::File(file.clone())
        );
        store(&file, "https://b.example.org", &creds).unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let files = AuthFiles {
            files: vec![file.clone()],
        };
        assert_eq!(
            files
                .lookup("b.example.org", "x")
                .unwrap()
                .unwrap()
                .password,
            "s3cret"
        );
        assert!(remove(&file, Some("a.example.org:5000")).unwrap());
        assert!(!remove(&file, Some("a.example.org:5000")).unwrap());
        assert!(files.lookup("a.example.org:5000", "x").unwrap().is_none());
        assert!(files.lookup("b.example.org", "x").unwrap().is_some());
        assert!(remove(&file, None).unwrap());
        assert!(files.lookup("b.example.org", "x").unwrap().is_none());
    }
}
