//! The CLI as a new user meets it: `--help`, and the error output of typical mistakes, pinned as
//! snapshots (`tests/it/snapshots/`; after an intended change, rerun with `INSTA_UPDATE=always`
//! and review the diff). Beyond the snapshot every error is checked for what it must be: one
//! cause said once, the user's `file:line:col` where there is one, no temporary path, a non-zero
//! exit, and nothing left behind in the directory it ran in.

use crate::support::build::{can_build, imgbuild, package_cache};
use crate::support::{description, scratch};
use std::fs;
use std::path::Path;

/// A minimal valid description with `extra` in place of its packages and repository where it
/// says so, for the mistakes made inside a description.
fn xml(preferences: &str, body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<image schemaversion="8.5" name="mistake">
    <description type="system">
        <author>a</author>
        <contact>a@example.org</contact>
        <specification>s</specification>
    </description>
    <preferences>
        <version>1.0.0</version>
{preferences}
    </preferences>
{body}
</image>
"#
    )
}

const DOCKER: &str = r#"        <packagemanager>apt</packagemanager>
        <type image="docker"/>"#;

const REPO: &str = r#"    <repository type="apt-deb" distribution="trixie" components="main">
        <source path="apt-host:/"/>
    </repository>
    <packages type="bootstrap">
        <package name="bash"/>
    </packages>"#;

/// One mistake: the files it needs in the scratch directory, and the command line.
struct Mistake {
    name: &'static str,
    files: Vec<(&'static str, Vec<u8>)>,
    args: Vec<String>,
    env: Vec<(&'static str, &'static str)>,
    /// Whether the error points into a description (`desc/config.xml:L:C`).
    located: bool,
}

fn mistake(name: &'static str, args: &str) -> Mistake {
    Mistake {
        name,
        files: Vec::new(),
        args: args.split_whitespace().map(String::from).collect(),
        env: Vec::new(),
        located: false,
    }
}

impl Mistake {
    fn file(mut self, path: &'static str, content: impl Into<Vec<u8>>) -> Self {
        self.files.push((path, content.into()));
        self
    }

    /// The description `desc/config.xml`; the error must point into it.
    fn desc(self, content: String) -> Self {
        self.desc_bytes(content.into_bytes())
    }

    /// [`Mistake::desc`] of bytes that need not be UTF-8.
    fn desc_bytes(self, content: Vec<u8>) -> Self {
        let mut m = self.file("desc/config.xml", content);
        m.located = true;
        m
    }

    fn env(mut self, key: &'static str, value: &'static str) -> Self {
        self.env.push((key, value));
        self
    }
}

/// The mistakes that need neither root nor the network: they are refused before any work.
fn mistakes() -> Vec<Mistake> {
    let minimal = description("debian-minimal").display().to_string();
    let valid = xml(DOCKER, REPO);
    vec![
        mistake("build_missing_path", "build nosuch"),
        mistake("build_dir_without_description", "build empty").file("empty/README", "x"),
        mistake("build_ambiguous_dir", "build two")
            .file("two/a.kiwi", valid.clone())
            .file("two/b.kiwi", valid.clone()),
        mistake("type_typo", "build desc").desc(xml(
            r#"        <packagemanager>apt</packagemanager>
        <type image="dokcer"/>"#,
            REPO,
        )),
        mistake("unknown_element", "build desc").desc(xml(
            &format!("{DOCKER}\n        <timezon>UTC</timezon>"),
            REPO,
        )),
        mistake("missing_schemaversion", "build desc")
            .desc(xml(DOCKER, REPO).replace(r#" schemaversion="8.5""#, "")),
        mistake("unclosed_tag", "build desc").desc(xml(DOCKER, REPO).replace("</preferences>", "")),
        mistake("raw_lt_in_attribute", "validate desc").desc(xml(DOCKER, REPO).replace(
            "<author>a</author>",
            r#"<author maintainer="Team <team@example.org>">a</author>"#,
        )),
        mistake("package_manager_text_typo", "validate desc").desc(xml(
            r#"        <packagemanager>aptitude</packagemanager>
        <type image="docker"/>"#,
            REPO,
        )),
        mistake("unsupported_package_manager", "build desc").desc(xml(
            r#"        <packagemanager>zypper</packagemanager>
        <type image="docker"/>"#,
            r#"    <repository type="rpm-md">
        <source path="obs://openSUSE:Factory/standard"/>
    </repository>
    <packages type="bootstrap">
        <package name="bash"/>
    </packages>"#,
        )),
        mistake("no_repository", "build desc").desc(xml(
            DOCKER,
            r#"    <packages type="bootstrap">
        <package name="bash"/>
    </packages>"#,
        )),
        mistake("missing_include", "build desc").desc(xml(
            DOCKER,
            &format!("{REPO}\n    <include from=\"this://nosuch.xml\"/>"),
        )),
        mistake("invalid_utf8", "build desc").desc_bytes({
            let mut bytes = valid.clone().into_bytes();
            let at = valid.find("<author>a").unwrap() + "<author>".len();
            bytes[at] = 0xff;
            bytes
        }),
        mistake("yaml_bad_indent", "build desc.yaml").file(
            "desc.yaml",
            "image:\n  schemaversion: \"8.5\"\n  name: x\n   description: y\n",
        ),
        mistake("unknown_subcommand", "biuld desc"),
        mistake(
            "unknown_option",
            &format!("build {minimal} --targetdir out"),
        ),
        mistake(
            "type_not_in_description",
            &format!("build {minimal} --type tbz"),
        ),
        mistake("unknown_profile", &format!("build {minimal} --profile sid")),
        mistake("bad_add_repo", &format!("build {minimal} --add-repo ,,,")),
        mistake(
            "bad_target_arch",
            &format!("build {minimal} --target-arch sparc99"),
        ),
        mistake(
            "bad_tag",
            &format!("build {minimal} --set-container-tag a:b"),
        ),
        mistake(
            "bad_label",
            &format!("build {minimal} --add-container-label novalue"),
        ),
        mistake("bad_source_date_epoch", &format!("build {minimal}"))
            .env("SOURCE_DATE_EPOCH", "yesterday"),
        mistake("bad_compress", &format!("build {minimal} --compress rar")),
        mistake(
            "target_with_user_files",
            &format!("build {minimal} --target-dir mine"),
        )
        .file("mine/notes.txt", "my notes"),
        mistake(
            "create_unprepared_root",
            "create --root empty --target-dir out",
        )
        .file("empty/README", "x"),
        mistake("run_missing_image", "run nosuch:1 true"),
        mistake("rmi_missing", "rmi nosuch:1"),
        mistake("inspect_missing", "inspect nosuch:1"),
        mistake("load_missing_file", "load nosuch.tar"),
        mistake("load_not_an_archive", "load notes.txt").file("notes.txt", "not a tar"),
        mistake("unknown_storage_driver", "images --storage-driver zfs"),
        mistake("derived_from_missing_archive", "build desc").desc(xml(
            r#"        <packagemanager>apt</packagemanager>
        <type image="docker" derived_from="docker-archive:///nonexistent/base.tar"/>"#,
            REPO,
        )),
    ]
}

/// Runs `m` in a fresh directory; the snapshot text (with that directory shown as `[DIR]`)
/// after checking what every error must be.
fn run(m: &Mistake) -> String {
    let t = scratch(&format!("mistake-{}", m.name));
    let dir = t.path();
    for (path, content) in &m.files {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }
    let before = listing(dir);
    let mut cmd = imgbuild(dir);
    cmd.current_dir(dir)
        .args(&m.args)
        .env("IMGBUILD_CACHE_DIR", dir.join("cache"))
        // No short-name configuration: the host's could send a short name to a registry.
        .env("CONTAINERS_REGISTRIES_CONF", "/dev/null");
    for (k, v) in &m.env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let what = format!("{}: imgbuild {}:\n{err}", m.name, m.args.join(" "));
    assert!(!o.status.success(), "{what}");
    assert!(o.stdout.is_empty(), "{what}");
    // Stage lines may come first (a mistake found while resolving); the error ends the output.
    let first_error = err
        .lines()
        .position(|l| l.starts_with("imgbuild: error: ") || l.starts_with("error: "));
    assert!(first_error.is_some(), "{what}");
    assert!(
        err.lines()
            .take(first_error.unwrap_or(0))
            .all(|l| !l.contains("error") && !l.contains("warning")),
        "{what}"
    );
    for temporary in [".imgbuild-root", ".imgbuild-result", "/merged", "/.tmp"] {
        assert!(!err.contains(temporary), "a temporary path in {what}");
    }
    for line in err.lines() {
        let parts: Vec<&str> = line.split(": ").filter(|p| p.len() >= 8).collect();
        for (i, p) in parts.iter().enumerate() {
            assert!(!parts[i + 1..].contains(p), "{p:?} said twice in {what}");
        }
    }
    if m.located {
        assert!(err.contains("desc/config.xml:"), "no location in {what}");
    }
    // Nothing made: the store (opened by the store commands) is all that may appear.
    let after: Vec<String> = listing(dir)
        .into_iter()
        .filter(|p| !p.starts_with("store"))
        .collect();
    assert_eq!(after, before, "{what}");
    let text = format!(
        "$ imgbuild {}\nexit: {}\n{}",
        m.args.join(" "),
        o.status.code().map_or("signal".into(), |c| c.to_string()),
        done_in(&err)
    );
    // The places of this checkout and run, which differ between machines.
    text.replace(&package_cache().display().to_string(), "[CACHE]")
        .replace(&dir.display().to_string(), "[DIR]")
        .replace(&crate::support::repo_dir().display().to_string(), "[REPO]")
}

/// `text` with the times of stage lines (`… done in 1.2 s`) left out.
fn done_in(text: &str) -> String {
    text.lines()
        .map(|l| match l.find(" done in ") {
            Some(at) => format!("{} done in [T] s\n", &l[..at]),
            None => format!("{l}\n"),
        })
        .collect()
}

/// Every path under `dir`, relative, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .map(|e| {
            e.unwrap()
                .path()
                .strip_prefix(dir)
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn typical_mistakes_get_one_clear_error() {
    let all = mistakes();
    assert!(all.len() >= 30, "{} mistakes", all.len());
    for m in &all {
        insta::assert_snapshot!(m.name, run(m));
    }
}

/// A typo in a package is found in the repositories' indexes: root (the preflight) and the mirror.
#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn a_package_typo_gets_one_clear_error() {
    if !can_build("a_package_typo_gets_one_clear_error") {
        return;
    }
    let mut m = mistake("package_typo", "build desc").desc(xml(DOCKER, REPO).replace(
        r#"<package name="bash"/>"#,
        r#"<package name="bash"/>
        <package name="pyhton3-minimal"/>"#,
    ));
    m.args
        .extend(["--cache-dir".into(), package_cache().display().to_string()]);
    insta::assert_snapshot!(m.name, run(&m));
}

#[test]
fn help_is_stable() {
    for (name, args) in [
        ("help_top", &["--help"][..]),
        ("help_build", &["build", "--help"][..]),
        ("help_run", &["run", "--help"][..]),
        ("help_test", &["test", "--help"][..]),
    ] {
        let t = scratch(name);
        // No environment of the tests' own: clap shows the values of `env` options.
        let o = imgbuild(t.path())
            .env_remove("IMGBUILD_STORAGE_ROOT")
            .env_remove("IMGBUILD_STORAGE_DRIVER")
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success());
        insta::assert_snapshot!(name, String::from_utf8_lossy(&o.stdout));
    }
}
