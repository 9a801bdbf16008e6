//! `imgbuild push` against a real registry (`support::registry`); `skopeo` checks what arrived.

use crate::support::registry::{PASSWORD, Registry, USER, htpasswd, test_ca, tools, write_layout};
use crate::support::storage::{TestImage, base_layer, top_layer};
use crate::support::{have, imgbuild_bin, run, scratch, skip};
use std::path::Path;
use std::process::{Command, Output, Stdio};

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

/// The proxy cuts a blob upload part-way: the push fails naming the registry, and the next
/// push through a healthy path completes (what the registry kept of the cut upload is not used).
#[test]
fn a_push_cut_midway_fails_cleanly_and_the_retry_completes() {
    if !tools("a_push_cut_midway_fails_cleanly_and_the_retry_completes") {
        return;
    }
    let t = scratch("registry-cut");
    let registry = Registry::start(t.path(), None, None);
    let proxy = crate::support::proxy::Proxy::start(registry.port);
    let image = TestImage::new(&[base_layer(), top_layer()], "registry-cut");
    let layout = t.path().join("layout");
    write_layout(&image, &layout);
    let dest = format!("{}/cut/test:1", proxy.host());
    let cut = proxy.arm(
        crate::support::proxy::Flow::Up,
        2000,
        crate::support::proxy::Action::Cut,
    );
    let failed = push(&layout, &dest, &[]);
    assert!(cut.try_recv().is_ok(), "the proxy cut a connection");
    assert!(!failed.status.success());
    assert!(failed.stdout.is_empty());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.contains(&proxy.host()), "{err}");
    let digest = stdout(&push(&layout, &dest, &[]));
    assert_eq!(digest, imgbuild::storage::sha256_digest(&image.manifest));
}
