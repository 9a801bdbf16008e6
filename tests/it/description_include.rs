//! `<include>`: this://, file://, relative; nested includes refused; positions name the included file.

use imgbuild::description::{self, Selection};

const MAIN_HEAD: &str = r#"<image schemaversion="8.5" name="inc"><description type="system"><author>a</author><contact>c</contact><specification>s</specification></description>
<preferences><type image="docker"><containerconfig name="inc"/></type></preferences>
"#;

fn frag(repo_alias: &str) -> String {
    format!(
        "<image>\n  <repository type=\"apt-deb\" alias=\"{repo_alias}\" distribution=\"trixie\">\n    <source path=\"apt-host:/\"/>\n  </repository>\n</image>\n"
    )
}

#[test]
fn includes_resolve_in_every_form_and_keep_their_positions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("parts")).unwrap();
    std::fs::write(d.join("parts/a.xml"), frag("a")).unwrap();
    std::fs::write(d.join("b.xml"), frag("b")).unwrap();
    std::fs::write(d.join("parts/c.xml"), frag("c")).unwrap();
    let abs = d.join("parts/c.xml");
    let main = format!(
        "{MAIN_HEAD}<include from=\"this://parts/a.xml\"/>\n<include from=\"b.xml\"/>\n<include from=\"file://{}\"/>\n</image>\n",
        abs.display()
    );
    std::fs::write(d.join("config.xml"), main).unwrap();
    let desc = description::load(d).unwrap();
    let r = desc
        .resolve(&Selection {
            target_arch: "x86_64".into(),
            ..Selection::default()
        })
        .unwrap();
    let aliases: Vec<_> = r
        .repositories
        .iter()
        .map(|r| r.alias.clone().unwrap())
        .collect();
    assert_eq!(aliases, ["a", "b", "c"], "included in place, in order");
    let loc = r.repositories[0].loc.as_ref().unwrap();
    assert!(loc.file.ends_with("parts/a.xml"), "{loc}");
    assert_eq!((loc.line, loc.column), (2, 3));
}

#[test]
fn nested_and_missing_includes_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("outer.xml"),
        "<image>\n  <include from=\"inner.xml\"/>\n</image>\n",
    )
    .unwrap();
    std::fs::write(d.join("inner.xml"), frag("x")).unwrap();
    std::fs::write(
        d.join("config.xml"),
        format!("{MAIN_HEAD}<include from=\"outer.xml\"/></image>"),
    )
    .unwrap();
    let e = description::load(d).unwrap_err().to_string();
    assert!(e.contains("outer.xml:2:3: include: nested include"), "{e}");

    std::fs::write(
        d.join("config.xml"),
        format!("{MAIN_HEAD}<include from=\"this://gone.xml\"/></image>"),
    )
    .unwrap();
    let e = description::load(d).unwrap_err().to_string();
    assert!(
        e.contains("include@from: cannot read included file") && e.contains("gone.xml"),
        "{e}"
    );
}

#[test]
fn a_yaml_description_may_include_xml_and_errors_point_into_the_fragment() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("part.xml"),
        "<image>\n  <repository type=\"apt-deb\" bogus=\"1\">\n    <source path=\"apt-host:/\"/>\n  </repository>\n</image>\n",
    )
    .unwrap();
    std::fs::write(
        d.join("desc.yaml"),
        "image:\n  '@schemaversion': 8.5\n  '@name': y\n  description: {'@type': system, author: a, contact: c, specification: s}\n  preferences: {type: {'@image': docker}}\n  include: {'@from': part.xml}\n",
    )
    .unwrap();
    let e = description::load(d).unwrap_err().to_string();
    assert!(
        e.contains("part.xml:2:30: repository@bogus: unknown attribute"),
        "{e}"
    );
}
