//! An SPDX 2.3 JSON software bill of materials for a prepared root: every installed Debian package
//! with its version, architecture, source package, licenses and `.deb` sha256.
//!
//! Licenses come from `/usr/share/doc/<pkg>/copyright` when that file is in Debian's
//! machine-readable format (DEP-5): the distinct `License:` short names, combined with `AND`
//! (each field's own `or`/`and` kept). Names SPDX knows are written as SPDX ids, the rest as
//! `LicenseRef-` ids declared in `hasExtractedLicensingInfos`. Other copyright files give
//! `NOASSERTION`. The `.deb` sha256 comes from the lock file `prepare` keeps in
//! `<root>/image/packages.lock`; packages it does not list carry no checksum.
//!
//! The document is deterministic: packages sorted by name and architecture, SPDX ids derived from
//! them, `created` from `SOURCE_DATE_EPOCH`, the namespace from the image digest (or name, version
//! and epoch), and JSON object keys in sorted order.

use crate::apt::control::{self, Paragraph};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::rootfs::prepared::{PreparedError, PreparedRoot};

/// Errors of the SBOM writer.
#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// dpkg's status file is malformed.
    #[error("{path}: {source}")]
    Status {
        /// The status file.
        path: PathBuf,
        /// The parse error, with its line.
        source: control::ParseError,
    },
    /// The kept lock file is unreadable.
    #[error(transparent)]
    Lock(#[from] PreparedError),
    /// The rpm database could not be read.
    #[error(transparent)]
    RpmDb(#[from] crate::rootfs::rpmdb::RpmDbError),
}

/// One installed package as the SBOM lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbomPackage {
    /// Package name.
    pub name: String,
    /// Installed version.
    pub version: String,
    /// Architecture (`amd64`, `all`, ...).
    pub architecture: String,
    /// Source package name.
    pub source: String,
    /// Source package version.
    pub source_version: String,
    /// Distinct DEP-5 `License:` short names; `None` when the copyright file is missing or not
    /// machine-readable.
    pub licenses: Option<Vec<String>>,
    /// sha256 of the `.deb` that was installed, when known.
    pub sha256: Option<String>,
    /// Names of installed packages this one depends on (`Depends`, `Pre-Depends`; virtual
    /// names resolved to their installed providers).
    pub depends: Vec<String>,
    /// Whose package it is: decides its package URL and supplier.
    pub ecosystem: Ecosystem,
}

/// The packaging world a package comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ecosystem {
    /// A Debian package (`pkg:deb/debian/…`).
    Debian,
    /// An rpm package, with its vendor as rpm records it (`openSUSE`, `SUSE LLC <…>`, …).
    Rpm {
        /// `VENDOR`, when recorded.
        vendor: Option<String>,
        /// `EPOCH`, when it has one.
        epoch: Option<u32>,
    },
}

/// What the document describes.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// Image name.
    pub name: String,
    /// Image version.
    pub version: String,
    /// `SOURCE_DATE_EPOCH` of the image: the document's creation time.
    pub source_date_epoch: u64,
    /// `sha256:` manifest digest when the image has one.
    pub digest: Option<String>,
}

/// The distinct `License:` short names of a DEP-5 copyright file, in first-seen order, or `None`
/// when `text` is not in the machine-readable format.
pub fn dep5_licenses(text: &str) -> Option<Vec<String>> {
    let paragraphs = control::parse(text).ok()?;
    let header = paragraphs.first()?;
    let format = header
        .get("Format")
        .or_else(|| header.get("Format-Specification"))?;
    if !format.contains("copyright-format") && !format.contains("dep5") {
        return None;
    }
    let mut out: Vec<String> = Vec::new();
    for p in &paragraphs {
        // A standalone license paragraph (License without Files) only gives a text.
        if p.get("Files").is_none() && !std::ptr::eq(p, header) {
            continue;
        }
        if let Some(l) = p.get("License") {
            let short = l.lines().next().unwrap_or("").trim();
            if !short.is_empty() && !out.iter().any(|o| o == short) {
                out.push(short.to_string());
            }
        }
    }
    Some(out)
}

/// Debian short names with an SPDX id (matched case-insensitively).
const SPDX_NAMES: &[(&str, &str)] = &[
    ("apache-2.0", "Apache-2.0"),
    ("artistic", "Artistic-1.0-Perl"),
    ("artistic-2.0", "Artistic-2.0"),
    ("bsd-2-clause", "BSD-2-Clause"),
    ("bsd-3-clause", "BSD-3-Clause"),
    ("bsd-4-clause", "BSD-4-Clause"),
    ("bsl-1.0", "BSL-1.0"),
    ("cc0-1.0", "CC0-1.0"),
    ("curl", "curl"),
    ("expat", "MIT"),
    ("mit", "MIT"),
    ("fsfap", "FSFAP"),
    ("fsful", "FSFUL"),
    ("fsfullr", "FSFULLR"),
    ("ftl", "FTL"),
    ("gfdl-1.2", "GFDL-1.2-only"),
    ("gfdl-1.2+", "GFDL-1.2-or-later"),
    ("gfdl-1.3", "GFDL-1.3-only"),
    ("gfdl-1.3+", "GFDL-1.3-or-later"),
    ("gpl-1", "GPL-1.0-only"),
    ("gpl-1+", "GPL-1.0-or-later"),
    ("gpl-2", "GPL-2.0-only"),
    ("gpl-2+", "GPL-2.0-or-later"),
    ("gpl-2.0", "GPL-2.0-only"),
    ("gpl-2.0+", "GPL-2.0-or-later"),
    ("gpl-3", "GPL-3.0-only"),
    ("gpl-3+", "GPL-3.0-or-later"),
    ("gpl-3.0", "GPL-3.0-only"),
    ("gpl-3.0+", "GPL-3.0-or-later"),
    ("isc", "ISC"),
    ("lgpl-2", "LGPL-2.0-only"),
    ("lgpl-2+", "LGPL-2.0-or-later"),
    ("lgpl-2.1", "LGPL-2.1-only"),
    ("lgpl-2.1+", "LGPL-2.1-or-later"),
    ("lgpl-3", "LGPL-3.0-only"),
    ("lgpl-3+", "LGPL-3.0-or-later"),
    ("mpl-1.1", "MPL-1.1"),
    ("mpl-2.0", "MPL-2.0"),
    ("openssl", "OpenSSL"),
    ("python-2.0", "Python-2.0"),
    ("x11", "X11"),
    ("zlib", "Zlib"),
];

/// The SPDX id for one Debian license name: a known SPDX id or a `LicenseRef-` made of it.
pub fn spdx_license_id(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    if let Some((_, id)) = SPDX_NAMES.iter().find(|(k, _)| *k == lower) {
        return id.to_string();
    }
    let mut s = String::from("LicenseRef-");
    for c in name.trim().chars() {
        s.push(match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' => c,
            '+' => '+',
            _ => '-',
        });
    }
    // `+` is not allowed in a LicenseRef id; spell it out.
    s.replace('+', "-or-later")
}

/// One DEP-5 `License:` short name as an SPDX expression: `or`/`and` become `OR`/`AND`,
/// `X with Y exception` is kept whole as one license reference. Returns the expression and the
/// ids it uses.
pub fn license_expression(short: &str) -> (String, Vec<String>) {
    let mut parts: Vec<String> = Vec::new();
    let mut ids = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let flush = |current: &mut Vec<&str>, parts: &mut Vec<String>, ids: &mut Vec<String>| {
        if !current.is_empty() {
            let id = spdx_license_id(&current.join(" "));
            parts.push(id.clone());
            ids.push(id);
            current.clear();
        }
    };
    for tok in short.split(|c: char| c.is_whitespace() || c == ',') {
        match tok.to_ascii_lowercase().as_str() {
            "" => {}
            op @ ("or" | "and") if !current.is_empty() => {
                flush(&mut current, &mut parts, &mut ids);
                parts.push(op.to_ascii_uppercase());
            }
            _ => current.push(tok),
        }
    }
    flush(&mut current, &mut parts, &mut ids);
    // A dangling operator (`GPL-2 or`) has nothing to join.
    while parts.last().is_some_and(|p| p == "OR" || p == "AND") {
        parts.pop();
    }
    let expr = if parts.len() > 1 {
        format!("({})", parts.join(" "))
    } else {
        parts.join(" ")
    };
    (expr, ids)
}

/// Read the installed packages of `root` from dpkg's status, their copyright files and the kept
/// lock file (when present), sorted by name and architecture.
pub fn collect(root: &Path) -> Result<Vec<SbomPackage>, SbomError> {
    let status = root.join("var/lib/dpkg/status");
    if !status.exists() {
        let rpms = collect_rpm(root)?;
        if !rpms.is_empty() {
            return Ok(rpms);
        }
    }
    let text = std::fs::read_to_string(&status).map_err(|source| SbomError::Io {
        path: status.clone(),
        source,
    })?;
    let paragraphs = control::parse(&text).map_err(|source| SbomError::Status {
        path: status.clone(),
        source,
    })?;
    let installed: Vec<&Paragraph> = paragraphs
        .iter()
        .filter(|p| p.get("Status").is_some_and(|s| s.ends_with(" installed")))
        .filter(|p| p.get("Package").is_some())
        .collect();
    let mut sums: BTreeMap<(String, String, String), String> = BTreeMap::new();
    if let Some(lock) = PreparedRoot::new(root).lock()? {
        for l in lock.packages {
            sums.insert((l.name, l.version, l.architecture), l.sha256);
        }
    }
    // Every installed name, and who provides each virtual name.
    let mut providers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in &installed {
        let name = p.get("Package").unwrap_or_default();
        providers
            .entry(name.to_string())
            .or_default()
            .insert(name.to_string());
        for v in relation_names(p.get("Provides").unwrap_or_default()) {
            providers.entry(v).or_default().insert(name.to_string());
        }
    }
    let mut out = Vec::with_capacity(installed.len());
    for p in installed {
        let name = p.get("Package").unwrap_or_default().to_string();
        let version = p.get("Version").unwrap_or_default().to_string();
        let architecture = p.get("Architecture").unwrap_or_default().to_string();
        let (source, source_version) = match p.get("Source") {
            Some(s) => match s.split_once(' ') {
                // `Source: name (version)` when the binary version differs.
                Some((src, ver)) => {
                    let ver = ver.trim().trim_start_matches('(').trim_end_matches(')');
                    let ver = if ver.is_empty() {
                        version.as_str()
                    } else {
                        ver
                    };
                    (src.to_string(), ver.to_string())
                }
                None => (s.to_string(), version.clone()),
            },
            None => (name.clone(), version.clone()),
        };
        let copyright = root.join("usr/share/doc").join(&name).join("copyright");
        // A missing or unreadable copyright file is NOASSERTION, not an error.
        let licenses = std::fs::read(&copyright)
            .ok()
            .and_then(|b| dep5_licenses(&String::from_utf8_lossy(&b)));
        let mut depends = BTreeSet::new();
        for field in ["Pre-Depends", "Depends"] {
            for target in relation_names(p.get(field).unwrap_or_default()) {
                if let Some(names) = providers.get(&target) {
                    depends.extend(names.iter().filter(|n| **n != name).cloned());
                }
            }
        }
        let sha256 = sums
            .get(&(name.clone(), version.clone(), architecture.clone()))
            .cloned();
        out.push(SbomPackage {
            name,
            version,
            architecture,
            source,
            source_version,
            licenses,
            sha256,
            depends: depends.into_iter().collect(),
            ecosystem: Ecosystem::Debian,
        });
    }
    out.sort_by(|a, b| (&a.name, &a.architecture).cmp(&(&b.name, &b.architecture)));
    Ok(out)
}

/// The installed packages of a root without dpkg, from its rpm database, with their license
/// tags and the kept lock's sha256 of each `.rpm`.
fn collect_rpm(root: &Path) -> Result<Vec<SbomPackage>, SbomError> {
    let installed = crate::rootfs::rpmdb::installed(root)?;
    let mut sums: BTreeMap<(String, String, String), String> = BTreeMap::new();
    if let Some(lock) = PreparedRoot::new(root).lock()? {
        for l in lock.packages {
            sums.insert((l.name, l.version, l.architecture), l.sha256);
        }
    }
    let mut providers: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for p in &installed {
        providers.entry(&p.name).or_default().insert(&p.name);
        for v in &p.provides {
            providers.entry(v).or_default().insert(&p.name);
        }
    }
    let mut out = Vec::with_capacity(installed.len());
    for p in &installed {
        let version = p.evr();
        // `name-version-release.src.rpm`: the source name is what precedes the last two dashes.
        let (source, source_version) = p
            .sourcerpm
            .as_deref()
            .and_then(|s| s.strip_suffix(".rpm"))
            .and_then(|s| s.rsplit_once('.'))
            .and_then(|(nvr, _)| {
                let (nv, rel) = nvr.rsplit_once('-')?;
                let (n, v) = nv.rsplit_once('-')?;
                Some((n.to_string(), format!("{v}-{rel}")))
            })
            .unwrap_or_else(|| (p.name.clone(), version.clone()));
        let mut depends = BTreeSet::new();
        for r in &p.requires {
            if let Some(names) = providers.get(r.as_str()) {
                depends.extend(
                    names
                        .iter()
                        .filter(|n| **n != p.name)
                        .map(ToString::to_string),
                );
            }
        }
        out.push(SbomPackage {
            sha256: sums
                .get(&(p.name.clone(), version.clone(), p.arch.clone()))
                .cloned(),
            name: p.name.clone(),
            version,
            architecture: p.arch.clone(),
            source,
            source_version,
            licenses: (!p.license.is_empty()).then(|| vec![p.license.clone()]),
            depends: depends.into_iter().collect(),
            ecosystem: Ecosystem::Rpm {
                vendor: p.vendor.clone(),
                epoch: p.epoch,
            },
        });
    }
    Ok(out)
}

/// Package names of a relationship field, every alternative, without versions or arch qualifiers.
fn relation_names(field: &str) -> Vec<String> {
    field
        .split([',', '|'])
        .filter_map(|alt| {
            let alt = alt.trim();
            let end = alt
                .find(|c: char| !(c.is_ascii_alphanumeric() || "+-._".contains(c)))
                .unwrap_or(alt.len());
            (end > 0).then(|| alt[..end].to_string())
        })
        .collect()
}

/// Percent-encode a purl component (everything but unreserved characters).
fn purl_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The package URL of `p`: `pkg:deb/debian/…` or `pkg:rpm/<vendor>/…` (the vendor's first
/// word, lower-cased, as the purl spec's `opensuse`, `fedora`), with the epoch as a qualifier.
pub fn package_url(p: &SbomPackage) -> String {
    match &p.ecosystem {
        Ecosystem::Debian => purl(&p.name, &p.version, &p.architecture),
        Ecosystem::Rpm { vendor, epoch } => {
            let namespace = vendor
                .as_deref()
                .and_then(|v| v.split(|c: char| !c.is_ascii_alphanumeric()).next())
                .filter(|v| !v.is_empty())
                .map(|v| format!("{}/", purl_encode(&v.to_ascii_lowercase())))
                .unwrap_or_default();
            // The version qualifier carries no epoch: purl's `epoch` qualifier does.
            let version = p
                .version
                .split_once(':')
                .map_or(p.version.as_str(), |(_, v)| v);
            let epoch = epoch.map(|e| format!("&epoch={e}")).unwrap_or_default();
            format!(
                "pkg:rpm/{namespace}{}@{}?arch={}{epoch}",
                purl_encode(&p.name),
                purl_encode(version),
                purl_encode(&p.architecture)
            )
        }
    }
}

/// The package URL of a Debian package.
pub fn purl(name: &str, version: &str, arch: &str) -> String {
    format!(
        "pkg:deb/debian/{}@{}?arch={}",
        purl_encode(name),
        purl_encode(version),
        purl_encode(arch)
    )
}

/// The SPDX supplier of `p`: Debian, or the rpm's vendor (NOASSERTION when it has none).
fn supplier(p: &SbomPackage) -> String {
    match &p.ecosystem {
        Ecosystem::Debian => "Organization: Debian".into(),
        Ecosystem::Rpm {
            vendor: Some(v), ..
        } => {
            // An SPDX organization is `name (email)`; rpm vendors write `name <email>`.
            let name = v.split('<').next().unwrap_or(v).trim();
            if name.is_empty() {
                "NOASSERTION".into()
            } else {
                format!("Organization: {name}")
            }
        }
        Ecosystem::Rpm { .. } => "NOASSERTION".into(),
    }
}

/// A valid SPDX id fragment (`[A-Za-z0-9.-]`) for a package name.
fn id_fragment(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' => c.to_string(),
            '+' => "-plus-".to_string(),
            _ => "-".to_string(),
        })
        .collect()
}

/// The SPDX 2.3 JSON document for `packages` installed in `image`.
pub fn document(image: &ImageInfo, packages: &[SbomPackage]) -> Value {
    let seed = match &image.digest {
        Some(d) => d.clone(),
        None => format!(
            "{}\n{}\n{}",
            image.name, image.version, image.source_date_epoch
        ),
    };
    let ns_hash = hex::encode(Sha256::digest(seed.as_bytes()));
    let image_id = "SPDXRef-Image";
    let mut ids: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut taken = BTreeSet::new();
    for p in packages {
        let base = format!(
            "SPDXRef-Package-{}-{}",
            id_fragment(&p.name),
            id_fragment(&p.architecture)
        );
        let mut id = base.clone();
        let mut n = 2;
        while !taken.insert(id.clone()) {
            id = format!("{base}-{n}");
            n += 1;
        }
        ids.insert((p.name.clone(), p.architecture.clone()), id);
    }
    let mut by_name: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for p in packages {
        if let Some(id) = ids.get(&(p.name.clone(), p.architecture.clone())) {
            by_name.entry(&p.name).or_default().push(id);
        }
    }

    let mut refs: BTreeSet<String> = BTreeSet::new();
    let mut image_pkg = json!({
        "SPDXID": image_id,
        "name": image.name,
        "versionInfo": image.version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
    });
    if let Some(d) = &image.digest {
        image_pkg["externalRefs"] = json!([{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": format!("pkg:oci/{}@{}", purl_encode(&image.name.to_ascii_lowercase()), purl_encode(d)),
        }]);
        if let Some(hexd) = d.strip_prefix("sha256:") {
            image_pkg["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": hexd}]);
        }
    }
    let mut spdx_packages = vec![image_pkg];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": image_id,
    })];
    for p in packages {
        let Some(id) = ids.get(&(p.name.clone(), p.architecture.clone())) else {
            continue;
        };
        let declared = match &p.licenses {
            Some(list) if !list.is_empty() => {
                let mut exprs: Vec<String> = Vec::new();
                for short in list {
                    let (e, used) = license_expression(short);
                    if !e.is_empty() && !exprs.contains(&e) {
                        exprs.push(e);
                        refs.extend(used.into_iter().filter(|u| u.starts_with("LicenseRef-")));
                    }
                }
                if exprs.is_empty() {
                    "NOASSERTION".to_string()
                } else if exprs.len() == 1 {
                    exprs.remove(0)
                } else {
                    exprs.join(" AND ")
                }
            }
            _ => "NOASSERTION".to_string(),
        };
        let mut pkg = json!({
            "SPDXID": id,
            "name": p.name,
            "versionInfo": p.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": declared,
            "copyrightText": "NOASSERTION",
            "supplier": supplier(p),
            "sourceInfo": match &p.ecosystem {
                Ecosystem::Debian => format!("built from Debian source package {} version {}", p.source, p.source_version),
                Ecosystem::Rpm { .. } => format!("built from source rpm {} version {}", p.source, p.source_version),
            },
            "summary": format!("architecture {}", p.architecture),
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": package_url(p),
            }],
        });
        if let Some(sum) = &p.sha256 {
            pkg["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": sum}]);
        }
        spdx_packages.push(pkg);
        relationships.push(json!({
            "spdxElementId": image_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
        for dep in &p.depends {
            for target in by_name.get(dep.as_str()).into_iter().flatten() {
                relationships.push(json!({
                    "spdxElementId": id,
                    "relationshipType": "DEPENDS_ON",
                    "relatedSpdxElement": target,
                }));
            }
        }
    }
    let extracted: Vec<Value> = refs
        .iter()
        .map(|r| {
            let name = r.trim_start_matches("LicenseRef-");
            json!({
                "licenseId": r,
                "name": name,
                "extractedText": format!("License short name \"{name}\" in a Debian machine-readable copyright file."),
            })
        })
        .collect();
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}-{}", image.name, image.version),
        "documentNamespace": format!(
            "https://spdx.org/spdxdocs/{}-{}-{ns_hash}",
            purl_encode(&image.name),
            purl_encode(&image.version)
        ),
        "creationInfo": {
            "created": crate::image::config::rfc3339(image.source_date_epoch),
            "creators": [format!("Tool: imgbuild-{}", env!("CARGO_PKG_VERSION"))],
        },
        "documentDescribes": [image_id],
        "packages": spdx_packages,
        "relationships": relationships,
    });
    if !extracted.is_empty() {
        doc["hasExtractedLicensingInfos"] = Value::Array(extracted);
    }
    doc
}

/// The document's bytes: pretty JSON with sorted keys and a final newline.
pub fn to_bytes(doc: &Value) -> Vec<u8> {
    // A `Value` of strings, numbers and bools always serialises.
    let mut v = serde_json::to_vec_pretty(doc).unwrap_or_default();
    v.push(b'\n');
    v
}

/// Collect the packages of `root` and write the SBOM of `image` to `path`; returns the bytes
/// written.
pub fn write(root: &Path, image: &ImageInfo, path: &Path) -> Result<Vec<u8>, SbomError> {
    let packages = collect(root)?;
    let bytes = to_bytes(&document(image, &packages));
    crate::atomic::write(path, &bytes).map_err(|source| SbomError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DPKG: &str = include_str!("../tests/sbom_fixture/dpkg.copyright");
    const TZDATA: &str = include_str!("../tests/sbom_fixture/tzdata.copyright");
    const BASE_FILES: &str = include_str!("../tests/sbom_fixture/base-files.copyright");
    const ZLIB: &str = include_str!("../tests/sbom_fixture/zlib1g.copyright");

    #[test]
    fn dep5_distinct_short_names_of_real_files() {
        let l = dep5_licenses(DPKG).unwrap_or_default();
        assert!(l.contains(&"GPL-2+".to_string()), "{l:?}");
        let mut d = l.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), l.len(), "duplicates in {l:?}");
        assert_eq!(
            dep5_licenses(TZDATA),
            Some(vec!["public-domain".to_string()])
        );
        assert!(!dep5_licenses(ZLIB).unwrap_or_default().is_empty());
    }

    #[test]
    fn non_dep5_is_none() {
        assert_eq!(dep5_licenses(BASE_FILES), None);
        assert_eq!(dep5_licenses(""), None);
        assert_eq!(dep5_licenses("just some\ntext: here\n"), None);
    }

    #[test]
    fn standalone_license_paragraphs_add_nothing() {
        let text = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nCopyright: x\nLicense: GPL-2+\n\nLicense: Expat\n Permission is hereby granted\n";
        assert_eq!(dep5_licenses(text), Some(vec!["GPL-2+".to_string()]));
    }

    #[test]
    fn expressions() {
        assert_eq!(license_expression("GPL-2+").0, "GPL-2.0-or-later");
        assert_eq!(
            license_expression("GPL-1+ or Artistic").0,
            "(GPL-1.0-or-later OR Artistic-1.0-Perl)"
        );
        let (e, ids) = license_expression("GPL-2+ with Autoconf exception");
        assert_eq!(e, "LicenseRef-GPL-2-or-later-with-Autoconf-exception");
        assert_eq!(ids, std::slice::from_ref(&e));
        assert_eq!(
            license_expression("LGPLv3+_or_GPLv2+").0,
            "LicenseRef-LGPLv3-or-later-or-GPLv2-or-later"
        );
        assert_eq!(license_expression("GPL-2 or").0, "GPL-2.0-only");
    }

    #[test]
    fn purl_encodes_epoch_and_plus() {
        assert_eq!(
            purl("libstdc++6", "1:12.2.0-14+deb12u1", "amd64"),
            "pkg:deb/debian/libstdc%2B%2B6@1%3A12.2.0-14%2Bdeb12u1?arch=amd64"
        );
    }

    #[test]
    fn relation_names_strip_versions_and_qualifiers() {
        assert_eq!(
            relation_names("libc6 (>= 2.34), awk | mawk:any, perl:any (>= 5)"),
            ["libc6", "awk", "mawk", "perl"]
        );
    }
}
