//! In-memory schema upgrades 7.4 → 8.5, the same rewrites KIWI's XSLT chain applies.

use super::tree::Node;
use super::{DescriptionError, Diagnostic};

/// The versions accepted, oldest first; every one is upgraded to the last.
pub const VERSIONS: [&str; 9] = [
    "7.4", "7.5", "7.6", "8.0", "8.1", "8.2", "8.3", "8.4", "8.5",
];
/// The schema version the typed model is written for.
pub const CURRENT: &str = "8.5";
/// The oldest schema version accepted.
pub const OLDEST: &str = "7.4";

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Upgrade `root` to schema 8.5 in place; returns the version the file declared.
pub fn upgrade(root: &mut Node) -> Result<String, DescriptionError> {
    let Some(attr) = root.attr("schemaversion") else {
        // reported by validation as a missing required attribute
        return Ok(String::new());
    };
    let declared = attr.value.trim().to_string();
    let loc = attr.loc.clone();
    let Some(v) = parse_version(&declared) else {
        return Err(DescriptionError::Invalid(vec![Diagnostic::new(
            loc,
            "image@schemaversion",
            format!("invalid schema version {declared:?}; expected {OLDEST} to {CURRENT}"),
        )]));
    };
    if v < (7, 4) {
        return Err(DescriptionError::Invalid(vec![Diagnostic::new(
            loc,
            "image@schemaversion",
            format!("schema version {declared} is too old; the oldest supported is {OLDEST}"),
        )]));
    }
    if v > (8, 5) || !VERSIONS.contains(&declared.as_str()) {
        return Err(DescriptionError::Invalid(vec![Diagnostic::new(
            loc,
            "image@schemaversion",
            format!("unknown schema version {declared}; supported are {OLDEST} to {CURRENT}"),
        )]));
    }
    if v < (7, 5) {
        // additionaltags="a,b" became additionalnames=":a,:b"
        root.walk_mut(&mut |n| {
            if n.name == "containerconfig"
                && let Some(mut a) = n.remove_attr("additionaltags")
            {
                a.written = Some((a.name.clone(), a.value.clone()));
                a.value = a
                    .value
                    .split(',')
                    .map(|t| format!(":{}", t.trim()))
                    .collect::<Vec<_>>()
                    .join(",");
                a.name = "additionalnames".into();
                n.attrs.push(a);
            }
        });
    }
    if v < (7, 6) {
        root.walk_mut(&mut |n| {
            if n.name == "packagemanager" && n.text.as_deref() == Some("dnf") {
                n.text = Some("dnf4".into());
            }
        });
    }
    if v < (8, 1) {
        root.walk_mut(&mut |n| {
            if n.name == "repository" && n.get("type") == Some("rpm-dir") {
                n.remove_attr("type");
            }
        });
    }
    if v < (8, 2) {
        root.walk_mut(&mut |n| {
            if n.name == "repository" {
                n.remove_attr("use_for_bootstrap");
            }
        });
    }
    if v < (8, 3) {
        root.walk_mut(&mut |n| {
            if n.name == "type"
                && let Some(a) = n.attr_mut("btrfs_root_is_snapshot")
            {
                a.written = Some((a.name.clone(), a.value.clone()));
                a.name = "btrfs_root_is_snapper_snapshot".into();
            }
        });
    }
    if v < (8, 4) {
        // console="out in" split in two; a single value sets only the output console
        root.walk_mut(&mut |n| {
            if n.name == "bootloader"
                && let Some(mut a) = n.remove_attr("console")
            {
                a.written = Some((a.name.clone(), a.value.clone()));
                let (out, input) = match a.value.split_once(' ') {
                    Some((o, i)) => (o.to_string(), Some(i.to_string())),
                    None => (a.value.clone(), None),
                };
                let mut output = a.clone();
                output.name = "output_console".into();
                output.value = out;
                n.attrs.push(output);
                if let Some(i) = input {
                    let mut inp = a;
                    inp.name = "input_console".into();
                    inp.value = i;
                    n.attrs.push(inp);
                }
            }
        });
    }
    if v < (8, 5) {
        root.walk_mut(&mut |n| {
            if n.name == "type" {
                n.remove_attr("vga");
            }
        });
    }
    if let Some(a) = root.attr_mut("schemaversion") {
        a.value = CURRENT.into();
    }
    Ok(declared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::description::xml;
    use std::path::Path;
    use std::sync::Arc;

    fn parse(s: &str) -> Node {
        xml::parse(s, &Arc::from(Path::new("u.xml"))).unwrap()
    }

    #[test]
    fn applies_each_rewrite() {
        let mut n = parse(
            r#"<image schemaversion="7.4"><preferences><packagemanager>dnf</packagemanager>
            <type image="docker" vga="0x317" btrfs_root_is_snapshot="true"><containerconfig name="a" additionaltags="b,c"/></type>
            <bootloader console="serial"/><bootloader console="gfxterm console"/></preferences>
            <repository type="rpm-dir" use_for_bootstrap="true"/></image>"#,
        );
        assert_eq!(upgrade(&mut n).unwrap(), "7.4");
        let out = xml::write(&n);
        assert!(out.contains(r#"schemaversion="8.5""#));
        assert!(out.contains("<packagemanager>dnf4</packagemanager>"));
        assert!(out.contains(r#"additionalnames=":b,:c""#));
        assert!(out.contains("btrfs_root_is_snapper_snapshot"));
        assert!(
            !out.contains("vga") && !out.contains("rpm-dir") && !out.contains("use_for_bootstrap")
        );
        assert!(
            out.contains(r#"<bootloader output_console="serial"/>"#),
            "{out}"
        );
        assert!(out.contains(r#"output_console="gfxterm" input_console="console""#));
    }

    #[test]
    fn rejects_old_and_unknown_versions() {
        let e = upgrade(&mut parse(r#"<image schemaversion="7.3"/>"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("7.3 is too old") && e.contains("7.4"), "{e}");
        let e = upgrade(&mut parse(r#"<image schemaversion="9.1"/>"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown schema version 9.1"), "{e}");
    }
}
