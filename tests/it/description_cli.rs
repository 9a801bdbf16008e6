//! `imgbuild validate` and `imgbuild info` end to end.

use crate::support::imgbuild_in_checkout as imgbuild;
use std::path::{Path, PathBuf};
use std::process::Output;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn validate_exit_codes_and_errors() {
    let ok = imgbuild(&[
        "validate",
        "descriptions/debian-minimal",
        "descriptions/debian-minimal-yaml",
    ]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(stdout(&ok).matches(": valid").count(), 2);

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("config.xml");
    std::fs::write(
        &bad,
        "<image schemaversion=\"8.5\" name=\"bad name\">\n<preferences><type image=\"docker\"/></preferences>\n<unknown/>\n</image>\n",
    )
    .unwrap();
    let out = imgbuild(&[
        "validate",
        "descriptions/debian-rich",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("config.xml:1:"), "{err}");
    assert!(
        err.contains("image@name: invalid value \"bad name\""),
        "{err}"
    );
    assert!(
        err.contains("required element <description> is missing"),
        "{err}"
    );
    assert!(
        err.contains("config.xml:3:1: unknown: unknown element in <image>"),
        "{err}"
    );
    assert!(stdout(&out).contains("debian-rich/config.xml: valid"));
}

#[test]
fn info_json_is_identical_for_both_markups_and_profiles_switch_repositories() {
    for extra in [&[][..], &["--profile", "bookworm"][..]] {
        let mut a = vec![
            "info",
            "descriptions/debian-minimal",
            "--target-arch",
            "x86_64",
        ];
        a.extend_from_slice(extra);
        let mut b = vec![
            "info",
            "descriptions/debian-minimal-yaml/config.kiwi",
            "--target-arch",
            "x86_64",
        ];
        b.extend_from_slice(extra);
        let (x, y) = (imgbuild(&a), imgbuild(&b));
        assert!(
            x.status.success() && y.status.success(),
            "{}{}",
            stderr(&x),
            stderr(&y)
        );
        assert_eq!(x.stdout, y.stdout, "{extra:?}");
        let v: serde_json::Value = serde_json::from_slice(&x.stdout).unwrap();
        let want = if extra.is_empty() {
            "trixie"
        } else {
            "bookworm"
        };
        assert_eq!(v["repositories"][0]["distribution"], want);
    }
}

#[test]
fn info_converts_between_markups() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = imgbuild(&["info", "descriptions/debian-rich", "--format", "yaml"]);
    assert!(yaml.status.success(), "{}", stderr(&yaml));
    let y = dir.path().join("rich.yaml");
    std::fs::write(&y, &yaml.stdout).unwrap();
    let xml = imgbuild(&["info", y.to_str().unwrap(), "--format", "xml"]);
    assert!(xml.status.success(), "{}", stderr(&xml));
    let x: PathBuf = dir.path().join("rich.xml");
    std::fs::write(&x, &xml.stdout).unwrap();
    let j1 = imgbuild(&["info", "descriptions/debian-rich", "--profile", "devel"]);
    let j2 = imgbuild(&["info", x.to_str().unwrap(), "--profile", "devel"]);
    assert!(j1.status.success() && j2.status.success());
    assert_eq!(j1.stdout, j2.stdout);
}

#[test]
fn info_lists_profiles_and_reports_selection_errors() {
    let out = imgbuild(&["info", "descriptions/debian-rich", "--list-profiles"]);
    assert!(out.status.success());
    let s = stdout(&out);
    assert!(
        s.contains("runtime (import): small runtime image")
            && s.contains("devel: runtime plus compilers"),
        "{s}"
    );

    let out = imgbuild(&["info", "descriptions/debian-rich", "--profile", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("profile \"nope\" is not defined"),
        "{}",
        stderr(&out)
    );

    let out = imgbuild(&["info", "descriptions/debian-rich", "--type", "tbz"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("build type \"tbz\" not found"),
        "{}",
        stderr(&out)
    );
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("descriptions/debian-rich/root")
            .is_dir()
    );
}
