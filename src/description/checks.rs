//! Semantic checks beyond the grammar: the schematron rules and KIWI runtime checks that matter
//! to container builds, run on the whole (unselected) description.

use super::Diagnostic;
use super::tree::Node;
use crate::reference;
use regex::Regex;
use std::collections::BTreeSet;
use std::sync::OnceLock;

struct Patterns {
    signal: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        // Fixed patterns; a failure would be a defect caught by every test run.
        let re = |s: &str| match Regex::new(s) {
            Ok(r) => r,
            Err(e) => panic!("bad built-in pattern {s}: {e}"),
        };
        Patterns {
            signal: re(r"^(SIG[A-Z0-9]+([+-][0-9]+)?|[0-9]+)$"),
        }
    })
}

/// Append every semantic problem of `image` to `out`.
/// Problems that KIWI accepts but that are almost certainly mistakes go to `warnings`.
pub(crate) fn check(image: &Node, out: &mut Vec<Diagnostic>, warnings: &mut Vec<Diagnostic>) {
    let p = patterns();
    // profiles: unique names, known references
    let mut defined = BTreeSet::new();
    for prof in image
        .children_named("profiles")
        .flat_map(|s| s.children_named("profile"))
    {
        if let Some(name) = prof.get("name")
            && !defined.insert(name.to_string())
        {
            out.push(Diagnostic::new(
                prof.loc.clone(),
                "profile@name",
                format!("profile {name:?} is defined twice"),
            ));
        }
    }
    let mut refs = Vec::new();
    image
        .children
        .iter()
        .for_each(|c| collect_profile_refs(c, &mut refs));
    for (loc, name, is_requires) in refs {
        if !defined.contains(&name) {
            // KIWI ignores a section whose profiles= names no defined profile, so that is only
            // a warning; a <requires> of an undefined profile makes selection fail, an error.
            let sink = if is_requires {
                &mut *out
            } else {
                &mut *warnings
            };
            sink.push(Diagnostic::new(
                loc,
                "profiles",
                format!(
                    "profile {name:?} is not defined; defined profiles: {}",
                    if defined.is_empty() {
                        "none".to_string()
                    } else {
                        defined.iter().cloned().collect::<Vec<_>>().join(", ")
                    }
                ),
            ));
        }
    }

    if image.children_named("repository").next().is_none() {
        // KIWI reads such a description but refuses to build it ("No repositories configured")
        // unless repositories are given on the command line, as imgbuild's --add-repo does.
        warnings.push(Diagnostic::new(
            image.loc.clone(),
            "image",
            "no <repository>: a build has nothing to install packages from unless given \
             --add-repo (add a <repository type=\"apt-deb\"> element)"
                .into(),
        ));
    }

    let managers: BTreeSet<&str> = image
        .children_named("preferences")
        .filter_map(|p| p.child_text("packagemanager"))
        .collect();
    for sec in image.children_named("packages") {
        let kind = sec.get("type").unwrap_or_default();
        if let Some(a) = sec.attr("bootstrap_package")
            && (managers.iter().any(|m| *m != "apt") || managers.is_empty())
        {
            out.push(Diagnostic::new(
                a.loc.clone(),
                "packages@bootstrap_package",
                "bootstrap_package is only supported with packagemanager apt".into(),
            ));
        }
        for m in sec.children_named("collectionModule") {
            if kind != "bootstrap" {
                out.push(Diagnostic::new(
                    m.loc.clone(),
                    "collectionModule",
                    "collectionModule is only available in the bootstrap packages section".into(),
                ));
            }
            if m.get("enable") != Some("true") && m.attr("stream").is_some() {
                out.push(Diagnostic::new(
                    m.loc.clone(),
                    "collectionModule@stream",
                    "the stream attribute is not allowed when disabling a module".into(),
                ));
            }
        }
    }

    for ty in image
        .children_named("preferences")
        .flat_map(|p| p.children_named("type"))
    {
        let Some(cc) = ty.child("containerconfig") else {
            continue;
        };
        // appx/wsl and oem use the name for other things; OCI naming rules apply to images only.
        // Names and tags are checked by the same rules as the command-line flags.
        let oci = matches!(ty.get("image"), Some("docker" | "oci"));
        if let (Some(a), true) = (cc.attr("name"), oci)
            && let Err(e) = reference::check_name(&a.value)
        {
            out.push(Diagnostic::new(
                a.loc.clone(),
                "containerconfig@name",
                format!(
                    "{} is not a valid container name: {}",
                    e.shown_value(),
                    e.reason
                ),
            ));
        }
        if let Some(a) = cc.attr("tag")
            && let Err(e) = reference::check_tag(&a.value)
        {
            out.push(Diagnostic::new(
                a.loc.clone(),
                "containerconfig@tag",
                e.to_string(),
            ));
        }
        if let Some(a) = cc.attr("additionalnames") {
            // additionaltags="a,b" (before 7.5) was upgraded to ":a,:b": name what was written.
            let written: Vec<&str> = a.written_value().split(',').map(str::trim).collect();
            let tags_only = a.written_name() == "additionaltags";
            for (i, entry) in a.value.split(',').map(str::trim).enumerate() {
                // The forms `image::config::repo_tags` expands: `name:tag`, `:tag`, `name:`, `name`.
                let checked = match reference::split_tag(entry) {
                    ("", Some("")) => Err(None),
                    ("", Some(tag)) => reference::check_tag(tag).map_err(Some),
                    (name, Some("") | None) => reference::check_name(name).map_err(Some),
                    (name, Some(tag)) => reference::check_name(name)
                        .and_then(|()| reference::check_tag(tag))
                        .map_err(Some),
                };
                if let Err(e) = checked {
                    let shown = written.get(i).copied().unwrap_or(entry);
                    let message = match (tags_only, e) {
                        (true, Some(e)) => e.to_string(),
                        (true, None) => format!("{shown:?} is not a valid tag"),
                        (false, e) => format!(
                            "{shown:?} is not of the form name:tag, :tag or name:{}",
                            e.map_or(String::new(), |e| format!(" ({e})"))
                        ),
                    };
                    // `%RELEASE%` and its kin are filled in by the Open Build Service before
                    // KIWI reads the description; say so, since that is where they come from.
                    let message = if shown.contains('%') {
                        format!(
                            "{message}; %…% variables are substituted by the Open Build Service before KIWI runs: replace them with values"
                        )
                    } else {
                        message
                    };
                    out.push(Diagnostic::new(
                        a.loc.clone(),
                        &format!("containerconfig@{}", a.written_name()),
                        message,
                    ));
                }
            }
        }
        for label in cc
            .children_named("labels")
            .flat_map(|l| l.children_named("label"))
        {
            if let Some(a) = label.attr("name")
                && let Err(e) = reference::check_label_name(&a.value)
            {
                out.push(Diagnostic::new(a.loc.clone(), "label@name", e.to_string()));
            }
        }
        if let Some(sig) = cc.child("stopsignal") {
            let v = sig.text.as_deref().unwrap_or("");
            if !p.signal.is_match(v) {
                out.push(Diagnostic::new(
                    sig.loc.clone(),
                    "stopsignal",
                    format!("{v:?} is not a signal name (SIGTERM, SIGRTMIN+3) or number"),
                ));
            }
        }
    }
}

fn collect_profile_refs(n: &Node, out: &mut Vec<(super::Loc, String, bool)>) {
    if n.name == "extension" {
        return;
    }
    if n.name != "profile"
        && let Some(a) = n.attr("profiles")
    {
        for name in a.value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            out.push((a.loc.clone(), name.to_string(), false));
        }
    }
    if n.name == "requires"
        && let Some(a) = n.attr("profile")
    {
        out.push((a.loc.clone(), a.value.trim().to_string(), true));
    }
    for c in &n.children {
        collect_profile_refs(c, out);
    }
}
