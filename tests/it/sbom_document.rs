//! The SPDX document of a small fake root: fields, relationships, determinism, and validation
//! with `pyspdxtools` (from the `spdx-tools` `PyPI` package) where it is installed.

use crate::support::skip;
use imgbuild::apt::lock::{LockFile, LockedPackage};
use imgbuild::rootfs::prepared::PreparedRoot;
use imgbuild::sbom::{self, ImageInfo};
use std::path::Path;
use std::process::Command;

const STATUS: &str = "\
Package: libc6
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u4
Depends: libgcc-s1

Package: libgcc-s1
Status: install ok installed
Architecture: amd64
Source: gcc-12 (12.2.0-14)
Version: 12.2.0-14
Depends: gcc-12-base (= 12.2.0-14), libc6 (>= 2.35)

Package: mawk
Status: install ok installed
Architecture: amd64
Version: 1.3.4.20200120-3.1
Provides: awk
Pre-Depends: libc6 (>= 2.34)

Package: base-files
Status: install ok installed
Architecture: amd64
Version: 12.4+deb12u5
Depends: awk | original-awk

Package: removed-thing
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0
";

fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

fn fake_root(dir: &Path) {
    write(&dir.join("var/lib/dpkg/status"), STATUS.as_bytes());
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sbom_fixture");
    for (pkg, file) in [
        ("libc6", "dpkg.copyright"),
        ("libgcc-s1", "zlib1g.copyright"),
        ("mawk", "tzdata.copyright"),
        ("base-files", "base-files.copyright"),
    ] {
        let text = std::fs::read(fixtures.join(file)).unwrap();
        write(&dir.join(format!("usr/share/doc/{pkg}/copyright")), &text);
    }
    let lock = LockFile::new(
        "sha256:00".into(),
        vec![LockedPackage {
            name: "libc6".into(),
            version: "2.36-9+deb12u4".into(),
            architecture: "amd64".into(),
            repository: "debian".into(),
            filename: "pool/main/g/glibc/libc6.deb".into(),
            sha256: "ab".repeat(32),
            size: 1,
            phase: "bootstrap".into(),
        }],
    );
    PreparedRoot::new(dir).write_lock(&lock).unwrap();
}

const DIGEST: &str = "sha256:cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd";

fn info(digest: Option<&str>) -> ImageInfo {
    ImageInfo {
        name: "debian-minimal".into(),
        version: "1.0.0".into(),
        source_date_epoch: 1_700_000_000,
        digest: digest.map(String::from),
    }
}

#[test]
fn document_lists_installed_packages_with_relationships() {
    let tmp = tempfile::tempdir().unwrap();
    fake_root(tmp.path());
    let out = tmp.path().join("out.spdx.json");
    let bytes = sbom::write(tmp.path(), &info(Some(DIGEST)), &out).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert_eq!(doc["creationInfo"]["created"], "2023-11-14T22:13:20Z");
    let pkgs = doc["packages"].as_array().unwrap();
    let names: Vec<&str> = pkgs.iter().map(|p| p["name"].as_str().unwrap()).collect();
    // The image first, then the installed packages sorted; removed-thing is not installed.
    assert_eq!(
        names,
        ["debian-minimal", "base-files", "libc6", "libgcc-s1", "mawk"]
    );
    let get = |n: &str| pkgs.iter().find(|p| p["name"] == n).unwrap();
    let libc = get("libc6");
    assert_eq!(libc["checksums"][0]["checksumValue"], "ab".repeat(32));
    assert_eq!(
        libc["externalRefs"][0]["referenceLocator"],
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64"
    );
    assert!(
        libc["sourceInfo"]
            .as_str()
            .unwrap()
            .contains("glibc version 2.36-9+deb12u4")
    );
    assert!(
        libc["licenseDeclared"]
            .as_str()
            .unwrap()
            .contains("GPL-2.0-or-later")
    );
    assert!(
        get("libgcc-s1")["sourceInfo"]
            .as_str()
            .unwrap()
            .contains("gcc-12 version 12.2.0-14")
    );
    assert!(get("libgcc-s1").get("checksums").is_none());
    assert_eq!(get("base-files")["licenseDeclared"], "NOASSERTION");
    assert_eq!(get("mawk")["licenseDeclared"], "LicenseRef-public-domain");
    let rel: Vec<(String, String, String)> = doc["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let id = |k: &str| {
                let v = r[k].as_str().unwrap();
                pkgs.iter().find(|p| p["SPDXID"] == v).map_or_else(
                    || v.to_string(),
                    |p| p["name"].as_str().unwrap().to_string(),
                )
            };
            (
                id("spdxElementId"),
                r["relationshipType"].as_str().unwrap().to_string(),
                id("relatedSpdxElement"),
            )
        })
        .collect();
    let has = |a: &str, t: &str, b: &str| rel.contains(&(a.into(), t.into(), b.into()));
    assert!(has("SPDXRef-DOCUMENT", "DESCRIBES", "debian-minimal"));
    assert!(has("debian-minimal", "CONTAINS", "mawk"));
    assert!(has("libgcc-s1", "DEPENDS_ON", "libc6"));
    // A virtual dependency resolves to its installed provider; gcc-12-base is not installed.
    assert!(has("base-files", "DEPENDS_ON", "mawk"));
    assert!(has("mawk", "DEPENDS_ON", "libc6"));
    assert!(!rel.iter().any(|(_, _, b)| b.contains("gcc-12-base")));

    // Same inputs, same bytes; another digest, another namespace.
    let again = sbom::write(tmp.path(), &info(Some(DIGEST)), &out).unwrap();
    assert_eq!(bytes, again);
    let other = sbom::to_bytes(&sbom::document(
        &info(None),
        &sbom::collect(tmp.path()).unwrap(),
    ));
    let other: serde_json::Value = serde_json::from_slice(&other).unwrap();
    assert_ne!(other["documentNamespace"], doc["documentNamespace"]);
}

#[test]
fn document_validates_with_pyspdxtools() {
    if Command::new("pyspdxtools").arg("--help").output().is_err() {
        skip(format_args!(
            "document_validates_with_pyspdxtools needs pyspdxtools (pip install spdx-tools)"
        ));
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    fake_root(tmp.path());
    let out = tmp.path().join("image.spdx.json");
    sbom::write(tmp.path(), &info(Some(DIGEST)), &out).unwrap();
    let r = Command::new("pyspdxtools")
        .arg("-i")
        .arg(&out)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(
        r.status.success(),
        "pyspdxtools rejected the document:\n{text}"
    );
    assert!(!text.contains("ValidationMessage"), "{text}");
}

#[test]
fn missing_status_names_its_path() {
    let tmp = tempfile::tempdir().unwrap();
    let err = sbom::collect(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("var/lib/dpkg/status"), "{err}");
}
