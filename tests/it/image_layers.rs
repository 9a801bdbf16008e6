//! Layer determinism, archive round trips through the base reader, and bad-input handling.
//! Runs unprivileged.

use std::fs;
use std::io::Read;
use std::path::Path;

use crate::support::image::*;
use imgbuild::image::base::BaseImage;
use imgbuild::image::compress::Compression;
use imgbuild::image::config::{BuiltImage, assemble};
use imgbuild::image::output::{
    write_docker_archive, write_oci_archive, write_oci_layout, write_rootfs_tarball,
};
use imgbuild::image::walk::Excludes;
use imgbuild::image::{ImageError, ImageSpec, LayerOptions, write_layer};

fn spec() -> ImageSpec {
    ImageSpec {
        name: "det".into(),
        tag: "1".into(),
        cmd: Some(vec!["/bin/sh".into()]),
        created: EPOCH,
        architecture: "amd64".into(),
        os: "linux".into(),
        ..ImageSpec::default()
    }
}

fn build(root: &Path, work: &Path, compression: Compression, threads: usize) -> BuiltImage {
    let blobs = work.join("blobs");
    let opts = LayerOptions {
        source_date_epoch: EPOCH,
        compression,
        threads,
        ..LayerOptions::default()
    };
    let layer = write_layer(root, &blobs, &opts).unwrap();
    assemble(&spec(), &[layer], &blobs).unwrap()
}

fn all_outputs(
    image: &BuiltImage,
    root: &Path,
    out: &Path,
    threads: usize,
) -> Vec<(String, Vec<u8>)> {
    write_oci_layout(image, &out.join("x.oci")).unwrap();
    write_oci_archive(
        image,
        &out.join("x.oci.tar"),
        Compression::None,
        threads,
        EPOCH,
    )
    .unwrap();
    write_docker_archive(
        image,
        &out.join("x.docker.tar.xz"),
        Compression::Xz(1),
        threads,
        EPOCH,
    )
    .unwrap();
    write_rootfs_tarball(
        root,
        &out.join("x.tar.zst"),
        &Excludes::default(),
        EPOCH,
        Compression::Zstd(3),
        threads,
    )
    .unwrap();
    let mut files = Vec::new();
    for e in walkdir::WalkDir::new(out).sort_by_file_name() {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let rel = e
                .path()
                .strip_prefix(out)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            files.push((rel, fs::read(e.path()).unwrap()));
        }
    }
    files
}

#[test]
fn same_tree_gives_identical_bytes_across_dirs_times_and_threads() {
    for compression in [
        Compression::Gzip(6),
        Compression::Zstd(3),
        Compression::None,
    ] {
        let a = tempfile::tempdir().unwrap();
        plain_tree(&a.path().join("root").tap_mkdir());
        let img_a = build(&a.path().join("root"), &a.path().join("w"), compression, 1);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let b = tempfile::tempdir().unwrap();
        plain_tree(&b.path().join("root").tap_mkdir());
        let img_b = build(
            &b.path().join("root"),
            &b.path().join("other-work"),
            compression,
            4,
        );
        assert_eq!(
            img_a.manifest.digest(),
            img_b.manifest.digest(),
            "{compression:?}"
        );
        assert_eq!(img_a.layers[0].diff_id, img_b.layers[0].diff_id);
        let fa = all_outputs(&img_a, &a.path().join("root"), &a.path().join("out"), 1);
        let fb = all_outputs(&img_b, &b.path().join("root"), &b.path().join("out"), 3);
        assert_eq!(fa.len(), fb.len());
        for ((na, da), (nb, db)) in fa.iter().zip(&fb) {
            assert_eq!(na, nb);
            assert!(da == db, "{na} differs ({compression:?})");
        }
    }
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}
impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        fs::create_dir_all(&self).unwrap();
        self
    }
}

#[test]
fn layer_tar_is_sorted_clamped_and_excludes_build_files() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root").tap_mkdir();
    plain_tree(&root);
    let image = build(&root, &t.path().join("w"), Compression::Gzip(6), 0);
    let blob = image.blob_path(image.layers[0].descriptor.digest());
    let mut data = Vec::new();
    flate2::read::MultiGzDecoder::new(fs::File::open(blob).unwrap())
        .read_to_end(&mut data)
        .unwrap();
    let mut ar = tar::Archive::new(&data[..]);
    let mut names = Vec::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        assert!(h.mtime().unwrap() <= EPOCH);
        assert_eq!(h.username_bytes().unwrap_or_default(), b"");
        names.push(e.path().unwrap().to_string_lossy().into_owned());
    }
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| {
        // Depth-first byte order: compare component-wise.
        a.trim_end_matches('/')
            .split('/')
            .cmp(b.trim_end_matches('/').split('/'))
    });
    assert_eq!(names, sorted);
    for kept in [
        "tmp/",
        "run/",
        "dev/",
        "proc/",
        "sys/",
        "var/cache/",
        "etc/hl-b",
    ] {
        assert!(names.iter().any(|n| n == kept), "{kept} in {names:?}");
    }
    for gone in [
        "tmp/junk",
        "run/pidfile",
        "var/cache/kiwi/",
        "image/",
        ".kconfig",
        ".profile",
    ] {
        assert!(!names.iter().any(|n| n == gone), "{gone} excluded");
    }
}

#[test]
fn written_archives_read_back_as_verified_bases() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root").tap_mkdir();
    plain_tree(&root);
    let image = build(&root, &t.path().join("w"), Compression::Gzip(6), 0);
    let out = t.path().join("out");
    write_oci_layout(&image, &out.join("lay")).unwrap();
    write_oci_archive(&image, &out.join("a.oci.tar"), Compression::None, 0, EPOCH).unwrap();
    write_docker_archive(
        &image,
        &out.join("a.docker.tar.xz"),
        Compression::Xz(1),
        0,
        EPOCH,
    )
    .unwrap();
    let lay = format!("oci:{}:1", out.join("lay").display());
    let oci = format!("oci-archive:{}", out.join("a.oci.tar").display());
    let docker = out.join("a.docker.tar.xz").display().to_string(); // plain path, detected
    for uri in [&lay, &oci, &docker] {
        let base = BaseImage::open(uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
        assert_eq!(base.layers.len(), 1, "{uri}");
        assert_eq!(base.layers[0].diff_id, image.layers[0].diff_id, "{uri}");
        assert_eq!(base.history.len(), 1);
        for r in base.layer_readers() {
            let mut r = r.unwrap();
            let mut n = 0u64;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let k = r.read(&mut buf).unwrap();
                if k == 0 {
                    break;
                }
                n += k as u64;
            }
            assert!(n > 0);
        }
        if uri != &docker {
            assert_eq!(
                base.manifest_digest,
                image.manifest.digest().to_string(),
                "{uri}"
            );
        }
    }
    // A corrupt blob is refused with its digest named.
    let layer_blob = out
        .join("lay/blobs/sha256")
        .join(image.layers[0].descriptor.digest().digest());
    let mut data = fs::read(&layer_blob).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    fs::remove_file(&layer_blob).unwrap();
    fs::write(&layer_blob, data).unwrap();
    match BaseImage::open(&lay) {
        Err(ImageError::DigestMismatch { expected, .. }) => {
            assert_eq!(expected, image.layers[0].descriptor.digest().to_string());
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    // Missing archives and archives that are not images fail clearly.
    assert!(BaseImage::open("oci-archive:/nonexistent/x.tar").is_err());
    fs::write(out.join("junk.tar"), vec![0u8; 2048]).unwrap();
    assert!(matches!(
        BaseImage::open(&out.join("junk.tar").display().to_string()),
        Err(ImageError::BadBase { .. })
    ));
}

#[test]
fn failed_writes_leave_nothing_behind() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root").tap_mkdir();
    plain_tree(&root);
    let image = build(&root, &t.path().join("w"), Compression::Gzip(6), 0);
    // Remove a blob the archive needs: the write fails and leaves no file or temp file.
    let out = t.path().join("out").tap_mkdir();
    fs::remove_file(image.blob_path(image.config.digest())).unwrap();
    assert!(
        write_docker_archive(
            &image,
            &out.join("x.docker.tar"),
            Compression::None,
            0,
            EPOCH
        )
        .is_err()
    );
    assert!(
        write_oci_archive(&image, &out.join("x.oci.tar"), Compression::None, 0, EPOCH).is_err()
    );
    assert!(write_oci_layout(&image, &out.join("x.oci")).is_err());
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
    // An unwritable target names the path.
    let err = write_rootfs_tarball(
        &root,
        Path::new("/proc/imgbuild/x.tar"),
        &Excludes::default(),
        EPOCH,
        Compression::None,
        0,
    )
    .unwrap_err();
    assert!(err.to_string().contains("/proc/imgbuild"), "{err}");
}

#[test]
fn kept_plain_tar_matches_the_blob_and_gives_the_same_docker_archive() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root").tap_mkdir();
    plain_tree(&root);
    let blobs = t.path().join("blobs");
    let opts = LayerOptions {
        source_date_epoch: EPOCH,
        compression: Compression::Gzip(6),
        keep_plain: Some(t.path().join("plain")),
        ..LayerOptions::default()
    };
    let layer = write_layer(&root, &blobs, &opts).unwrap();
    let plain = layer.plain.clone().expect("a plain copy was asked for");
    let plain_bytes = fs::read(&plain).unwrap();
    let mut unpacked = Vec::new();
    flate2::read::MultiGzDecoder::new(fs::File::open(&layer.path).unwrap())
        .read_to_end(&mut unpacked)
        .unwrap();
    assert_eq!(plain_bytes, unpacked);
    assert_eq!(plain_bytes.len() as u64, layer.tar_size);
    let hex = layer.diff_id.strip_prefix("sha256:").unwrap();
    assert_eq!(
        plain.file_name().unwrap().to_str().unwrap(),
        format!("{hex}.tar")
    );

    // The docker-archive written from the copy equals the one written by decompressing.
    let with_copy = assemble(&spec(), std::slice::from_ref(&layer), &blobs).unwrap();
    let without = assemble(
        &spec(),
        &[imgbuild::image::LayerBlob {
            plain: None,
            ..layer.clone()
        }],
        &blobs,
    )
    .unwrap();
    let a = t.path().join("a.docker.tar");
    let b = t.path().join("b.docker.tar");
    let fa = write_docker_archive(&with_copy, &a, Compression::None, 0, EPOCH).unwrap();
    let fb = write_docker_archive(&without, &b, Compression::None, 0, EPOCH).unwrap();
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
    assert_eq!(fa.sha256, fb.sha256);

    // A copy that no longer matches its diff_id is refused, not shipped.
    fs::write(&plain, b"tampered").unwrap();
    let err = write_docker_archive(
        &with_copy,
        &t.path().join("c.docker.tar"),
        Compression::None,
        0,
        EPOCH,
    )
    .unwrap_err();
    assert!(!t.path().join("c.docker.tar").exists(), "{err}");
}
