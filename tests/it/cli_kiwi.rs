//! KIWI's command line as imgbuild aliases: `kiwi-ng`'s documented commands run with the
//! command renamed, with KIWI's result files (`kiwi.result.json`, bundle names, `.sha256`) and
//! exit codes (0 done, 1 failed, 2 bad usage).

use crate::support::build::{imgbuild, package_cache, preconditions};
use crate::support::{description, heavy, imgbuild_bin, scratch};
use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `imgbuild ARGS` to the end, with no inherited settings.
fn kiwi(args: &[&str]) -> Output {
    Command::new(imgbuild_bin())
        .args(args)
        .env_remove("IMGBUILD_CACHE_DIR")
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::null())
        .output()
        .expect("running imgbuild")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited, not killed")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn minimal() -> String {
    description("debian-minimal").display().to_string()
}

#[test]
fn typo_in_a_subcommand_suggests_the_right_one() {
    for (args, want) in [
        (&["system", "biuld"][..], "'build'"),
        (&["sytem", "build"][..], "'system'"),
        (&["result", "lst"][..], "'list'"),
        (&["imgae", "info"][..], "'image'"),
    ] {
        let o = kiwi(args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("similar subcommand") && e.contains(want),
            "{args:?}: {e}"
        );
    }
}

#[test]
fn usage_errors_exit_2_as_kiwi() {
    let t = scratch("kiwi-usage");
    let out = t.path().join("out");
    let out = out.to_str().unwrap();
    let d = minimal();
    for args in [
        // Required options missing.
        &["system", "build"][..],
        &["system", "build", "--description", &d],
        &["system", "prepare", "--description", &d],
        &["system", "create", "--target-dir", out],
        &["image", "info"],
        &["result", "list"],
        &["result", "bundle", "--target-dir", out, "--id", "1"],
        // Unknown options, before and after the subcommand.
        &[
            "--bogus",
            "system",
            "build",
            "--description",
            &d,
            "--target-dir",
            out,
        ],
        &[
            "system",
            "build",
            "--description",
            &d,
            "--target-dir",
            out,
            "--bogus",
        ],
    ] {
        let o = kiwi(args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
    }
    assert!(!Path::new(out).exists(), "nothing written");
}

#[test]
fn unsupported_kiwi_options_are_refused_by_name_before_any_work() {
    let t = scratch("kiwi-refused");
    let out = t.path().join("out");
    let out = out.to_str().unwrap();
    let d = minimal();
    let build = ["system", "build", "--description", &d, "--target-dir", out];
    for (extra, before, flag) in [
        (&["--set-type-attr", "a=b"][..], false, "--set-type-attr"),
        (
            &["--ignore-repos-used-for-build"],
            false,
            "--ignore-repos-used-for-build",
        ),
        (&["--set-repo-credentials", "u:p"], false, "credentials"),
        (&["--ca-cert", "/c.pem"], false, "--ca-cert"),
        (
            &["--set-release-version", "1"],
            false,
            "--set-release-version",
        ),
        (&["--logfile", "/tmp/kiwi.log"], true, "--logfile"),
        (&["--logsocket", "/tmp/s"], true, "--logsocket"),
        (&["--config", "/etc/kiwi.yml"], true, "--config"),
        (&["--setenv", "A=B"], true, "--setenv"),
    ] {
        let args: Vec<&str> = if before {
            extra.iter().chain(build.iter()).copied().collect()
        } else {
            build.iter().chain(extra.iter()).copied().collect()
        };
        let o = kiwi(&args);
        let e = stderr(&o);
        assert_eq!(code(&o), 2, "{args:?}: {e}");
        assert!(
            e.contains(flag) && e.contains("not supported"),
            "{args:?}: {e}"
        );
    }
    // Several at once: every one named in the one error.
    let mut args = build.to_vec();
    args.extend(["--ignore-repos-used-for-build", "--set-type-attr", "a=b"]);
    let e = stderr(&kiwi(&args));
    assert!(
        e.contains("--ignore-repos-used-for-build") && e.contains("--set-type-attr"),
        "{e}"
    );
    for (args, flag) in [
        (
            &["image", "info", "--description", &d, "--print-toml"][..],
            "--print-toml",
        ),
        (
            &[
                "system",
                "prepare",
                "--description",
                &d,
                "--root",
                out,
                "--set-container-tag",
                "x",
            ],
            "--set-container-tag",
        ),
        (
            &[
                "result",
                "bundle",
                "--target-dir",
                out,
                "--id",
                "1",
                "--bundle-dir",
                "b",
                "--package-as-rpm",
            ],
            "--package-as-rpm",
        ),
    ] {
        let o = kiwi(args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(flag), "{args:?}: {}", stderr(&o));
    }
    assert!(!Path::new(out).exists(), "nothing written");
}

#[test]
fn global_selection_options_go_before_the_subcommand() {
    let d = minimal();
    // Before a native command: merged with its own, a disagreement refused.
    let o = kiwi(&["--type", "oci", "info", &d, "--type", "docker"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--type is given twice"),
        "{}",
        stderr(&o)
    );
    let o = kiwi(&["--profile", "bookworm", "info", &d]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["profiles"], serde_json::json!(["bookworm"]), "{json}");
    // A command that reads no description has no use for them.
    let o = kiwi(&["--profile", "bookworm", "images"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    // An unknown profile fails as KIWI's does: exit 1.
    let o = kiwi(&["--profile", "nosuch", "image", "info", "--description", &d]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
}

#[test]
fn image_info_prints_kiwis_json() {
    let d = minimal();
    let o = kiwi(&[
        "--profile",
        "bookworm",
        "--type",
        "docker",
        "--debug",
        "--color-output",
        "image",
        "info",
        "--description",
        &d,
        "--list-profiles",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // As kiwi-ng 11 prints it: keys sorted, four-space indent.
    assert_eq!(
        stdout(&o),
        "{\n    \"image\": \"debian-minimal\",\n    \"profile_names\": [\n        \"trixie\",\n        \"bookworm\"\n    ]\n}\n"
    );
    let o = kiwi(&["image", "info", "--description", &d, "--print-xml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.starts_with("{\n    \"image\": \"debian-minimal\"\n}\n"),
        "{text}"
    );
    assert!(
        text.contains("<image ") && text.contains("name=\"debian-minimal\""),
        "{text}"
    );
    // --kiwi-file names the file inside the --description directory: of two, the one named.
    let t = scratch("kiwi-file");
    let xml = fs::read_to_string(description("debian-minimal").join("config.xml")).unwrap();
    fs::write(t.path().join("a.kiwi"), &xml).unwrap();
    fs::write(
        t.path().join("b.kiwi"),
        xml.replace("name=\"debian-minimal\" display", "name=\"bee\" display"),
    )
    .unwrap();
    let dir = t.path().to_str().unwrap();
    let o = kiwi(&[
        "--kiwi-file",
        "b.kiwi",
        "image",
        "info",
        "--description",
        dir,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "{\n    \"image\": \"bee\"\n}\n");
    let o = kiwi(&[
        "--kiwi-file",
        "nosuch.kiwi",
        "image",
        "info",
        "--description",
        &d,
    ]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
}

#[test]
fn help_puts_global_options_under_their_own_heading() {
    let o = kiwi(&["--help"]);
    let h = stdout(&o);
    assert_eq!(code(&o), 0);
    for want in [
        "Global options:",
        "KIWI global options",
        "system",
        "image",
        "result",
    ] {
        assert!(h.contains(want), "{want}: {h}");
    }
    let o = kiwi(&["build", "--help"]);
    let h = stdout(&o);
    let (own, global) = h.split_once("Global options:").expect("a global heading");
    assert!(
        global.contains("--storage-root") && global.contains("--quiet"),
        "{h}"
    );
    assert!(
        !own.contains("--storage-root") && own.contains("--target-dir"),
        "{h}"
    );
    let o = kiwi(&["system", "build", "--help"]);
    let h = stdout(&o);
    for want in [
        "--description",
        "--target-dir",
        "--add-repo",
        "--set-repo",
        "--delete-package",
        "refuses",
    ] {
        assert!(h.contains(want), "{want}: {h}");
    }
}

/// A target directory as `imgbuild system build` leaves one, without building: `result.json`,
/// `kiwi.result.json` (absolute names, as KIWI writes them) and the files they list.
fn fake_result(target: &Path, bundle_format: Option<&str>) {
    fs::create_dir_all(target).unwrap();
    let abs = fs::canonicalize(target).unwrap();
    let stem = "img.x86_64-1.2.3";
    fs::write(target.join(format!("{stem}.docker.tar.xz")), b"image bytes").unwrap();
    fs::write(
        target.join(format!("{stem}.packages")),
        format!("bash|None|5.2|None|amd64|None|None\nsee {stem}.docker.tar.xz\n"),
    )
    .unwrap();
    fs::write(target.join(format!("{stem}.changes")), b"changes").unwrap();
    fs::write(
        target.join("result.json"),
        serde_json::json!({
            "name": "img", "tags": [], "manifest_digest": null, "config_digest": null,
            "layers": [], "source_date_epoch": 0, "files": []
        })
        .to_string(),
    )
    .unwrap();
    let entry = |name: &str, compress: bool, shasum: bool| {
        serde_json::json!({
            "compress": compress,
            "filename": abs.join(name).to_str().unwrap(),
            "shasum": shasum,
            "use_for_bundle": true
        })
    };
    let mut index = serde_json::json!({
        "container": entry(&format!("{stem}.docker.tar.xz"), false, true),
        "image_packages": entry(&format!("{stem}.packages"), false, false),
        "image_changes": entry(&format!("{stem}.changes"), true, false),
    });
    if let Some(p) = bundle_format {
        index["bundle_format"] = serde_json::json!({
            "pattern": p,
            "tags": {"A": "x86_64", "I": "", "M": "1", "N": "img", "P": "", "T": "docker",
                     "m": "2", "p": "3", "v": "1.2.3"}
        });
    }
    fs::write(target.join("kiwi.result.json"), index.to_string()).unwrap();
}

#[test]
fn result_list_and_bundle_as_kiwi() {
    let t = scratch("kiwi-result");
    let target = t.path().join("out");
    fake_result(&target, None);
    let tgt = target.to_str().unwrap();
    let abs = fs::canonicalize(&target).unwrap();
    let o = kiwi(&["result", "list", "--target-dir", tgt]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!(
            "Result files:\n--> container: {0}/img.x86_64-1.2.3.docker.tar.xz\n--> image_changes: {0}/img.x86_64-1.2.3.changes\n--> image_packages: {0}/img.x86_64-1.2.3.packages\n",
            abs.display()
        )
    );

    let bundle = t.path().join("bundle");
    let o = kiwi(&[
        "result",
        "bundle",
        "--target-dir",
        tgt,
        "--id",
        "Build42",
        "--bundle-dir",
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let mut names: Vec<String> = fs::read_dir(&bundle)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    // KIWI's names: the id after the version; compressed where marked; a .sha256 where marked.
    assert_eq!(
        names,
        [
            "img.x86_64-1.2.3-Build42.changes.xz",
            "img.x86_64-1.2.3-Build42.docker.tar.xz",
            "img.x86_64-1.2.3-Build42.docker.tar.xz.sha256",
            "img.x86_64-1.2.3-Build42.packages",
        ]
    );
    let sha =
        fs::read_to_string(bundle.join("img.x86_64-1.2.3-Build42.docker.tar.xz.sha256")).unwrap();
    use sha2::Digest;
    let want = hex::encode(sha2::Sha256::digest(b"image bytes"));
    assert_eq!(
        sha,
        format!("{want}  img.x86_64-1.2.3-Build42.docker.tar.xz\n")
    );
    // References to renamed files in text results follow the rename.
    let packages = fs::read_to_string(bundle.join("img.x86_64-1.2.3-Build42.packages")).unwrap();
    assert!(
        packages.contains("see img.x86_64-1.2.3-Build42.docker.tar.xz\n"),
        "{packages}"
    );
    let mut xz = liblzma::read::XzDecoder::new(
        fs::File::open(bundle.join("img.x86_64-1.2.3-Build42.changes.xz")).unwrap(),
    );
    let mut text = String::new();
    std::io::Read::read_to_string(&mut xz, &mut text).unwrap();
    assert_eq!(text, "changes");

    // Bundle into the target itself, a missing result: exit 1 as KIWI's.
    let o = kiwi(&[
        "result",
        "bundle",
        "--target-dir",
        tgt,
        "--id",
        "1",
        "--bundle-dir",
        tgt,
    ]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let none = t.path().join("none");
    let o = kiwi(&["result", "list", "--target-dir", none.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("kiwi.result.json"), "{}", stderr(&o));

    // A bundle format recorded by the description names the files by its tags.
    let t2 = t.path().join("out2");
    fake_result(&t2, Some("%N-%v-%A-%I"));
    let bundle2 = t.path().join("bundle2");
    let o = kiwi(&[
        "result",
        "bundle",
        "--target-dir",
        t2.to_str().unwrap(),
        "--id",
        "B1",
        "--bundle-dir",
        bundle2.to_str().unwrap(),
        "--no-compress",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    for n in [
        "img-1.2.3-x86_64-B1.docker.tar.xz",
        "img-1.2.3-x86_64-B1.changes",
        "img-1.2.3-x86_64-B1.packages",
    ] {
        assert!(bundle2.join(n).is_file(), "{n}");
    }
}

/// KIWI's documented container build, renamed: `kiwi-ng --profile P system build --description
/// DIR --target-dir OUT`, then `result list` and `result bundle`; and `system prepare` +
/// `system create`. Same result files as KIWI writes (`<name>.<arch>-<version>.docker.tar.xz`,
/// `.packages`, `kiwi.result.json`), exit 0.
#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn kiwi_container_build_commands_run_unchanged() {
    const TEST: &str = "kiwi_container_build_commands_run_unchanged";
    if preconditions(TEST, "bookworm").is_none() {
        return;
    }
    let _h = heavy();
    let t = scratch("kiwi-build");
    let out = t.path().join("out");
    let d = minimal();
    // The cache comes from the environment, so the command line is KIWI's own.
    let run = |args: &[&str]| {
        let o = imgbuild(t.path())
            .env("IMGBUILD_CACHE_DIR", package_cache())
            .current_dir(t.path())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
        o
    };
    let o = run(&[
        "--profile",
        "bookworm",
        "--type",
        "docker",
        "system",
        "build",
        "--description",
        &d,
        "--target-dir",
        out.to_str().unwrap(),
    ]);
    let stem = "debian-minimal.x86_64-12.0.0";
    let abs = fs::canonicalize(&out).unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("kiwi.result.json")).unwrap()).unwrap();
    let entry = |name: &str, shasum: bool| {
        serde_json::json!({
            "compress": false,
            "filename": abs.join(name).to_str().unwrap(),
            "shasum": shasum,
            "use_for_bundle": true
        })
    };
    assert_eq!(
        index,
        serde_json::json!({
            "container": entry(&format!("{stem}.docker.tar.xz"), true),
            "image_packages": entry(&format!("{stem}.packages"), false),
        }),
        "{}",
        stdout(&o)
    );
    for f in [format!("{stem}.docker.tar.xz"), format!("{stem}.packages")] {
        assert!(out.join(&f).is_file(), "{f}");
    }
    // Listed in result.json, so the ownership check and reuse still accept the directory.
    let rj = crate::support::build::result_json(&out);
    assert!(
        rj["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "kiwi.result.json"),
        "{rj}"
    );
    let again = run(&[
        "--profile",
        "bookworm",
        "system",
        "build",
        "--description",
        &d,
        "--target-dir",
        out.to_str().unwrap(),
    ]);
    assert!(stderr(&again).contains("up to date"), "{}", stderr(&again));

    let o = run(&["result", "list", "--target-dir", out.to_str().unwrap()]);
    assert!(stdout(&o).contains(&format!(
        "--> container: {}/{stem}.docker.tar.xz",
        abs.display()
    )));
    let bundle = t.path().join("bundle");
    run(&[
        "result",
        "bundle",
        "--target-dir",
        out.to_str().unwrap(),
        "--id",
        "Build42",
        "--bundle-dir",
        bundle.to_str().unwrap(),
    ]);
    let sha =
        fs::read_to_string(bundle.join(format!("{stem}-Build42.docker.tar.xz.sha256"))).unwrap();
    assert!(
        sha.ends_with(&format!("  {stem}-Build42.docker.tar.xz\n")),
        "{sha}"
    );
    assert!(bundle.join(format!("{stem}-Build42.packages")).is_file());

    // The package list resolved as KIWI's `image info --resolve-package-list` gives it.
    let o = run(&[
        "--profile",
        "bookworm",
        "image",
        "info",
        "--description",
        &d,
        "--resolve-package-list",
    ]);
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let resolved = &info["resolved-packages"];
    assert_eq!(
        resolved["bash"]["status"], "listed_in_kiwi_description",
        "{info}"
    );
    assert_eq!(
        resolved["libc6"]["status"], "added_by_dependency_solver",
        "{info}"
    );
    assert!(
        Path::new(resolved["libc6"]["source"].as_str().unwrap())
            .extension()
            .is_some_and(|e| e == "deb"),
        "{info}"
    );

    // prepare, then create from the root, as KIWI's two-step form.
    let root = t.path().join("root");
    let out2 = t.path().join("out2");
    run(&[
        "--profile",
        "bookworm",
        "system",
        "prepare",
        "--description",
        &d,
        "--root",
        root.to_str().unwrap(),
    ]);
    run(&[
        "system",
        "create",
        "--root",
        root.to_str().unwrap(),
        "--target-dir",
        out2.to_str().unwrap(),
        // imgbuild's option, to spare a second xz pass: the name shows it took effect.
        "--compress",
        "none",
    ]);
    let index2: serde_json::Value =
        serde_json::from_slice(&fs::read(out2.join("kiwi.result.json")).unwrap()).unwrap();
    assert_eq!(
        index2.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["container", "image_packages"]
    );
    assert!(out2.join(format!("{stem}.docker.tar")).is_file());
}
