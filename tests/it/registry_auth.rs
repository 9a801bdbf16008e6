//! Registry authentication against the real registry configured for token auth (`auth: token:`)
//! with the test's token server (`support::token_server`): the bearer flow for push and reads,
//! refused, stale and expired tokens, a missing scope, `login`/`logout` and the auth file, and
//! credential helpers. No output may carry a password or a token.

use crate::support::registry::{PASSWORD, Registry, RegistryConfig, USER, write_layout};
use crate::support::storage::{TestImage, base_layer, other_top_layer, top_layer};
use crate::support::token_server::{Policy, REFRESH_TOKEN, REGISTRY_LEEWAY, TokenServer};
use crate::support::{imgbuild_bin, run, scratch};
use base64::Engine as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A token server with `policy` and a registry that trusts it, both under `dir`.
fn bearer_registry(dir: &Path, policy: Policy) -> (TokenServer, Registry) {
    let tokens = TokenServer::start(dir, policy);
    let registry = Registry::with(
        dir,
        RegistryConfig {
            extra_yaml: Some(tokens.registry_yaml()),
            ..RegistryConfig::default()
        },
    );
    (tokens, registry)
}

/// The environment of one test: a home, runtime and PATH directory of its own, so that no auth
/// file of the machine is read.
struct Env {
    home: PathBuf,
    runtime: PathBuf,
    bin: PathBuf,
    docker_config: Option<PathBuf>,
}

impl Env {
    fn new(dir: &Path) -> Env {
        let env = Env {
            home: dir.join("home"),
            runtime: dir.join("run"),
            bin: dir.join("bin"),
            docker_config: None,
        };
        for d in [&env.home, &env.runtime, &env.bin] {
            std::fs::create_dir_all(d).unwrap();
        }
        env
    }

    fn auth_file(&self) -> PathBuf {
        self.runtime.join("containers/auth.json")
    }

    /// `imgbuild ARGS` in this environment, with `stdin` as its input.
    fn imgbuild(&self, args: &[&str], stdin: &str) -> Output {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new(imgbuild_bin());
        cmd.args(args)
            .env_remove("IMGBUILD_REGISTRY_CREDS")
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("DOCKER_CONFIG")
            .env("HOME", &self.home)
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .env("PATH", path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(d) = &self.docker_config {
            cmd.env("DOCKER_CONFIG", d);
        }
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The command succeeded; its stdout, trimmed.
fn ok_stdout(o: &Output) -> String {
    assert!(o.status.success(), "failed ({}):\n{}", o.status, text(o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The command failed; its stderr.
fn failed(o: &Output) -> String {
    assert!(!o.status.success(), "succeeded:\n{}", text(o));
    assert!(o.stdout.is_empty(), "{}", text(o));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// No password, no basic-auth pair and no token the server issued in `o`'s output.
fn assert_no_secrets(o: &Output, tokens: &TokenServer, extra: &[&str]) {
    let all = text(o);
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    for secret in [PASSWORD, pair.as_str()].iter().chain(extra) {
        assert!(!all.contains(secret), "a secret leaked:\n{all}");
    }
    for token in tokens.tokens() {
        // The signature part alone identifies the token.
        let sig = token.rsplit('.').next().unwrap();
        assert!(!all.contains(sig), "a token leaked:\n{all}");
    }
}

fn layout(dir: &Path, name: &str, layers: &[Vec<crate::support::storage::E>]) -> (PathBuf, String) {
    let image = TestImage::new(layers, name);
    let path = dir.join(name);
    write_layout(&image, &path);
    (path, imgbuild::storage::sha256_digest(&image.manifest))
}

fn skopeo_digest(dest: &str) -> String {
    let out = run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--creds",
        &format!("{USER}:{PASSWORD}"),
        &format!("docker://{dest}"),
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["Digest"].as_str().unwrap().to_string()
}

fn manifest_exists(dest: &str) -> bool {
    Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &format!("{USER}:{PASSWORD}"),
            &format!("docker://{dest}"),
        ])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
#[cfg_attr(
    not(imgbuild_has_registry_tools),
    ignore = "needs docker-registry, skopeo, openssl and podman"
)]
fn bearer_push_reads_and_refused_credentials() {
    let t = scratch("auth-bearer");
    let (tokens, registry) = bearer_registry(t.path(), Policy::default());
    let env = Env::new(t.path());
    let (src, digest) = layout(t.path(), "bearer", &[base_layer(), top_layer()]);
    let src = src.to_str().unwrap();
    let dest = format!("{}/bearer/app:1", registry.host());
    let creds = format!("{USER}:{PASSWORD}");

    // Anonymous: the token server wants credentials; nothing is uploaded.
    let anonymous = env.imgbuild(&["push", src, &dest], "");
    let err = failed(&anonymous);
    assert!(
        err.contains("the token server requires credentials"),
        "{err}"
    );
    assert!(err.contains(&tokens.realm()), "{err}");
    assert_eq!(tokens.requests()[0].user, None);

    // A wrong password is refused by the token server, named by its URL, not the password.
    let wrong = "Wr0ng-pa55word-XYZ";
    let refused = env.imgbuild(
        &["push", src, &dest, "--creds", &format!("{USER}:{wrong}")],
        "",
    );
    let err = failed(&refused);
    assert!(
        err.contains("the token server refused the credentials"),
        "{err}"
    );
    assert!(err.contains(&tokens.realm()), "{err}");
    assert_no_secrets(&refused, &tokens, &[wrong]);
    assert_eq!(registry.requests("POST", "/blobs/uploads/"), 0);
    assert!(!manifest_exists(&dest));

    // The bearer flow: a token for the ping, pull for the blob checks, pull,push for uploads.
    let before = tokens.requests().len();
    let pushed = env.imgbuild(&["push", src, &dest, "--creds", &creds], "");
    assert_eq!(ok_stdout(&pushed), digest);
    assert_no_secrets(&pushed, &tokens, &[]);
    let granted: Vec<_> = tokens.requests().split_off(before);
    assert!(granted.iter().all(|r| r.user.as_deref() == Some(USER)));
    let scopes: Vec<Vec<String>> = granted.into_iter().map(|r| r.scopes).collect();
    assert_eq!(
        scopes,
        [
            vec![],
            vec!["repository:bearer/app:pull".to_string()],
            vec!["repository:bearer/app:pull,push".to_string()],
        ],
        "one token per scope, the push token serving the later checks"
    );
    assert_eq!(skopeo_digest(&dest), digest);

    // Again: every blob found with the pull token, none uploaded.
    let again = env.imgbuild(&["push", src, &dest, "--creds", &creds], "");
    assert_eq!(ok_stdout(&again), digest);
    assert!(text(&again).contains("already exists"));
    assert_eq!(registry.requests("PUT", "/blobs/uploads/"), 3);
    assert_no_secrets(&again, &tokens, &[]);
}

#[test]
#[cfg_attr(
    not(imgbuild_has_registry_tools),
    ignore = "needs docker-registry, skopeo, openssl and podman"
)]
fn refused_token_is_replaced_and_stale_tokens_fail_clearly() {
    let t = scratch("auth-stale");
    // The second token (the first pull token) is already expired at the registry although
    // the answer says it lives 300 s: the registry refuses it and imgbuild gets another.
    let (tokens, registry) = bearer_registry(
        t.path(),
        Policy {
            stale: vec![2],
            ..Policy::default()
        },
    );
    let env = Env::new(t.path());
    let (src, digest) = layout(t.path(), "stale", &[base_layer()]);
    let src = src.to_str().unwrap();
    let creds = format!("{USER}:{PASSWORD}");
    let dest = format!("{}/stale/app:1", registry.host());
    let pushed = env.imgbuild(&["push", src, &dest, "--creds", &creds], "");
    assert_eq!(ok_stdout(&pushed), digest);
    assert_no_secrets(&pushed, &tokens, &[]);
    let issued = tokens.requests();
    let pull = vec!["repository:stale/app:pull".to_string()];
    assert_eq!(issued[1].scopes, pull);
    assert_eq!(issued[2].scopes, pull, "the refused token was replaced");
    assert_eq!(skopeo_digest(&dest), digest);

    // Every token stale: a clear error naming the token server, and nothing uploaded.
    tokens.set_policy(Policy {
        all_stale: true,
        ..Policy::default()
    });
    let uploads = registry.requests("PUT", "/blobs/uploads/");
    let (src2, _) = layout(t.path(), "stale2", &[base_layer(), other_top_layer()]);
    let dest2 = format!("{}/stale/other:1", registry.host());
    let out = env.imgbuild(
        &["push", src2.to_str().unwrap(), &dest2, "--creds", &creds],
        "",
    );
    let err = failed(&out);
    assert!(err.contains("the registry refused the token from"), "{err}");
    assert!(
        err.contains(&tokens.realm()) && err.contains("invalid_token"),
        "{err}"
    );
    assert_no_secrets(&out, &tokens, &[]);
    assert_eq!(registry.requests("PUT", "/blobs/uploads/"), uploads);
    assert!(!manifest_exists(&dest2));
}

#[test]
#[cfg_attr(
    not(imgbuild_has_registry_tools),
    ignore = "needs docker-registry, skopeo, openssl and podman"
)]
fn cached_token_that_expires_is_refreshed() {
    let t = scratch("auth-expire");
    // Tokens the registry takes for 2 s while the answer says 300 s: the client keeps them.
    let (tokens, registry) = bearer_registry(
        t.path(),
        Policy {
            life: Some(2),
            ..Policy::default()
        },
    );
    let reference =
        imgbuild::registry::Reference::parse(&format!("{}/expire/app:1", registry.host())).unwrap();
    let opts = imgbuild::registry::ClientOptions {
        credentials: Some(imgbuild::registry::Credentials {
            user: USER.to_string(),
            password: PASSWORD.to_string(),
        }),
        ..Default::default()
    };
    let client = imgbuild::registry::Client::connect(&reference, &opts).unwrap();
    let first = TestImage::new(&[base_layer()], "expire-1");
    imgbuild::registry::push(
        &client,
        &reference,
        first.input().into(),
        &imgbuild::registry::PushOptions::new(&imgbuild::registry::NoProgress),
    )
    .unwrap();
    // Wait until the registry refuses every token issued so far (their exp plus its leeway).
    let last_exp = tokens.requests().iter().map(|r| r.exp).max().unwrap();
    let deadline =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(last_exp + REGISTRY_LEEWAY + 1);
    while let Ok(left) = deadline.duration_since(std::time::SystemTime::now()) {
        std::thread::sleep(left);
    }
    let before = tokens.requests().len();
    let second_ref =
        imgbuild::registry::Reference::parse(&format!("{}/expire/app:2", registry.host())).unwrap();
    let second = TestImage::new(&[base_layer(), top_layer()], "expire-2");
    let report = imgbuild::registry::push(
        &client,
        &second_ref,
        second.input().into(),
        &imgbuild::registry::PushOptions::new(&imgbuild::registry::NoProgress),
    )
    .expect("the expired token is replaced");
    assert_eq!(
        report.manifest_digest,
        imgbuild::storage::sha256_digest(&second.manifest)
    );
    let after = tokens.requests();
    assert!(after.len() > before, "a new token was fetched");
    assert!(
        registry
            .log()
            .iter()
            .any(|l| l.contains("\" 401 ") && l.contains("/v2/expire/app/")),
        "the registry refused the cached token first"
    );
    assert_eq!(
        skopeo_digest(&format!("{}/expire/app:2", registry.host())),
        report.manifest_digest
    );
}

#[test]
#[cfg_attr(
    not(imgbuild_has_registry_tools),
    ignore = "needs docker-registry, skopeo, openssl and podman"
)]
fn missing_push_scope_fails_clearly() {
    let t = scratch("auth-scope");
    let (tokens, registry) = bearer_registry(
        t.path(),
        Policy {
            pull_only: true,
            ..Policy::default()
        },
    );
    let env = Env::new(t.path());
    let (src, _) = layout(t.path(), "scope", &[base_layer()]);
    let dest = format!("{}/scope/app:1", registry.host());
    let out = env.imgbuild(
        &[
            "push",
            src.to_str().unwrap(),
            &dest,
            "--creds",
            &format!("{USER}:{PASSWORD}"),
        ],
        "",
    );
    let err = failed(&out);
    assert!(
        err.contains("does not grant push access to repository scope/app"),
        "{err}"
    );
    assert!(
        err.contains("insufficient_scope") && err.contains(&tokens.realm()),
        "{err}"
    );
    assert_no_secrets(&out, &tokens, &[]);
    assert_eq!(registry.requests("PUT", "/blobs/uploads/"), 0);
    assert_eq!(registry.requests("PUT", "/manifests/"), 0);
    assert!(!manifest_exists(&dest));
}

#[test]
#[cfg_attr(
    not(imgbuild_has_registry_tools),
    ignore = "needs docker-registry, skopeo, openssl and podman"
)]
fn login_push_with_the_auth_file_and_logout() {
    let t = scratch("auth-login");
    let (tokens, registry) = bearer_registry(t.path(), Policy::default());
    let env = Env::new(t.path());
    let host = registry.host();
    let (src, digest) = layout(t.path(), "login", &[base_layer()]);
    let src = src.to_str().unwrap();
    let dest = format!("{host}/login/app:1");
    // Another registry's entry, which login and logout keep.
    std::fs::create_dir_all(env.auth_file().parent().unwrap()).unwrap();
    std::fs::write(
        env.auth_file(),
        r#"{"auths":{"other.example.org":{"auth":"b3RoZXI6eA=="}}}"#,
    )
    .unwrap();

    let wrong = "Wr0ng-login-pa55";
    let out = env.imgbuild(
        &["login", &host, "-u", USER, "--password-stdin"],
        &format!("{wrong}\n"),
    );
    let err = failed(&out);
    assert!(
        err.contains("the token server refused the credentials"),
        "{err}"
    );
    assert!(err.contains("nothing was stored"), "{err}");
    assert_no_secrets(&out, &tokens, &[wrong]);
    assert!(
        !std::fs::read_to_string(env.auth_file())
            .unwrap()
            .contains(&host)
    );

    let out = env.imgbuild(
        &["login", &host, "-u", USER, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(ok_stdout(&out), "Login Succeeded!");
    assert_no_secrets(&out, &tokens, &[]);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(env.auth_file())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.auth_file()).unwrap()).unwrap();
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    assert_eq!(file["auths"][host.as_str()]["auth"], pair.as_str());
    assert_eq!(file["auths"]["other.example.org"]["auth"], "b3RoZXI6eA==");

    // No --creds: the auth file's.
    let pushed = env.imgbuild(&["push", src, &dest], "");
    assert_eq!(ok_stdout(&pushed), digest);
    assert_no_secrets(&pushed, &tokens, &[]);

    let out = env.imgbuild(&["logout", &host], "");
    assert_eq!(
        ok_stdout(&out),
        format!("Removed login credentials for {host}")
    );
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.auth_file()).unwrap()).unwrap();
    assert!(file["auths"].get(host.as_str()).is_none());
    assert!(file["auths"].get("other.example.org").is_some());
    let err = failed(&env.imgbuild(&["logout", &host], ""));
    assert!(err.contains("not logged in"), "{err}");
    let err = failed(&env.imgbuild(&["push", src, &dest], ""));
    assert!(
        err.contains("the token server requires credentials"),
        "{err}"
    );

    let out = env.imgbuild(&["logout", "--all"], "");
    assert_eq!(
        ok_stdout(&out),
        "Removed login credentials for all registries"
    );
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.auth_file()).unwrap()).unwrap();
    assert_eq!(file["auths"], serde_json::json!({}));
}

#[test]
#[cfg_attr(
    not(imgbuild_has_registry_tools),
    ignore = "needs docker-registry, skopeo, openssl and podman"
)]
fn credential_helpers_get_store_and_erase() {
    let t = scratch("auth-helper");
    let (tokens, registry) = bearer_registry(t.path(), Policy::default());
    let mut env = Env::new(t.path());
    let host = registry.host();
    let log = t.path().join("helper.log");
    let stored = t.path().join("helper.stored");
    let helper = env.bin.join("docker-credential-test");
    std::fs::write(
        &helper,
        format!(
            r#"#!/bin/sh
case "$1" in
get)
    read -r server
    echo "get $server" >> {log}
    if [ "$server" = "{host}" ]; then
        printf '{{"ServerURL":"%s","Username":"{USER}","Secret":"{PASSWORD}"}}' "$server"
    else
        echo "credentials not found in native keychain"
        exit 1
    fi ;;
store) cat > {stored}; echo store >> {log} ;;
erase) read -r server; echo "erase $server" >> {log} ;;
*) exit 2 ;;
esac
"#,
            log = log.display(),
            stored = stored.display(),
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let docker = t.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        serde_json::json!({"credHelpers": {host.clone(): "test"}}).to_string(),
    )
    .unwrap();
    env.docker_config = Some(docker);

    let (src, digest) = layout(t.path(), "helper", &[base_layer()]);
    let dest = format!("{host}/helper/app:1");
    let pushed = env.imgbuild(&["push", src.to_str().unwrap(), &dest], "");
    assert_eq!(ok_stdout(&pushed), digest);
    assert_no_secrets(&pushed, &tokens, &[]);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("get {host}\n")
    );

    // `credsStore` in the primary auth file: login stores with the helper, logout erases.
    std::fs::create_dir_all(env.auth_file().parent().unwrap()).unwrap();
    std::fs::write(env.auth_file(), r#"{"credsStore":"test"}"#).unwrap();
    let out = env.imgbuild(&["login", &host, "-u", USER, "-p", PASSWORD], "");
    assert_eq!(ok_stdout(&out), "Login Succeeded!");
    assert_no_secrets(&out, &tokens, &[]);
    let given: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&stored).unwrap()).unwrap();
    assert_eq!(given["ServerURL"], host.as_str());
    assert_eq!(given["Username"], USER);
    assert_eq!(given["Secret"], PASSWORD);
    assert_eq!(
        std::fs::read_to_string(env.auth_file()).unwrap(),
        r#"{"credsStore":"test"}"#,
        "the auth file holds no secret"
    );
    let out = env.imgbuild(&["logout", &host], "");
    assert_eq!(
        ok_stdout(&out),
        format!("Removed login credentials for {host}")
    );
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .ends_with(&format!("erase {host}\n"))
    );

    // A helper that is missing is named.
    std::fs::write(
        env.docker_config.as_ref().unwrap().join("config.json"),
        serde_json::json!({"credHelpers": {host.clone(): "absent"}}).to_string(),
    )
    .unwrap();
    std::fs::write(env.auth_file(), "{}").unwrap();
    let err = failed(&env.imgbuild(&["push", src.to_str().unwrap(), &dest], ""));
    assert!(
        err.contains("docker-credential-absent is not on the PATH"),
        "{err}"
    );
}

#[test]
#[cfg_attr(
    not(imgbuild_has_registry_tools),
    ignore = "needs docker-registry, skopeo, openssl and podman"
)]
fn identity_token_from_the_auth_file() {
    let t = scratch("auth-identity");
    let (tokens, registry) = bearer_registry(t.path(), Policy::default());
    let env = Env::new(t.path());
    let host = registry.host();
    let (src, digest) = layout(t.path(), "identity", &[base_layer()]);
    let src = src.to_str().unwrap();
    let dest = format!("{host}/identity/app:1");
    std::fs::create_dir_all(env.auth_file().parent().unwrap()).unwrap();
    // As `docker login` writes it: `auth` with the user and no password, beside the token.
    let write = |token: &str| {
        let user = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:"));
        std::fs::write(
            env.auth_file(),
            serde_json::json!({"auths": {host.clone(): {"auth": user, "identitytoken": token}}})
                .to_string(),
        )
        .unwrap();
    };

    write(REFRESH_TOKEN);
    let pushed = env.imgbuild(&["push", src, &dest], "");
    assert_eq!(ok_stdout(&pushed), digest);
    assert_no_secrets(&pushed, &tokens, &[REFRESH_TOKEN]);
    let granted: Vec<_> = tokens
        .requests()
        .into_iter()
        .filter(|r| r.status == 200)
        .collect();
    assert_eq!(granted.len(), 3);
    assert!(
        granted
            .iter()
            .all(|r| r.user.as_deref() == Some("refresh_token")),
        "every token came from the refresh-token grant"
    );
    assert_eq!(skopeo_digest(&dest), digest);

    let wrong = "not-the-refresh-token";
    write(wrong);
    let out = env.imgbuild(&["push", src, &format!("{host}/identity/app:2")], "");
    let err = failed(&out);
    assert!(
        err.contains("the token server refused the credentials") && err.contains(&tokens.realm()),
        "{err}"
    );
    assert_no_secrets(&out, &tokens, &[wrong]);
}
