//! The shared build cache in a registry: "machine A" builds debian-minimal (bookworm) with
//! `--cache-to`; "machine B" (its own package cache, store, target, temporary directory, working
//! directory and copy of the description) builds with `--cache-from` and gets A's files
//! without preparing a root (only `kiwi.result.json`, which names its target by absolute path,
//! written for B's target); tampered artifacts are refused and "machine C" builds normally, into
//! the same target path as B, byte for byte what B got from the cache.
//!
//! Needs root, the Debian mirror of the host's apt sources and the registry tools.

use crate::support::build::{bookworm_build, imgbuild, package_cache, result_json, tree_bytes};
use crate::support::registry::Registry;
use crate::support::{description, ok, scratch};
use imgbuild::registry::{Client, ClientOptions, NoProgress, PushImage, PushOptions, Reference};
use imgbuild::remote_cache::{ArtifactFile, FILE_MEDIA_TYPE, artifact_manifest, cache_tag};
use imgbuild::storage::{LayerBlob, StoreInput};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A copy of the directory `from` at `to` (regular files and directories).
fn copy_dir(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let dest = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            fs::create_dir_all(&dest).unwrap();
        } else {
            fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// "Another machine": its own store, package cache, target, TMPDIR and working directory, and
/// a copy of the description; returns (description, target, package cache) and the command.
struct Machine {
    dir: PathBuf,
    desc: PathBuf,
    target: PathBuf,
    cache: PathBuf,
}

impl Machine {
    fn new(dir: PathBuf, target: &Path) -> Machine {
        let desc = dir.join("elsewhere/descriptions/minimal");
        copy_dir(&description("debian-minimal"), &desc);
        for d in ["work/sub", "tmp", "cache"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        Machine {
            target: target.to_path_buf(),
            cache: dir.join("cache"),
            desc,
            dir,
        }
    }

    /// `imgbuild build` of its copy of debian-minimal (bookworm) with `cache` as package cache.
    fn build(&self, cache: &Path, extra: &[&str]) -> Output {
        ok(imgbuild(&self.dir)
            .current_dir(self.dir.join("work/sub"))
            .env("TMPDIR", self.dir.join("tmp"))
            .arg("build")
            .arg(&self.desc)
            .args(["--profile", "bookworm", "--target-dir"])
            .arg(&self.target)
            .arg("--cache-dir")
            .arg(cache)
            .args(extra))
    }
}

/// Pushes the files of `dir` as a cached result of `key` to `host/repo`, without any of the
/// checks `--cache-to` makes: what a hostile or broken writer could put there.
fn push_artifact(host: &str, repo: &str, key: &str, dir: &Path) {
    use sha2::{Digest, Sha256};
    let dest = Reference::parse(&format!("{host}/{repo}:{}", cache_tag(key).unwrap())).unwrap();
    let mut files = Vec::new();
    let mut layers = Vec::new();
    let mut seen = BTreeSet::new();
    for (rel, bytes) in tree_bytes(dir) {
        if !dir.join(&rel).is_file() {
            continue;
        }
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        files.push(ArtifactFile {
            title: rel.to_string_lossy().into_owned(),
            digest: digest.clone(),
            size: bytes.len() as u64,
        });
        if seen.insert(digest.clone()) {
            layers.push(LayerBlob {
                digest,
                media_type: FILE_MEDIA_TYPE.into(),
                data: Box::new(std::io::Cursor::new(bytes)),
            });
        }
    }
    let client = Client::connect(&dest, &ClientOptions::default()).unwrap();
    let image = PushImage {
        input: StoreInput {
            manifest: artifact_manifest(&files),
            config: b"{}".to_vec(),
            layers,
        },
        files: std::collections::HashMap::new(),
    };
    imgbuild::registry::push(&client, &dest, image, &PushOptions::new(&NoProgress)).unwrap();
}

/// Total size of the files under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// The work directories left beside a target.
fn work_dirs(parent: &Path) -> Vec<String> {
    fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".imgbuild-"))
        .collect()
}

#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_registry_tools)),
    ignore = "needs root, docker-registry, skopeo, openssl and podman"
)]
#[cfg_attr(
    not(imgbuild_has_host_mirror),
    ignore = "needs a Debian archive in the host's apt sources"
)]
fn a_result_cached_in_a_registry_is_used_by_another_machine_and_tampering_is_refused() {
    let test = "a_result_cached_in_a_registry_is_used_by_another_machine_and_tampering_is_refused";
    // Machine A's result: the run's bookworm build, which A reuses and stores in the cache.
    let Some(shared) = bookworm_build(test) else {
        return;
    };
    let t = scratch("build-cache");
    fs::create_dir_all(t.path().join("registry")).unwrap();
    let registry = Registry::start(&t.path().join("registry"), None, None);
    let host = registry.host();
    let cache_ref = format!("docker://{host}/ci/minimal");

    let a = t.path().join("a");
    copy_dir(&shared.target, &a.join("out"));
    let stored = ok(imgbuild(&a)
        .current_dir(&a)
        .arg("build")
        .arg(description("debian-minimal"))
        .args(["--profile", "bookworm", "--target-dir"])
        .arg(a.join("out"))
        .arg("--cache-dir")
        .arg(package_cache())
        .args(["--cache-to", &cache_ref]));
    let log = stderr(&stored);
    assert!(
        log.contains("stored in the registry cache as"),
        "A did not store its result:\n{log}"
    );
    let a_files = tree_bytes(&a.join("out"));
    let key = result_json(&a.join("out"))["inputs"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        log.contains(&format!("{host}/ci/minimal:{}", cache_tag(&key).unwrap())),
        "{log}"
    );

    // Machine B: nothing in common with A but the registry and the binary.
    let target = t.path().join("results/out");
    let b = Machine::new(t.path().join("b"), &target);
    let start = Instant::now();
    let hit = b.build(&b.cache, &["--cache-from", &cache_ref]);
    let took = start.elapsed();
    let log = stderr(&hit);
    assert!(
        log.contains(&format!(
            "up to date from the registry cache {host}/ci/minimal (inputs {key})"
        )),
        "B did not use the cache:\n{log}"
    );
    // No stage ran (no resolve, download or prepare), and no package reached B's cache (only
    // the signed Release file the inputs key reads).
    assert!(
        !log.lines().any(|l| l.ends_with(" ...")),
        "stages ran on a cache hit:\n{log}"
    );
    assert!(
        bytes_under(&b.cache) < 1 << 20,
        "B's package cache holds {} bytes",
        bytes_under(&b.cache)
    );
    // A's files, but for KIWI's index of B's target (and its checksum and entry).
    let b_files = tree_bytes(&b.target);
    let relocated = ["kiwi.result.json", "kiwi.result.json.sha256", "result.json"];
    let unmoved = |files: &[(PathBuf, Vec<u8>)]| -> Vec<(PathBuf, Vec<u8>)> {
        files
            .iter()
            .filter(|(p, _)| !relocated.iter().any(|r| p == Path::new(r)))
            .cloned()
            .collect()
    };
    assert_eq!(
        unmoved(&b_files),
        unmoved(&a_files),
        "B's files differ from A's"
    );
    assert_eq!(b_files.len(), a_files.len());
    let kiwi = fs::read_to_string(b.target.join("kiwi.result.json")).unwrap();
    assert!(kiwi.contains(&*b.target.to_string_lossy()), "{kiwi}");
    let without_kiwi = |target: &Path| {
        let mut v = result_json(target);
        v["files"]
            .as_array_mut()
            .unwrap()
            .retain(|f| f["kind"] != "kiwi-result");
        v
    };
    assert_eq!(without_kiwi(&b.target), without_kiwi(&a.join("out")));
    assert!(took < Duration::from_secs(2), "the cache hit took {took:?}");
    assert!(work_dirs(b.target.parent().unwrap()).is_empty());
    fs::remove_dir_all(&target).unwrap();

    // Tampered artifacts under the key's tag: a docker-archive that is not the one result.json
    // records, and a result.json of other inputs. Also a cache without the tag and one that
    // cannot be reached. Each is a warning or note; machine C then builds normally.
    let tampered = t.path().join("tampered");
    copy_dir(&a.join("out"), &tampered.join("archive"));
    let tar = fs::read_dir(tampered.join("archive"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".docker.tar"))
        .unwrap();
    let mut data = fs::read(&tar).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 1;
    fs::write(&tar, data).unwrap();
    push_artifact(&host, "ci/t1", &key, &tampered.join("archive"));
    copy_dir(&a.join("out"), &tampered.join("key"));
    let rj = tampered.join("key/result.json");
    let other = format!("sha256:{}", "0".repeat(64));
    fs::write(&rj, fs::read_to_string(&rj).unwrap().replace(&key, &other)).unwrap();
    push_artifact(&host, "ci/t2", &key, &tampered.join("key"));

    let c = Machine::new(t.path().join("c"), &target);
    let refs = [
        format!("docker://{host}/ci/t1"),
        format!("docker://{host}/ci/t2"),
        format!("docker://{host}/ci/empty"),
        "docker://127.0.0.1:1/ci/unreachable".to_string(),
    ];
    let mut extra = Vec::new();
    for r in &refs {
        extra.extend(["--cache-from", r.as_str()]);
    }
    let built = c.build(&package_cache(), &extra);
    let log = stderr(&built);
    for (what, needle) in [
        (
            "the changed archive",
            format!("not using the registry cache {host}/ci/t1: "),
        ),
        ("the changed archive", "fails the check".to_string()),
        (
            "the other key",
            format!("not using the registry cache {host}/ci/t2: "),
        ),
        ("the other key", format!("records the inputs {other}")),
        (
            "the missing tag",
            format!("the registry cache {host}/ci/empty has no result"),
        ),
        (
            "the unreachable registry",
            "not using the registry cache 127.0.0.1:1/ci/unreachable: ".to_string(),
        ),
    ] {
        assert!(log.contains(&needle), "{what}: no {needle:?} in\n{log}");
    }
    assert!(log.contains("pack ..."), "C did not build:\n{log}");
    assert_eq!(
        tree_bytes(&c.target),
        b_files,
        "C's build differs from what B got from the cache"
    );
    assert!(work_dirs(c.target.parent().unwrap()).is_empty());
}
