//! The store and container commands as podman users know them: `images`/`inspect` formats and
//! templates, all-or-nothing `rmi` with `--force`/`--all`, `save -o -`, `version`, shell
//! completions and man pages. The store tests use the vfs driver, which needs root.

use crate::support::storage::{TestImage, base_layer, other_top_layer, top_layer};
use crate::support::{have, root_or_skip};
use imgbuild::storage::{ConfinedApplier, DriverKind, Store, StoreOptions};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn open(root: &Path) -> Store {
    Store::open(&StoreOptions {
        root: root.to_path_buf(),
        driver: Some(DriverKind::Vfs),
    })
    .unwrap()
}

fn imgbuild(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imgbuild"))
        .args(args)
        .arg("--storage-root")
        .arg(root)
        .env_remove("IMGBUILD_STORAGE_ROOT")
        .env_remove("IMGBUILD_STORAGE_DRIVER")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn plain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imgbuild"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Three images `a`, `b`, `c` (`b` sharing `a`'s base), loaded into a fresh vfs store.
fn three_images(root: &Path) -> Vec<TestImage> {
    let store = open(root);
    let imgs = vec![
        TestImage::new(&[base_layer(), top_layer()], "a"),
        TestImage::new(&[base_layer(), other_top_layer()], "b"),
        TestImage::new(&[base_layer()], "c"),
    ];
    for (img, name) in imgs.iter().zip(["t/a:1", "t/b:1", "t/c:1"]) {
        store
            .load(img.input(), &[name.into()], &ConfinedApplier)
            .unwrap();
    }
    imgs
}

fn tags(root: &Path) -> Vec<String> {
    let mut t: Vec<String> = open(root)
        .images()
        .unwrap()
        .into_iter()
        .flat_map(|i| i.tags)
        .collect();
    t.sort();
    t
}

/// The files of the store, to show a refused command changed nothing.
fn store_files(root: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap().path().to_path_buf())
        .filter(|p| !p.ends_with("storage.lock"))
        .collect();
    v.sort();
    v
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn rmi_is_all_or_nothing() {
    if !root_or_skip("rmi_is_all_or_nothing") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let imgs = three_images(root);
    let before = store_files(root);

    // One missing name: nothing is removed, the missing one is named, exit 1 as podman.
    let o = imgbuild(root, &["rmi", "t/a:1", "t/b:1", "t/c:1", "nosuch"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert_eq!(out(&o), "");
    assert!(err(&o).contains("no such image: nosuch"), "{}", err(&o));
    assert!(err(&o).contains("nothing was removed"), "{}", err(&o));
    assert_eq!(tags(root), ["t/a:1", "t/b:1", "t/c:1"]);
    assert_eq!(store_files(root), before);

    // By id, an image with two tags needs --force (exit 125, as podman); by tag it is untagged.
    open(root).tag("t/a:1", "t/a:2").unwrap();
    let a_id = imgs[0].id();
    let o = imgbuild(root, &["rmi", &a_id[7..19]]);
    assert_eq!(o.status.code(), Some(125), "{}", err(&o));
    assert!(
        err(&o).contains("several tags (t/a:1, t/a:2)"),
        "{}",
        err(&o)
    );
    let o = imgbuild(root, &["rmi", "t/a:2"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), "Untagged: t/a:2\n");
    open(root).tag("t/a:1", "t/a:2").unwrap();
    let o = imgbuild(root, &["rmi", "--force", &a_id[7..19]]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        out(&o),
        format!(
            "Untagged: t/a:1\nUntagged: t/a:2\nDeleted: {}\n",
            &a_id[7..]
        )
    );

    // An image a container was made from: refused (exit 2) unless --force, which removes the
    // container's root tree as well.
    let store = open(root);
    let c = store.create_container("t/b:1").unwrap();
    assert!(c.rootfs.exists());
    let o = imgbuild(root, &["rmi", "t/b:1", "t/c:1"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("in use by container"), "{}", err(&o));
    assert_eq!(tags(root), ["t/b:1", "t/c:1"]);
    let o = imgbuild(root, &["rmi", "-f", "t/b:1"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(!c.rootfs.exists());
    assert!(open(root).containers().unwrap().is_empty());

    // --all removes the rest, and the store is empty.
    let o = imgbuild(root, &["rmi", "--all"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        out(&o),
        format!("Untagged: t/c:1\nDeleted: {}\n", &imgs[2].id()[7..])
    );
    for d in [
        "images",
        "layers",
        "blobs/sha256",
        "vfs/layers",
        "containers",
    ] {
        assert_eq!(std::fs::read_dir(root.join(d)).unwrap().count(), 0, "{d}");
    }
    // `rmi` with neither names nor --all is a usage error.
    assert_eq!(imgbuild(root, &["rmi"]).status.code(), Some(2));
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn images_ps_and_inspect_formats() {
    if !root_or_skip("images_ps_and_inspect_formats") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let imgs = three_images(root);
    let id = |i: usize| imgs[i].id()[7..19].to_string();

    let o = imgbuild(root, &["images"]);
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    let lines: Vec<&str> = text.lines().collect();
    // Column starts as podman's tabwriter puts them; sizes and times in podman's words.
    assert!(
        lines[0].starts_with("REPOSITORY  TAG         IMAGE ID      CREATED"),
        "{text}"
    );
    assert!(
        lines[1].starts_with(&format!("t/a         1           {}  ", id(0))),
        "{text}"
    );
    assert!(
        lines[1].ends_with(" ago") || lines[1].contains(" ago  "),
        "{text}"
    );
    assert!(
        regex::Regex::new(r" [0-9.]+ (B|kB)$")
            .unwrap()
            .is_match(lines[1]),
        "{text}"
    );

    let o = imgbuild(
        root,
        &[
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        out(&o).starts_with(&format!("t/a:1 {} ", id(0))),
        "{}",
        out(&o)
    );
    assert_eq!(out(&o).lines().count(), 3);

    let o = imgbuild(root, &["images", "--format", "table {{.ID}}\\t{{.Names}}"]);
    assert_eq!(
        out(&o).lines().take(2).collect::<Vec<_>>(),
        ["IMAGE ID      NAMES", &format!("{}  [t/a:1]", id(0))]
    );
    let o = imgbuild(root, &["images", "--noheading"]);
    assert!(out(&o).starts_with("t/a "), "{}", out(&o));
    let o = imgbuild(root, &["images", "-q"]);
    assert_eq!(out(&o), format!("{}\n{}\n{}\n", id(0), id(1), id(2)));
    let o = imgbuild(root, &["images", "--format", "{{json .}}"]);
    let first: serde_json::Value = serde_json::from_str(out(&o).lines().next().unwrap()).unwrap();
    assert_eq!(first["Repository"], "t/a");
    let o = imgbuild(root, &["images", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["Id"], &imgs[0].id()[7..]);
    assert_eq!(v[0]["Names"], serde_json::json!(["t/a:1"]));

    // An unknown field is an error naming it, with nothing on stdout.
    let o = imgbuild(root, &["images", "--format", "{{.Nope}}"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(out(&o), "");
    assert!(err(&o).contains("Nope"), "{}", err(&o));

    let o = imgbuild(
        root,
        &["inspect", "--format", "{{.Config.Cmd}} {{.Os}}", "t/b:1"],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), "[/bin/sh] linux\n");
    let o = imgbuild(root, &["inspect", "t/b:1", "t/c:1"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["Config"]["Labels"]["test"], "b");
    assert_eq!(v[1]["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    assert_eq!(v[1]["GraphDriver"]["Name"], "vfs");

    // No containers: ps prints podman's header only.
    let o = imgbuild(root, &["ps", "-a"]);
    assert_eq!(
        out(&o),
        "CONTAINER ID  IMAGE       COMMAND     CREATED     STATUS      PORTS       NAMES\n"
    );
    assert_eq!(
        out(&imgbuild(root, &["ps", "-a", "--format", "json"])),
        "[]\n"
    );
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn save_to_stdout_equals_save_to_file() {
    if !root_or_skip("save_to_stdout_equals_save_to_file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    three_images(&root);
    let file = dir.path().join("a.tar");
    for format in ["docker-archive", "oci-archive"] {
        let o = imgbuild(
            &root,
            &[
                "save",
                "t/a:1",
                "-o",
                file.to_str().unwrap(),
                "--format",
                format,
            ],
        );
        assert!(o.status.success(), "{}", err(&o));
        let piped = imgbuild(&root, &["save", "t/a:1", "-o", "-", "--format", format]);
        assert!(piped.status.success(), "{}", err(&piped));
        assert_eq!(piped.stdout, std::fs::read(&file).unwrap(), "{format}");
        // No -o at all: standard output too.
        let piped = imgbuild(&root, &["save", "t/a:1", "--format", format]);
        assert_eq!(piped.stdout, std::fs::read(&file).unwrap(), "{format}");
    }
    // No file named `-` was made, here or in the store's directory.
    assert!(!Path::new("-").exists() && !dir.path().join("-").exists());

    // A terminal on stdout is refused before any work, as podman does.
    let pty = nix::pty::openpty(None, None).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_imgbuild"))
        .args(["save", "t/a:1", "--storage-root"])
        .arg(&root)
        .stdout(Stdio::from(pty.slave))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("refusing to write an archive to a terminal"),
        "{}",
        err(&o)
    );
}

#[test]
fn version_names_the_features() {
    let o = plain(&["version"]);
    assert!(o.status.success());
    let text = out(&o);
    for want in [
        "imgbuild ",
        "image types:",
        "docker, oci, tbz",
        "archive compression:",
        "zstd",
        "storage drivers:",
        "this kernel: vfs",
        "package managers:",
        "apt",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
}

#[test]
fn list_profiles_says_when_there_are_none() {
    // The shipped minimal description without its profiles.
    let xml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("descriptions/debian-minimal/config.xml"),
    )
    .unwrap();
    let xml = regex::Regex::new(r"(?s)<profiles>.*</profiles>")
        .unwrap()
        .replace(&xml, "");
    let xml = regex::Regex::new(r#" profiles="[^"]*""#)
        .unwrap()
        .replace_all(&xml, "");
    let (_dir, desc) = dir_with("config.xml", xml.as_bytes());
    let o = plain(&["info", desc.to_str().unwrap(), "--list-profiles"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), "");
    assert!(err(&o).contains("defines no profiles"), "{}", err(&o));
}

#[test]
fn compress_default_is_shown_once() {
    let help = out(&plain(&["build", "--help"]));
    let line = help
        .lines()
        .skip_while(|l| !l.contains("--compress"))
        .take_while(|l| !l.trim_start().starts_with("--") || l.contains("--compress"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(line.matches("default").count(), 1, "{line}");
}

#[test]
fn completion_scripts_are_valid() {
    let bash = plain(&["completion", "bash"]);
    assert!(bash.status.success());
    let script = dir_with("imgbuild.bash", &bash.stdout);
    let o = Command::new("bash")
        .arg("-n")
        .arg(script.1.as_path())
        .output()
        .unwrap();
    assert!(o.status.success(), "bash -n: {}", err(&o));
    // Sourcing it registers the completion function.
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p imgbuild",
            script.1.display()
        ))
        .output()
        .unwrap();
    assert!(
        o.status.success() && out(&o).contains("imgbuild"),
        "{}",
        err(&o)
    );
    for shell in ["zsh", "fish"] {
        let o = plain(&["completion", shell]);
        assert!(o.status.success());
        let text = out(&o);
        for sub in ["images", "rmi", "build", "completion"] {
            assert!(text.contains(sub), "{shell} script lacks {sub}");
        }
        // The shell itself checks the syntax where it is installed.
        if have(shell) {
            let f = dir_with("imgbuild.sh", &o.stdout);
            let c = Command::new(shell)
                .arg("-n")
                .arg(f.1.as_path())
                .output()
                .unwrap();
            assert!(c.status.success(), "{shell} -n: {}", err(&c));
        }
    }
    let o = plain(&["completion", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
}

fn dir_with(name: &str, bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    (d, p)
}

#[test]
fn man_pages_render() {
    let d = tempfile::tempdir().unwrap();
    let o = plain(&["generate-man", d.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    for page in [
        "imgbuild",
        "imgbuild-build",
        "imgbuild-images",
        "imgbuild-rmi",
        "imgbuild-run",
    ] {
        assert!(d.path().join(format!("{page}.1")).is_file(), "{page}");
    }
    // Hidden commands get no page.
    assert!(!d.path().join("imgbuild-sandbox-run.1").exists());
    if !have("groff") {
        crate::support::skip(format_args!("man_pages_render: groff is not installed"));
        return;
    }
    // Every page renders without a warning (`-k`: the help texts' UTF-8 through preconv, as
    // man does).
    for page in std::fs::read_dir(d.path()).unwrap() {
        let page = page.unwrap().path();
        let o = Command::new("groff")
            .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
            .arg(&page)
            .output()
            .unwrap();
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "{}: {}",
            page.display(),
            err(&o)
        );
    }
    let o = Command::new("groff")
        .args(["-man", "-Tutf8"])
        .arg(d.path().join("imgbuild-rmi.1"))
        .output()
        .unwrap();
    // Bold and underline are overstrikes (`X\bX`): keep the last character of each.
    let text = regex::Regex::new(".\x08")
        .unwrap()
        .replace_all(&out(&o), "")
        .into_owned();
    assert!(
        text.contains("imgbuild rmi [-f|--force] [-a|--all]"),
        "{text}"
    );
}

/// `rmi` of an image a kept container (a real `run`) was made from: refused with podman's
/// exit code 2 and nothing changed; `--force` removes the container (record and writable
/// layer) and the image; `ps` then lists nothing.
#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn rmi_force_removes_containers_of_the_image() {
    use crate::support::runtime::{Fixture, IMAGE};
    let Some(f) = Fixture::new("rmi_force_removes_containers_of_the_image", DriverKind::Vfs) else {
        return;
    };
    let o = f.imgbuild(&["run", "--name", "kept", IMAGE, "true"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = f.imgbuild(&["rmi", IMAGE]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("in use by container"), "{}", err(&o));
    let o = f.imgbuild(&["ps", "-a", "--format", "{{.Names}} {{.State}}"]);
    assert_eq!(out(&o), "kept exited\n");
    let o = f.imgbuild(&["rmi", "--force", IMAGE]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        out(&o).starts_with(&format!("Untagged: {IMAGE}\nDeleted: ")),
        "{}",
        out(&o)
    );
    assert_eq!(out(&f.imgbuild(&["ps", "-a", "-q"])), "");
    assert_eq!(out(&f.imgbuild(&["images", "-q"])), "");
    f.assert_clean();
}
