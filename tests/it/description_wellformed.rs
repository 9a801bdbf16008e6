//! XML well-formedness: imgbuild's XML layer and expat (python3's `xml.parsers.expat`, a
//! non-validating parser) must give the same verdict on every input of a seeded, generated set
//! of malformed and well-formed variants of a shipped KIWI description.

use imgbuild::description::xml::well_formed;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use regex::Regex;
use std::path::Path;
use std::process::Command;

/// Offsets inside element text (between a `>` and the `</` that follows it).
fn text_positions(doc: &str) -> Vec<usize> {
    let re = Regex::new(r">([^<>]+)</").unwrap();
    re.captures_iter(doc)
        .filter_map(|c| c.get(1))
        .flat_map(|m| m.start()..=m.end())
        .filter(|i| doc.is_char_boundary(*i))
        .collect()
}

/// Offsets inside attribute values.
fn attr_positions(doc: &str) -> Vec<usize> {
    let re = Regex::new(r#"="([^"]*)""#).unwrap();
    re.captures_iter(doc)
        .filter_map(|c| c.get(1))
        .flat_map(|m| m.start()..=m.end())
        .filter(|i| doc.is_char_boundary(*i))
        .collect()
}

/// Offsets just after a `>` inside the root element, where markup may go.
fn boundaries(doc: &str) -> Vec<usize> {
    let start = doc.find("<image").unwrap_or(0);
    let end = doc.rfind("</image>").unwrap_or(doc.len());
    doc.match_indices('>')
        .map(|(i, _)| i + 1)
        .filter(|i| *i > start && *i <= end)
        .collect()
}

fn pick<T: Copy>(rng: &mut StdRng, v: &[T]) -> Option<T> {
    if v.is_empty() {
        None
    } else {
        Some(v[rng.gen_range(0..v.len())])
    }
}

fn insert_at(doc: &mut String, at: Option<usize>, s: &str) {
    let at = at.unwrap_or(doc.len());
    doc.insert_str(at, s);
}

/// Replace one random match of `re` (group 1) with `with(group text)`.
fn replace_one(rng: &mut StdRng, doc: &mut String, re: &str, with: &dyn Fn(&str) -> String) {
    let re = Regex::new(re).unwrap();
    let spans: Vec<(usize, usize)> = re
        .captures_iter(doc)
        .filter_map(|c| c.get(1))
        .map(|m| (m.start(), m.end()))
        .collect();
    if let Some((a, b)) = pick(rng, &spans) {
        let new = with(&doc[a..b]);
        doc.replace_range(a..b, &new);
    }
}

/// One change that keeps the document well-formed.
fn well_formed_variant(rng: &mut StdRng, doc: &mut String) {
    match rng.gen_range(0..12) {
        0 => {
            let at = pick(rng, &boundaries(doc));
            insert_at(doc, at, "<!-- note - fine --><!---->");
        }
        1 => {
            let at = pick(rng, &boundaries(doc));
            let pi = pick(
                rng,
                &["<?tool arg?>", "<?xml-stylesheet href='a'?>", "<?xmlx?>"],
            );
            insert_at(doc, at, pi.unwrap_or_default());
        }
        2 => {
            let at = pick(rng, &text_positions(doc));
            insert_at(doc, at, "<![CDATA[a < b & c ]] > -- ]]>");
        }
        3 => {
            let at = pick(rng, &[text_positions(doc), attr_positions(doc)].concat());
            let r = pick(
                rng,
                &[
                    "&#65;",
                    "&#x1F600;",
                    "&#x7F;",
                    "&#9;",
                    "&#xFFFD;",
                    "&#x10FFFF;",
                ],
            );
            insert_at(doc, at, r.unwrap_or_default());
        }
        4 => {
            let at = pick(rng, &[text_positions(doc), attr_positions(doc)].concat());
            insert_at(doc, at, "&lt;&gt;&amp;&quot;&apos;> ]] ]>");
        }
        5 => {
            let at = pick(rng, &[text_positions(doc), attr_positions(doc)].concat());
            let s = pick(
                rng,
                &["é ü 漢字", "\u{7F}\u{85}", "\t", "\r\n", "'\u{10000}"],
            );
            insert_at(doc, at, s.unwrap_or_default());
        }
        6 => replace_one(rng, doc, r"</([A-Za-z-]+)>", &|n| format!("{n} \t\n")),
        7 => replace_one(rng, doc, r#"(="[^"']*")"#, &|v| {
            format!(" =\t'{}'", &v[2..v.len() - 1])
        }),
        8 => {
            if let Some(end) = doc.find("?>")
                && doc.starts_with("<?xml")
            {
                doc.replace_range(..end + 2, "");
            }
        }
        9 => {
            *doc = doc.replacen(
                "encoding=\"utf-8\"?>",
                "encoding='UTF-8' standalone='yes' ?>",
                1,
            );
        }
        10 => {
            // <x a="1"/> → <x a="1"></x>
            let re = Regex::new(r"<([A-Za-z-]+)[^<>]*?(/>)").unwrap();
            let spans: Vec<(usize, usize, String)> = re
                .captures_iter(doc)
                .filter_map(|c| Some((c.get(2)?.start(), c.get(2)?.end(), c[1].to_string())))
                .collect();
            if let Some(i) = pick(rng, &(0..spans.len()).collect::<Vec<_>>()) {
                let (a, b, name) = &spans[i];
                doc.replace_range(*a..*b, &format!("></{name}>"));
            }
        }
        _ => {
            let at = pick(rng, &boundaries(doc));
            insert_at(doc, at, "<a:b x:y='1' _z=\"2\" z.-9='3'><c/></a:b>");
        }
    }
}

/// Characters the `Char` production leaves out.
const NOT_CHARS: [char; 9] = [
    '\u{0}', '\u{1}', '\u{8}', '\u{B}', '\u{C}', '\u{1B}', '\u{1F}', '\u{FFFE}', '\u{FFFF}',
];

/// One defect that makes the document malformed (kind `kind`).
fn defect(rng: &mut StdRng, doc: &mut String, kind: usize) {
    let text = text_positions(doc);
    let attrs = attr_positions(doc);
    let bounds = boundaries(doc);
    let anywhere = [text.clone(), attrs.clone(), bounds.clone()].concat();
    match kind {
        0 => insert_at(doc, pick(rng, &attrs), " Team <team@example.org>"),
        1 => {
            let c = pick(rng, &NOT_CHARS).unwrap_or('\u{1}').to_string();
            insert_at(doc, pick(rng, &anywhere), &c);
        }
        2 => insert_at(doc, pick(rng, &bounds), "<?xml version=\"1.0\"?>"),
        3 => {
            let lead = pick(rng, &[" ", "\n", "<!-- c -->", "<?pi?>"]).unwrap_or(" ");
            if !doc.starts_with("<?xml") {
                doc.insert_str(0, "<?xml version=\"1.0\"?>");
            }
            doc.insert_str(0, lead);
        }
        4 => {
            let s = pick(rng, &["1 < 2", "<", "< b", "<=", "<!x", "<1"]).unwrap_or("<");
            insert_at(doc, pick(rng, &text), s);
        }
        5 => {
            let bad = pick(rng, &["1", "-", ".", "\u{B7}"]).unwrap_or("1");
            replace_one(rng, doc, r"<([A-Za-z][A-Za-z-]*)\s[^<>]*/>", &|n| {
                format!("{bad}{n}")
            });
        }
        6 => replace_one(rng, doc, r#"<[A-Za-z-]+ ([A-Za-z_-]+="[^"]*")"#, &|a| {
            format!("{a} {a}")
        }),
        7 => {
            let s = pick(rng, &["&", "AT&T", "& ", "&;", "&amp"]).unwrap_or("&");
            insert_at(doc, pick(rng, &[text.clone(), attrs.clone()].concat()), s);
        }
        8 => {
            let s = pick(rng, &["&nbsp;", "&copy;", "&foo;", "&AMP;"]).unwrap_or("&nbsp;");
            insert_at(doc, pick(rng, &[text.clone(), attrs.clone()].concat()), s);
        }
        9 => {
            let s = pick(
                rng,
                &[
                    "&#0;",
                    "&#xD800;",
                    "&#xFFFE;",
                    "&#x110000;",
                    "&#1;",
                    "&#x;",
                    "&#;",
                    "&#12a;",
                    "&#xDFFF;",
                    "&#99999999999;",
                ],
            )
            .unwrap_or("&#0;");
            insert_at(doc, pick(rng, &[text.clone(), attrs.clone()].concat()), s);
        }
        10 => replace_one(rng, doc, r"</([A-Za-z-]+)>", &|n| format!("{n}x")),
        11 => replace_one(rng, doc, r"(</[A-Za-z-]+>)", &|_| String::new()),
        12 => {
            let s = pick(rng, &["<x/>", "text", "&amp;", "<![CDATA[x]]>", "</image>"])
                .unwrap_or("<x/>");
            doc.push_str(s);
        }
        13 => {
            let s =
                pick(rng, &["<!-- a -- b -->", "<!-- a --->", "<!--->"]).unwrap_or("<!-- -- -->");
            insert_at(doc, pick(rng, &bounds), s);
        }
        14 => {
            let s =
                pick(rng, &["<?XML x?>", "<?Xml?>", "<?xmL a?>", "<?xml?>"]).unwrap_or("<?XML?>");
            insert_at(doc, pick(rng, &bounds), s);
        }
        15 => insert_at(doc, pick(rng, &text), "]]>"),
        16 => replace_one(rng, doc, r#"("\s+)[A-Za-z_-]+=""#, &|_| "\"".to_string()),
        17 => replace_one(rng, doc, r#"=("[^"]*")"#, &|v| {
            v[1..v.len() - 1].to_string()
        }),
        18 => {
            let s = pick(rng, &["<!-- x", "<![CDATA[ x", "<?pi x", "<a b='1"]).unwrap_or("<!--");
            insert_at(doc, pick(rng, &bounds), s);
        }
        19 => insert_at(doc, pick(rng, &bounds), "<?1x?>"),
        // Inside the root; a DOCTYPE in the prolog is well-formed but refused on purpose.
        20 => insert_at(doc, pick(rng, &bounds), "<!DOCTYPE image>"),
        _ => replace_one(rng, doc, r"<([A-Za-z-]+)", &|n| format!("{n}\u{1}")),
    }
}

/// expat's verdict for each file: `None` when well-formed, else its message. `None` overall
/// when python3 or its expat module is missing.
fn expat_verdicts(files: &[std::path::PathBuf]) -> Option<Vec<Option<String>>> {
    let probe = Command::new("python3")
        .args(["-c", "import xml.parsers.expat"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        return None;
    }
    let script = r"
import sys, xml.parsers.expat
for path in sys.argv[1:]:
    p = xml.parsers.expat.ParserCreate()
    try:
        p.Parse(open(path, 'rb').read(), True)
        print('ok')
    except xml.parsers.expat.ExpatError as e:
        print('error', e)
";
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let verdicts: Vec<Option<String>> = text
        .lines()
        .map(|l| if l == "ok" { None } else { Some(l.to_string()) })
        .collect();
    assert_eq!(verdicts.len(), files.len(), "expat printed {text}");
    Some(verdicts)
}

#[test]
fn imgbuild_and_expat_agree_on_generated_descriptions() {
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("descriptions/debian-minimal/config.xml"),
    )
    .unwrap();
    let mut rng = StdRng::seed_from_u64(13);
    let mut docs = Vec::new();
    for i in 0..330 {
        let mut doc = base.clone();
        for _ in 0..rng.gen_range(0..3) {
            well_formed_variant(&mut rng, &mut doc);
        }
        defect(&mut rng, &mut doc, i % 22);
        docs.push(doc);
    }
    for _ in 0..90 {
        let mut doc = base.clone();
        for _ in 0..rng.gen_range(1..5) {
            well_formed_variant(&mut rng, &mut doc);
        }
        docs.push(doc);
    }
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<_> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let p = dir.path().join(format!("{i:03}.xml"));
            std::fs::write(&p, d).unwrap();
            p
        })
        .collect();
    let Some(expat) = expat_verdicts(&files) else {
        crate::support::skip(format_args!(
            "python3 with xml.parsers.expat is not available"
        ));
        return;
    };
    let mut disagree = Vec::new();
    let (mut malformed, mut fine) = (0, 0);
    for ((doc, file), theirs) in docs.iter().zip(&files).zip(&expat) {
        let ours = well_formed(doc, file);
        match (&ours, theirs) {
            (Ok(()), None) => fine += 1,
            (Err(_), Some(_)) => malformed += 1,
            _ => disagree.push(format!(
                "{}: imgbuild: {}; expat: {}",
                file.display(),
                ours.as_ref()
                    .map_or_else(ToString::to_string, |()| "ok".into()),
                theirs.as_deref().unwrap_or("ok")
            )),
        }
    }
    eprintln!(
        "{} inputs: {malformed} malformed, {fine} well-formed, {} verdicts differ",
        docs.len(),
        disagree.len()
    );
    assert!(
        disagree.is_empty(),
        "verdicts differ:\n{}",
        disagree.join("\n")
    );
    assert!(malformed >= 200, "only {malformed} malformed inputs");
    assert!(fine >= 60, "only {fine} well-formed inputs");
}
