//! Hostile descriptions get a clear error, fast, without a panic.

use imgbuild::description::{self, DescriptionError, MAX_DEPTH, MAX_FILE_SIZE};
use std::path::Path;

fn load_text(name: &str, bytes: &[u8]) -> Result<description::Description, DescriptionError> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    description::load(&p)
}

fn err(name: &str, bytes: &[u8]) -> String {
    // Blow-ups (entity expansion, deep nesting) would show as a hang, not as a slow pass.
    match load_text(name, bytes) {
        Ok(_) => panic!("{name}: hostile input accepted"),
        Err(e) => e.to_string(),
    }
}

const HEAD: &str = r#"<image schemaversion="8.5" name="x"><description type="system"><author>a</author><contact>c</contact><specification>s</specification></description><preferences><type image="docker"/></preferences>"#;

#[test]
fn malformed_xml_names_the_position() {
    let e = err(
        "config.xml",
        b"<image schemaversion=\"8.5\" name=\"x\">\n  <preferences>\n</image>\n",
    );
    assert!(
        e.contains("config.xml:3:1: xml: closing tag </image> does not match <preferences>"),
        "{e}"
    );
}

#[test]
fn entity_bombs_and_external_entities_are_refused() {
    let billion = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<image schemaversion="8.5" name="&lol3;"/>"#;
    let e = err("config.xml", billion.as_bytes());
    assert!(e.contains("DOCTYPE declarations are not allowed"), "{e}");
    let xxe = r#"<!DOCTYPE image [<!ENTITY x SYSTEM "file:///etc/passwd">]><image name="&x;"/>"#;
    assert!(err("config.xml", xxe.as_bytes()).contains("DOCTYPE"));
    // an undeclared entity without a DOCTYPE
    let e = err(
        "config.xml",
        format!("{HEAD}<repository><source path=\"&x;\"/></repository></image>").as_bytes(),
    );
    assert!(e.contains("&x;") || e.contains("entity"), "{e}");
}

#[test]
fn deep_nesting_is_capped() {
    let depth = 100_000;
    let mut s = String::from("<image>");
    s.push_str(&"<a>".repeat(depth));
    s.push_str(&"</a>".repeat(depth));
    s.push_str("</image>");
    let e = err("config.xml", s.as_bytes());
    assert!(e.contains(&format!("deeper than {MAX_DEPTH}")), "{e}");
    let yaml = format!("image:\n  a: {}1{}\n", "[".repeat(depth), "]".repeat(depth));
    let e = err("config.yaml", yaml.as_bytes());
    assert!(e.contains("deeper than") || e.contains("recursion"), "{e}");
}

#[test]
fn oversized_files_are_refused_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.xml");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(100 * 1024 * 1024).unwrap(); // sparse 100 MB
    // Refused from the file's size alone (TooLarge carries it), before any byte is read.
    let e = description::load(&p).unwrap_err();
    assert!(
        matches!(e, DescriptionError::TooLarge { size, limit, .. } if size == 100 * 1024 * 1024 && limit == MAX_FILE_SIZE)
    );
    assert!(e.to_string().contains(&MAX_FILE_SIZE.to_string()));
}

#[test]
fn invalid_utf8_reports_line_and_column() {
    let mut b = b"<image schemaversion=\"8.5\" name=\"x\">\n  <x a=\"".to_vec();
    b.extend_from_slice(&[0xff, 0xfe]);
    b.extend_from_slice(b"\"/>\n</image>\n");
    let e = err("config.xml", &b);
    assert!(
        e.contains("config.xml:2:9") && e.contains("invalid UTF-8"),
        "{e}"
    );
}

#[test]
fn yaml_alias_bombs_are_refused() {
    let bomb = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nimage: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n";
    let e = err("config.yaml", bomb.as_bytes());
    assert!(
        e.contains("aliases are not allowed") && e.contains("config.yaml:2:"),
        "{e}"
    );
}

#[test]
fn several_errors_are_reported_at_once() {
    let text = format!(
        "{HEAD}\n<repository type=\"apt-dev\" bogus=\"1\"><source path=\"x\"/></repository>\n<packages type=\"image\"><pakage name=\"a\"/></packages></image>"
    );
    let r = load_text("config.xml", text.as_bytes());
    let e = r.unwrap_err();
    let d = e.diagnostics();
    assert!(d.len() >= 3, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("repository@type") && msg.contains("apt-deb"),
        "{msg}"
    );
    assert!(msg.contains("repository@bogus: unknown attribute"), "{msg}");
    assert!(
        msg.contains("pakage: unknown element in <packages>"),
        "{msg}"
    );
    assert!(msg.contains("config.xml:2:"), "{msg}");
}

#[test]
fn semantic_checks_name_the_problem() {
    let cases = [
        (
            r#"<containerconfig name="Bad Name"/>"#,
            "not a valid container name",
        ),
        (
            r#"<containerconfig name="ok" tag="-x"/>"#,
            "not a valid tag",
        ),
        (
            r#"<containerconfig name="a..b"/>"#,
            "not a valid container name: \"..\" in \"a..b\" is not a separator",
        ),
        (
            r#"<containerconfig name="ok" additionalnames="ok:v1,Bad:v2"/>"#,
            "\"Bad:v2\" is not of the form",
        ),
        (
            &format!(r#"<containerconfig name="ok" tag="{}"/>"#, "t".repeat(129)),
            "at most 128 are allowed",
        ),
        (
            r#"<containerconfig name="ok"><labels><label name="a b" value="x"/></labels></containerconfig>"#,
            "label@name: \"a b\" is not a valid label name",
        ),
        (
            r#"<containerconfig name="ok"><stopsignal>TERM</stopsignal></containerconfig>"#,
            "not a signal name",
        ),
        (
            r#"<containerconfig name="ok"><expose><port number="80/sctp"/></expose></containerconfig>"#,
            "port@number",
        ),
    ];
    for (cc, want) in cases {
        let text = HEAD.replace(
            r#"<type image="docker"/>"#,
            &format!(r#"<type image="docker">{cc}</type>"#),
        ) + "</image>";
        let e = err("config.xml", text.as_bytes());
        assert!(e.contains(want), "{cc}: {e}");
    }
    let tbz = HEAD.replace(
        r#"<type image="docker"/>"#,
        r#"<type image="tbz"><containerconfig name="x"/></type>"#,
    ) + "</image>";
    assert!(
        err("config.xml", tbz.as_bytes()).contains("only available for the following image types")
    );
    let zypper = HEAD.replace("<type", "<packagemanager>zypper</packagemanager><type")
        + r#"<packages type="bootstrap" bootstrap_package="b"/></image>"#;
    assert!(
        err("config.xml", zypper.as_bytes())
            .contains("bootstrap_package is only supported with packagemanager apt")
    );
    let module = format!(
        r#"{HEAD}<packages type="image"><collectionModule name="m" enable="true"/></packages></image>"#
    );
    assert!(
        err("config.xml", module.as_bytes())
            .contains("only available in the bootstrap packages section")
    );
    let dup = format!(
        r#"{HEAD}<profiles><profile name="a" description="d"/><profile name="a" description="d"/></profiles></image>"#
    );
    assert!(err("config.xml", dup.as_bytes()).contains("defined twice"));
    let req = format!(
        r#"{HEAD}<profiles><profile name="a" description="d"><requires profile="zz"/></profile></profiles></image>"#
    );
    assert!(err("config.xml", req.as_bytes()).contains("\"zz\" is not defined"));
}

#[test]
fn fuzz_like_garbage_never_panics() {
    // a cheap deterministic sweep: truncations and byte flips of a real description
    let src = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("descriptions/debian-rich/config.xml"),
    )
    .unwrap();
    let ysrc = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("descriptions/debian-minimal-yaml/config.kiwi"),
    )
    .unwrap();
    for (name, s) in [("f.xml", &src), ("f.yaml", &ysrc)] {
        let mut seed = 0x9e3779b97f4a7c15u64;
        for i in 0..400 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut b = s.clone();
            if i % 2 == 0 {
                b.truncate((seed as usize) % b.len());
            } else {
                let at = (seed as usize) % b.len();
                b[at] = (seed >> 32) as u8;
            }
            let _ = description::parse_bytes(&b, Path::new(name));
        }
    }
}

#[test]
fn adversarial_files_under_the_size_limit_stay_bounded() {
    // one 15 MiB line of <type> elements, each with the most attributes allowed, all unknown:
    // positions, duplicate checks and error collection must not go quadratic or balloon
    let attrs: String = (0..description::MAX_ATTRS)
        .map(|i| format!(" z{i}=\"\""))
        .collect();
    let elem = format!("<type image=\"docker\"{attrs}/>");
    let count = (15 * 1024 * 1024) / elem.len();
    let mut s = String::from("<image schemaversion=\"8.5\" name=\"x\"><preferences>");
    for _ in 0..count {
        s.push_str(&elem);
    }
    s.push_str("</preferences></image>");
    let e = load_text("config.xml", s.as_bytes()).unwrap_err();
    assert!(e.diagnostics().len() <= description::MAX_DIAGNOSTICS + 1);

    // a YAML mapping with very many keys
    let mut y = String::from("image:\n");
    let mut i = 0;
    while y.len() < 15 * 1024 * 1024 {
        y.push_str(&format!("  k{i}: v\n"));
        i += 1;
    }
    assert!(load_text("config.yaml", y.as_bytes()).is_err());
}
