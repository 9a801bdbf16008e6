//! The descriptions shipped in descriptions/: valid, XML and YAML forms equal, round trips
//! preserve the model, and they validate against the JSON Schema in schemas/.

use crate::support::skip;
use imgbuild::description::{self, Description, Node, Selection, xml, yaml};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn shipped(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("descriptions")
        .join(rel)
}

fn json(d: &Description, profiles: &[&str]) -> String {
    let sel = Selection {
        profiles: profiles
            .iter()
            .map(std::string::ToString::to_string)
            .collect(),
        build_type: None,
        target_arch: "x86_64".into(),
    };
    serde_json::to_string_pretty(&d.resolve(&sel).unwrap()).unwrap()
}

const ALL: [&str; 5] = [
    "debian-minimal",
    "debian-minimal-yaml",
    "debian-rich",
    "debian-derived",
    "debian-httpd",
];

#[test]
fn shipped_descriptions_are_valid_without_warnings() {
    for d in ALL {
        let desc = description::load(&shipped(d)).unwrap_or_else(|e| panic!("{d}: {e}"));
        assert!(desc.warnings.is_empty(), "{d}: {:?}", desc.warnings);
    }
}

#[test]
fn xml_and_yaml_forms_give_identical_json() {
    let x = description::load(&shipped("debian-minimal")).unwrap();
    let y = description::load(&shipped("debian-minimal-yaml")).unwrap();
    assert_eq!(x.markup, description::Markup::Xml);
    assert_eq!(y.markup, description::Markup::Yaml);
    for profiles in [&[][..], &["bookworm"][..]] {
        assert_eq!(
            json(&x, profiles),
            json(&y, profiles),
            "profiles {profiles:?}"
        );
    }
    let bookworm: Value = serde_json::from_str(&json(&x, &["bookworm"])).unwrap();
    assert_eq!(bookworm["repositories"].as_array().unwrap().len(), 1);
    assert_eq!(bookworm["repositories"][0]["distribution"], "bookworm");
    assert_eq!(bookworm["type"]["containerconfig"]["tag"], "12");
    let trixie: Value = serde_json::from_str(&json(&x, &[])).unwrap();
    assert_eq!(trixie["repositories"][0]["distribution"], "trixie");
    assert_eq!(trixie["repositories"][0]["source"], "apt-host:/");
    assert_eq!(
        trixie["repositories"][0]["signing_keys"][0],
        "file:///usr/share/keyrings/debian-archive-keyring.gpg"
    );
    assert_eq!(
        trixie["type"]["containerconfig"]["subcommand"]["execute"],
        "/bin/bash"
    );
}

/// The tree with children grouped by name (YAML groups repeats), positions dropped.
fn canonical(n: &Node) -> String {
    let mut grouped = n.clone();
    group(&mut grouped);
    xml::write(&grouped)
}

fn group(n: &mut Node) {
    let mut order: Vec<String> = Vec::new();
    for c in &n.children {
        if !order.contains(&c.name) {
            order.push(c.name.clone());
        }
    }
    let mut kids = std::mem::take(&mut n.children);
    kids.sort_by_key(|c| order.iter().position(|o| *o == c.name));
    for k in &mut kids {
        group(k);
    }
    n.children = kids;
}

#[test]
fn xml_to_yaml_to_xml_preserves_the_model() {
    let dir = tempfile::tempdir().unwrap();
    for d in ALL {
        let desc = description::load(&shipped(d)).unwrap();
        let y = dir.path().join(format!("{d}.yaml"));
        std::fs::write(&y, desc.to_yaml()).unwrap();
        let from_yaml = description::load(&y).unwrap_or_else(|e| panic!("{d} as YAML: {e}"));
        let x = dir.path().join(format!("{d}.xml"));
        std::fs::write(&x, from_yaml.to_xml()).unwrap();
        let back = description::load(&x).unwrap_or_else(|e| panic!("{d} back as XML: {e}"));
        assert_eq!(canonical(&desc.tree), canonical(&back.tree), "{d}");
        for profiles in [&[][..], &["bookworm"][..], &["devel"][..]] {
            if desc.active_profiles(&sel(profiles)).is_ok() {
                assert_eq!(
                    json(&desc, profiles),
                    json(&back, profiles),
                    "{d} {profiles:?}"
                );
            }
        }
    }
}

fn sel(p: &[&str]) -> Selection {
    Selection {
        profiles: p.iter().map(std::string::ToString::to_string).collect(),
        build_type: None,
        target_arch: "x86_64".into(),
    }
}

#[test]
fn corpus_round_trips_through_yaml() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = [
        std::env::var_os("IMGBUILD_KIWI_CORPUS").map(PathBuf::from),
        Some(base.join("../shared/corpus/kiwi-testdata")),
        Some(base.join("../../shared/corpus/kiwi-testdata")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_dir());
    let Some(root) = root else {
        skip(format_args!(
            "corpus_round_trips_through_yaml: KIWI corpus not found (set IMGBUILD_KIWI_CORPUS)"
        ));
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    for e in walkdir::WalkDir::new(&root)
        .into_iter()
        .filter_map(Result::ok)
    {
        let Ok(desc) = description::load(e.path()) else {
            continue;
        };
        let y = dir.path().join("c.yaml");
        std::fs::write(&y, desc.to_yaml()).unwrap();
        let back =
            description::load(&y).unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
        assert_eq!(
            canonical(&desc.tree),
            canonical(&back.tree),
            "{}",
            e.path().display()
        );
        n += 1;
    }
    assert!(n > 100, "only {n} corpus files round-tripped");
}

// ---- JSON Schema check of the YAML form ---------------------------------------------------------
// A small interpreter for the keywords schemas/imgbuild-yaml.schema.json uses ($ref, anyOf, type,
// enum, properties, additionalProperties, required, items), so the test needs no extra crate.

fn check(schema: &Value, root: &Value, v: &Value, path: &str, errs: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/$defs/");
        return check(&root["$defs"][name], root, v, path, errs);
    }
    if let Some(alts) = schema.get("anyOf").and_then(Value::as_array) {
        let ok = alts.iter().any(|a| {
            let mut e = Vec::new();
            check(a, root, v, path, &mut e);
            e.is_empty()
        });
        if !ok {
            // report the object branch's errors, the informative one
            let mut e = Vec::new();
            check(&alts[0], root, v, path, &mut e);
            errs.push(format!("{path}: matches no alternative ({})", e.join("; ")));
        }
        return;
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let actual = match v {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        if !types.contains(&actual) {
            errs.push(format!("{path}: is {actual}, expected {types:?}"));
            return;
        }
    }
    if let Some(en) = schema.get("enum").and_then(Value::as_array)
        && !en.contains(v)
    {
        errs.push(format!("{path}: {v} not in {en:?}"));
    }
    if let (Some(items), Value::Array(a)) = (schema.get("items"), v) {
        for (i, x) in a.iter().enumerate() {
            check(items, root, x, &format!("{path}[{i}]"), errs);
        }
    }
    if let Value::Object(m) = v {
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, x) in m {
            match props.and_then(|p| p.get(k)) {
                Some(s) => check(s, root, x, &format!("{path}.{k}"), errs),
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    errs.push(format!("{path}: unknown key {k}"));
                }
                None => {}
            }
        }
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(r) = r.as_str()
                && !m.contains_key(r)
            {
                errs.push(format!("{path}: missing {r}"));
            }
        }
    }
}

fn yaml_to_json(y: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match y {
        Yaml::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), yaml_to_json(v)))
                .collect(),
        ),
        _ => Value::Null,
    }
}

#[test]
fn shipped_descriptions_match_the_json_schema() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/imgbuild-yaml.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for d in ALL {
        let desc = description::load(&shipped(d)).unwrap();
        // the hand-written YAML as is, and every description through the YAML writer
        let mut texts = vec![desc.to_yaml()];
        if desc.markup == description::Markup::Yaml {
            texts.push(std::fs::read_to_string(&desc.path).unwrap());
        }
        for text in texts {
            let docs = yaml_rust2::YamlLoader::load_from_str(&text).unwrap();
            let v = yaml_to_json(&docs[0]);
            let mut errs = Vec::new();
            check(&schema, &schema, &v, "$", &mut errs);
            assert!(errs.is_empty(), "{d}: {errs:#?}");
        }
    }
    // and the schema does reject an unknown element
    let bad = serde_json::json!({"image": {"@name": "x", "@schemaversion": "8.5", "bogus": "1"}});
    let mut errs = Vec::new();
    check(&schema, &schema, &bad, "$", &mut errs);
    assert!(!errs.is_empty());
}

#[test]
fn yaml_writer_output_reads_back_positions() {
    let desc = description::load(&shipped("debian-rich")).unwrap();
    let text = yaml::write(&desc.tree);
    assert!(text.starts_with("image:\n"));
    assert!(text.contains("'@name': \"debian-rich\""));
}

#[test]
fn rnc_json_schema_and_grammar_tables_agree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let grammar: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("kiwi-8.5.grammar.json")).unwrap())
            .unwrap();
    let rnc = std::fs::read_to_string(root.join("imgbuild.rnc")).unwrap();
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("imgbuild-yaml.schema.json")).unwrap(),
    )
    .unwrap();
    let elements = grammar["elements"].as_object().unwrap();
    assert!(elements.len() > 100);
    for (name, def) in elements {
        // the RNC block of this element
        let head = format!("e.{name} = element {name} {{");
        let start = rnc
            .find(&head)
            .unwrap_or_else(|| panic!("{name} missing from imgbuild.rnc"));
        let block = &rnc[start..start + rnc[start..].find("\n}").unwrap()];
        let yaml_def = &schema["$defs"][name];
        assert!(!yaml_def.is_null(), "{name} missing from the JSON Schema");
        let yaml_text = yaml_def.to_string();
        for (attr, a) in def["attributes"].as_object().unwrap() {
            let needle = format!("attribute {attr} {{");
            let at = block
                .find(&needle)
                .unwrap_or_else(|| panic!("{name}@{attr} missing from RNC"));
            // optional attributes end with "}?", required ones with "}"
            let line = block[at..].lines().next().unwrap();
            assert_eq!(
                line.ends_with('?'),
                a["min"] == 0,
                "{name}@{attr} optionality in RNC: {line}"
            );
            assert!(
                yaml_text.contains(&format!("\"@{attr}\"")),
                "{name}@{attr} missing from JSON Schema"
            );
        }
        for child in def["children"].as_object().unwrap().keys() {
            assert!(
                block.contains(&format!("e.{child}")),
                "{name}/{child} missing from RNC"
            );
            assert!(
                yaml_text.contains(&format!("\"{child}\"")),
                "{name}/{child} missing from JSON Schema"
            );
        }
    }
    // the loader reads the same tables
    let g = imgbuild::description::grammar::grammar();
    assert_eq!(g.elements.len(), elements.len());
}
