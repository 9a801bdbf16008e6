//! Shared pieces of the runtime tests: the busybox image packed as OCI layers with the `tar`
//! crate and loaded into a temp store (vfs, overlay, or btrfs on a loop device), the
//! `imgbuild` binary run against it, and leak checks for mounts and cgroups.

use imgbuild::storage::{ConfinedApplier, DriverKind, LayerBlob, Store, StoreInput, StoreOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::storage::BtrfsLoop;
use super::{cgroups_of, mounts_under, root_or_skip, skip};

/// The image's tag in the test stores.
pub const IMAGE: &str = "test/busybox:1";

/// The `os-release` the image's second layer adds.
pub const OS_RELEASE: &str = "ID=imgbuild-test\nNAME=\"imgbuild busybox\"\n";

/// A layer tar of the tree at `dir` (everything in it, owners and modes kept, names sorted).
pub fn tar_tree(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let mut entries: Vec<_> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .collect();
    entries.sort();
    for p in entries {
        let rel = p.strip_prefix(dir).unwrap();
        b.append_path_with_name(&p, rel).unwrap();
    }
    b.into_inner().unwrap()
}

fn file_layer(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, mode) in files {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(*mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// An OCI image of uncompressed `layers` with `config` as its `config` object.
pub fn image_input(layers: Vec<Vec<u8>>, config: serde_json::Value) -> StoreInput {
    use imgbuild::storage::sha256_digest;
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
    let cfg = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256_digest(&cfg),
            "size": cfg.len(),
        },
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": sha256_digest(l),
            "size": l.len(),
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    StoreInput {
        manifest,
        config: cfg,
        layers: layers
            .into_iter()
            .map(|l| LayerBlob {
                digest: sha256_digest(&l),
                media_type: "application/vnd.oci.image.layer.v1.tar".into(),
                data: Box::new(std::io::Cursor::new(l)),
            })
            .collect(),
    }
}

/// The busybox test image: the busybox tree, then a layer adding `/etc/os-release` and a
/// user; `Cmd` is `/bin/sh`.
pub fn busybox_image(busybox: &Path) -> StoreInput {
    let passwd = b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n\
                   nobody:x:65534:65534:nobody:/:/bin/false\n";
    let group = b"root:x:0:\ntty:x:5:\napp:x:1000:\nextra:x:2000:app\n";
    image_input(
        vec![
            tar_tree(busybox),
            file_layer(&[
                ("etc/os-release", OS_RELEASE.as_bytes(), 0o644),
                ("etc/passwd", passwd, 0o644),
                ("etc/group", group, 0o644),
            ]),
        ],
        serde_json::json!({
            "Cmd": ["/bin/sh"],
            "Env": ["PATH=/bin", "IMAGE_VAR=from-image"],
        }),
    )
}

/// A store with the busybox image loaded, in a temp dir (on a loop-mounted btrfs for btrfs).
pub struct Fixture {
    pub store_root: PathBuf,
    pub busybox: PathBuf,
    _dir: Option<tempfile::TempDir>,
    // Dropped after the store dir is gone: unmounts and detaches the loop device.
    _btrfs: Option<BtrfsLoop>,
}

impl Fixture {
    /// `None` (after printing the SKIP line) when not root or the busybox tree is unavailable.
    pub fn new(test: &str, driver: DriverKind) -> Option<Fixture> {
        if !root_or_skip(test) {
            return None;
        }
        let busybox = match super::busybox::root() {
            Ok(p) => p.to_path_buf(),
            Err(e) => {
                skip(format_args!(
                    "{test} needs the busybox-static test root (Debian mirror): {e}"
                ));
                return None;
            }
        };
        let (dir, btrfs, store_root) = if driver == DriverKind::Btrfs {
            let b = BtrfsLoop::new().expect("loop-mounted btrfs");
            let root = b.mnt.join("store");
            (None, Some(b), root)
        } else {
            // On the root filesystem: overlayfs needs an upper dir that supports it.
            let d = tempfile::Builder::new()
                .prefix("imgbuild-runtime-test")
                .tempdir_in("/var/tmp")
                .unwrap();
            let root = d.path().join("store");
            (Some(d), None, root)
        };
        let store = Store::open(&StoreOptions {
            root: store_root.clone(),
            driver: Some(driver),
        })
        .unwrap();
        store
            .load(
                busybox_image(&busybox),
                &[IMAGE.to_string()],
                &ConfinedApplier,
            )
            .unwrap();
        Some(Fixture {
            store_root,
            busybox,
            _dir: dir,
            _btrfs: btrfs,
        })
    }

    /// `imgbuild --storage-root <store> ARGS`, spawned.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_imgbuild"));
        c.arg("--storage-root")
            .arg(&self.store_root)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Run `imgbuild ARGS` to the end; also checks that its sandbox left no cgroup.
    pub fn imgbuild(&self, args: &[&str]) -> Output {
        let child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            cgroups_of(&[pid]),
            Vec::<PathBuf>::new(),
            "cgroups left by {args:?}"
        );
        out
    }

    /// `imgbuild run --rm IMAGE sh -c SCRIPT` with `opts` before the image: (code, stdout,
    /// stderr).
    pub fn sh(&self, opts: &[&str], script: &str) -> (i32, String, String) {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(opts);
        args.extend_from_slice(&[IMAGE, "/bin/sh", "-c", script]);
        let o = self.imgbuild(&args);
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// Like [`Fixture::sh`], asserting exit code 0; returns stdout.
    pub fn sh_ok(&self, opts: &[&str], script: &str) -> String {
        let (code, out, err) = self.sh(opts, script);
        assert_eq!(code, 0, "{script}\nstdout: {out}\nstderr: {err}");
        out
    }

    /// The loop-mounted btrfs image file, for the btrfs driver.
    pub fn loop_file(&self) -> Option<PathBuf> {
        self._btrfs.as_ref().map(|b| b.image.clone())
    }

    /// Directory entries of the store's container records and runtime records.
    pub fn containers_left(&self) -> Vec<String> {
        let mut left = Vec::new();
        for d in ["containers", "runtime"] {
            if let Ok(rd) = std::fs::read_dir(self.store_root.join(d)) {
                for e in rd.filter_map(Result::ok) {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n != "lock" {
                        left.push(format!("{d}/{n}"));
                    }
                }
            }
        }
        left.sort();
        left
    }

    /// Assert the store holds no container and nothing is mounted below it.
    pub fn assert_clean(&self) {
        assert_eq!(
            self.containers_left(),
            Vec::<String>::new(),
            "containers left"
        );
        assert_eq!(
            mounts_under(&self.store_root),
            Vec::<String>::new(),
            "mounts left"
        );
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Whatever a failed test left: release containers (unmount overlays) before the
        // temp dir and the btrfs loop go.
        if let Ok(rd) = std::fs::read_dir(self.store_root.join("runtime")) {
            for e in rd.filter_map(Result::ok) {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.len() == 64 {
                    let _ = self.command(&["rm", "-f", &n]).output();
                }
            }
        }
        for m in mounts_under(&self.store_root).iter().rev() {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// `GET /` from 127.0.0.1:`port`: the whole response, which must be a 200. Retries until
/// `within` has passed while nothing answers: a refused connection, or an accepted one that
/// ends without an answer (a published port's forwarder accepts before the server inside
/// listens).
pub fn http_get(port: u16, within: std::time::Duration) -> String {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + within;
    loop {
        let answer = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
            s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            let mut resp = String::new();
            s.read_to_string(&mut resp)?;
            Ok(resp)
        });
        match answer {
            Ok(resp) if resp.starts_with("HTTP/1.") => {
                assert!(resp.contains(" 200 "), "{resp}");
                return resp;
            }
            other => assert!(
                std::time::Instant::now() < deadline,
                "no HTTP answer on port {port}: {other:?}"
            ),
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
