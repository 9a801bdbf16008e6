//! OCI platforms (`os/architecture[/variant]`): parsed from `--platform`, derived from a
//! machine architecture as `--target-arch`, `uname -m`, Rust and Debian name it, and matched
//! as containerd matches them (default variants filled in).

use serde::{Deserialize, Serialize};

/// A platform value that is not `os/arch[/variant]`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid platform {spec:?}: expected OS/ARCH[/VARIANT], e.g. linux/arm64")]
pub struct PlatformError {
    /// The value given.
    pub spec: String,
}

/// An OCI platform: `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
pub struct Platform {
    /// E.g. `linux`.
    pub os: String,
    /// The OCI architecture, e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// E.g. `v8` for arm64, `v7` for arm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The OCI architecture and default variant of a machine architecture, named as Rust targets
/// (`std::env::consts::ARCH`), `uname -m` and KIWI's `--target-arch` name them, or as Debian
/// and OCI do; other names pass through. `little_endian` decides the names that do not say
/// (`powerpc64`, `mips64`, `mips`).
fn oci_arch(machine: &str, little_endian: bool) -> (&str, Option<&str>) {
    match machine {
        "x86_64" | "amd64" => ("amd64", None),
        "x86" | "i386" | "i586" | "i686" => ("386", None),
        "aarch64" | "arm64" => ("arm64", Some("v8")),
        "arm" | "armv7l" | "armv7hl" | "armhf" => ("arm", Some("v7")),
        "armv6l" | "armv6hl" | "armel" => ("arm", Some("v6")),
        "ppc64le" | "ppc64el" => ("ppc64le", None),
        "powerpc64" if little_endian => ("ppc64le", None),
        "powerpc64" => ("ppc64", None),
        "mips64" if little_endian => ("mips64le", None),
        "mips" if little_endian => ("mipsle", None),
        "loongarch64" => ("loong64", None),
        other => (other, None),
    }
}

/// The variant an architecture has when none is written (as containerd normalises them).
fn default_variant(architecture: &str) -> Option<&'static str> {
    match architecture {
        "arm64" => Some("v8"),
        "arm" => Some("v7"),
        _ => None,
    }
}

impl Platform {
    /// Parses `os/arch[/variant]`.
    pub fn parse(spec: &str) -> Result<Platform, PlatformError> {
        let parts: Vec<&str> = spec.split('/').collect();
        let ok = |s: &&str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        };
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if parts.iter().all(ok) => Ok(Platform {
                os: os.to_ascii_lowercase(),
                architecture: arch.to_ascii_lowercase(),
                variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
            }),
            _ => Err(PlatformError {
                spec: spec.to_string(),
            }),
        }
    }

    /// The platform of the running host: `linux` and the host's architecture in OCI's names.
    pub fn host() -> Platform {
        Platform::linux(std::env::consts::ARCH, cfg!(target_endian = "little"))
    }

    /// The Linux platform of images for `machine` (a `--target-arch` such as `x86_64`,
    /// `aarch64`, `armv7l`; see [`oci_arch`] for the names taken), little-endian unless the
    /// name says otherwise.
    pub fn for_machine(machine: &str) -> Platform {
        Platform::linux(machine, true)
    }

    fn linux(machine: &str, little_endian: bool) -> Platform {
        let (architecture, variant) = oci_arch(machine, little_endian);
        Platform {
            os: "linux".to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// The machine architecture as KIWI's `--target-arch` names it (`x86_64`, `aarch64`,
    /// `armv7l`, …), for a Linux platform; none for another OS or an architecture imgbuild
    /// has no name for.
    pub fn kiwi_arch(&self) -> Option<&'static str> {
        if self.os != "linux" {
            return None;
        }
        Some(
            match (self.architecture.as_str(), self.normalized_variant()) {
                ("amd64", None) => "x86_64",
                ("arm64", Some("v8")) => "aarch64",
                ("arm", Some("v7")) => "armv7l",
                ("arm", Some("v6")) => "armv6l",
                ("386", None) => "i686",
                ("ppc64le", None) => "ppc64le",
                ("s390x", None) => "s390x",
                ("riscv64", None) => "riscv64",
                ("loong64", None) => "loongarch64",
                _ => return None,
            },
        )
    }

    /// The variant, with the architecture's default when none is written; amd64's `v1` is none.
    pub fn normalized_variant(&self) -> Option<&str> {
        match self.variant.as_deref() {
            Some("v1") if self.architecture == "amd64" => None,
            Some(v) => Some(v),
            None => default_variant(&self.architecture),
        }
    }

    /// Whether an index entry of platform `entry` is this platform: the same OS and
    /// architecture, and the same variant once defaults are filled in.
    pub fn matches(&self, entry: &Platform) -> bool {
        self.os == entry.os
            && self.architecture == entry.architecture
            && self.normalized_variant() == entry.normalized_variant()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_platforms() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(
            Platform::parse("Linux/AMD64").unwrap().to_string(),
            "linux/amd64"
        );
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/amd 64", ""] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn maps_rust_architectures() {
        assert_eq!(oci_arch("x86_64", true), ("amd64", None));
        assert_eq!(oci_arch("aarch64", true), ("arm64", Some("v8")));
        assert_eq!(oci_arch("arm", true), ("arm", Some("v7")));
        assert_eq!(oci_arch("powerpc64", true), ("ppc64le", None));
        assert_eq!(oci_arch("s390x", false), ("s390x", None));
        assert_eq!(oci_arch("riscv64", true), ("riscv64", None));
        assert_eq!(Platform::host().os, "linux");
        // KIWI's and Debian's names too.
        assert_eq!(oci_arch("armv7l", true), ("arm", Some("v7")));
        assert_eq!(oci_arch("i686", true), ("386", None));
        assert_eq!(oci_arch("ppc64el", true), ("ppc64le", None));
        assert_eq!(
            Platform::for_machine("aarch64").to_string(),
            "linux/arm64/v8"
        );
    }

    #[test]
    fn matches_platforms_with_default_variants() {
        let p = |s| Platform::parse(s).unwrap();
        assert!(p("linux/arm64").matches(&p("linux/arm64/v8")));
        assert!(p("linux/arm64/v8").matches(&p("linux/arm64")));
        assert!(p("linux/arm").matches(&p("linux/arm/v7")));
        assert!(!p("linux/arm").matches(&p("linux/arm/v6")));
        assert!(p("linux/amd64").matches(&p("linux/amd64/v1")));
        assert!(!p("linux/amd64").matches(&p("linux/arm64")));
        assert!(!p("linux/amd64").matches(&p("windows/amd64")));
    }

    #[test]
    fn kiwi_names_round_trip() {
        for arch in [
            "x86_64", "aarch64", "armv7l", "i686", "ppc64le", "s390x", "riscv64",
        ] {
            assert_eq!(
                Platform::for_machine(arch).kiwi_arch(),
                Some(arch),
                "{arch}"
            );
        }
        let p = |s| Platform::parse(s).unwrap();
        assert_eq!(p("linux/arm64").kiwi_arch(), Some("aarch64"));
        assert_eq!(p("linux/arm").kiwi_arch(), Some("armv7l"));
        assert_eq!(p("linux/arm64/v9").kiwi_arch(), None);
        assert_eq!(p("windows/amd64").kiwi_arch(), None);
    }
}
