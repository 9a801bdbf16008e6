//! A real registry for tests: the Debian `docker-registry` on 127.0.0.1 at a free port, with its
//! storage in a scratch directory, killed and reaped on drop. Upload counts come from its access
//! log: Go's HTTP server sends a small response only once the handler chain (which writes the log
//! line) has returned, so every request a finished command made is already in the log. Also the
//! credentials, CA and OCI layouts the registry tests share.

use super::run;
use super::storage::TestImage;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The user of [`htpasswd`].
pub const USER: &str = "pusher";
/// The password of [`USER`].
pub const PASSWORD: &str = "Pa55-w0rd-s3cret";

/// A free loopback port below the kernel's ephemeral range (32768 and up), where neither the
/// source port of another test's connection nor another `bind(0)` can take it while a killed
/// registry is down before its restart on the same port.
fn free_port() -> u16 {
    use rand::Rng as _;
    let mut rng = rand::thread_rng();
    loop {
        let port = rng.gen_range(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// How to configure a test registry.
#[derive(Default, Clone)]
pub struct RegistryConfig {
    /// htpasswd auth with this file.
    pub htpasswd: Option<PathBuf>,
    /// TLS with this certificate and key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Raw YAML appended to the configuration (e.g. an `auth: token:` section); top-level keys.
    pub extra_yaml: Option<String>,
    /// The port; `None` picks a free one.
    pub port: Option<u16>,
}

/// A running `docker-registry`, killed and reaped on drop (also when the test fails).
#[allow(dead_code)]
pub struct Registry {
    child: Child,
    /// The port it listens on (the same after a restart).
    pub port: u16,
    dir: PathBuf,
    config: RegistryConfig,
    /// The access log (stdout) and the service log (stderr), line by line.
    log: Arc<Mutex<Vec<String>>>,
}

impl Registry {
    /// Starts a registry storing under `dir`, with htpasswd auth when `htpasswd` is given and
    /// TLS when `tls` (certificate, key) is.
    pub fn start(dir: &Path, htpasswd: Option<&Path>, tls: Option<(&Path, &Path)>) -> Registry {
        Registry::with(
            dir,
            RegistryConfig {
                htpasswd: htpasswd.map(Path::to_path_buf),
                tls: tls.map(|(c, k)| (c.to_path_buf(), k.to_path_buf())),
                ..RegistryConfig::default()
            },
        )
    }

    /// Starts a registry storing under `dir` as `config` says. Ready when it logs that it
    /// listens (it binds first), within a bound.
    pub fn with(dir: &Path, config: RegistryConfig) -> Registry {
        let port = config.port.unwrap_or_else(free_port);
        let settings = config.clone();
        let (htpasswd, tls) = (config.htpasswd.as_deref(), config.tls.as_ref());
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
        if let Some(extra) = &settings.extra_yaml {
            config.push_str(extra);
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
        let registry = Registry {
            child,
            port,
            dir: dir.to_path_buf(),
            config: settings,
            log,
        };
        assert!(
            ready_rx.recv_timeout(Duration::from_mins(1)).is_ok(),
            "the registry did not start listening:\n{}",
            registry.log.lock().unwrap().join("\n")
        );
        registry
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Access-log lines of requests of `method` whose path contains `part`.
    pub fn requests(&self, method: &str, part: &str) -> usize {
        let needle = format!("\"{method} /v2/");
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(&needle) && l.contains(part))
            .count()
    }
}

// Used by the tests of a killed registry (mid-push, mid-pull).
#[allow(dead_code)]
impl Registry {
    /// Kills the registry (as a crash would: SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the registry and starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        let config = RegistryConfig {
            port: Some(self.port),
            ..self.config.clone()
        };
        let fresh = Registry::with(&self.dir, config);
        // The old handle is dropped (its child already reaped); the log starts afresh.
        *self = fresh;
    }

    /// All log lines so far (access and service log).
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `image` as an OCI layout directory at `dir`.
pub fn write_layout(image: &TestImage, dir: &Path) {
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

/// An htpasswd file of [`USER`] with a bcrypt hash (the only kind the registry takes).
pub fn htpasswd(dir: &Path) -> PathBuf {
    let path = dir.join("htpasswd");
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    std::fs::write(&path, format!("{USER}:{hash}\n")).unwrap();
    path
}

/// A CA (`certs/ca.crt`) and a server certificate for 127.0.0.1 it signed, made with openssl;
/// returns the certificate directory and the server's certificate and key.
pub fn test_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
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

/// `imgbuild` with the image store at `store`, no inherited registry credentials and no stdin.
pub fn imgbuild_at(store: &Path) -> Command {
    let mut c = Command::new(super::imgbuild_bin());
    c.arg("--storage-root")
        .arg(store)
        .env_remove("IMGBUILD_REGISTRY_CREDS")
        .stdin(Stdio::null());
    c
}

/// The trimmed stdout of `out`, which must have succeeded (`what` names it in the panic).
pub fn succeeded(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
