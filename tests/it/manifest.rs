//! `imgbuild manifest`: multi-platform indexes assembled from single-platform OCI layouts or
//! registry images, pushed to a real registry (`support::registry`); `skopeo` checks them.

use crate::support::image::{PodmanStore, podman};
use crate::support::registry::{Registry, imgbuild_at, succeeded};
use crate::support::{run, scratch};
use imgbuild::image::index::testing::write_layout;
use std::path::Path;
use std::process::{Command, Output};

/// `imgbuild ARGS` with the store (where pushes record which repositories hold which blobs)
/// in the test's directory `t`.
fn imgbuild(t: &Path, args: &[&str]) -> Output {
    imgbuild_at(&t.join("store")).args(args).output().unwrap()
}

fn ok(o: &Output, what: &str) -> String {
    succeeded(o.clone(), what)
}

fn skopeo_raw(reference: &str) -> Vec<u8> {
    let mut c = Command::new("skopeo");
    c.args(["inspect", "--raw"]);
    if reference.starts_with("docker://") {
        c.arg("--tls-verify=false");
    }
    run(c.arg(reference)).trim_end().as_bytes().to_vec()
}

fn sha256(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// The `os/architecture[/variant]` of each entry of an index.
fn platforms(index: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(index).unwrap();
    assert_eq!(v["mediaType"], "application/vnd.oci.image.index.v1+json");
    v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut s = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                s.push('/');
                s.push_str(v);
            }
            s
        })
        .collect()
}

/// Two single-platform layouts (amd64, arm64/v8) in `dir`.
fn two_layouts(dir: &Path) -> (String, String) {
    let a = dir.join("amd64");
    let b = dir.join("arm64");
    write_layout(&a, "amd64", None, b"the amd64 image", None).unwrap();
    write_layout(&b, "arm64", Some("v8"), b"the arm64 image", None).unwrap();
    (a.display().to_string(), b.display().to_string())
}

#[test]
#[cfg_attr(
    not(imgbuild_has_registry_tools),
    ignore = "needs docker-registry, skopeo, openssl and podman"
)]
fn a_list_of_two_layouts_is_an_index_skopeo_reads_and_pushes_whole() {
    let t = scratch("manifest-local");
    let (a, b) = two_layouts(t.path());
    let list = t.path().join("list");
    let l = list.display().to_string();
    let created = ok(
        &imgbuild(t.path(), &["manifest", "create", &l, &format!("oci:{b}")]),
        "create",
    );
    let digest = ok(
        &imgbuild(t.path(), &["manifest", "add", &l, &format!("oci:{a}")]),
        "add",
    );
    assert_ne!(created, digest);
    // skopeo reads the list as an OCI layout: the index, both platforms, canonical order.
    let raw = skopeo_raw(&format!("oci:{l}"));
    assert_eq!(sha256(&raw), digest);
    assert_eq!(platforms(&raw), ["linux/amd64", "linux/arm64/v8"]);
    let inspected = ok(&imgbuild(t.path(), &["manifest", "inspect", &l]), "inspect");
    assert_eq!(inspected.as_bytes(), raw.as_slice());
    // The other add order gives the same index.
    let other = t.path().join("other").display().to_string();
    let again = ok(
        &imgbuild(
            t.path(),
            &["manifest", "create", &other, &format!("oci:{a}"), &b],
        ),
        "create with two sources",
    );
    assert_eq!(again, digest);
    // An imgbuild result directory stands for its OCI layout.
    let result = t.path().join("result");
    write_layout(
        &result.join("image.oci"),
        "arm64",
        Some("v8"),
        b"the arm64 image",
        Some("1.0"),
    )
    .unwrap();
    std::fs::write(
        result.join("result.json"),
        serde_json::json!({
            "name": "x", "tags": [], "manifest_digest": null, "config_digest": null,
            "layers": [], "source_date_epoch": 0,
            "files": [{"kind": "oci-layout", "name": "image.oci", "sha256": null, "size": null}],
        })
        .to_string(),
    )
    .unwrap();
    let third = t.path().join("third").display().to_string();
    let from_result = ok(
        &imgbuild(
            t.path(),
            &[
                "manifest",
                "create",
                &third,
                &a,
                &result.display().to_string(),
            ],
        ),
        "create from a result directory",
    );
    assert_eq!(from_result, digest);
    // The list as a multi-platform oci-archive: skopeo reads the same index and copies every
    // blob of it (which checks them).
    let archive = t.path().join("list.oci.tar");
    imgbuild::image::write_index_archive(&list, &archive, imgbuild::image::Compression::Gzip(6))
        .unwrap();
    let archived = format!("oci-archive:{}", archive.display());
    assert_eq!(skopeo_raw(&archived), raw);
    run(Command::new("skopeo").args([
        "copy",
        "--all",
        &archived,
        &format!("oci:{}", t.path().join("copied").display()),
    ]));

    let registry = Registry::start(t.path(), None, None);
    let dest = format!("docker://{}/imgbuild/multi:1.0", registry.host());
    let pushed = ok(
        &imgbuild(
            t.path(),
            &["manifest", "push", "--tls-verify=false", &l, &dest],
        ),
        "push",
    );
    assert_eq!(pushed, digest);
    let remote = skopeo_raw(&dest);
    assert_eq!(remote, raw, "the registry holds the index byte for byte");
    let via_imgbuild = ok(
        &imgbuild(
            t.path(),
            &["manifest", "inspect", "--tls-verify=false", &dest],
        ),
        "inspect docker://",
    );
    assert_eq!(via_imgbuild.as_bytes(), raw.as_slice());
    // Each image is there by digest: skopeo picks the arm64 one for that platform.
    let arm: serde_json::Value = serde_json::from_str(&run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--override-arch=arm64",
        &dest,
    ])))
    .unwrap();
    assert_eq!(arm["Architecture"], "arm64");
    // podman pulls the arm64 image of the index for that platform (no emulation needed to pull).
    let short = tempfile::tempdir().unwrap();
    let store = PodmanStore(short.path().join("p"));
    let r = dest.trim_start_matches("docker://");
    run(podman(&store.0).args([
        "pull",
        "--tls-verify=false",
        "-q",
        "--platform",
        "linux/arm64",
        &dest,
    ]));
    let pulled = run(podman(&store.0).args([
        "image",
        "inspect",
        "--format",
        "{{.Architecture}} {{.Digest}}",
        r,
    ]));
    assert_eq!(
        pulled.trim(),
        format!("arm64 {}", arm["Digest"].as_str().unwrap())
    );

    let rm = imgbuild(t.path(), &["manifest", "rm", &l]);
    ok(&rm, "rm");
    assert!(!list.exists());
    let err = imgbuild(t.path(), &["manifest", "rm", &a]);
    assert!(
        !err.status.success(),
        "rm of a single image layout must be refused"
    );
    assert!(Path::new(&a).exists());
}

#[test]
#[cfg_attr(
    not(imgbuild_has_registry_tools),
    ignore = "needs docker-registry, skopeo, openssl and podman"
)]
fn registry_images_are_assembled_without_their_layers() {
    // The CI matrix: per-arch jobs push repo:1.0-amd64 and repo:1.0-arm64; an assemble job
    // makes and pushes the index from the registry alone.
    let t = scratch("manifest-remote");
    let (a, b) = two_layouts(t.path());
    let registry = Registry::start(t.path(), None, None);
    let host = registry.host();
    for (layout, tag) in [(&a, "1.0-amd64"), (&b, "1.0-arm64")] {
        ok(
            &imgbuild(
                t.path(),
                &[
                    "push",
                    "--tls-verify=false",
                    layout,
                    &format!("docker://{host}/imgbuild/base:{tag}"),
                ],
            ),
            "push of one platform",
        );
    }
    let local = t.path().join("local").display().to_string();
    let expected = ok(
        &imgbuild(t.path(), &["manifest", "create", &local, &a, &b]),
        "local list",
    );

    let list = t.path().join("list").display().to_string();
    ok(
        &imgbuild(
            t.path(),
            &[
                "manifest",
                "create",
                "--tls-verify=false",
                &list,
                &format!("docker://{host}/imgbuild/base:1.0-arm64"),
                &format!("docker://{host}/imgbuild/base:1.0-amd64"),
            ],
        ),
        "create from the registry",
    );
    let layer_gets = registry.requests("GET", "/blobs/");
    // Only configs were read (one each), no layer.
    assert_eq!(layer_gets, 2, "{:#?}", registry.log());
    // Another repository of the same registry: the layers are mounted.
    let dest = format!("docker://{host}/imgbuild/multi:1.0");
    let out = imgbuild(
        t.path(),
        &["manifest", "push", "--tls-verify=false", &list, &dest],
    );
    let pushed = ok(&out, "push");
    assert_eq!(
        pushed, expected,
        "the same index as a list of the local layouts"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("mounted from imgbuild/base"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = skopeo_raw(&dest);
    assert_eq!(sha256(&raw), expected);
    assert_eq!(platforms(&raw), ["linux/amd64", "linux/arm64/v8"]);
    // The index added from the registry is added image by image.
    let again = t.path().join("again").display().to_string();
    let d = ok(
        &imgbuild(
            t.path(),
            &["manifest", "create", "--tls-verify=false", &again, &dest],
        ),
        "create from an index",
    );
    assert_eq!(d, expected);

    // Another registry has none of the layers: refused, naming the blob and where it is.
    let other_dir = t.path().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = Registry::start(&other_dir, None, None);
    let out = imgbuild(
        t.path(),
        &[
            "manifest",
            "push",
            "--tls-verify=false",
            &list,
            &format!("docker://{}/imgbuild/multi:1.0", other.host()),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("blob sha256:") && err.contains(&format!("{host}/imgbuild/base")),
        "{err}"
    );
}
