//! Image names and tags: `name[:tag]` normalised to `name:tag` (tag `latest` by default).

use super::{Result, StorageError};

/// Normalise `name[:tag]` to `name:tag`, checking the Docker reference grammar
/// (lowercase path components, an optional `host[:port]` first component, tag of at most 128
/// characters). Digest references (`name@sha256:…`) are not tags and are refused.
pub fn normalize_tag(reference: &str) -> Result<String> {
    let bad = |reason: &str| StorageError::InvalidReference {
        reference: reference.to_string(),
        reason: reason.to_string(),
    };
    if reference.contains('@') {
        return Err(bad("digest references cannot be used as tags"));
    }
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match reference[last_slash..].rfind(':') {
        Some(i) => (
            &reference[..last_slash + i],
            &reference[last_slash + i + 1..],
        ),
        None => (reference, "latest"),
    };
    if name.is_empty() {
        return Err(bad("empty name"));
    }
    if name.len() > 255 {
        return Err(bad("name longer than 255 characters"));
    }
    if tag.is_empty() || tag.len() > 128 {
        return Err(bad("tag must be 1 to 128 characters"));
    }
    let tag_ok = tag.bytes().enumerate().all(|(i, b)| {
        b.is_ascii_alphanumeric() || b == b'_' || (i > 0 && (b == b'.' || b == b'-'))
    });
    if !tag_ok {
        return Err(bad("tag may hold only letters, digits, '_', '.' and '-'"));
    }
    let components: Vec<&str> = name.split('/').collect();
    for (i, comp) in components.iter().enumerate() {
        if comp.is_empty() {
            return Err(bad("empty path component"));
        }
        // The first of several components may be a registry host: mixed case, dots, a port.
        let host = i == 0 && components.len() > 1;
        let ok = comp.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'.' | b'_' | b'-')
                || (host && (b.is_ascii_uppercase() || b == b':'))
        });
        let edges_ok = |b: u8| b.is_ascii_alphanumeric();
        if !ok || !edges_ok(comp.as_bytes()[0]) || !edges_ok(comp.as_bytes()[comp.len() - 1]) {
            return Err(bad(
                "name components hold lowercase letters, digits and inner '.', '_' or '-'",
            ));
        }
    }
    Ok(format!("{name}:{tag}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_validates() {
        assert_eq!(normalize_tag("debian").unwrap(), "debian:latest");
        assert_eq!(normalize_tag("debian:13").unwrap(), "debian:13");
        assert_eq!(
            normalize_tag("localhost:5000/base/deb:v1.2").unwrap(),
            "localhost:5000/base/deb:v1.2"
        );
        assert_eq!(
            normalize_tag("localhost:5000/base").unwrap(),
            "localhost:5000/base:latest"
        );
        for bad in [
            "",
            "Debian",
            "deb:",
            "deb@sha256:00",
            "a//b",
            "-a",
            "deb:-x",
            "deb:a b",
        ] {
            assert!(normalize_tag(bad).is_err(), "{bad} accepted");
        }
    }
}
