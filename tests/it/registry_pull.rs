//! `imgbuild pull` (and `run`/`inspect` pulling on demand) against a real registry
//! (`support::registry`), through `support::proxy` for the dropped and killed transfers. Every
//! pull goes into an empty store and loads layers, which needs root.

use crate::support::proxy::{Action, Flow, Proxy};
use crate::support::registry::{Registry, write_layout};
use crate::support::storage::{E, TestImage, base_layer, top_layer};
use crate::support::{imgbuild_bin, run, scratch};
use imgbuild::storage::{DriverKind, Store, StoreOptions, sha256_digest};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `imgbuild --storage-root STORE --storage-driver vfs ARGS`.
fn imgbuild(store: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(imgbuild_bin());
    c.arg("--storage-root")
        .arg(store)
        .args(["--storage-driver", "vfs"])
        .args(args)
        .env_remove("IMGBUILD_REGISTRY_CREDS")
        .stdin(Stdio::null());
    c
}

fn ok(o: Output) -> (String, String) {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "failed ({}):\n{err}", o.status);
    (String::from_utf8_lossy(&o.stdout).trim().to_string(), err)
}

fn failed(o: Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "succeeded:\n{err}");
    assert!(
        o.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    err
}

/// Pushes `image` (as an OCI layout) to `dest` with `imgbuild push`.
fn push(image: &TestImage, dir: &Path, dest: &str) {
    let layout = dir.join(format!("layout-{}", &image.id()[7..19]));
    write_layout(image, &layout);
    let out = Command::new(imgbuild_bin())
        .arg("push")
        .arg(&layout)
        .arg(dest)
        .env_remove("IMGBUILD_REGISTRY_CREDS")
        .output()
        .unwrap();
    ok(out);
}

fn open(store: &Path) -> Store {
    Store::open(&StoreOptions {
        root: store.to_path_buf(),
        driver: Some(DriverKind::Vfs),
    })
    .unwrap()
}

/// The names in a store directory (`blobs/sha256`, `tmp`, `images`), sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// The store holds nothing: no image, no blob, no temporary file.
fn assert_store_empty(store: &Path) {
    for d in ["images", "blobs/sha256", "tmp", "layers"] {
        assert_eq!(entries(&store.join(d)), Vec::<String>::new(), "{d}");
    }
}

/// A layer of `size` pseudo-random (incompressible) bytes, so a blob is big enough to cut.
fn noise_layer(size: usize, seed: u64) -> Vec<E> {
    let mut x = seed | 1;
    let data: Vec<u8> = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    vec![
        E::Dir("data", 0o755),
        E::File(
            "data/noise",
            Box::leak(data.into_boxed_slice()),
            0o644,
            0,
            0,
        ),
    ]
}

/// Blob GETs the registry logged (layers and configs).
fn blob_gets(registry: &Registry) -> usize {
    registry.requests("GET", "/blobs/sha256:")
}

#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_registry_tools)),
    ignore = "needs root, docker-registry, skopeo, openssl and podman"
)]
fn pull_into_an_empty_store_then_again_downloads_nothing() {
    let t = scratch("registry-pull");
    let registry = Registry::start(t.path(), None, None);
    let image = TestImage::new(&[base_layer(), top_layer()], "registry-pull");
    let name = format!("{}/imgbuild/pulled:1", registry.host());
    push(&image, t.path(), &name);
    let manifest_digest = sha256_digest(&image.manifest);
    let store = t.path().join("store");

    let (id, err) = ok(imgbuild(&store, &["pull", &format!("docker://{name}")])
        .output()
        .unwrap());
    assert_eq!(id, image.id().trim_start_matches("sha256:"));
    assert!(err.contains(&format!("Trying to pull {name}...")), "{err}");
    assert!(
        err.contains("Writing manifest to image destination"),
        "{err}"
    );
    for (d, _) in &image.blobs {
        assert!(err.contains(&format!("Copying blob {d} done")), "{err}");
    }
    assert_eq!(blob_gets(&registry), 3, "two layers and the config");

    let s = open(&store);
    let record = s.image(&name).unwrap();
    assert_eq!(record.manifest_digest, manifest_digest);
    assert_eq!(record.tags, vec![name.clone()]);
    let by_digest = s
        .image(&format!(
            "{}/imgbuild/pulled@{manifest_digest}",
            registry.host()
        ))
        .unwrap();
    assert_eq!(by_digest.id, image.id());
    drop(s);
    let (images, _) = ok(
        imgbuild(&store, &["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .output()
            .unwrap(),
    );
    assert_eq!(images, name);
    let (inspected, _) = ok(
        imgbuild(&store, &["inspect", "--format", "{{.Digest}}", &name])
            .output()
            .unwrap(),
    );
    assert_eq!(inspected, manifest_digest);

    // Again, by tag and by digest: the manifest is fetched, no blob.
    let (again, err) = ok(imgbuild(&store, &["pull", "-q", &name]).output().unwrap());
    assert_eq!(again, id);
    assert!(err.is_empty(), "--quiet prints nothing on stderr: {err}");
    let by_digest = format!("{}/imgbuild/pulled@{manifest_digest}", registry.host());
    let (again, _) = ok(imgbuild(&store, &["pull", &by_digest]).output().unwrap());
    assert_eq!(again, id);
    assert_eq!(blob_gets(&registry), 3, "nothing downloaded again");
}

#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_registry_tools)),
    ignore = "needs root, docker-registry, skopeo, openssl and podman"
)]
fn a_pull_cut_mid_blob_resumes_with_a_range_request() {
    let t = scratch("registry-pull-cut");
    let registry = Registry::start(t.path(), None, None);
    let image = TestImage::new(
        &[base_layer(), noise_layer(4 << 20, 7)],
        "registry-pull-cut",
    );
    push(&image, t.path(), &format!("{}/cut/pull:1", registry.host()));
    let proxy = Proxy::start(registry.port);
    let cut = proxy.arm(Flow::Down, 1 << 20, Action::Cut);
    let store = t.path().join("store");

    let (id, err) = ok(
        imgbuild(&store, &["pull", &format!("{}/cut/pull:1", proxy.host())])
            .output()
            .unwrap(),
    );
    // The proxy signals right after it cut; bounded, not timed.
    assert!(
        cut.recv_timeout(std::time::Duration::from_mins(1)).is_ok(),
        "the proxy cut a connection"
    );
    assert_eq!(id, image.id().trim_start_matches("sha256:"));
    let big = &image.blobs[1].0;
    assert!(
        err.contains(&format!("Copying blob {big}: ")) && err.contains("resuming at byte"),
        "{err}"
    );
    let partial = registry
        .log()
        .iter()
        .filter(|l| l.contains(&format!("GET /v2/cut/pull/blobs/{big}")) && l.contains("\" 206 "))
        .count();
    assert_eq!(
        partial,
        1,
        "one Range request answered 206:\n{}",
        registry.log().join("\n")
    );
    assert_eq!(open(&store).image(&id).unwrap().id, image.id());
    assert_eq!(entries(&store.join("tmp")), Vec::<String>::new());
}

#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_registry_tools)),
    ignore = "needs root, docker-registry, skopeo, openssl and podman"
)]
fn the_registry_killed_mid_pull_leaves_the_store_unchanged() {
    let t = scratch("registry-pull-kill");
    let mut registry = Registry::start(t.path(), None, None);
    let image = TestImage::new(
        &[base_layer(), noise_layer(4 << 20, 11)],
        "registry-pull-kill",
    );
    push(
        &image,
        t.path(),
        &format!("{}/kill/pull:1", registry.host()),
    );
    let proxy = Proxy::start(registry.port);
    let store = t.path().join("store");
    let name = format!("{}/kill/pull:1", proxy.host());

    let held = proxy.arm(Flow::Down, 1 << 20, Action::Hold);
    let child = imgbuild(&store, &["pull", &name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    held.recv().unwrap();
    registry.kill();
    proxy.release();
    let err = failed(child.wait_with_output().unwrap());
    assert!(err.contains(&proxy.host()), "{err}");
    assert!(err.contains("gave up after"), "{err}");
    assert_store_empty(&store);

    registry.restart();
    let (id, _) = ok(imgbuild(&store, &["pull", &name]).output().unwrap());
    assert_eq!(id, image.id().trim_start_matches("sha256:"));
    assert_eq!(entries(&store.join("tmp")), Vec::<String>::new());
}

/// The registry's own file of blob `digest`.
fn registry_blob(dir: &Path, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    dir.join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_registry_tools)),
    ignore = "needs root, docker-registry, skopeo, openssl and podman"
)]
fn a_corrupt_blob_is_refused_naming_its_digest() {
    let t = scratch("registry-pull-corrupt");
    let registry = Registry::start(t.path(), None, None);
    let image = TestImage::new(&[base_layer(), top_layer()], "registry-pull-corrupt");
    let name = format!("{}/corrupt/pull:1", registry.host());
    push(&image, t.path(), &name);
    let digest = &image.blobs[1].0;
    let file = registry_blob(t.path(), digest);
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let store = t.path().join("store");

    let err = failed(imgbuild(&store, &["pull", &name]).output().unwrap());
    assert!(
        err.contains(&format!("blob {digest}: the content hashes to sha256:")),
        "{err}"
    );
    assert!(err.contains("refusing it"), "{err}");
    assert_store_empty(&store);
}

/// `image` as built for `arch` (and `variant`): its config says so, so the id differs.
fn for_platform(image: &TestImage, arch: &str, variant: Option<&str>) -> TestImage {
    let mut config: serde_json::Value = serde_json::from_slice(&image.config).unwrap();
    config["architecture"] = arch.into();
    if let Some(v) = variant {
        config["variant"] = v.into();
    }
    let config = serde_json::to_vec(&config).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
    manifest["config"]["digest"] = sha256_digest(&config).into();
    manifest["config"]["size"] = config.len().into();
    TestImage {
        manifest: serde_json::to_vec(&manifest).unwrap(),
        config,
        blobs: image.blobs.clone(),
    }
}

/// An OCI layout at `dir` whose `index.json` names (as `1`) an index of `images`, each with
/// its platform.
fn write_index_layout(dir: &Path, images: &[(&TestImage, &str, Option<&str>)]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = sha256_digest(data);
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), data).unwrap();
        d
    };
    let mut manifests = Vec::new();
    for (image, arch, variant) in images {
        for (_, b) in &image.blobs {
            put(b);
        }
        put(&image.config);
        let mut platform = serde_json::json!({"os": "linux", "architecture": arch});
        if let Some(v) = variant {
            platform["variant"] = (*v).into();
        }
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": put(&image.manifest),
            "size": image.manifest.len(),
            "platform": platform,
        }));
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .unwrap();
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": put(&index),
            "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": "1"},
        }],
    });
    std::fs::write(dir.join("index.json"), top.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_registry_tools)),
    ignore = "needs root, docker-registry, skopeo, openssl and podman"
)]
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    ignore = "the test's index has amd64 and arm64 images, one of them the host's"
)]
fn a_multi_platform_index_pulls_the_platform_asked_for() {
    let t = scratch("registry-pull-index");
    let registry = Registry::start(t.path(), None, None);
    let base = TestImage::new(&[base_layer()], "registry-pull-index");
    let amd64 = for_platform(&base, "amd64", None);
    let arm64 = for_platform(&base, "arm64", Some("v8"));
    let layout = t.path().join("index-layout");
    write_index_layout(
        &layout,
        &[(&amd64, "amd64", None), (&arm64, "arm64", Some("v8"))],
    );
    let name = format!("{}/multi/pull:1", registry.host());
    run(Command::new("skopeo").args([
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:1", layout.display()),
        &format!("docker://{name}"),
    ]));
    let host = imgbuild::registry::Platform::host();
    let (native, other) = match host.architecture.as_str() {
        "amd64" => (&amd64, &arm64),
        "arm64" => (&arm64, &amd64),
        arch => unreachable!("ignored on {arch} hosts (see the test's cfg_attr)"),
    };

    // The library's resolve: the host's entry, from the index alone.
    let reference = imgbuild::registry::Reference::parse(&name).unwrap();
    let client = imgbuild::registry::Client::connect(
        &reference,
        &imgbuild::registry::ClientOptions::default(),
    )
    .unwrap();
    let resolved = imgbuild::registry::resolve(
        &client,
        &reference,
        &imgbuild::registry::PullOptions::default(),
    )
    .unwrap();
    assert_eq!(resolved.manifest_digest, sha256_digest(&native.manifest));
    assert!(resolved.index_digest.is_some());

    let store = t.path().join("store");
    let (id, _) = ok(imgbuild(&store, &["pull", &name]).output().unwrap());
    assert_eq!(format!("sha256:{id}"), native.id());
    let arch = |id: &str| {
        ok(
            imgbuild(&store, &["inspect", "--format", "{{.Architecture}}", id])
                .output()
                .unwrap(),
        )
        .0
    };
    assert_eq!(arch(&id), host.architecture);

    let other_arch = if host.architecture == "amd64" {
        "linux/arm64"
    } else {
        "linux/amd64"
    };
    let (id2, _) = ok(imgbuild(&store, &["pull", "--platform", other_arch, &name])
        .output()
        .unwrap());
    assert_eq!(format!("sha256:{id2}"), other.id());
    assert_eq!(arch(&id2), other_arch.trim_start_matches("linux/"));
    // The tag moved to the image pulled last, as podman does.
    assert_eq!(open(&store).image(&name).unwrap().id, other.id());

    let err = failed(
        imgbuild(&store, &["pull", "--platform", "linux/s390x", &name])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("no image for platform linux/s390x")
            && err.contains("linux/amd64")
            && err.contains("linux/arm64/v8"),
        "{err}"
    );

    // Every platform into a fresh store: both images, the tag on the host's.
    let all = t.path().join("store-all");
    let (id3, _) = ok(imgbuild(&all, &["pull", "--all-platforms", &name])
        .output()
        .unwrap());
    assert_eq!(format!("sha256:{id3}"), native.id());
    let s = open(&all);
    let mut ids: Vec<String> = s.images().unwrap().into_iter().map(|r| r.id).collect();
    ids.sort();
    let mut want = vec![amd64.id(), arm64.id()];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(s.image(&name).unwrap().id, native.id());
}

#[test]
fn bad_references_and_platforms_are_refused_before_any_request() {
    let t = scratch("registry-pull-bad");
    let store = t.path().join("store");
    // No short-name configuration (the host's may alias `debian` to Docker Hub).
    let conf = t.path().join("registries.conf");
    std::fs::write(&conf, "").unwrap();
    for (args, expected) in [
        (&["pull", "debian:12"][..], "use a full name"),
        (&["pull", "127.0.0.1:1/x@sha256:12"][..], "64 lowercase hex"),
        (
            &["pull", "--platform", "linux", "127.0.0.1:1/x:1"][..],
            "expected OS/ARCH[/VARIANT]",
        ),
        (&["inspect", "nosuch:1"][..], "use a full name"),
        (
            &["inspect", "--pull", "never", "127.0.0.1:1/x:1"][..],
            "--pull never",
        ),
    ] {
        let err = failed(
            imgbuild(&store, args)
                .env("CONTAINERS_REGISTRIES_CONF", &conf)
                .output()
                .unwrap(),
        );
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}

#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_registry_tools)),
    ignore = "needs root, docker-registry, skopeo, openssl and podman"
)]
fn run_and_inspect_pull_a_registry_image_on_demand() {
    let Some(fx) = crate::support::runtime::Fixture::new(
        "run_and_inspect_pull_a_registry_image_on_demand",
        DriverKind::Vfs,
    ) else {
        return;
    };
    let t = scratch("registry-pull-run");
    let registry = Registry::start(t.path(), None, None);
    let name = format!("{}/run/busybox:1", registry.host());
    ok(fx
        .command(&["push", crate::support::runtime::IMAGE, &name])
        .output()
        .unwrap());
    ok(fx.command(&["rmi", "--all", "--force"]).output().unwrap());

    let out = fx.imgbuild(&["run", "--rm", &name, "cat", "/etc/os-release"]);
    let (text, err) = ok(out);
    assert!(text.contains("ID="), "{text}");
    assert!(err.contains(&format!("Trying to pull {name}...")), "{err}");
    let gets = blob_gets(&registry);

    let (text, _) = ok(fx.imgbuild(&["run", "--rm", "--pull", "always", &name, "true"]));
    assert_eq!(text, "");
    assert_eq!(
        blob_gets(&registry),
        gets,
        "--pull always: the same image, no blob again"
    );
    let (digest, _) = ok(fx
        .command(&[
            "inspect",
            "--pull",
            "never",
            "--format",
            "{{.Digest}}",
            &name,
        ])
        .output()
        .unwrap());
    assert!(digest.starts_with("sha256:"), "{digest}");
}

#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_registry_tools)),
    ignore = "needs root, docker-registry, skopeo, openssl and podman"
)]
fn ctrl_c_mid_pull_leaves_the_store_unchanged() {
    let t = scratch("registry-pull-int");
    let registry = Registry::start(t.path(), None, None);
    let image = TestImage::new(
        &[base_layer(), noise_layer(4 << 20, 13)],
        "registry-pull-int",
    );
    push(&image, t.path(), &format!("{}/int/pull:1", registry.host()));
    let proxy = Proxy::start(registry.port);
    let store = t.path().join("store");

    // The download stalls (the proxy holds it): SIGINT ends the pull, blocked in a read, after
    // the grace period, and the temporary directory goes with it.
    let held = proxy.arm(Flow::Down, 1 << 20, Action::Hold);
    let child = imgbuild(&store, &["pull", &format!("{}/int/pull:1", proxy.host())])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    held.recv().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().cast_signed()),
        nix::sys::signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    assert_store_empty(&store);
    proxy.release();
}

#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_registry_tools)),
    ignore = "needs root, docker-registry, skopeo, openssl and podman"
)]
fn a_docker_schema2_image_is_pulled_and_a_tampered_manifest_refused() {
    let t = scratch("registry-pull-v2s2");
    let registry = Registry::start(t.path(), None, None);
    let image = TestImage::new(&[base_layer(), top_layer()], "registry-pull-v2s2");
    let layout = t.path().join("layout");
    write_layout(&image, &layout);
    let name = format!("{}/docker/v2s2:1", registry.host());
    run(Command::new("skopeo").args([
        "copy",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &format!("oci:{}", layout.display()),
        &format!("docker://{name}"),
    ]));
    let store = t.path().join("store");
    let (id, _) = ok(imgbuild(&store, &["pull", &name]).output().unwrap());
    assert_eq!(format!("sha256:{id}"), image.id());
    let record = open(&store).image(&name).unwrap();
    assert_eq!(
        record.manifest_media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let inspect: serde_json::Value = serde_json::from_str(&run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{name}"),
    ])))
    .unwrap();
    assert_eq!(inspect["Digest"], record.manifest_digest.as_str());

    // The registry's copy of the manifest altered (same length): by tag, the bytes no longer
    // hash to the digest the registry announces; refused, nothing stored.
    let tampered = format!("{}/docker/tampered:1", registry.host());
    push(&image, t.path(), &tampered);
    let file = registry_blob(t.path(), &sha256_digest(&image.manifest));
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("\"size\"", "\"Size\"", 1)).unwrap();
    let empty = t.path().join("store-empty");
    let err = failed(imgbuild(&empty, &["pull", &tampered]).output().unwrap());
    let expected = format!("not {}; refusing it", sha256_digest(&image.manifest));
    assert!(
        err.contains("the manifest hashes to sha256:") && err.contains(&expected),
        "{err}"
    );
    assert_store_empty(&empty);
}

#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_registry_tools)),
    ignore = "needs root, docker-registry, skopeo, openssl and podman"
)]
fn blob_sizes_the_manifest_declares_are_enforced() {
    let t = scratch("registry-pull-sizes");
    let registry = Registry::start(t.path(), None, None);
    let image = TestImage::new(&[base_layer(), top_layer()], "registry-pull-sizes");
    push(
        &image,
        t.path(),
        &format!("{}/sizes/pull:1", registry.host()),
    );
    let reference =
        imgbuild::registry::Reference::parse(&format!("{}/sizes/pull:1", registry.host())).unwrap();
    let client = imgbuild::registry::Client::connect(
        &reference,
        &imgbuild::registry::ClientOptions::default(),
    )
    .unwrap();
    // The registry checks that a manifest's blobs exist, not their sizes.
    let with_size = |tag: &str, size: u64| {
        let mut m: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
        m["layers"][1]["size"] = size.into();
        client
            .put_manifest(
                "sizes/pull",
                tag,
                "application/vnd.oci.image.manifest.v1+json",
                &serde_json::to_vec(&m).unwrap(),
            )
            .unwrap();
        format!("{}/sizes/pull:{tag}", registry.host())
    };
    let store = t.path().join("store");

    let huge = with_size("huge", 1 << 60);
    let err = failed(imgbuild(&store, &["pull", &huge]).output().unwrap());
    assert!(err.contains("do not fit"), "{err}");
    assert_eq!(blob_gets(&registry), 0, "refused before any download");
    assert_store_empty(&store);

    let actual = image.blobs[1].1.len() as u64;
    let short = with_size("short", actual - 1);
    let err = failed(imgbuild(&store, &["pull", &short]).output().unwrap());
    assert!(
        err.contains(&format!(
            "blob {}: more than the {} bytes the manifest says",
            image.blobs[1].0,
            actual - 1
        )),
        "{err}"
    );
    assert_store_empty(&store);
}

/// A one-response-per-connection HTTP server on loopback: `answer(request head)` gives the
/// response; every request head is kept.
struct Http {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Http {
    fn start(answer: impl Fn(&str) -> Vec<u8> + Send + 'static) -> Http {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = std::sync::Arc::clone(&seen);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                    // The client tries HTTPS first: a TLS handshake gets the connection closed.
                    if head == [0x16] {
                        break;
                    }
                }
                if head == [0x16] {
                    continue;
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let reply = answer(&head);
                // Kept before the answer goes out: the client may be done right after it.
                log.lock().unwrap().push(head);
                let _ = conn.write_all(&reply);
            }
        });
        Http { port, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A registry that redirects blob GETs to storage on another port: the client follows, keeps
/// the `Range` header, and does not send its `Authorization` there.
#[test]
#[cfg_attr(
    not(imgbuild_has_registry_tools),
    ignore = "needs docker-registry, skopeo, openssl and podman"
)]
fn a_blob_redirect_is_followed_without_the_credentials() {
    let storage = Http::start(|head| {
        if head.contains("range: bytes=2-") || head.contains("Range: bytes=2-") {
            response(
                "206 Partial Content",
                &[("Content-Range", "bytes 2-4/5")],
                b"llo",
            )
        } else {
            response("200 OK", &[], b"hello")
        }
    });
    let storage_port = storage.port;
    let registry = Http::start(move |head| {
        if !head
            .to_ascii_lowercase()
            .contains("\r\nauthorization: basic ")
        {
            response(
                "401 Unauthorized",
                &[("WWW-Authenticate", "Basic realm=\"test\"")],
                b"",
            )
        } else if head.starts_with("GET /v2/ ") {
            response("200 OK", &[], b"{}")
        } else {
            let location = format!("http://127.0.0.1:{storage_port}/storage/blob");
            response("307 Temporary Redirect", &[("Location", &location)], b"")
        }
    });
    let reference =
        imgbuild::registry::Reference::parse(&format!("127.0.0.1:{}/r/x:1", registry.port))
            .unwrap();
    let client = imgbuild::registry::Client::connect(
        &reference,
        &imgbuild::registry::ClientOptions {
            credentials: imgbuild::registry::Credentials::parse("user:secret-password"),
            ..imgbuild::registry::ClientOptions::default()
        },
    )
    .unwrap();
    let digest = sha256_digest(b"hello");
    let read = |offset: u64| {
        let mut blob = client.get_blob("r/x", &digest, offset).unwrap();
        let mut body = String::new();
        std::io::Read::read_to_string(&mut blob.body.as_reader(), &mut body).unwrap();
        (blob.offset, body)
    };
    assert_eq!(read(0), (0, "hello".to_string()));
    assert_eq!(read(2), (2, "llo".to_string()));
    let lower = |v: Vec<String>| {
        v.into_iter()
            .map(|h| h.to_ascii_lowercase())
            .collect::<Vec<_>>()
    };
    let at_registry = lower(registry.seen());
    // The client answers the registry's challenge with its credentials.
    assert_eq!(
        at_registry
            .iter()
            .filter(|h| h.contains("/blobs/") && h.contains("authorization: basic"))
            .count(),
        2,
        "{at_registry:?}"
    );
    let at_storage = lower(storage.seen());
    assert_eq!(at_storage.len(), 2, "{at_storage:?}");
    assert!(
        at_storage.iter().all(|h| !h.contains("authorization")),
        "{at_storage:?}"
    );
    assert!(at_storage[1].contains("range: bytes=2-"), "{at_storage:?}");
}

/// A pull from a registry with token auth: every request asks for pull access only, and no
/// secret reaches the output.
#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_registry_tools)),
    ignore = "needs root, docker-registry, skopeo, openssl and podman"
)]
fn a_pull_with_bearer_tokens_asks_for_pull_scope_only() {
    use crate::support::registry::{PASSWORD, RegistryConfig, USER};
    use crate::support::token_server::{Policy, TokenServer};
    let t = scratch("registry-pull-bearer");
    let tokens = TokenServer::start(t.path(), Policy::default());
    let registry = Registry::with(
        t.path(),
        RegistryConfig {
            extra_yaml: Some(tokens.registry_yaml()),
            ..RegistryConfig::default()
        },
    );
    let image = TestImage::new(&[base_layer(), top_layer()], "registry-pull-bearer");
    let layout = t.path().join("layout");
    write_layout(&image, &layout);
    let name = format!("{}/bearer/pull:1", registry.host());
    let creds = format!("{USER}:{PASSWORD}");
    ok(Command::new(imgbuild_bin())
        .arg("push")
        .arg(&layout)
        .args([name.as_str(), "--creds", &creds])
        .output()
        .unwrap());
    tokens.set_policy(Policy {
        pull_only: true,
        ..Policy::default()
    });
    let before = tokens.requests().len();

    let store = t.path().join("store");
    let out = imgbuild(&store, &["pull", "--creds", &creds, &name])
        .env_remove("REGISTRY_AUTH_FILE")
        .env("XDG_RUNTIME_DIR", t.path())
        .env("HOME", t.path())
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (id, _) = ok(out);
    assert_eq!(format!("sha256:{id}"), image.id());
    assert!(!all.contains(PASSWORD), "{all}");
    for token in tokens.tokens() {
        assert!(!all.contains(token.rsplit('.').next().unwrap()), "{all}");
    }
    let scopes: Vec<String> = tokens.requests()[before..]
        .iter()
        .flat_map(|r| r.scopes.clone())
        .collect();
    assert!(!scopes.is_empty());
    assert!(
        scopes.iter().all(|s| s == "repository:bearer/pull:pull"),
        "{scopes:?}"
    );
}

/// Short names and mirrors as `registries.conf` says (`CONTAINERS_REGISTRIES_CONF`): an alias,
/// the one search registry, a `[[registry]]` whose location is down but whose mirror serves the
/// image (stored under the name asked for), and an ambiguous short name refused with its
/// candidates before any request.
#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_registry_tools)),
    ignore = "needs root, docker-registry, skopeo, openssl and podman"
)]
fn short_names_and_mirrors_follow_registries_conf() {
    let t = scratch("registry-shortnames");
    let registry = Registry::start(t.path(), None, None);
    let host = registry.host();
    let image = TestImage::new(&[base_layer()], "registry-shortnames");
    for repo in ["aliased/tool:1", "plain:1", "mirror/app:1"] {
        push(&image, t.path(), &format!("{host}/{repo}"));
    }
    // A port nothing listens on: the "primary" of the mirrored prefix is down.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = t.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            r#"unqualified-search-registries = ["{host}"]
[aliases]
"tool" = "{host}/aliased/tool"

[[registry]]
prefix = "mirrored.example/team"
location = "127.0.0.1:{down}/never"
[[registry.mirror]]
location = "{host}/mirror"
"#
        ),
    )
    .unwrap();
    let store = t.path().join("store");
    let with_conf = |args: &[&str]| {
        let mut c = imgbuild(&store, args);
        c.env("CONTAINERS_REGISTRIES_CONF", &conf);
        c.output().unwrap()
    };
    let id = image.id().trim_start_matches("sha256:").to_string();
    let (out, _) = ok(with_conf(&["pull", "tool:1"]));
    assert_eq!(out, id);
    let (out, _) = ok(with_conf(&["pull", "plain:1"]));
    assert_eq!(out, id);
    let (out, err) = ok(with_conf(&["pull", "mirrored.example/team/app:1"]));
    assert_eq!(out, id);
    assert!(err.contains(&format!("{host}/mirror/app:1")), "{err}");
    let s = open(&store);
    let tags = s.image(&image.id()).unwrap().tags;
    for name in [
        format!("{host}/aliased/tool:1"),
        format!("{host}/plain:1"),
        "mirrored.example/team/app:1".to_string(),
    ] {
        assert!(tags.contains(&name), "{name} not in {tags:?}");
    }

    std::fs::write(
        &conf,
        format!("unqualified-search-registries = [\"{host}\", \"other.example\"]\n"),
    )
    .unwrap();
    let before = registry.requests("GET", "/manifests/");
    let err = failed(with_conf(&["pull", "plain:1"]));
    assert!(err.contains("ambiguous"), "{err}");
    assert!(
        err.contains(&format!("{host}/plain:1, other.example/plain:1")),
        "{err}"
    );
    assert_eq!(registry.requests("GET", "/manifests/"), before);
}

/// A layer whose content does not match the config's `diff_id` downloads fine (its blob digest is
/// right) and is refused when the store loads it: the blobs the pull moved into the store are
/// taken out again, so the store is as it was.
#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_registry_tools)),
    ignore = "needs root, docker-registry, skopeo, openssl and podman"
)]
fn a_layer_refused_at_load_leaves_no_blob_behind() {
    let t = scratch("registry-pull-diffid");
    let registry = Registry::start(t.path(), None, None);
    let good = TestImage::new(&[base_layer()], "registry-pull-diffid");
    let wrong = format!("sha256:{}", "0".repeat(64));
    let bad = TestImage::assemble(vec![wrong], good.blobs.clone(), "registry-pull-diffid");
    let dest = format!("{}/diffid/bad:1", registry.host());
    push(&bad, t.path(), &dest);
    let store = t.path().join("store");
    let err = failed(imgbuild(&store, &["pull", &dest]).output().unwrap());
    assert!(err.contains("diff"), "{err}");
    assert_store_empty(&store);
}
