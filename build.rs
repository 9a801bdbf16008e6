//! Marks what the test machine has, so that a test whose need is missing is reported by
//! `cargo test` as ignored (with the reason) instead of passing without running; `.ci/run`
//! fails when any test was ignored, so in CI a missing need fails the run.
//!
//! - `cfg(imgbuild_tests_as_root)`: built as root. Rebuilt when the user changes (sudo and su
//!   change `USER` and `HOME`).
//! - `cfg(imgbuild_has_cgroup2)`: a cgroup2 hierarchy is mounted.
//! - `cfg(imgbuild_has_archive_keyring)`: Debian's archive keyring (`debian-archive-keyring`)
//!   is installed. Rebuilt when `/usr/share/keyrings` changes.
//! - `cfg(imgbuild_has_registry_tools)`: the registry tests' tools are installed
//!   (`docker-registry`, `skopeo`, `openssl`, `podman`). Rebuilt when `/usr/bin` changes.
//! - `cfg(imgbuild_has_rpm_tools)`: the RPM fixture's builders and peers are installed
//!   (`rpmbuild`, `createrepo_c`, `zypper`, `dnf`), and busybox-static's `/bin/busybox`, which
//!   the fixture repackages. Rebuilt when `/usr/bin` or that file changes.
//! - `cfg(imgbuild_has_host_mirror)`: the host's apt sources name an archive (a deb822 `URIs:`
//!   or a one-line `deb` entry), which the tests that build Debian roots download from.
//!   Rebuilt when the sources change. Whether it answers is only known when a test runs: one
//!   that cannot reach it prints `SKIP:` outside CI and fails in CI.
//! - `cfg(imgbuild_has_qemu_user)`: qemu-user-static's aarch64 emulator and its `binfmt_misc`
//!   registration line are installed (the multi-architecture tests register it while they run).
//!
//! Also `IMGBUILD_SOURCE_DIGEST`: a sha256 over the source imgbuild is compiled from (`src/`,
//! `Cargo.toml`, `Cargo.lock`, `build.rs`; relative paths and contents, sorted), the identity
//! of the program in the inputs key (`reuse::tool_identity`). It names no path or time of the
//! machine, so the same source gives the same key anywhere. Rebuilt when those change.

/// The bookworm archive key the keyring test reads.
const ARCHIVE_KEYRING: &str = "/usr/share/keyrings/debian-archive-bookworm-automatic.gpg";

/// What the registry tests run (all from Debian packages, in `/usr/bin`).
const REGISTRY_TOOLS: [&str; 4] = ["docker-registry", "skopeo", "openssl", "podman"];

/// What the RPM fixture builds with and compares against (Debian packages, in `/usr/bin`).
const RPM_TOOLS: [&str; 4] = ["rpmbuild", "createrepo_c", "zypper", "dnf"];

/// qemu-user-static's aarch64 emulator and the `binfmt_misc` line that registers it.
const QEMU_AARCH64: [&str; 2] = [
    "/usr/bin/qemu-aarch64-static",
    "/usr/lib/binfmt.d/qemu-aarch64.conf",
];

/// Where apt keeps the indexes `apt-get update` downloaded.
const APT_LISTS: &str = "/var/lib/apt/lists";

/// The static busybox the RPM fixture repackages (Debian's `busybox-static`).
const RPM_BUSYBOX: &str = "/bin/busybox";

fn main() {
    for cfg in [
        "imgbuild_tests_as_root",
        "imgbuild_has_cgroup2",
        "imgbuild_has_archive_keyring",
        "imgbuild_has_registry_tools",
        "imgbuild_has_rpm_tools",
        "imgbuild_has_bookworm_apt_lists",
        "imgbuild_has_qemu_user",
        "imgbuild_has_host_mirror",
    ] {
        println!("cargo:rustc-check-cfg=cfg({cfg})");
    }
    println!("cargo:rerun-if-changed=build.rs");
    source_digest();
    println!("cargo:rerun-if-env-changed=USER");
    println!("cargo:rerun-if-env-changed=HOME");
    if std::path::Path::new("/usr/share/keyrings").is_dir() {
        println!("cargo:rerun-if-changed=/usr/share/keyrings");
    }
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    if root {
        println!("cargo:rustc-cfg=imgbuild_tests_as_root");
    }
    // mountinfo: "… - FSTYPE SOURCE OPTIONS"
    let cgroup2 = std::fs::read_to_string("/proc/self/mountinfo")
        .is_ok_and(|s| s.lines().any(|l| l.contains(" - cgroup2 ")));
    if cgroup2 {
        println!("cargo:rustc-cfg=imgbuild_has_cgroup2");
    }
    if std::path::Path::new(ARCHIVE_KEYRING).is_file() {
        println!("cargo:rustc-cfg=imgbuild_has_archive_keyring");
    }
    println!("cargo:rerun-if-changed=/usr/bin");
    if REGISTRY_TOOLS
        .iter()
        .all(|t| std::path::Path::new("/usr/bin").join(t).is_file())
    {
        println!("cargo:rustc-cfg=imgbuild_has_registry_tools");
    }
    if QEMU_AARCH64
        .iter()
        .all(|p| std::path::Path::new(p).is_file())
    {
        println!("cargo:rustc-cfg=imgbuild_has_qemu_user");
    }
    println!("cargo:rerun-if-changed={RPM_BUSYBOX}");
    if RPM_TOOLS
        .iter()
        .all(|t| std::path::Path::new("/usr/bin").join(t).is_file())
        && std::path::Path::new(RPM_BUSYBOX).is_file()
    {
        println!("cargo:rustc-cfg=imgbuild_has_rpm_tools");
    }
    for f in ["/etc/apt/sources.list", "/etc/apt/sources.list.d"] {
        if std::path::Path::new(f).exists() {
            println!("cargo:rerun-if-changed={f}");
        }
    }
    if host_sources_name_an_archive() {
        println!("cargo:rustc-cfg=imgbuild_has_host_mirror");
    }
    // The host's apt lists the solver tests resolve over (`apt-get update` writes them).
    println!("cargo:rerun-if-changed={APT_LISTS}");
    let bookworm_lists = std::fs::read_dir(APT_LISTS).is_ok_and(|d| {
        d.flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .contains("_dists_bookworm_main_binary-amd64_Packages")
        })
    });
    if bookworm_lists {
        println!("cargo:rustc-cfg=imgbuild_has_bookworm_apt_lists");
    }
}

/// Whether `/etc/apt/sources.list` or a file of `sources.list.d` names an archive.
fn host_sources_name_an_archive() -> bool {
    let mut files = vec![std::path::PathBuf::from("/etc/apt/sources.list")];
    if let Ok(d) = std::fs::read_dir("/etc/apt/sources.list.d") {
        files.extend(d.flatten().map(|e| e.path()));
    }
    files.iter().any(|f| {
        std::fs::read_to_string(f).is_ok_and(|t| {
            t.lines().map(str::trim).any(|l| {
                l.starts_with("URIs:") && l.len() > "URIs:".len()
                    || l.split_whitespace().next() == Some("deb")
            })
        })
    })
}

/// The files whose content makes imgbuild what it is, as paths relative to the package root.
const SOURCE_ROOTS: [&str; 4] = ["src", "Cargo.toml", "Cargo.lock", "build.rs"];

/// Sets `IMGBUILD_SOURCE_DIGEST` to `sha256:<hex>` over every file of [`SOURCE_ROOTS`]: for
/// each, sorted by relative path, the path and the content, each length-prefixed.
fn source_digest() {
    use sha2::{Digest, Sha256};
    let root = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let mut files = Vec::new();
    for r in SOURCE_ROOTS {
        println!("cargo:rerun-if-changed={r}");
        collect(&root, std::path::Path::new(r), &mut files);
    }
    files.sort();
    let mut h = Sha256::new();
    for rel in &files {
        let data = std::fs::read(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        for part in [rel.as_bytes(), &data] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
    }
    let hex = h.finalize().iter().fold(String::new(), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    });
    println!("cargo:rustc-env=IMGBUILD_SOURCE_DIGEST=sha256:{hex}");
}

/// The regular files at or under `rel` (relative to `root`), as `/`-separated relative paths.
fn collect(root: &std::path::Path, rel: &std::path::Path, out: &mut Vec<String>) {
    let path = root.join(rel);
    let Ok(meta) = std::fs::symlink_metadata(&path) else {
        return;
    };
    if meta.is_dir() {
        let entries =
            std::fs::read_dir(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for e in entries {
            let e = e.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            collect(root, &rel.join(e.file_name()), out);
        }
    } else if meta.is_file() {
        out.push(rel.to_string_lossy().into_owned());
    }
}
