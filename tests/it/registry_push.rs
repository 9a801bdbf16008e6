//! `imgbuild push` against a real registry: the Debian `docker-registry` on 127.0.0.1 at a free
//! port, started by each test with its storage in a scratch directory and killed on drop.
//! `skopeo` checks what arrived. Upload counts come from the registry's access log: Go's HTTP
//! server sends a small response only once the handler chain (which writes the log line) has
//! returned, so every request a finished push made is already in the log.

use crate::support::storage::{TestImage, base_layer, top_layer};
use crate::support::{have, imgbuild_bin, run, scratch, skip};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const USER: &str = "pusher";
const PASSWORD: &str = "Pa55-w0rd-s3cret";

/// A running `docker-registry`, killed and reaped on drop (also when the test fails).
struct Registry {
    child: Child,
    port: u16,
    /// The access log (stdout) and the service log (stderr), line by line.
    log: Arc<Mutex<Vec<String>>>,
}

impl Registry {
    /// Starts a registry storing under `dir`, with htpasswd auth when `htpasswd` is given and
    /// TLS when `tls` (certificate, key) is. Ready when it logs that it listens (it binds
    /// first), within a bound.
    fn start(dir: &Path, htpasswd: Option<&Path>, tls: Option<(&Path, &Path)>) -> Registry {
        // A free port: bound and released; the registry takes it right after.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: test\n",
            dir.join("data").display()
        );
        if let Some((cert, key)) = tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
        }
        if let Some(h) = htpasswd {
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                h.display()
            ));
        }
        let cfg = dir.join("config.yml");
        std::fs::write(&cfg, config).unwrap();
        let mut child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let listening = format!("listening on 127.0.0.1:{port}");
        let streams: [Box<dyn std::io::Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for stream in streams {
            let log = Arc::clone(&log);
            let tx = ready_tx.clone();
            let listening = listening.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if line.contains(&listening) {
                        let _ = tx.send(());
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let registry = Registry { child, port, log };
        assert!(
            ready_rx.recv_timeout(Duration::from_mins(1)).is_ok(),
            "the registry did not start listening:\n{}",
            registry.log.lock().unwrap().join("\n")
        );
        registry
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Access-log lines of requests of `method` whose path contains `part`.
    fn requests(&self, method: &str, part: &str) -> usize {
        let needle = format!("\"{method} /v2/");
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(&needle) && l.contains(part))
            .count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tools the tests need, or a SKIP.
fn tools(test: &str) -> bool {
    for tool in ["/usr/bin/docker-registry", "skopeo"] {
        if !Path::new(tool).exists() && !have(tool) {
            skip(format_args!("{test}: {tool} is not installed"));
            return false;
        }
    }
    true
}

/// Writes `image` as an OCI layout directory at `dir`.
fn write_layout(image: &TestImage, dir: &Path) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |digest: &str, data: &[u8]| {
        std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), data).unwrap();
    };
    for (d, b) in &image.blobs {
        put(d, b);
    }
    put(&image.id(), &image.config);
    let manifest_digest = imgbuild::storage::sha256_digest(&image.manifest);
    put(&manifest_digest, &image.manifest);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": image.manifest.len(),
        }],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
}

fn push(source: &Path, dest: &str, extra: &[&str]) -> Output {
    Command::new(imgbuild_bin())
        .arg("push")
        .arg(source)
        .arg(dest)
        .args(extra)
        .env_remove("IMGBUILD_REGISTRY_CREDS")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "push failed ({}):\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn skopeo(args: &[&str]) -> String {
    run(Command::new("skopeo").args(args))
}

#[test]
fn push_layout_then_repush_uploads_nothing() {
    if !tools("push_layout_then_repush_uploads_nothing") {
        return;
    }
    let t = scratch("registry-push");
    let registry = Registry::start(t.path(), None, None);
    let image = TestImage::new(&[base_layer(), top_layer()], "registry-push");
    let layout = t.path().join("layout");
    write_layout(&image, &layout);
    let dest = format!("docker://{}/imgbuild/test:1", registry.host());

    let digest = stdout(&push(&layout, &dest, &[]));
    assert_eq!(digest, imgbuild::storage::sha256_digest(&image.manifest));
    // Two layers and the config, each one POST and one PUT.
    assert_eq!(registry.requests("POST", "/blobs/uploads/"), 3);
    assert_eq!(registry.requests("PUT", "/blobs/uploads/"), 3);

    let inspect: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", &dest])).unwrap();
    assert_eq!(inspect["Digest"], digest.as_str());
    let copied = t.path().join("copied");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &dest,
        &format!("oci:{}:1", copied.display()),
    ]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(copied.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(m, digest, "skopeo copied the manifest unchanged");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            copied
                .join("blobs/sha256")
                .join(m.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    let layers: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    let ours: Vec<&str> = image.blobs.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(layers, ours);

    // The same image again: every blob is found by HEAD, none uploaded; the manifest is put.
    let again = push(&layout, &dest, &[]);
    assert_eq!(stdout(&again), digest);
    assert_eq!(registry.requests("POST", "/blobs/uploads/"), 3);
    assert_eq!(registry.requests("PUT", "/blobs/uploads/"), 3);
    assert_eq!(registry.requests("PUT", "/manifests/1"), 2);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

/// An htpasswd file of [`USER`] with a bcrypt hash (the only kind the registry takes).
fn htpasswd(dir: &Path) -> PathBuf {
    let path = dir.join("htpasswd");
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    std::fs::write(&path, format!("{USER}:{hash}\n")).unwrap();
    path
}

#[test]
fn push_with_basic_auth_and_wrong_password() {
    if !tools("push_with_basic_auth_and_wrong_password") {
        return;
    }
    let t = scratch("registry-auth");
    let registry = Registry::start(t.path(), Some(&htpasswd(t.path())), None);
    let image = TestImage::new(&[base_layer()], "registry-auth");
    let layout = t.path().join("layout");
    write_layout(&image, &layout);
    let dest = format!("{}/auth/test:latest", registry.host());

    let anonymous = push(&layout, &dest, &[]);
    assert!(!anonymous.status.success());
    let err = String::from_utf8_lossy(&anonymous.stderr);
    assert!(err.contains("requires credentials"), "{err}");
    assert!(
        err.contains(&format!("http://{}/v2/", registry.host())),
        "{err}"
    );

    let wrong = "not-the-password-XYZ";
    let refused = push(&layout, &dest, &["--creds", &format!("{USER}:{wrong}")]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("refused the credentials"), "{err}");
    assert!(
        !err.contains("https://"),
        "the plain HTTP registry's answer alone: {err}"
    );
    assert!(!err.contains(wrong), "the password leaked: {err}");
    assert_eq!(registry.requests("POST", "/blobs/uploads/"), 0);

    let good = push(&layout, &dest, &["--creds", &format!("{USER}:{PASSWORD}")]);
    let digest = stdout(&good);
    assert!(!String::from_utf8_lossy(&good.stderr).contains(PASSWORD));
    let inspect: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        &format!("{USER}:{PASSWORD}"),
        &format!("docker://{dest}"),
    ]))
    .unwrap();
    assert_eq!(inspect["Digest"], digest.as_str());
}

/// A CA (`certs/ca.crt`) and a server certificate for 127.0.0.1 it signed, made with openssl;
/// returns the certificate directory and the server's certificate and key.
fn test_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let ca_key = dir.join("ca.key");
    let ca = certs.join("ca.crt");
    let key = dir.join("server.key");
    let csr = dir.join("server.csr");
    let cert = dir.join("server.crt");
    let ext = dir.join("server.ext");
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1\n").unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=imgbuild test CA",
        ])
        .args(ec)
        .arg("-keyout")
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca));
    run(Command::new("openssl")
        .args(["req", "-subj", "/CN=127.0.0.1"])
        .args(ec)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-set_serial", "2", "-in"])
        .arg(&csr)
        .arg("-CA")
        .arg(&ca)
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(&cert));
    (certs, cert, key)
}

#[test]
fn push_over_tls_with_htpasswd() {
    if !tools("push_over_tls_with_htpasswd") {
        return;
    }
    if !have("openssl") {
        skip(format_args!(
            "push_over_tls_with_htpasswd: openssl is not installed"
        ));
        return;
    }
    let t = scratch("registry-tls");
    let (certs, cert, key) = test_ca(t.path());
    let registry = Registry::start(t.path(), Some(&htpasswd(t.path())), Some((&cert, &key)));
    let image = TestImage::new(&[base_layer()], "registry-tls");
    let layout = t.path().join("layout");
    write_layout(&image, &layout);
    let dest = format!("{}/tls/test:1", registry.host());
    let creds = format!("{USER}:{PASSWORD}");

    // The test CA is not trusted without --cert-dir: a certificate error, no upload.
    let untrusted = push(&layout, &dest, &["--creds", &creds]);
    assert!(!untrusted.status.success());
    let err = String::from_utf8_lossy(&untrusted.stderr);
    assert!(
        err.contains(&format!("https://{}/v2/", registry.host())),
        "{err}"
    );
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"),
        "{err}"
    );
    assert!(!err.contains(PASSWORD));

    let cert_dir = certs.to_str().unwrap();
    let digest = stdout(&push(
        &layout,
        &dest,
        &["--creds", &creds, "--cert-dir", cert_dir],
    ));
    assert_eq!(digest, imgbuild::storage::sha256_digest(&image.manifest));
    let inspect: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--cert-dir",
        cert_dir,
        "--creds",
        &creds,
        &format!("docker://{dest}"),
    ]))
    .unwrap();
    assert_eq!(inspect["Digest"], digest.as_str());
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn push_from_the_store() {
    if !tools("push_from_the_store") {
        return;
    }
    let t = scratch("registry-store");
    let registry = Registry::start(t.path(), None, None);
    let store_root = t.path().join("store");
    let store = imgbuild::storage::Store::open(&imgbuild::storage::StoreOptions {
        root: store_root.clone(),
        driver: Some(imgbuild::storage::DriverKind::Vfs),
    })
    .unwrap();
    let image = TestImage::new(&[base_layer()], "registry-store");
    store
        .load(
            image.input(),
            &["local/pushed:2".to_string()],
            &imgbuild::storage::ConfinedApplier,
        )
        .unwrap();
    drop(store);
    let dest = format!("{}/from/store:2", registry.host());
    let out = Command::new(imgbuild_bin())
        .arg("--storage-root")
        .arg(&store_root)
        .args(["--storage-driver", "vfs", "push", "local/pushed:2", &dest])
        .env_remove("IMGBUILD_REGISTRY_CREDS")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let digest = stdout(&out);
    assert_eq!(digest, imgbuild::storage::sha256_digest(&image.manifest));
    let inspect: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{dest}"),
    ]))
    .unwrap();
    assert_eq!(inspect["Digest"], digest.as_str());
}

#[test]
fn bad_destinations_and_credentials_are_refused_before_any_request() {
    let t = scratch("registry-bad");
    let image = TestImage::new(&[base_layer()], "registry-bad");
    let layout = t.path().join("layout");
    write_layout(&image, &layout);
    for (dest, extra, expected) in [
        ("debian:12", &[][..], "use a full name"),
        (
            "docker://127.0.0.1:1/UPPER:1",
            &[][..],
            "invalid registry reference",
        ),
        ("127.0.0.1:1/x@sha256:12", &[][..], "64 lowercase hex"),
        (
            "127.0.0.1:1/x:1",
            &["--creds", "no-colon-secret"][..],
            "--creds",
        ),
    ] {
        let out = push(&layout, dest, extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{dest}: {err}");
        assert!(err.contains(expected), "{dest}: {err}");
        assert!(!err.contains("no-colon-secret"), "{dest}: {err}");
        assert!(out.stdout.is_empty(), "{dest}");
    }
}
