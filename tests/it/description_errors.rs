//! Description errors as a user meets them (issue 13): malformed XML at its line and column,
//! enumerated element text, attributes named as written, a missing repository, one error with a
//! suggestion for a typo, and every blocker of a build in one run.

use crate::support::imgbuild_in_checkout as imgbuild;
use std::path::{Path, PathBuf};
use std::process::Output;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const REPO: &str = r#"<repository type="apt-deb" alias="trixie" distribution="trixie" components="main">
        <source path="apt-host:/"/>
    </repository>"#;

/// A small valid description with `preferences` (inside `<preferences>`), `type_attrs` (on
/// `<type>`) and `repos` (after the preferences) spliced in.
fn description(schema: &str, preferences: &str, type_attrs: &str, repos: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<image schemaversion="{schema}" name="errs">
    <description type="system">
        <author>a</author>
        <contact>a@example.org</contact>
        <specification>errors</specification>
    </description>
    <preferences>
        <version>1.0.0</version>
        {preferences}
        <type image="docker" {type_attrs}>
            <containerconfig name="errs" tag="1" maintainer="Team"/>
        </type>
    </preferences>
    {repos}
    <packages type="bootstrap">
        <package name="bash"/>
    </packages>
</image>
"#
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("config.xml"), text).unwrap();
    d
}

fn validate(dir: &Path) -> Output {
    imgbuild(&["validate", dir.to_str().unwrap()])
}

#[test]
fn malformed_xml_is_reported_at_its_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let base = description("8.5", "<packagemanager>apt</packagemanager>", "", REPO);
    let cases = [
        (
            "lt-in-attribute",
            base.replace(
                r#"maintainer="Team""#,
                r#"maintainer="Team <team@example.org>""#,
            ),
            "config.xml:12:67: xml: '<' is not allowed in attribute values",
        ),
        (
            "control-character",
            base.replace("<author>a</author>", "<author>a\u{7}</author>"),
            "config.xml:4:18: xml: character U+0007 is not allowed in XML",
        ),
        (
            "second-declaration",
            base.replace(
                "    <preferences>",
                "<?xml version=\"1.0\"?>\n    <preferences>",
            ),
            "config.xml:8:1: xml: an XML declaration <?xml …?> is allowed only once, at the very start",
        ),
        (
            "lt-in-text",
            base.replace("<author>a</author>", "<author>a < b</author>"),
            "config.xml:4:19: xml: '<' must start a tag; write &lt; for a literal '<'",
        ),
        (
            "bad-charref",
            base.replace("<author>a</author>", "<author>&#0;</author>"),
            "config.xml:4:17: xml: character reference &#0; names no allowed XML character",
        ),
    ];
    for (name, text, expected) in cases {
        let out = validate(&write(tmp.path(), name, &text));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(expected), "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
    }
}

#[test]
fn enumerated_element_text_is_checked_against_the_grammar() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write(
        tmp.path(),
        "pm",
        &description("8.5", "<packagemanager>aptitude</packagemanager>", "", REPO),
    );
    let out = validate(&dir);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("config.xml:10:9: packagemanager: invalid value \"aptitude\"")
            && err.contains("apk|apt|zypper|dnf4|dnf5|microdnf|pacman"),
        "{err}"
    );
    let dir = write(
        tmp.path(),
        "pm-typo",
        &description("8.5", "<packagemanager>atp</packagemanager>", "", REPO),
    );
    let err = stderr(&validate(&dir));
    assert!(err.contains("did you mean `apt`?"), "{err}");
}

#[test]
fn errors_name_attributes_as_the_user_wrote_them() {
    let tmp = tempfile::tempdir().unwrap();
    let text = description("7.4", "<packagemanager>apt</packagemanager>", "", REPO)
        .replace(r#"maintainer="Team""#, r#"additionaltags="latest,no good""#);
    let out = validate(&write(tmp.path(), "tags", &text));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "config.xml:12:50: containerconfig@additionaltags: \"no good\" is not a valid tag"
        ),
        "{err}"
    );
    assert!(
        !err.contains("additionalnames") && !err.contains(":no good"),
        "{err}"
    );
}

#[test]
fn no_repository_warns_in_validate_and_fails_build_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write(
        tmp.path(),
        "norepo",
        &description("8.5", "<packagemanager>apt</packagemanager>", "", ""),
    );
    let out = validate(&dir);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: ") && err.contains("config.xml:2:1: image: no <repository>"),
        "{err}"
    );

    let target = tmp.path().join("out");
    let out = imgbuild(&[
        "build",
        dir.to_str().unwrap(),
        "--target-dir",
        target.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("config.xml:2:1: image: no <repository>") && err.contains("--add-repo"),
        "{err}"
    );
    assert!(!err.contains("bash"), "{err}");
    assert!(!target.exists());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "norepo")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_typo_is_one_error_with_a_suggestion() {
    let tmp = tempfile::tempdir().unwrap();
    let base = description("8.5", "<packagemanager>apt</packagemanager>", "", REPO);
    let cases = [
        (
            "image-type",
            base.replace(r#"image="docker""#, r#"image="dokcer""#),
            "config.xml:11:15: type@image: invalid value \"dokcer\"; did you mean `docker`?",
        ),
        (
            "element",
            base.replace("<packages type", "<pakages type")
                .replace("</packages>", "</pakages>"),
            "config.xml:18:5: pakages: unknown element in <image>; did you mean `packages`?",
        ),
        (
            "attribute",
            base.replace("<image schemaversion", r#"<image nmae="x" schemaversion"#),
            "config.xml:2:8: image@nmae: unknown attribute; did you mean `name`?",
        ),
    ];
    for (name, text, expected) in cases {
        let out = validate(&write(tmp.path(), name, &text));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(expected), "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
    }
}

#[test]
fn every_blocker_of_a_build_is_reported_once_with_its_position() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write(
        tmp.path(),
        "blocked",
        &description(
            "8.5",
            "<packagemanager>zypper</packagemanager>",
            "",
            r#"<repository type="rpm-md" alias="oss">
        <source path="obs://Debian:13/standard"/>
    </repository>
    <repository type="apt-deb" alias="deb">
        <source path="https://deb.example/debian"/>
    </repository>"#,
        ),
    );
    let out = validate(&dir);
    assert!(out.status.success(), "{}", stderr(&out));

    let target = tmp.path().join("out");
    let out = imgbuild(&[
        "build",
        dir.to_str().unwrap(),
        "--target-dir",
        target.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    for expected in [
        "config.xml:15:5: repository: repository oss: source \"obs://Debian:13/standard\": this source is resolved through the Open Build Service",
        "config.xml:18:5: repository@type: \"apt-deb\" is not supported with zypper (only rpm-md)",
    ] {
        assert_eq!(err.matches(expected).count(), 1, "{expected}: {err}");
    }
    assert!(!err.contains("reusable"), "{err}");
    assert!(!target.exists());
}
