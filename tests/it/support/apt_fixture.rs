//! A signed fake apt repository on disk and a tiny HTTP server on loopback for the apt tests.

use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, DetachedSignature, KeyType, SecretKeyParamsBuilder,
    SignedSecretKey,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::ser::Serialize;
use pgp::types::Password;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A freshly generated signing key.
pub fn gen_key(name: &str) -> SignedSecretKey {
    let mut rng = rand::thread_rng();
    SecretKeyParamsBuilder::default()
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id(format!("{name} <{name}@test.invalid>"))
        .build()
        .unwrap()
        .generate(&mut rng)
        .unwrap()
}

/// Write the public half of `key` as a binary keyring.
pub fn write_pubkey(key: &SignedSecretKey, path: &Path) {
    let public = key.to_public_key();
    std::fs::write(path, public.to_bytes().unwrap()).unwrap();
}

/// Write the public half of `key` armored.
pub fn write_pubkey_armored(key: &SignedSecretKey, path: &Path) {
    let public = key.to_public_key();
    std::fs::write(
        path,
        public.to_armored_string(ArmorOptions::default()).unwrap(),
    )
    .unwrap();
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// One fake package.
#[derive(Clone, Debug)]
pub struct FakeDeb {
    pub name: String,
    pub filename: String,
    pub data: Vec<u8>,
}

impl FakeDeb {
    pub fn sha256(&self) -> imgbuild::apt::cache::Sha256Digest {
        imgbuild::apt::cache::Sha256Digest::of(&self.data)
    }
}

/// Options for [`FakeRepo::build`].
#[derive(Clone, Debug)]
pub struct RepoOptions {
    /// `Some(suite)` for a dists/ layout, `None` for a flat repository.
    pub dist: Option<String>,
    pub inrelease: bool,
    pub release_gpg: bool,
    pub valid_until: Option<String>,
    /// The Release `Date`.
    pub date: String,
    pub by_hash: bool,
    pub debs: usize,
}

impl Default for RepoOptions {
    fn default() -> Self {
        RepoOptions {
            dist: Some("test".into()),
            inrelease: true,
            release_gpg: true,
            valid_until: None,
            date: "Sat, 10 Jun 2023 08:54:02 UTC".into(),
            by_hash: false,
            debs: 3,
        }
    }
}

/// A signed repository in a temporary directory.
pub struct FakeRepo {
    pub dir: tempfile::TempDir,
    pub key: SignedSecretKey,
    /// The binary public keyring trusting `key`.
    pub keyring: PathBuf,
    pub debs: Vec<FakeDeb>,
    pub packages: String,
    pub opts: RepoOptions,
}

impl FakeRepo {
    pub fn build(opts: RepoOptions) -> FakeRepo {
        let dir = tempfile::tempdir().unwrap();
        let key = gen_key("repo");
        let keyring = dir.path().join("repo-key.gpg");
        write_pubkey(&key, &keyring);
        let root = dir.path().join("repo");
        let mut debs = Vec::new();
        let mut packages = String::new();
        for i in 0..opts.debs {
            let name = format!("pkg{i}");
            let filename = format!("pool/main/p/{name}/{name}_1.{i}_amd64.deb");
            // Sizes vary so parallel downloads overlap.
            let data: Vec<u8> = (0..(2000 + i * 70_000))
                .map(|j| ((j * 31 + i * 7) % 251) as u8)
                .collect();
            let path = root.join(&filename);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &data).unwrap();
            packages.push_str(&format!(
                "Package: {name}\nVersion: 1.{i}\nArchitecture: amd64\nFilename: {filename}\nSize: {}\nSHA256: {}\n\n",
                data.len(),
                sha256_hex(&data)
            ));
            debs.push(FakeDeb {
                name,
                filename,
                data,
            });
        }
        let repo = FakeRepo {
            dir,
            key,
            keyring,
            debs,
            packages,
            opts,
        };
        repo.write_metadata();
        repo
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// Directory holding (In)Release.
    pub fn dist_dir(&self) -> PathBuf {
        match &self.opts.dist {
            Some(d) => self.root().join("dists").join(d),
            None => self.root(),
        }
    }

    /// Directory holding Packages.
    pub fn index_dir(&self) -> PathBuf {
        match &self.opts.dist {
            Some(_) => self.dist_dir().join("main/binary-amd64"),
            None => self.root(),
        }
    }

    /// Rewrite Packages (plain, .gz, .xz), Release, `InRelease` and Release.gpg.
    pub fn write_metadata(&self) {
        let idx = self.index_dir();
        std::fs::create_dir_all(&idx).unwrap();
        let plain = self.packages.as_bytes().to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(&plain).unwrap();
        let xz = xz.finish().unwrap();
        let prefix = if self.opts.dist.is_some() {
            "main/binary-amd64/"
        } else {
            ""
        };
        let mut sums = String::new();
        for (name, data) in [
            ("Packages", &plain),
            ("Packages.gz", &gz),
            ("Packages.xz", &xz),
        ] {
            std::fs::write(idx.join(name), data).unwrap();
            sums.push_str(&format!(
                " {} {} {prefix}{name}\n",
                sha256_hex(data),
                data.len()
            ));
            if self.opts.by_hash {
                let bh = idx.join("by-hash/SHA256");
                std::fs::create_dir_all(&bh).unwrap();
                std::fs::write(bh.join(sha256_hex(data)), data).unwrap();
            }
        }
        let mut release = String::from("Origin: Test\nLabel: Test\n");
        if let Some(d) = &self.opts.dist {
            release.push_str(&format!("Suite: {d}\nCodename: {d}\n"));
            release.push_str("Architectures: amd64\nComponents: main\n");
        }
        release.push_str(&format!("Date: {}\n", self.opts.date));
        if let Some(v) = &self.opts.valid_until {
            release.push_str(&format!("Valid-Until: {v}\n"));
        }
        if self.opts.by_hash {
            release.push_str("Acquire-By-Hash: yes\n");
        }
        release.push_str("SHA256:\n");
        release.push_str(&sums);
        self.write_release(&release);
    }

    /// Write `release` as Release and, as configured, signed `InRelease` and Release.gpg.
    pub fn write_release(&self, release: &str) {
        let dd = self.dist_dir();
        std::fs::create_dir_all(&dd).unwrap();
        std::fs::write(dd.join("Release"), release).unwrap();
        let mut rng = rand::thread_rng();
        let _ = std::fs::remove_file(dd.join("InRelease"));
        let _ = std::fs::remove_file(dd.join("Release.gpg"));
        if self.opts.inrelease {
            let msg = CleartextSignedMessage::sign(
                &mut rng,
                release,
                &self.key.primary_key,
                &Password::empty(),
            )
            .unwrap();
            std::fs::write(
                dd.join("InRelease"),
                msg.to_armored_string(ArmorOptions::default()).unwrap(),
            )
            .unwrap();
        }
        if self.opts.release_gpg {
            let sig = DetachedSignature::sign_binary_data(
                &mut rng,
                &self.key.primary_key,
                &Password::empty(),
                HashAlgorithm::Sha256,
                release.as_bytes(),
            )
            .unwrap();
            std::fs::write(
                dd.join("Release.gpg"),
                sig.to_armored_bytes(ArmorOptions::default()).unwrap(),
            )
            .unwrap();
        }
    }
}

/// Shared state of the test server.
#[derive(Default)]
pub struct ServerState {
    /// Paths requested, in order.
    pub log: Vec<String>,
    /// Per path: statuses to answer with (first one first) before serving the file.
    pub fail: HashMap<String, Vec<u16>>,
    /// Per path: how many times to send only half of the body and drop the connection.
    pub cut: HashMap<String, usize>,
    /// Pause between 16 KiB chunks of every body (to catch a client mid-download).
    pub throttle: Option<std::time::Duration>,
    /// `Authorization` header values received.
    pub auth: Vec<String>,
    /// Per path: how many of the next requests to hold, and for how long, before answering.
    pub stall: HashMap<String, (usize, std::time::Duration)>,
}

/// A tiny HTTP/1.1 server for files under a root directory (one thread per connection,
/// `Connection: close`).
pub struct Server {
    pub base: String,
    pub state: Arc<Mutex<ServerState>>,
}

impl Server {
    pub fn start(root: PathBuf) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(ServerState::default()));
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let root = root.clone();
                let st = st.clone();
                std::thread::spawn(move || handle(conn, &root, &st));
            }
        });
        Server { base, state }
    }

    /// Number of requests for paths ending in `suffix`.
    pub fn count(&self, suffix: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|p| p.ends_with(suffix))
            .count()
    }

    pub fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }

    /// Send only half of the body of the next `times` responses for `path`, then hang up.
    pub fn cut(&self, path: &str, times: usize) {
        self.state
            .lock()
            .unwrap()
            .cut
            .insert(path.to_string(), times);
    }

    /// Pause between body chunks of every response.
    pub fn throttle(&self, pause: std::time::Duration) {
        self.state.lock().unwrap().throttle = Some(pause);
    }

    /// `Authorization` headers received so far.
    pub fn auth(&self) -> Vec<String> {
        self.state.lock().unwrap().auth.clone()
    }

    /// Hold the next `times` requests for `path` for `pause` before answering them.
    pub fn stall(&self, path: &str, times: usize, pause: std::time::Duration) {
        self.state
            .lock()
            .unwrap()
            .stall
            .insert(path.to_string(), (times, pause));
    }

    /// Answer the next requests for `path` with `statuses`.
    pub fn fail(&self, path: &str, statuses: &[u16]) {
        self.state
            .lock()
            .unwrap()
            .fail
            .insert(path.to_string(), statuses.to_vec());
    }
}

fn handle(conn: TcpStream, root: &Path, state: &Mutex<ServerState>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let mut auth = None;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("authorization")
                {
                    auth = Some(v.trim().to_string());
                }
            }
        }
    }
    let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (cut, throttle) = {
        let mut st = state.lock().unwrap();
        let cut = match st.cut.get_mut(&path) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        };
        (cut, st.throttle)
    };
    let forced = {
        let mut st = state.lock().unwrap();
        if let Some(a) = auth {
            st.auth.push(a);
        }
        st.log.push(path.clone());
        st.fail.get_mut(&path).and_then(|v| {
            if v.is_empty() {
                None
            } else {
                Some(v.remove(0))
            }
        })
    };
    // Logged first, so a test sees the request while it is held.
    let stall = {
        let mut st = state.lock().unwrap();
        match st.stall.get_mut(&path) {
            Some((n, pause)) if *n > 0 => {
                *n -= 1;
                Some(*pause)
            }
            _ => None,
        }
    };
    if let Some(pause) = stall {
        std::thread::sleep(pause);
    }
    let mut conn = conn;
    let (status, body): (u16, Vec<u8>) = if let Some(s) = forced {
        (s, format!("forced {s}\n").into_bytes())
    } else {
        let rel = path.trim_start_matches('/');
        if rel.split('/').any(|c| c == "..") {
            (403, b"no\n".to_vec())
        } else {
            match std::fs::File::open(root.join(rel)) {
                Ok(mut f) if root.join(rel).is_file() => {
                    let mut b = Vec::new();
                    f.read_to_end(&mut b).unwrap();
                    (200, b)
                }
                _ => (404, b"not found\n".to_vec()),
            }
        }
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes());
    let send = if cut {
        &body[..body.len() / 2]
    } else {
        &body[..]
    };
    for chunk in send.chunks(16 * 1024) {
        if conn.write_all(chunk).is_err() {
            return;
        }
        if let Some(p) = throttle {
            let _ = conn.flush();
            std::thread::sleep(p);
        }
    }
    let _ = conn.flush();
    if cut {
        let _ = conn.shutdown(std::net::Shutdown::Both);
    }
}
