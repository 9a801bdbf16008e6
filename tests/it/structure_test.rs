//! `imgbuild test` on the shared debian-minimal build: the example configs of
//! tests/fixtures/structure-test (each kind of check the schema has) give the verdicts the schema
//! describes, the failing checks fail for the right reason, the JUnit report validates against
//! the JUnit schema, config errors and a missing image are errors (125), no container is left;
//! `build --test` passes or fails the build. Needs root and the mirror (skips clearly without).

use crate::support::build::{imgbuild, minimal_build, only_file_with_suffix};
use crate::support::{ok, repo_dir, scratch};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    repo_dir().join("tests/fixtures/structure-test").join(name)
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The results of a `-o json` run: name → (pass, errors).
fn results(o: &Output) -> BTreeMap<String, (bool, Vec<String>)> {
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)));
    v["Results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let errors = r["Errors"]
                .as_array()
                .map(|a| a.iter().map(|e| e.as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            (
                r["Name"].as_str().unwrap().to_string(),
                (r["Pass"].as_bool().unwrap(), errors),
            )
        })
        .collect()
}

fn xmllint(xsd: &Path, xml: &Path) {
    let o = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(xsd)
        .arg(xml)
        .output()
        .expect("xmllint (libxml2-utils) is installed by .ci/run");
    assert!(
        o.status.success(),
        "{} does not validate: {}",
        xml.display(),
        text(&o)
    );
}

fn store_containers(store: &Path) -> usize {
    let s = imgbuild::storage::Store::open(&imgbuild::storage::StoreOptions {
        root: store.to_path_buf(),
        driver: None,
    })
    .unwrap();
    s.containers().unwrap().len()
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
#[cfg_attr(
    not(imgbuild_has_host_mirror),
    ignore = "needs a Debian archive in the host's apt sources"
)]
fn debian_configs_give_the_documented_verdicts() {
    let test = "debian_configs_give_the_documented_verdicts";
    let Some(b) = minimal_build(test) else {
        return;
    };
    let s = scratch("structure-test");
    let archive = only_file_with_suffix(&b.target, ".docker.tar");
    let run = |args: &[&str]| imgbuild(s.path()).arg("test").args(args).output().unwrap();

    // Everything in the passing config passes, loaded from the archive as `run` takes it.
    let pass = fixture("debian-pass.yaml");
    let o = run(&[
        archive.to_str().unwrap(),
        "-c",
        pass.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = results(&o);
    assert_eq!(r.len(), 16, "{r:#?}");
    assert!(r.values().all(|(p, _)| *p), "{r:#?}");

    // Every check of the failing config fails, for its own reason.
    let image = "debian-minimal:13";
    let fail = fixture("debian-fail.yaml");
    let o = run(&[
        image,
        "--config",
        fail.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let r = results(&o);
    let reasons = |name: &str| -> String {
        let (pass, errors) = r
            .get(name)
            .unwrap_or_else(|| panic!("no result {name}: {r:#?}"));
        assert!(!pass, "{name} passed: {r:#?}");
        errors.join("\n")
    };
    for (name, reason) in [
        (
            "Command Test: wrong expected output",
            "expected output 'ID=fedora' not found in stdout",
        ),
        (
            "Command Test: excluded output present",
            "excluded output 'ID=debian' found in stdout",
        ),
        ("Command Test: wrong exit code", "exit code 2, expected 0"),
        (
            "Command Test: missing program",
            "cannot execute \"no-such-program\"",
        ),
        (
            "Command Test: setup runs in a container of its own test only",
            "exit code 1, expected 0",
        ),
        (
            "File Existence Test: missing file",
            "/etc/no-such-file should exist but does not",
        ),
        (
            "File Existence Test: file that should not exist",
            "/etc/passwd should not exist but does",
        ),
        (
            "File Existence Test: wrong permissions and owner",
            "permissions -rw-r--r--, expected -rwxrwxrwx",
        ),
        (
            "File Existence Test: wrong permissions and owner",
            "owned by uid 0, expected 1000",
        ),
        (
            "File Existence Test: not executable",
            "is not executable by any",
        ),
        (
            "File Existence Test: climbing above the root stays in the image",
            "/bin/../../../etc/no-such-file should exist but does not",
        ),
        (
            "File Content Test: content not there",
            "expected content 'Ubuntu' not found",
        ),
        (
            "File Content Test: directory is not a file",
            "is a directory, not a file",
        ),
        (
            "Metadata Test",
            "Cmd is [\"/bin/bash\"], expected [\"/bin/false\"]",
        ),
        ("Metadata Test", "port 8080 is not exposed"),
        ("Metadata Test", "volume /data is not declared"),
        ("Metadata Test", "User is '', expected 'nobody'"),
        (
            "License Test",
            "base-files/copyright names the license AGPL",
        ),
    ] {
        let got = reasons(name);
        assert!(got.contains(reason), "{name}: {got:?} lacks {reason:?}");
    }
    assert_eq!(r.len(), 14, "{r:#?}");

    // JUnit, on stdout and in the report file, validates against the JUnit schema.
    let report = s.path().join("report.xml");
    let o = run(&[
        image,
        "-c",
        fail.to_str().unwrap(),
        "-c",
        pass.to_str().unwrap(),
        "-o",
        "junit",
        "--test-report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stdout_xml = s.path().join("stdout.xml");
    std::fs::write(&stdout_xml, &o.stdout).unwrap();
    let xsd = fixture("junit.xsd");
    xmllint(&xsd, &stdout_xml);
    xmllint(&xsd, &report);
    let xml = String::from_utf8_lossy(&o.stdout);
    assert!(
        xml.contains("<testsuites name=\"imgbuild test\" tests=\"30\" failures=\"14\""),
        "{xml}"
    );
    assert!(
        xml.contains("<testsuite name=\"debian-pass.yaml\" tests=\"16\" failures=\"0\""),
        "{xml}"
    );

    // Text: one line per test, then the summary.
    let o = run(&[image, "-c", pass.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(
        t.contains("PASS  Command Test: setup changes are seen by the command ("),
        "{t}"
    );
    assert!(
        t.contains("Passed:   16\nFailed:   0\nTotal:    16\n"),
        "{t}"
    );
    assert!(t.ends_with("\nPASS\n"), "{t}");

    // Errors running the tests are 125: an invalid config (named with its line and field,
    // before the image is looked at) and a missing image.
    let bad = s.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "schemaVersion: \"2.0.0\"\ncommandTests:\n  - name: typo\n    comand: ls\n",
    )
    .unwrap();
    let o = run(&["no-such-image", "-c", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(125), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("bad.yaml:4: commandTests[0].comand: unknown field"),
        "{}",
        text(&o)
    );
    let v1 = s.path().join("v1.yaml");
    std::fs::write(&v1, "schemaVersion: \"1.0.0\"\n").unwrap();
    let o = run(&[image, "-c", v1.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(125), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unsupported schema version '1.0.0'"),
        "{}",
        text(&o)
    );
    let o = run(&["no-such-image", "-c", pass.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(125), "{}", text(&o));

    // SIGINT stops the run during a command (which is killed, not sent the signal: a sleeping
    // PID 1 would ignore it), exits 130 and leaves no container.
    let slow = s.path().join("slow.yaml");
    let mut y = String::from("schemaVersion: \"2.0.0\"\ncommandTests:\n");
    for i in 0..20 {
        y.push_str(&format!(
            "  - name: sleep {i}\n    command: sleep\n    args: [\"0.5\"]\n"
        ));
    }
    std::fs::write(&slow, y).unwrap();
    let start = std::time::Instant::now();
    let child = imgbuild(s.path())
        .args(["test", image, "-c", slow.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1800));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    assert!(
        start.elapsed() < std::time::Duration::from_secs(8),
        "{}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("interrupted by SIGINT"),
        "{}",
        text(&o)
    );

    // Every container made for the tests is gone.
    assert_eq!(store_containers(&s.path().join("store")), 0);
}

/// `build --test`: a passing config lets the build finish (and load); a failing one fails the
/// command, keeps the result in the target directory and loads nothing.
#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
#[cfg_attr(
    not(imgbuild_has_host_mirror),
    ignore = "needs a Debian archive in the host's apt sources"
)]
fn build_test_gates_the_build() {
    let test = "build_test_gates_the_build";
    let Some(b) = minimal_build(test) else {
        return;
    };
    let s = scratch("structure-build-test");
    // A copy of the shared result, so that the build is reused (same inputs) and the shared
    // target is never touched.
    let target = s.path().join("out");
    ok(Command::new("cp").arg("-a").arg(&b.target).arg(&target));
    let build = |config: &str, load: bool| {
        let mut c = imgbuild(s.path());
        c.current_dir(&b.dir)
            .arg("build")
            .arg(crate::support::description("debian-minimal"))
            .arg("--target-dir")
            .arg(&target)
            .arg("--cache-dir")
            .arg(&b.cache)
            .arg("--test")
            .arg(fixture(config));
        if load {
            c.arg("--load");
        }
        c.output().unwrap()
    };
    let o = build("debian-fail.yaml", true);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("structure tests failed"), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("FAIL  Metadata Test"),
        "{}",
        text(&o)
    );
    // The result stays; nothing was loaded; no test store is left beside it.
    only_file_with_suffix(&target, ".docker.tar");
    let store = s.path().join("store");
    if store.exists() {
        let st = imgbuild::storage::Store::open(&imgbuild::storage::StoreOptions {
            root: store.clone(),
            driver: None,
        })
        .unwrap();
        assert!(st.images().unwrap().is_empty(), "a failed image was loaded");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".imgbuild-test-")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let o = build("debian-pass.yaml", true);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Total:    16\n"),
        "{}",
        text(&o)
    );
    let st = imgbuild::storage::Store::open(&imgbuild::storage::StoreOptions {
        root: store,
        driver: None,
    })
    .unwrap();
    assert_eq!(st.images().unwrap().len(), 1);
}
