//! `kiwi.result.json`: the result index KIWI writes beside its images, in KIWI 11's shape, so
//! tools reading a KIWI target directory (and `imgbuild result list|bundle`) find the files.
//!
//! KIWI keys each result by its role (`container`, `root_archive`, `image_packages`) with the
//! absolute file name and three flags (`use_for_bundle`, `compress`, `shasum`); a `<type
//! bundle_format=…>` adds `bundle_format` with the pattern and the name tags. Keys are sorted
//! and indented by four spaces, as KIWI's JSON writer does.

use super::{Created, ResultKind};
use crate::description::ResolvedImage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The file name KIWI gives its result index.
pub const FILE_NAME: &str = "kiwi.result.json";

/// One result file as KIWI records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KiwiResultFile {
    /// Whether `result bundle` xz-compresses the bundled copy.
    pub compress: bool,
    /// Absolute path of the file in the target directory.
    pub filename: String,
    /// Whether `result bundle` writes a checksum file for the bundled copy.
    pub shasum: bool,
    /// Whether `result bundle` copies the file into the bundle.
    pub use_for_bundle: bool,
}

/// The `bundle_format` entry: the pattern and the values of its `%` tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleFormat {
    /// The pattern, e.g. `%N-%v-Build%I`.
    pub pattern: String,
    /// The tag values by tag letter (`N` name, `P` profiles, `A` arch, `I` id, `T` type,
    /// `M`/`m`/`p` version parts, `v` version).
    pub tags: BTreeMap<String, String>,
}

/// `kiwi.result.json` as a whole: the result files by key, and `bundle_format` when set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KiwiResult {
    /// The `bundle_format` entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_format: Option<BundleFormat>,
    /// Every other key: a result file.
    #[serde(flatten)]
    pub files: BTreeMap<String, KiwiResultFile>,
}

impl KiwiResult {
    /// The index of what `create` wrote into `target` (made absolute, as KIWI records it).
    /// Files KIWI has no key for (the SBOM, an OCI layout directory) are not listed.
    pub fn of(created: &Created, image: &ResolvedImage, target: &Path) -> KiwiResult {
        let target = std::path::absolute(target).unwrap_or_else(|_| target.to_path_buf());
        let mut files = BTreeMap::new();
        for f in &created.files {
            let (key, shasum) = match f.kind {
                ResultKind::DockerArchive | ResultKind::OciArchive => ("container", true),
                ResultKind::Rootfs => ("root_archive", true),
                ResultKind::Packages => ("image_packages", false),
                ResultKind::OciLayout
                | ResultKind::Sbom
                | ResultKind::KiwiResult
                | ResultKind::Platform => continue,
            };
            files.insert(
                key.to_string(),
                KiwiResultFile {
                    compress: false,
                    filename: target.join(&f.name).to_string_lossy().into_owned(),
                    shasum,
                    use_for_bundle: true,
                },
            );
        }
        let bundle_format = image
            .build_type
            .bundle_format
            .as_ref()
            .map(|pattern| BundleFormat {
                pattern: pattern.clone(),
                tags: name_tags(image),
            });
        KiwiResult {
            bundle_format,
            files,
        }
    }

    /// The JSON text: keys sorted, four-space indent, a final newline.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        // `bundle_format` comes first, and sorts first among KIWI's keys too.
        self.serialize(&mut ser)?;
        let mut text = String::from_utf8_lossy(&out).into_owned();
        text.push('\n');
        Ok(text)
    }
}

/// KIWI's name tags of `image` for a bundle format; the version splits at its first two dots.
fn name_tags(image: &ResolvedImage) -> BTreeMap<String, String> {
    let version = super::image_version(image);
    let mut parts = version.splitn(3, '.').map(str::to_string);
    let (major, minor, patch) = if version.contains('.') {
        (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        )
    } else {
        (version.clone(), String::new(), String::new())
    };
    [
        ("N", image.name.clone()),
        ("P", image.profiles.join("_")),
        ("A", image.arch.clone()),
        ("I", String::new()),
        ("T", image.build_type.image.clone()),
        ("M", major),
        ("m", minor),
        ("p", patch),
        ("v", version),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_kiwis_shape() {
        let mut r = KiwiResult::default();
        r.files.insert(
            "image_packages".into(),
            KiwiResultFile {
                compress: false,
                filename: "/t/x.packages".into(),
                shasum: false,
                use_for_bundle: true,
            },
        );
        r.bundle_format = Some(BundleFormat {
            pattern: "%N".into(),
            tags: [("N".to_string(), "x".to_string())].into_iter().collect(),
        });
        let text = r.to_json().unwrap();
        assert_eq!(
            text,
            "{\n    \"bundle_format\": {\n        \"pattern\": \"%N\",\n        \"tags\": {\n            \"N\": \"x\"\n        }\n    },\n    \"image_packages\": {\n        \"compress\": false,\n        \"filename\": \"/t/x.packages\",\n        \"shasum\": false,\n        \"use_for_bundle\": true\n    }\n}\n"
        );
        let back: KiwiResult = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
    }
}
