//! The global logging options: `-q`, `-v`/`--verbose`, `--log-format text|json`. An offline
//! build with an empty cache fails in its first stage, which is enough to see the stage lines
//! without network or root.

use crate::support::imgbuild_in_checkout as imgbuild;
use std::path::Path;

/// An offline build of the minimal description against an empty cache: it starts the resolve
/// stage and fails there.
fn failing_build(tmp: &Path, global: &[&str]) -> (bool, String) {
    let cache = tmp.join("cache");
    let target = tmp.join("out");
    let lock = tmp.join("none.lock");
    let mut args: Vec<&str> = global.to_vec();
    args.extend([
        "build",
        "descriptions/debian-minimal",
        "--offline",
        "--no-lock",
        "--lock",
        lock.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
        "--target-dir",
        target.to_str().unwrap(),
    ]);
    let out = imgbuild(&args);
    assert!(!target.exists(), "a failed build left {}", target.display());
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn text_stage_lines_by_default() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, err) = failing_build(tmp.path(), &[]);
    assert!(!ok, "{err}");
    assert!(err.lines().any(|l| l == "imgbuild: resolve ..."), "{err}");
    assert!(err.contains("imgbuild: error:"), "{err}");
}

#[test]
fn json_stage_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, err) = failing_build(tmp.path(), &["--log-format", "json"]);
    assert!(!ok, "{err}");
    let events: Vec<serde_json::Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["stage"] == "resolve" && e["event"] == "start"),
        "{err}"
    );
    assert!(!err.contains("imgbuild: resolve ..."), "{err}");
}

#[test]
fn quiet_prints_only_the_error() {
    let tmp = tempfile::tempdir().unwrap();
    for flag in ["-q", "--quiet"] {
        let (ok, err) = failing_build(tmp.path(), &[flag]);
        assert!(!ok, "{err}");
        assert!(!err.contains("resolve ..."), "{err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("imgbuild:")).collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with("imgbuild: error:"),
            "{err}"
        );
    }
}

#[test]
fn flags_parse_in_both_places_and_bad_format_is_rejected() {
    let ok = |args: &[&str]| {
        let o = imgbuild(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    ok(&["-v", "validate", "descriptions/debian-minimal"]);
    ok(&["validate", "--verbose", "descriptions/debian-minimal"]);
    ok(&["validate", "-q", "descriptions/debian-minimal"]);
    ok(&[
        "validate",
        "--log-format",
        "json",
        "descriptions/debian-minimal",
    ]);
    // `run -v` stays the volume option.
    let help = imgbuild(&["run", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("-v, --volume"));
    let bad = imgbuild(&[
        "--log-format",
        "xml",
        "validate",
        "descriptions/debian-minimal",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("xml"));
}
