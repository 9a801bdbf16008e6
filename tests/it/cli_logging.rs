//! The global logging options: `-q`, `-v`/`--verbose`, `--log-format text|json`. An offline
//! build with an empty cache fails in its first stage, which is enough to see the stage lines
//! without network or root; what a CI log of a whole (warm) build holds needs root and the
//! mirror.

use crate::support::build::{build, minimal_build};
use crate::support::imgbuild_in_checkout as imgbuild;
use crate::support::{description, heavy, scratch};
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

/// Every line of `log` as a JSON object (panics naming the first line that is not one).
fn json_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .map(|l| match serde_json::from_str(l) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ => panic!("not a JSON object: {l:?} in\n{log}"),
        })
        .collect()
}

#[test]
fn json_stage_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, err) = failing_build(tmp.path(), &["--log-format", "json"]);
    assert!(!ok, "{err}");
    // Every line, the final error included, is one object.
    let events = json_lines(&err);
    assert!(
        events
            .iter()
            .any(|e| e["stage"] == "resolve" && e["event"] == "start"),
        "{err}"
    );
    let last = events.last().unwrap();
    assert_eq!(last["event"], "error", "{err}");
    assert!(
        last["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{err}"
    );
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

/// The `imgbuild: download done in …` line of a text log: (files, the text after the count).
fn download_summary(log: &str) -> (usize, String) {
    let line = log
        .lines()
        .find(|l| l.starts_with("imgbuild: download done in "))
        .unwrap_or_else(|| panic!("no download summary in\n{log}"));
    let (_, rest) = line.split_once(" s: ").unwrap_or_else(|| panic!("{line}"));
    let (files, rest) = rest
        .split_once(" files, ")
        .unwrap_or_else(|| panic!("{line}"));
    (files.parse().unwrap(), rest.to_string())
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn ci_logs_of_a_warm_rebuild_have_stage_summaries_not_a_line_per_file() {
    let test = "ci_logs_of_a_warm_rebuild_have_stage_summaries_not_a_line_per_file";
    // The shared build filled its cache: the builds here download nothing (or what the mirror
    // published since, in the first one).
    let Some(shared) = minimal_build(test) else {
        return;
    };
    let _h = heavy();
    let t = scratch("ci-logs");
    let target = t.path().join("out");
    let desc = description("debian-minimal");
    // `--no-snapshot`: the download and install stages run, rather than the shared build's
    // package stage being restored.
    let run = |extra: &[&str]| {
        let extra = [extra, &["--no-snapshot"]].concat();
        let out = build(t.path(), &desc, &target, &shared.cache, t.path(), &extra);
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    // Text on a pipe: a start and a done line per stage, no line per file.
    let log = run(&[]);
    assert!(
        !log.contains("http://") && !log.contains("https://"),
        "{log}"
    );
    assert!(!log.contains("[1/"), "{log}");
    let starts: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("imgbuild: ")?.strip_suffix(" ..."))
        .collect();
    assert!(starts.contains(&"download"), "{log}");
    for stage in &starts {
        assert_eq!(
            log.lines()
                .filter(|l| l.starts_with(&format!("imgbuild: {stage} done in ")))
                .count(),
            1,
            "{stage}: {log}"
        );
    }
    let (files, rest) = download_summary(&log);
    assert!(files > 50, "{log}");
    assert!(rest.contains("iB (") && rest.ends_with(')'), "{log}");

    // `--force` over that result, json, verbose: only objects on stderr, one per downloaded
    // file counting up, and the stage's summary says all were cached.
    let log = run(&["--force", "--log-format", "json", "--verbose"]);
    let events = json_lines(&log);
    let downloads: Vec<_> = events.iter().filter(|e| e["event"] == "download").collect();
    assert_eq!(downloads.len(), files, "{log}");
    for (i, d) in downloads.iter().enumerate() {
        assert_eq!(d["done"], i + 1, "{log}");
        assert_eq!(d["files"], files, "{log}");
        assert_eq!(d["cached"], true, "{log}");
        let url = d["url"].as_str().unwrap_or_default();
        assert!(
            Path::new(url).extension().is_some_and(|x| x == "deb"),
            "{log}"
        );
    }
    let done = events
        .iter()
        .find(|e| e["stage"] == "download" && e["event"] == "done")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(done["files"], files, "{log}");
    assert_eq!(done["fetched_files"], 0, "{log}");
    assert_eq!(done["fetched_bytes"], 0, "{log}");
    let bytes: u64 = downloads.iter().map(|d| d["bytes"].as_u64().unwrap()).sum();
    assert_eq!(done["bytes"], bytes, "{log}");
    assert!(
        events
            .iter()
            .any(|e| e["stage"] == "pack" && e["event"] == "done"),
        "{log}"
    );
}
