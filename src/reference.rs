//! Image names, tags and label names, checked in one place for descriptions, flags and archives.
//!
//! Names and tags follow the grammar Docker, podman and registries enforce
//! (`github.com/distribution/reference`, `regexp.go`), so a value they would refuse is refused
//! here, before anything is written:
//!
//! ```text
//! name             := [domain "/"] path-component ("/" path-component)*   at most 255 characters
//! domain           := host [":" port]
//! host             := domain-component ("." domain-component)* | "[" ipv6 "]"
//! domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! port             := [0-9]+
//! path-component   := [a-z0-9]+ (separator [a-z0-9]+)*
//! separator        := "." | "_" | "__" | "-"+
//! tag              := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//! ```
//!
//! Label names follow Docker's rule for `--label`: not empty, no whitespace (and here no
//! control characters either).

/// Longest image name (domain and path together), as the distribution grammar allows.
pub const MAX_NAME_LEN: usize = 255;

/// Longest tag.
pub const MAX_TAG_LEN: usize = 128;

/// A name, tag, reference or label name that is refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} is not a valid {what}: {reason}", shown(.value))]
pub struct InvalidName {
    /// What the value was meant to be: `tag`, `image name`, `image reference`, `label name`.
    pub what: &'static str,
    /// The value as given.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl InvalidName {
    fn new(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        InvalidName {
            what,
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// The value quoted for a message, shortened when long: a 10,000-character tag is not
    /// echoed whole.
    pub fn shown_value(&self) -> String {
        shown(&self.value)
    }
}

/// `value` quoted, its first 64 characters only when longer.
fn shown(value: &str) -> String {
    const KEEP: usize = 64;
    let n = value.chars().count();
    if n <= KEEP {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(KEEP).collect();
        format!("{head:?}… ({n} characters)")
    }
}

fn too_long(value: &str, max: usize) -> String {
    format!(
        "it is {} characters long, at most {max} are allowed",
        value.chars().count()
    )
}

/// Checks a tag: 1 to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`.
pub fn check_tag(tag: &str) -> Result<(), InvalidName> {
    let bad = |reason: String| Err(InvalidName::new("tag", tag, reason));
    let Some(first) = tag.chars().next() else {
        return bad("it is empty".into());
    };
    if let Some(c) = tag
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return bad(format!(
            "{c:?} is not allowed (only letters, digits, '_', '.' and '-')"
        ));
    }
    if !(first.is_ascii_alphanumeric() || first == '_') {
        return bad("it must start with a letter, a digit or '_'".into());
    }
    if tag.len() > MAX_TAG_LEN {
        return bad(too_long(tag, MAX_TAG_LEN));
    }
    Ok(())
}

/// A path component: lowercase letters and digits, joined by one `.`, one or two `_`, or dashes.
fn check_path_component(c: &str) -> Result<(), String> {
    if c.is_empty() {
        return Err("it has an empty path component ('//', or '/' at an end)".into());
    }
    if let Some(ch) = c.chars().find(|ch| {
        !(ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-'))
    }) {
        return Err(if ch.is_ascii_uppercase() {
            format!("{ch:?}: repository names are lowercase")
        } else {
            format!("{ch:?} is not allowed (lowercase letters, digits, '.', '_', '-' and '/')")
        });
    }
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let b = c.as_bytes();
    if !b.first().is_some_and(alnum) || !b.last().is_some_and(alnum) {
        return Err(format!(
            "component {c:?} must start and end with a letter or digit"
        ));
    }
    for sep in c.split(|ch: char| ch.is_ascii_alphanumeric()) {
        let ok =
            sep.is_empty() || matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(format!(
                "{sep:?} in {c:?} is not a separator (one '.', one or two '_', or dashes)"
            ));
        }
    }
    Ok(())
}

/// A registry host with an optional port: DNS-like components or a bracketed IPv6 address.
fn check_domain(d: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return Err(format!("{d:?}: '[' without ']'"));
        };
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(format!("{d:?} is not a bracketed IPv6 address"));
        }
        match after {
            "" => (None, None),
            p => match p.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return Err(format!("{d:?}: junk after ']'")),
            },
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("registry port {p:?} is not a number"));
    }
    if let Some(h) = host {
        for comp in h.split('.') {
            let b = comp.as_bytes();
            let ok = !b.is_empty()
                && b.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-';
            if !ok {
                return Err(format!("{h:?} is not a registry host name"));
            }
        }
    }
    Ok(())
}

/// Whether a first component is meant as a registry host (as Docker decides: it has a `.` or a
/// `:`, is `localhost`, or has uppercase letters); used to pick the better error message.
fn looks_like_domain(c: &str) -> bool {
    c.contains(['.', ':', '[']) || c == "localhost" || c.bytes().any(|b| b.is_ascii_uppercase())
}

/// Checks an image name (repository): an optional `host[:port]/` and lowercase path components,
/// at most 255 characters in all.
pub fn check_name(name: &str) -> Result<(), InvalidName> {
    let bad = |reason: String| Err(InvalidName::new("image name", name, reason));
    if name.is_empty() {
        return bad("it is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return bad(too_long(name, MAX_NAME_LEN));
    }
    let comps: Vec<&str> = name.split('/').collect();
    let path_ok = |cs: &[&str]| cs.iter().try_for_each(|c| check_path_component(c));
    let result = match comps.split_first() {
        Some((first, rest)) if !rest.is_empty() => match check_domain(first) {
            Ok(()) => path_ok(rest),
            Err(e) if looks_like_domain(first) => Err(e),
            Err(_) => path_ok(&comps),
        },
        _ => path_ok(&comps),
    };
    result.or_else(bad)
}

/// Splits `name[:tag]` at the `:` after the last `/` (a `:` before it belongs to a registry
/// port). No check is made.
pub fn split_tag(reference: &str) -> (&str, Option<&str>) {
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(i) => (
            &reference[..last_slash + i],
            Some(&reference[last_slash + i + 1..]),
        ),
        None => (reference, None),
    }
}

/// Checks `name[:tag]` and returns it as `name:tag` (tag `latest` when none is given). Digest
/// references (`name@sha256:…`) name no tag and are refused.
pub fn normalize_tagged(reference: &str) -> Result<String, InvalidName> {
    let what = "image reference";
    if reference.contains('@') {
        return Err(InvalidName::new(
            what,
            reference,
            "digest references (name@sha256:…) cannot be used as names",
        ));
    }
    let (name, tag) = split_tag(reference);
    let tag = tag.unwrap_or("latest");
    // The part's own error, told as part of the whole reference.
    let part = |e: InvalidName| {
        let reason = if e.value == reference {
            e.reason
        } else {
            format!("{} {}: {}", e.what, shown(&e.value), e.reason)
        };
        InvalidName::new(what, reference, reason)
    };
    check_name(name).map_err(part)?;
    check_tag(tag).map_err(part)?;
    Ok(format!("{name}:{tag}"))
}

/// Checks a label name: not empty, no whitespace or control characters.
pub fn check_label_name(name: &str) -> Result<(), InvalidName> {
    let bad = |reason: String| Err(InvalidName::new("label name", name, reason));
    if name.is_empty() {
        return bad("it is empty".into());
    }
    if let Some(c) = name.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return bad(format!(
            "{c:?} is not allowed (no whitespace or control characters)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The distribution grammar as one regular expression (`regexp.go`'s `anchoredNameRegexp`
    /// with the total-length rule and `anchoredTagRegexp`), to compare the hand-written checks
    /// against.
    fn grammar() -> (regex::Regex, regex::Regex) {
        let alnum = "[a-z0-9]+";
        let sep = "(?:[._]|__|[-]+)";
        let path = format!("{alnum}(?:{sep}{alnum})*");
        let dcomp = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
        let host = format!(r"(?:{dcomp}(?:\.{dcomp})*|\[[a-fA-F0-9:]+\])");
        let domain = format!("{host}(?::[0-9]+)?");
        let name = format!("^(?:{domain}/)?{path}(?:/{path})*$");
        // Go's `\w` is ASCII-only; so is `(?-u:\w)`.
        let tag = r"^(?-u:[\w][\w.-]{0,127})$";
        (
            regex::Regex::new(&name).unwrap(),
            regex::Regex::new(tag).unwrap(),
        )
    }

    #[test]
    fn names_agree_with_the_distribution_grammar() {
        let (name_re, _) = grammar();
        let long_ok = format!("a/{}", "b".repeat(253));
        let long_bad = format!("a/{}", "b".repeat(254));
        let samples = [
            "debian",
            "library/debian",
            "localhost/deb",
            "localhost:5000/base/deb",
            "registry.example.org:443/a/b/c",
            "Registry.Example/x",
            "[::1]:5000/x",
            "[fe80::1]/x",
            "a.b",
            "a_b",
            "a__b",
            "a---b",
            "a-b.c_d__e",
            long_ok.as_str(),
            "",
            "Debian",
            "a..b",
            "a._b",
            "a___b",
            ".a",
            "a-",
            "a//b",
            "a/",
            "/a",
            "bad tag/..",
            "host:port/x",
            "-host/x",
            "host-/x",
            "[zz]/x",
            "[::1/x",
            "a b",
            "ä",
            "host:5000",
        ];
        for s in samples {
            let want = name_re.is_match(s) && s.len() <= MAX_NAME_LEN;
            assert_eq!(check_name(s).is_ok(), want, "{s:?}: {:?}", check_name(s));
        }
        assert!(check_name(&long_bad).is_err());
    }

    #[test]
    fn tags_agree_with_the_distribution_grammar() {
        let (_, tag_re) = grammar();
        let t128 = "t".repeat(128);
        let t129 = "t".repeat(129);
        for s in [
            "1",
            "latest",
            "v1.2-rc_3",
            "_x",
            "A",
            &t128,
            "",
            ".x",
            "-x",
            "a b",
            "a/b",
            "a:b",
            "é",
            &t129,
            "bad tag/..",
        ] {
            assert_eq!(check_tag(s).is_ok(), tag_re.is_match(s), "{s:?}");
        }
    }

    #[test]
    fn reasons_name_the_problem() {
        let e = check_tag("bad tag/..").unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"bad tag/..\" is not a valid tag: ' ' is not allowed (only letters, digits, '_', \
             '.' and '-')"
        );
        let long = "a".repeat(10_000);
        let e = check_tag(&long).unwrap_err().to_string();
        assert!(e.contains("10000 characters") && e.len() < 200, "{e}");
        let e = check_name("Debian").unwrap_err().to_string();
        assert!(e.contains("lowercase"), "{e}");
        let e = check_name("localhost:x/a").unwrap_err().to_string();
        assert!(e.contains("port"), "{e}");
        let e = normalize_tagged("deb:a b").unwrap_err().to_string();
        assert!(
            e.starts_with("\"deb:a b\" is not a valid image reference: tag \"a b\""),
            "{e}"
        );
    }

    #[test]
    fn references_normalise_to_name_and_tag() {
        assert_eq!(normalize_tagged("debian").unwrap(), "debian:latest");
        assert_eq!(normalize_tagged("debian:13").unwrap(), "debian:13");
        assert_eq!(
            normalize_tagged("localhost:5000/base/deb:v1.2").unwrap(),
            "localhost:5000/base/deb:v1.2"
        );
        assert_eq!(
            normalize_tagged("localhost:5000/base").unwrap(),
            "localhost:5000/base:latest"
        );
        for bad in [
            "",
            "deb:",
            "deb@sha256:00",
            "a//b",
            "-a",
            "deb:-x",
            "deb:a b",
        ] {
            assert!(normalize_tagged(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(split_tag("h:1/a"), ("h:1/a", None));
        assert_eq!(split_tag("h:1/a:2"), ("h:1/a", Some("2")));
    }

    #[test]
    fn label_names() {
        assert!(check_label_name("org.opencontainers.image.title").is_ok());
        assert!(check_label_name("").is_err());
        assert!(check_label_name("a b").is_err());
        assert!(check_label_name("a\u{7}").is_err());
    }
}
