//! The built debian-minimal through a registry with htpasswd auth over TLS (a CA the test
//! makes): pushed by imgbuild, seen with the same manifest digest by `skopeo inspect` and
//! `podman pull`, pulled back into an empty imgbuild store with that digest, and run there.
//! Needs root, the host's Debian mirror (the shared build), docker-registry, skopeo, openssl and
//! podman.

use crate::support::build::{minimal_build, only_file_with_suffix};
use crate::support::image::{PodmanStore, podman};
use crate::support::registry::{
    PASSWORD, Registry, USER, htpasswd, imgbuild_at as imgbuild, succeeded, test_ca,
};
use crate::support::{run, scratch};
use std::process::{Command, Output};

fn ok(out: Output, what: &str) -> String {
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains(PASSWORD),
        "{what} showed the password"
    );
    succeeded(out, what)
}

#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_registry_tools)),
    ignore = "needs root, docker-registry, skopeo, openssl and podman"
)]
fn debian_minimal_round_trips_through_a_tls_registry_with_auth() {
    let test = "debian_minimal_round_trips_through_a_tls_registry_with_auth";
    let Some(built) = minimal_build(test) else {
        return;
    };
    let t = scratch(test);
    let (certs, cert, key) = test_ca(t.path());
    let registry = Registry::start(t.path(), Some(&htpasswd(t.path())), Some((&cert, &key)));
    let creds = format!("{USER}:{PASSWORD}");
    let cert_dir = certs.to_str().unwrap();
    let dest = format!("{}/debian/minimal:13", registry.host());
    let archive = only_file_with_suffix(&built.target, ".docker.tar");

    let store = t.path().join("push-store");
    let digest = ok(
        imgbuild(&store)
            .arg("push")
            .arg(&archive)
            .arg(&dest)
            .args(["--creds", &creds, "--cert-dir", cert_dir])
            .output()
            .unwrap(),
        "push",
    );
    assert!(digest.starts_with("sha256:"), "{digest}");

    let inspect: serde_json::Value = serde_json::from_str(&run(Command::new("skopeo").args([
        "inspect",
        "--cert-dir",
        cert_dir,
        "--creds",
        &creds,
        &format!("docker://{dest}"),
    ])))
    .unwrap();
    assert_eq!(inspect["Digest"], digest.as_str());

    let podman_dir = tempfile::tempdir().unwrap();
    let pstore = PodmanStore(podman_dir.path().join("p"));
    run(podman(&pstore.0).args([
        "pull",
        "--cert-dir",
        cert_dir,
        "--creds",
        &creds,
        &format!("docker://{dest}"),
    ]));
    let pulled =
        run(podman(&pstore.0).args(["image", "inspect", "--format", "{{.Digest}}", &dest]));
    assert_eq!(pulled.trim(), digest);

    // Into an empty imgbuild store: the same manifest, and it runs.
    let fresh = t.path().join("pull-store");
    let id = ok(
        imgbuild(&fresh)
            .args(["--storage-driver", "vfs", "pull", "--quiet"])
            .arg(format!("docker://{dest}"))
            .args(["--creds", &creds, "--cert-dir", cert_dir])
            .output()
            .unwrap(),
        "pull",
    );
    let images: serde_json::Value = serde_json::from_str(&ok(
        imgbuild(&fresh)
            .args(["--storage-driver", "vfs", "images", "--format", "json"])
            .output()
            .unwrap(),
        "images",
    ))
    .unwrap();
    let row = images
        .as_array()
        .unwrap()
        .iter()
        .find(|i| {
            i["Id"]
                .as_str()
                .is_some_and(|x| id.contains(x) || x.contains(&id))
        })
        .unwrap_or_else(|| panic!("{id} not in {images}"));
    assert_eq!(row["Digest"], digest.as_str(), "{row}");
    let out = ok(
        imgbuild(&fresh)
            .args(["--storage-driver", "vfs", "run", "--rm", &dest])
            .args(["cat", "/etc/debian_version"])
            .output()
            .unwrap(),
        "run",
    );
    assert!(out.starts_with("13") || out.contains("trixie"), "{out}");
}
