//! Shared pieces of the storage tests: synthetic images, a loop-mounted
//! btrfs that always goes away, and leak checks.

use imgbuild::storage::{LayerBlob, StoreInput, sha256_digest};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A size-limited tmpfs mounted on a temp dir; unmounted on drop, also when the test fails.
pub struct Tmpfs {
    pub dir: tempfile::TempDir,
    mounted: bool,
}

impl Tmpfs {
    /// A tmpfs of `size` bytes.
    pub fn new(size: u64) -> Result<Tmpfs, String> {
        let dir = tempfile::Builder::new()
            .prefix("imgbuild-tmpfs-test")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let mut t = Tmpfs {
            dir,
            mounted: false,
        };
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0700"))
            .arg("tmpfs")
            .arg(t.dir.path()))?;
        t.mounted = true;
        Ok(t)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes available on it now.
    pub fn available(&self) -> u64 {
        fs4::available_space(self.path()).unwrap()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if self.mounted && run(Command::new("umount").arg(self.dir.path())).is_err() {
            let _ = run(Command::new("umount").arg("-l").arg(self.dir.path()));
        }
    }
}

/// A layer entry of a synthetic image.
#[derive(Clone)]
pub enum E {
    Dir(&'static str, u32),
    File(&'static str, &'static [u8], u32, u32, u32),
    Symlink(&'static str, &'static str),
    /// `.wh.NAME` for the path given.
    Whiteout(&'static str),
    /// `DIR/.wh..wh..opq` for the directory given.
    Opaque(&'static str),
}

/// The tar bytes of a layer.
pub fn layer_tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str,
                   kind: tar::EntryType,
                   mode: u32,
                   uid: u32,
                   gid: u32,
                   data: &[u8],
                   link: Option<&str>| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid.into());
        h.set_gid(gid.into());
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        b.append_data(&mut h, path, data).unwrap();
    };
    for e in entries {
        match e {
            E::Dir(p, m) => add(p, tar::EntryType::Directory, *m, 0, 0, b"", None),
            E::File(p, d, m, u, g) => add(p, tar::EntryType::Regular, *m, *u, *g, d, None),
            E::Symlink(p, t) => add(p, tar::EntryType::Symlink, 0o777, 0, 0, b"", Some(t)),
            E::Whiteout(p) => {
                let path = Path::new(p);
                let name = format!(".wh.{}", path.file_name().unwrap().to_string_lossy());
                let wh = path.parent().unwrap().join(name);
                add(
                    wh.to_str().unwrap(),
                    tar::EntryType::Regular,
                    0o644,
                    0,
                    0,
                    b"",
                    None,
                );
            }
            E::Opaque(d) => add(
                &format!("{d}/.wh..wh..opq"),
                tar::EntryType::Regular,
                0o644,
                0,
                0,
                b"",
                None,
            ),
        }
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A synthetic OCI image held in memory.
#[derive(Clone)]
pub struct TestImage {
    pub manifest: Vec<u8>,
    pub config: Vec<u8>,
    /// (digest, gzip bytes), bottom first.
    pub blobs: Vec<(String, Vec<u8>)>,
}

impl TestImage {
    /// An image of the given layers; `label` goes into the config so otherwise equal images
    /// get distinct ids.
    pub fn new(layers: &[Vec<E>], label: &str) -> TestImage {
        let mut diff_ids = Vec::new();
        let mut blobs = Vec::new();
        for l in layers {
            let tar = layer_tar(l);
            diff_ids.push(sha256_digest(&tar));
            let gz = gzip(&tar);
            blobs.push((sha256_digest(&gz), gz));
        }
        Self::assemble(diff_ids, blobs, label)
    }

    /// Build manifest and config around given diff ids and blobs (which may disagree, for
    /// corruption tests).
    pub fn assemble(
        diff_ids: Vec<String>,
        blobs: Vec<(String, Vec<u8>)>,
        label: &str,
    ) -> TestImage {
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "created": "2026-01-01T00:00:00Z",
            "config": {"Labels": {"test": label}, "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let layers: Vec<_> = blobs
            .iter()
            .map(
                |(d, b)| serde_json::json!({"mediaType": LAYER_GZIP, "digest": d, "size": b.len()}),
            )
            .collect();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256_digest(&config),
                "size": config.len(),
            },
            "layers": layers,
        }))
        .unwrap();
        TestImage {
            manifest,
            config,
            blobs,
        }
    }

    /// The image id (the config's digest).
    pub fn id(&self) -> String {
        sha256_digest(&self.config)
    }

    /// A fresh input for `Store::load`.
    pub fn input(&self) -> StoreInput {
        StoreInput {
            manifest: self.manifest.clone(),
            config: self.config.clone(),
            layers: self
                .blobs
                .iter()
                .map(|(d, b)| LayerBlob {
                    digest: d.clone(),
                    media_type: LAYER_GZIP.to_string(),
                    data: Box::new(std::io::Cursor::new(b.clone())),
                })
                .collect(),
        }
    }
}

/// A gzip layer of one file of `size` zero bytes, streamed (never held uncompressed), and the
/// layer's true `diff_id`.
pub fn zero_layer(size: u64) -> (Vec<u8>, String) {
    use sha2::Digest as _;
    struct Tee<W> {
        out: W,
        hash: sha2::Sha256,
    }
    impl<W: Write> Write for Tee<W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.out.write(buf)?;
            self.hash.update(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.out.flush()
        }
    }
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(Tee {
        out: gz,
        hash: sha2::Sha256::new(),
    });
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    b.append_data(
        &mut h,
        "zeros",
        std::io::Read::take(std::io::repeat(0), size),
    )
    .unwrap();
    let tee = b.into_inner().unwrap();
    let diff_id = format!("sha256:{}", hex::encode(tee.hash.finalize()));
    (tee.out.finish().unwrap(), diff_id)
}

/// The base layer of the test images.
pub fn base_layer() -> Vec<E> {
    vec![
        E::Dir("bin", 0o755),
        E::Dir("etc", 0o755),
        E::File("etc/os-release", b"ID=imgbuild-test\n", 0o644, 0, 0),
        E::File("etc/gone", b"deleted by the next layer\n", 0o644, 0, 0),
        E::Symlink("etc/link", "os-release"),
        E::File("bin/su", b"#!/bin/true\n", 0o4755, 0, 0),
        E::Dir("opq", 0o755),
        E::File("opq/old1", b"1", 0o644, 0, 0),
        E::File("opq/old2", b"2", 0o644, 0, 0),
        E::Dir("keep", 0o755),
        E::File("keep/a", b"a", 0o644, 0, 0),
    ]
}

/// The second layer: a whiteout, an opaque directory, a setgid file of another owner, an
/// absolute symlink.
pub fn top_layer() -> Vec<E> {
    vec![
        E::Dir("etc", 0o755),
        E::Whiteout("etc/gone"),
        E::Symlink("etc/abs", "/etc/os-release"),
        E::Dir("opq", 0o750),
        E::Opaque("opq"),
        E::File("opq/new", b"new", 0o600, 0, 0),
        E::Dir("bin", 0o755),
        E::File("bin/tool", b"tool", 0o2755, 1000, 1000),
    ]
}

/// Another second layer, for an image sharing only the base.
pub fn other_top_layer() -> Vec<E> {
    vec![
        E::Dir("srv", 0o755),
        E::File("srv/other", b"other", 0o644, 0, 0),
    ]
}

/// Assert that `root` shows the two-layer image's merged view.
pub fn assert_merged_view(root: &Path) {
    use std::os::unix::fs::MetadataExt;
    let top = std::fs::metadata(root).unwrap();
    assert_eq!(top.mode() & 0o7777, 0o755, "root directory mode");
    assert_eq!((top.uid(), top.gid()), (0, 0));
    assert_eq!(
        std::fs::read(root.join("etc/os-release")).unwrap(),
        b"ID=imgbuild-test\n"
    );
    assert!(
        std::fs::symlink_metadata(root.join("etc/gone")).is_err(),
        "whiteout did not hide etc/gone"
    );
    let opq: Vec<String> = std::fs::read_dir(root.join("opq"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        opq,
        vec!["new".to_string()],
        "opaque dir shows lower entries"
    );
    assert_eq!(std::fs::read(root.join("keep/a")).unwrap(), b"a");
    let su = std::fs::symlink_metadata(root.join("bin/su")).unwrap();
    assert_eq!(su.mode() & 0o7777, 0o4755, "setuid bit lost");
    assert_eq!((su.uid(), su.gid()), (0, 0));
    let tool = std::fs::symlink_metadata(root.join("bin/tool")).unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o2755, "setgid bit lost");
    assert_eq!((tool.uid(), tool.gid()), (1000, 1000));
    assert_eq!(
        std::fs::read_link(root.join("etc/link")).unwrap(),
        Path::new("os-release")
    );
    assert_eq!(
        std::fs::read(root.join("etc/link")).unwrap(),
        b"ID=imgbuild-test\n"
    );
    assert_eq!(
        std::fs::read_link(root.join("etc/abs")).unwrap(),
        Path::new("/etc/os-release")
    );
}

/// Loop devices (`losetup -a`) whose backing file is `file`, deleted or not.
pub fn loops_backed_by(file: &Path) -> Vec<String> {
    let out = Command::new("losetup").arg("-a").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&*file.to_string_lossy()))
        .map(str::to_string)
        .collect()
}

/// A btrfs filesystem in a sparse file on a loop device, mounted in a temp dir; unmounted,
/// detached and deleted on drop, also when the test fails.
pub struct BtrfsLoop {
    /// Holds the image file and mount point; removed after `drop` has unmounted.
    _dir: tempfile::TempDir,
    pub image: PathBuf,
    pub mnt: PathBuf,
    loopdev: Option<String>,
    mounted: bool,
}

/// Runs `cmd`; its stdout (trimmed), or what went wrong.
fn run(cmd: &mut Command) -> Result<String, String> {
    let out = super::try_ok(cmd)?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl BtrfsLoop {
    pub fn new() -> Result<BtrfsLoop, String> {
        // On the root filesystem, not a tmpfs: the loop file needs real backing.
        let dir = tempfile::Builder::new()
            .prefix("imgbuild-btrfs-test")
            .tempdir_in("/var/tmp")
            .map_err(|e| e.to_string())?;
        let mut g = BtrfsLoop {
            image: dir.path().join("btrfs.img"),
            mnt: dir.path().join("mnt"),
            _dir: dir,
            loopdev: None,
            mounted: false,
        };
        let f = std::fs::File::create(&g.image).map_err(|e| e.to_string())?;
        f.set_len(512 << 20).map_err(|e| e.to_string())?;
        drop(f);
        std::fs::create_dir(&g.mnt).map_err(|e| e.to_string())?;
        run(Command::new("mkfs.btrfs").arg("-q").arg("-f").arg(&g.image))?;
        g.loopdev = Some(run(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&g.image))?);
        run(Command::new("mount")
            .args(["-t", "btrfs"])
            .arg(g.loopdev.as_deref().unwrap_or_default())
            .arg(&g.mnt))?;
        g.mounted = true;
        Ok(g)
    }

    /// `btrfs subvolume list` paths.
    pub fn subvolumes(&self) -> Vec<String> {
        run(Command::new("btrfs")
            .args(["subvolume", "list"])
            .arg(&self.mnt))
        .unwrap()
        .lines()
        .filter_map(|l| l.split(" path ").nth(1))
        .map(str::to_string)
        .collect()
    }
}

impl Drop for BtrfsLoop {
    fn drop(&mut self) {
        if self.mounted && run(Command::new("umount").arg(&self.mnt)).is_err() {
            let _ = run(Command::new("umount").arg("-l").arg(&self.mnt));
        }
        if let Some(dev) = &self.loopdev {
            let _ = run(Command::new("losetup").arg("-d").arg(dev));
        }
    }
}
