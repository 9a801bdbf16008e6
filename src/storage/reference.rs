//! Image names and tags in the store: `name[:tag]` normalised to `name:tag` (tag `latest` by
//! default), checked by [`crate::reference`].

use super::{Result, StorageError};

/// Normalise `name[:tag]` to `name:tag`, checking the Docker reference grammar
/// (see [`crate::reference`]). Digest references (`name@sha256:…`) are not tags and are refused.
pub fn normalize_tag(reference: &str) -> Result<String> {
    crate::reference::normalize_tagged(reference).map_err(StorageError::InvalidReference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_validates() {
        assert_eq!(normalize_tag("debian").unwrap(), "debian:latest");
        assert_eq!(
            normalize_tag("localhost:5000/base/deb:v1.2").unwrap(),
            "localhost:5000/base/deb:v1.2"
        );
        for bad in [
            "",
            "Debian",
            "deb:",
            "deb@sha256:00",
            "a//b",
            "a..b",
            "deb:a b",
        ] {
            assert!(
                matches!(normalize_tag(bad), Err(StorageError::InvalidReference(_))),
                "{bad} accepted"
            );
        }
    }
}
