//! Rebuild avoidance of `imgbuild build`: a second build of unchanged inputs reuses the result in
//! the target dir without preparing a root; any change of an input, a damaged result or
//! `--force` builds again.
//!
//! Needs root and the Debian mirror of the host's apt sources (skips clearly otherwise).

use crate::support::build::{build, can_build, imgbuild, package_cache, result_json, tree_bytes};
use crate::support::{description, heavy, ok, scratch};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Output;

const STEM: &str = "debian-minimal.x86_64-13.0.0";

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// True when the build reused the result: the log says so and no stage ran.
fn was_reused(o: &Output) -> bool {
    let log = stderr(o);
    let reused = log.contains("imgbuild: up to date (inputs sha256:");
    let staged = log
        .lines()
        .any(|l| l.ends_with(" ...") || l.contains(" done in "));
    if reused {
        // A reused result never prepares: no stage line at all, only the summary.
        assert!(
            !log.lines().any(|l| l.ends_with(" ...")),
            "reused, yet stages ran:\n{log}"
        );
    } else {
        assert!(staged, "neither reused nor built:\n{log}");
        assert!(
            log.contains("pack ..."),
            "a rebuild packs a new image:\n{log}"
        );
    }
    reused
}

fn manifest(target: &Path) -> String {
    result_json(target)["manifest_digest"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn an_unchanged_rebuild_reuses_and_every_change_rebuilds() {
    let test = "an_unchanged_rebuild_reuses_and_every_change_rebuilds";
    if !can_build(test) {
        return;
    }
    let _h = heavy();
    let t = scratch(test);
    // A private copy of the description, so it can be changed; config.sh writes a marker.
    let desc = t.path().join("desc");
    fs::create_dir_all(&desc).unwrap();
    fs::copy(
        description("debian-minimal").join("config.xml"),
        desc.join("config.xml"),
    )
    .unwrap();
    fs::write(
        desc.join("config.sh"),
        "#!/bin/bash\necho one > /etc/reuse-marker\n",
    )
    .unwrap();
    let target = t.path().join("out");
    let cache = package_cache();
    let run = |extra: &[&str]| build(t.path(), &desc, &target, &cache, t.path(), extra);

    let first = run(&[]);
    assert!(!was_reused(&first));
    let files_before = tree_bytes(&target);
    let json_before = fs::read(target.join("result.json")).unwrap();
    let archive = target.join(format!("{STEM}.docker.tar"));
    let inode_before = fs::metadata(&archive).unwrap().ino();
    assert!(
        result_json(&target)["inputs"]
            .as_str()
            .is_some_and(|k| k.starts_with("sha256:")),
        "result.json records the inputs key"
    );

    // Unchanged: reused, the same files listed, nothing rewritten; `--load` still loads it.
    let second = run(&["--load"]);
    assert!(was_reused(&second), "{}", stderr(&second));
    // The same result paths, then the load's own line.
    assert!(
        stdout(&second).starts_with(&stdout(&first)),
        "{}",
        stdout(&second)
    );
    assert_eq!(tree_bytes(&target), files_before);
    assert_eq!(fs::read(target.join("result.json")).unwrap(), json_before);
    assert_eq!(fs::metadata(&archive).unwrap().ino(), inode_before);
    let images = ok(imgbuild(t.path()).arg("images"));
    assert!(
        stdout(&images).contains("debian-minimal"),
        "--load of a reused result: {}",
        stdout(&images)
    );

    // One byte of config.sh: built again, a different image; then reused again.
    fs::write(
        desc.join("config.sh"),
        "#!/bin/bash\necho two > /etc/reuse-marker\n",
    )
    .unwrap();
    let changed = run(&[]);
    assert!(!was_reused(&changed));
    assert!(stderr(&changed).contains("rebuilding: the inputs changed"));
    let m_changed = manifest(&target);
    assert_ne!(m_changed, manifest_of(&json_before));
    assert!(was_reused(&run(&[])));

    // A label: built again, then reused with the same label.
    let label = ["--add-container-label", "org.example.reuse=yes"];
    let labelled = run(&label);
    assert!(!was_reused(&labelled));
    assert!(stderr(&labelled).contains("rebuilding: the inputs changed"));
    let m_labelled = manifest(&target);
    assert_ne!(m_labelled, m_changed);
    assert!(was_reused(&run(&label)));

    // A truncated result file: built again (the same image), whole again.
    let len = fs::metadata(&archive).unwrap().len();
    fs::File::options()
        .write(true)
        .open(&archive)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let repaired = run(&label);
    assert!(!was_reused(&repaired));
    assert!(
        stderr(&repaired).contains("size differs"),
        "{}",
        stderr(&repaired)
    );
    assert_eq!(fs::metadata(&archive).unwrap().len(), len);
    assert_eq!(manifest(&target), m_labelled, "same inputs, same image");

    // `--force` builds although nothing changed, and records the key for the next build.
    let forced = run(&["--force", label[0], label[1]]);
    assert!(!was_reused(&forced));
    assert!(was_reused(&run(&label)));

    // SOURCE_DATE_EPOCH: built again, with that date.
    let epoch = ok(imgbuild(t.path())
        .current_dir(t.path())
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg("build")
        .arg(&desc)
        .arg("--target-dir")
        .arg(&target)
        .arg("--cache-dir")
        .arg(&cache)
        .args(label));
    assert!(!was_reused(&epoch));
    assert_eq!(result_json(&target)["source_date_epoch"], 1_700_000_000);
}

fn manifest_of(json: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(json).unwrap();
    v["manifest_digest"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}
