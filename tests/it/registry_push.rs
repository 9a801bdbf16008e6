//! `imgbuild push` against a real registry (`support::registry`); `skopeo` checks what arrived.

use crate::support::registry::{PASSWORD, Registry, USER, htpasswd, test_ca, write_layout};
use crate::support::storage::{TestImage, base_layer, top_layer};
use crate::support::{imgbuild_bin, run, scratch};
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `imgbuild push`, with the store root (and so the blob record naming mount sources) in the
/// source's directory.
fn push_cmd(source: &Path, dest: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(imgbuild_bin());
    c.arg("--storage-root")
        .arg(source.parent().unwrap().join("store"))
        .arg("push")
        .arg(source)
        .arg(dest)
        .args(extra)
        .env_remove("IMGBUILD_REGISTRY_CREDS")
        .stdin(Stdio::null());
    c
}

fn push(source: &Path, dest: &str, extra: &[&str]) -> Output {
    push_cmd(source, dest, extra).output().unwrap()
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
#[cfg_attr(
    not(imgbuild_has_registry_tools),
    ignore = "needs docker-registry, skopeo, openssl and podman"
)]
fn push_layout_then_repush_uploads_nothing() {
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

#[test]
#[cfg_attr(
    not(imgbuild_has_registry_tools),
    ignore = "needs docker-registry, skopeo, openssl and podman"
)]
fn push_with_basic_auth_and_wrong_password() {
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

#[test]
#[cfg_attr(
    not(imgbuild_has_registry_tools),
    ignore = "needs docker-registry, skopeo, openssl and podman"
)]
fn push_over_tls_with_htpasswd() {
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
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_registry_tools)),
    ignore = "needs root, docker-registry, skopeo, openssl and podman"
)]
fn push_from_the_store() {
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

/// An image whose second layer holds `mib` MiB of random bytes (so its blob stays that big
/// compressed): larger than the monolithic limit, it is uploaded in chunks.
fn big_image(label: &str, mib: usize) -> TestImage {
    use rand::RngCore;
    let mut data = vec![0u8; mib << 20];
    rand::thread_rng().fill_bytes(&mut data);
    let data: &'static [u8] = Box::leak(data.into_boxed_slice());
    TestImage::new(
        &[
            base_layer(),
            vec![crate::support::storage::E::File(
                "big.bin", data, 0o644, 0, 0,
            )],
        ],
        label,
    )
}

fn inspect_digest(dest: &str) -> String {
    let dest = if dest.starts_with("docker://") {
        dest.to_string()
    } else {
        format!("docker://{dest}")
    };
    let v: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", &dest])).unwrap();
    v["Digest"].as_str().unwrap().to_string()
}

/// A child process killed when the test ends, also when it fails.
struct Child(Option<std::process::Child>);

impl Child {
    fn output(mut self) -> Output {
        self.0.take().unwrap().wait_with_output().unwrap()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The proxy cuts the connection in the middle of a chunk of a large layer: the push asks the
/// upload's URL how far it got, resumes there, and completes in the same command.
#[test]
#[cfg_attr(
    not(imgbuild_has_registry_tools),
    ignore = "needs docker-registry, skopeo, openssl and podman"
)]
fn a_chunked_push_cut_midway_resumes_in_one_command() {
    let t = scratch("registry-resume");
    let registry = Registry::start(t.path(), None, None);
    let proxy = crate::support::proxy::Proxy::start(registry.port);
    let image = big_image("registry-resume", 20);
    let layout = t.path().join("layout");
    write_layout(&image, &layout);
    let dest = format!("{}/resume/test:1", proxy.host());
    let cut = proxy.arm(
        crate::support::proxy::Flow::Up,
        10 << 20,
        crate::support::proxy::Action::Cut,
    );
    let out = push(&layout, &dest, &[]);
    let digest = stdout(&out);
    assert!(cut.try_recv().is_ok(), "the proxy cut a connection");
    assert_eq!(digest, imgbuild::storage::sha256_digest(&image.manifest));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("resuming at byte"), "{err}");
    // The state of the upload was asked for, and the layer went in more than one PATCH.
    assert!(registry.requests("GET", "/blobs/uploads/") >= 1);
    assert!(registry.requests("PATCH", "/blobs/uploads/") >= 2);
    assert_eq!(
        inspect_digest(&format!("{}/resume/test:1", registry.host())),
        digest
    );
}

/// The registry dies while a layer is on its way: the push fails clearly, the registry holds no
/// manifest of it, and once the registry is back a push completes and verifies.
#[test]
#[cfg_attr(
    not(imgbuild_has_registry_tools),
    ignore = "needs docker-registry, skopeo, openssl and podman"
)]
fn the_registry_killed_mid_push_then_the_repush_completes() {
    let t = scratch("registry-killed");
    let mut registry = Registry::start(t.path(), None, None);
    let proxy = crate::support::proxy::Proxy::start(registry.port);
    let image = big_image("registry-killed", 12);
    let layout = t.path().join("layout");
    write_layout(&image, &layout);
    let dest = format!("{}/killed/test:1", proxy.host());
    let held = proxy.arm(
        crate::support::proxy::Flow::Up,
        6 << 20,
        crate::support::proxy::Action::Hold,
    );
    let child = Child(Some(
        push_cmd(&layout, &dest, &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    assert!(
        held.recv_timeout(std::time::Duration::from_mins(2)).is_ok(),
        "the upload never reached the held byte"
    );
    registry.kill();
    proxy.release();
    let failed = child.output();
    assert!(!failed.status.success());
    assert!(failed.stdout.is_empty());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.contains(&proxy.host()), "{err}");
    assert!(err.contains("pushing"), "{err}");

    registry.restart();
    let none = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &format!("docker://{dest}")])
        .output()
        .unwrap();
    assert!(
        !none.status.success(),
        "the failed push left a manifest in the registry"
    );
    let digest = stdout(&push(&layout, &dest, &[]));
    assert_eq!(digest, imgbuild::storage::sha256_digest(&image.manifest));
    assert_eq!(inspect_digest(&dest), digest);
}

/// A derived image pushed to another repository of the registry mounts the base's layer from
/// the repository the base was pushed to, instead of uploading it.
#[test]
#[cfg_attr(
    not(imgbuild_has_registry_tools),
    ignore = "needs docker-registry, skopeo, openssl and podman"
)]
fn a_derived_image_mounts_the_base_layers_from_another_repository() {
    let t = scratch("registry-mount");
    let registry = Registry::start(t.path(), None, None);
    let base = TestImage::new(&[base_layer()], "registry-mount-base");
    let derived = TestImage::new(&[base_layer(), top_layer()], "registry-mount-derived");
    let base_layout = t.path().join("base");
    let derived_layout = t.path().join("derived");
    write_layout(&base, &base_layout);
    write_layout(&derived, &derived_layout);
    let base_layer_digest = &base.blobs[0].0;
    assert_eq!(base_layer_digest, &derived.blobs[0].0);

    stdout(&push(
        &base_layout,
        &format!("{}/mount/base:1", registry.host()),
        &[],
    ));
    let out = push(
        &derived_layout,
        &format!("{}/mount/derived:1", registry.host()),
        &[],
    );
    let digest = stdout(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mounted from mount/base"), "{err}");
    let mounts = registry
        .log()
        .iter()
        .filter(|l| {
            l.contains("\"POST /v2/mount/derived/blobs/uploads/?mount=")
                && l.contains(base_layer_digest.as_str())
        })
        .count();
    assert_eq!(mounts, 1, "one mount of the base layer");
    // Uploaded: the base's layer and config, then only the derived image's top layer and config.
    assert_eq!(registry.requests("PUT", "/blobs/uploads/"), 4);
    assert_eq!(
        registry
            .log()
            .iter()
            .filter(|l| l.contains("\"PUT /v2/mount/derived/blobs/uploads/")
                && l.contains(base_layer_digest.as_str()))
            .count(),
        0
    );
    assert_eq!(
        inspect_digest(&format!("{}/mount/derived:1", registry.host())),
        digest
    );
}

/// `HOST/REPO@DIGEST` puts the manifest by digest; a digest that is not the image's is refused
/// before any upload.
#[test]
#[cfg_attr(
    not(imgbuild_has_registry_tools),
    ignore = "needs docker-registry, skopeo, openssl and podman"
)]
fn push_by_digest() {
    let t = scratch("registry-digest");
    let registry = Registry::start(t.path(), None, None);
    let image = TestImage::new(&[base_layer()], "registry-digest");
    let layout = t.path().join("layout");
    write_layout(&image, &layout);
    let want = imgbuild::storage::sha256_digest(&image.manifest);
    let wrong = format!("sha256:{}", "0".repeat(64));
    let refused = push(
        &layout,
        &format!("{}/by/digest@{wrong}", registry.host()),
        &[],
    );
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains(&want) && err.contains(&wrong), "{err}");
    assert_eq!(registry.requests("POST", "/blobs/uploads/"), 0);

    let dest = format!("{}/by/digest@{want}", registry.host());
    assert_eq!(stdout(&push(&layout, &dest, &[])), want);
    assert_eq!(registry.requests("PUT", "/manifests/sha256:"), 1);
    assert_eq!(registry.requests("PUT", "/manifests/latest"), 0);
    // The repository has no tag: the manifest is read by digest, raw.
    let raw = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{dest}"),
        ])
        .output()
        .unwrap();
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    assert_eq!(imgbuild::storage::sha256_digest(&raw.stdout), want);
}

/// An OCI layout whose `index.json` names two platform images is pushed as an image index:
/// each image by digest, then the index under the tag.
#[test]
#[cfg_attr(
    not(imgbuild_has_registry_tools),
    ignore = "needs docker-registry, skopeo, openssl and podman"
)]
fn push_a_two_platform_layout_as_an_index() {
    let t = scratch("registry-index");
    let registry = Registry::start(t.path(), None, None);
    let amd = TestImage::new(&[base_layer()], "registry-index-amd64");
    let arm = TestImage::new(&[base_layer(), top_layer()], "registry-index-arm64");
    let layout = t.path().join("layout");
    write_layout(&amd, &layout);
    write_layout(&arm, &layout);
    let entry = |img: &TestImage, arch: &str| {
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": imgbuild::storage::sha256_digest(&img.manifest),
            "size": img.manifest.len(),
            "platform": {"architecture": arch, "os": "linux"},
        })
    };
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(&amd, "amd64"), entry(&arm, "arm64")],
    }))
    .unwrap();
    std::fs::write(layout.join("index.json"), &index).unwrap();
    let dest = format!("{}/multi/test:1", registry.host());

    let digest = stdout(&push(&layout, &dest, &[]));
    assert_eq!(digest, imgbuild::storage::sha256_digest(&index));
    assert_eq!(registry.requests("PUT", "/manifests/sha256:"), 2);
    // The shared base layer went up once.
    assert_eq!(registry.requests("PUT", "/blobs/uploads/"), 4);
    let raw: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{dest}"),
    ]))
    .unwrap();
    let digests: Vec<&str> = raw["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    assert_eq!(
        digests,
        [
            imgbuild::storage::sha256_digest(&amd.manifest),
            imgbuild::storage::sha256_digest(&arm.manifest)
        ]
    );
    // Each platform's image is there by digest.
    for img in [&amd, &arm] {
        let d = imgbuild::storage::sha256_digest(&img.manifest);
        assert_eq!(
            inspect_digest(&format!("{}/multi/test@{d}", registry.host())),
            d
        );
    }
}

/// `imgbuild build debian-minimal --push`: the shared build's result (copied, so that the build
/// rebuilds it with its OCI layout, then reuses it) is pushed; the digest printed is
/// `result.json`'s manifest digest, and podman pulls that digest.
#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_registry_tools)),
    ignore = "needs root, docker-registry, skopeo, openssl and podman"
)]
fn build_push_ends_with_the_image_in_the_registry() {
    let test = "build_push_ends_with_the_image_in_the_registry";
    let Some(shared) = crate::support::build::minimal_build(test) else {
        return;
    };
    let t = scratch("registry-build-push");
    let registry = Registry::start(t.path(), None, None);
    let target = t.path().join("out");
    run(Command::new("cp")
        .arg("-a")
        .arg(&shared.target)
        .arg(&target));
    let dest = format!("{}/built/debian-minimal:13", registry.host());
    let out = crate::support::build::build(
        t.path(),
        &crate::support::description("debian-minimal"),
        &target,
        &shared.cache,
        &shared.dir,
        &[
            "--push",
            &dest,
            "--push-default",
            &format!("{}/defaults", registry.host()),
        ],
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    // `--push` adds the OCI layout to the outputs (an input): the copied result is rebuilt.
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rebuilding"),
        "the copied result was rebuilt with its OCI layout"
    );
    let result = crate::support::build::result_json(&target);
    let pushed = result["pushed"]
        .as_array()
        .expect("result.json lists the pushes");
    assert_eq!(pushed.len(), 2, "{result}");
    let default_ref = format!("{}/defaults/debian-minimal:13", registry.host());
    let digest = pushed[0]["digest"].as_str().unwrap().to_string();
    assert_eq!(
        result["manifest_digest"],
        digest.as_str(),
        "the image pushed is the one result.json describes"
    );
    for (p, reference) in pushed.iter().zip([&dest, &default_ref]) {
        assert_eq!(p["reference"], reference.as_str());
        assert_eq!(p["digest"], digest.as_str());
        assert!(
            printed.contains(&format!("{reference} {digest}")),
            "{printed}"
        );
    }
    assert!(!result.to_string().contains("password"));
    // The result is still intact for reuse: the same command builds nothing and pushes again.
    let again = crate::support::build::build(
        t.path(),
        &crate::support::description("debian-minimal"),
        &target,
        &shared.cache,
        &shared.dir,
        &["--push", &dest],
    );
    assert!(String::from_utf8_lossy(&again.stdout).contains(&format!("{dest} {digest}")));
    assert!(String::from_utf8_lossy(&again.stderr).contains("up to date"));
    assert_eq!(inspect_digest(&dest), digest);

    // podman limits the runroot path to 50 characters: the store lives in a short temp dir.
    let short = tempfile::tempdir().unwrap();
    let store = crate::support::image::PodmanStore(short.path().join("p"));
    run(crate::support::image::podman(&store.0).args([
        "pull",
        "--tls-verify=false",
        "-q",
        &format!("docker://{dest}"),
    ]));
    let pulled = run(crate::support::image::podman(&store.0).args([
        "image",
        "inspect",
        "--format",
        "{{.Digest}}",
        &dest,
    ]));
    assert_eq!(pulled.trim(), digest);
}
