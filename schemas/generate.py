#!/usr/bin/env python3
"""Derive imgbuild's description grammar from KIWI's schema 8.5.

Input: the XML form (kiwi.rng) of KIWI's kiwi.rnc. Output, all checked in next to this script:
  kiwi-8.5.grammar.json  the element/attribute tables imgbuild's validator loads
  imgbuild.rnc           the same grammar as RelaxNG compact, for people and external validators
  imgbuild-yaml.schema.json  JSON Schema of the YAML form (xmltodict convention)

Usage: python3 schemas/generate.py path/to/kiwi.rng
then:  python3 schemas/element_text.py path/to/kiwi.rnc   (adds what element text may be)
Only run when the grammar changes; the Rust code never needs Python.
"""
import json, re, sys
import xml.etree.ElementTree as ET

RNG = "{http://relaxng.org/ns/structure/1.0}"
SCH = "{http://purl.oclc.org/dsdl/schematron}"
INF = 1 << 30
# Attributes present in newer KIWI releases than the reference kiwi.rnc (KIWI 10.3.9): dropped so the
# grammar matches the reference exactly.
NEWER_THAN_REFERENCE = {"efimountoptions", "apply_dps_codes", "overlayroot_readonly_createoptions"}

root = ET.parse(sys.argv[1]).getroot()
defines = {}
for d in root.iter(RNG + "define"):
    name = d.get("name")
    if d.get("combine"):
        defines.setdefault(name, []).extend(list(d))
    else:
        defines[name] = list(d)

def kids(n):
    return [c for c in n if c.tag.startswith(RNG)]

def expand(n, seen=()):
    """Yield the children of a pattern with refs resolved in place (refs stay as groups)."""
    return kids(n)

elements = {}  # name -> dict
rules = []

def attr_type(n):
    """Alternatives an attribute value may take."""
    alts = []
    def walk(p):
        t = p.tag[len(RNG):] if p.tag.startswith(RNG) else None
        if t is None:
            return
        if t == "value":
            alts.append({"value": p.text or ""})
        elif t == "data":
            a = {"data": p.get("type")}
            for prm in p.findall(RNG + "param"):
                if prm.get("name") == "pattern":
                    a["pattern"] = prm.text
            alts.append(a)
        elif t == "text":
            alts.append({"data": "string"})
        elif t == "ref":
            for c in defines[p.get("name")]:
                walk(c)
        elif t in ("choice", "group"):
            for c in kids(p):
                walk(c)
        elif t == "empty":
            alts.append({"value": ""})
    ks = kids(n)
    if not ks:
        return [{"data": "string"}]
    for c in ks:
        walk(c)
    # merge plain values into one enum alternative
    vals = [a["value"] for a in alts if "value" in a]
    out = [a for a in alts if "value" not in a]
    if vals:
        out.insert(0, {"values": vals})
    return out

def collect_sch(n, owner):
    for p in n.iter(SCH + "pattern"):
        isa = p.get("is-a")
        if not isa:
            continue
        params = {q.get("name"): q.get("value") for q in p.findall(SCH + "param")}
        rules.append({"kind": isa, "element": owner, **params})

def content(n, acc_a, acc_c, flags, seen):
    """Cardinalities: returns (attrs, children) dicts name -> [min, max]."""
    t = n.tag[len(RNG):] if n.tag.startswith(RNG) else None
    if t is None:
        return {}, {}
    if t == "element":
        nm = n.get("name")
        if nm is None:
            flags["any"] = True
            return {}, {}
        define_element(n)
        return {}, {nm: [1, 1]}
    if t == "attribute":
        nm = n.get("name")
        if nm is None or nm in NEWER_THAN_REFERENCE:
            return {}, {}
        ty = attr_type(n)
        acc_a.setdefault(nm, ty)
        collect_sch(n, None)
        return {nm: [1, 1]}, {}
    if t in ("text", "data", "value"):
        flags["text"] = True
        return {}, {}
    if t in ("empty", "notAllowed"):
        return {}, {}
    if t == "ref":
        name = n.get("name")
        for c in defines[name]:
            if c.tag.startswith(SCH):
                pass
        for sp in [c for c in defines[name] if c.tag == SCH + "pattern"]:
            pass
        return seq(defines[name], acc_a, acc_c, flags, seen)
    if t in ("group", "interleave", "mixed"):
        if t == "mixed":
            flags["text"] = True
        return seq(kids(n), acc_a, acc_c, flags, seen)
    if t == "choice":
        branches = [content(c, acc_a, acc_c, flags, seen) for c in kids(n)]
        out = []
        for i in (0, 1):
            names = set().union(*[b[i].keys() for b in branches])
            d = {}
            for nm in names:
                mins = [b[i].get(nm, [0, 0])[0] for b in branches]
                maxs = [b[i].get(nm, [0, 0])[1] for b in branches]
                d[nm] = [min(mins), max(maxs)]
            out.append(d)
        return out[0], out[1]
    if t == "optional":
        a, c = seq(kids(n), acc_a, acc_c, flags, seen)
        return ({k: [0, v[1]] for k, v in a.items()}, {k: [0, v[1]] for k, v in c.items()})
    if t in ("zeroOrMore", "oneOrMore"):
        a, c = seq(kids(n), acc_a, acc_c, flags, seen)
        lo = (lambda v: 0) if t == "zeroOrMore" else (lambda v: v[0])
        return ({k: [lo(v), v[1]] for k, v in a.items()}, {k: [lo(v), INF] for k, v in c.items()})
    if t == "list":
        flags["text"] = True
        return {}, {}
    raise SystemExit("unhandled pattern " + t)

def seq(nodes, acc_a, acc_c, flags, seen):
    a_out, c_out = {}, {}
    for c in nodes:
        if not c.tag.startswith(RNG):
            continue
        a, ch = content(c, acc_a, acc_c, flags, seen)
        for src, dst in ((a, a_out), (ch, c_out)):
            for k, v in src.items():
                if k in dst:
                    dst[k] = [dst[k][0] + v[0], min(INF, dst[k][1] + v[1])]
                else:
                    dst[k] = list(v)
    return a_out, c_out

in_progress = set()
def define_element(n):
    nm = n.get("name")
    if nm in elements or nm in in_progress:
        return
    in_progress.add(nm)
    acc_a, acc_c, flags = {}, {}, {"text": False, "any": False}
    body = [c for c in n if c.tag != RNG + "name"]
    a, c = seq(body, acc_a, acc_c, flags, ())
    # schematron rules attached anywhere under this element's attribute defines
    elements[nm] = {
        "attributes": {k: {"min": a[k][0], "type": acc_a[k]} for k in sorted(a)},
        "children": {k: [c[k][0], "n" if c[k][1] >= INF or c[k][1] > 1 else 1] for k in sorted(c)},
        "text": flags["text"],
        "any": flags["any"],
    }
    in_progress.discard(nm)

start = root.find(RNG + "start")
for c in kids(start):
    content(c, {}, {}, {"text": False, "any": False}, ())

# schematron patterns, keyed by the attribute define they sit in
for name, nodes in defines.items():
    m = re.match(r"k\.(\w+)\.", name)
    owner = m.group(1) if m else None
    for c in nodes:
        for p in ([c] if c.tag == SCH + "pattern" else []) + list(c.iter(SCH + "pattern")):
            isa = p.get("is-a")
            if not isa:
                continue
            params = {q.get("name"): q.get("value") for q in p.findall(SCH + "param")}
            if params.get("attr") in NEWER_THAN_REFERENCE:
                continue
            r = {"kind": isa, "element": owner}
            if "attr" in params:
                r["attr"] = params["attr"]
            if "types" in params:
                r["types"] = params["types"].split()
            if r not in rules:
                rules.append(r)
rules = [r for r in rules if r.get("element")]
rules.sort(key=lambda r: (r["kind"], r["element"], r.get("attr", "")))

grammar = {
    "source": "KIWI kiwi.rnc, schemaversion 8.5 (OSInside/kiwi fb48da9ce9213b756188066cb61b4049e0f863ea)",
    "root": "image",
    "elements": {k: elements[k] for k in sorted(elements)},
    "rules": rules,
}
here = __file__.rsplit("/", 1)[0]
with open(here + "/kiwi-8.5.grammar.json", "w") as f:
    json.dump(grammar, f, indent=1, sort_keys=True)
    f.write("\n")

# ---- RelaxNG compact rendering -------------------------------------------------------------
def rnc_type(alts):
    parts = []
    for a in alts:
        if "values" in a:
            parts.extend(json.dumps(v) for v in a["values"])
        elif a["data"] == "string":
            parts.append("text")
        elif "pattern" in a:
            parts.append('xsd:%s { pattern = %s }' % (a["data"], json.dumps(a["pattern"])))
        else:
            parts.append("xsd:" + a["data"])
    return " | ".join(parts) if parts else "text"

def ident(n):
    return "e." + n
lines = [
    "# imgbuild description schema (KIWI schemaversion 8.5 element and attribute grammar).",
    "# Generated by schemas/generate.py from KIWI's kiwi.rnc; do not edit by hand.",
    "# Children and attributes are interleaved; '?' at most once, '*' any number, '+' at least one.",
    "# imgbuild also accepts schemaversion 7.4 to 8.4 and upgrades it (docs/descriptions.md).",
    'datatypes xsd = "http://www.w3.org/2001/XMLSchema-datatypes"',
    "",
    "start = " + ident("image"),
    "",
]
for nm in sorted(elements):
    e = elements[nm]
    items = []
    for an, ad in e["attributes"].items():
        items.append("attribute %s { %s }%s" % (an, rnc_type(ad["type"]), "" if ad["min"] else "?"))
    for cn, (lo, hi) in e["children"].items():
        suf = {(0, 1): "?", (1, 1): "", (0, "n"): "*"}.get((lo, hi), "+")
        items.append(ident(cn) + suf)
    if e["text"]:
        items.append("text")
    if e["any"]:
        items.append("any.content*")
    body = ("\n    " + "& ").join(items) if items else "empty"
    lines.append("%s = element %s {\n    %s\n}" % (ident(nm), nm, body))
lines.append("any.content = element * { attribute * { text }* & text & any.content* }")
with open(here + "/imgbuild.rnc", "w") as f:
    f.write("\n".join(lines) + "\n")

# ---- JSON Schema for the YAML form ------------------------------------------------------------
def scalar_schema(alts):
    return {"type": ["string", "number", "boolean"]}

defs = {}
for nm in sorted(elements):
    e = elements[nm]
    props = {}
    for an, ad in e["attributes"].items():
        s = {"type": ["string", "number", "boolean"]}
        vals = [v for a in ad["type"] if "values" in a for v in a["values"]]
        if vals and len(ad["type"]) == 1:
            s = {"enum": vals + [v for v in ("true", "false") if False]}
            if set(vals) <= {"true", "false"}:
                s = {"enum": vals + [v == "true" for v in vals]}
            else:
                # YAML may write numeric-looking values plain (schemaversion: 8.5)
                nums = [json.loads(v) for v in vals if re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", v)]
                s = {"enum": vals + nums}
        props["@" + an] = s
    for cn, (lo, hi) in e["children"].items():
        ref = {"$ref": "#/$defs/" + cn}
        props[cn] = {"anyOf": [ref, {"type": "array", "items": ref}]} if hi == "n" else ref
    if e["text"]:
        props["#text"] = {"type": ["string", "number", "boolean"]}
    obj = {"type": "object", "properties": props, "additionalProperties": bool(e["any"])}
    req = ["@" + an for an, ad in e["attributes"].items() if ad["min"]]
    if req:
        obj["required"] = req
    alts = [obj]
    if not e["attributes"] or not req:
        alts.append({"type": ["string", "number", "boolean", "null"]} if e["text"] or not props else {"type": "null"})
    defs[nm] = {"anyOf": alts} if len(alts) > 1 else obj
schema = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://imgbuild.invalid/schemas/imgbuild-yaml.schema.json",
    "title": "imgbuild image description, YAML form (KIWI schemaversion 8.5, xmltodict convention)",
    "type": "object",
    "properties": {"image": {"$ref": "#/$defs/image"}},
    "required": ["image"],
    "additionalProperties": False,
    "$defs": defs,
}
with open(here + "/imgbuild-yaml.schema.json", "w") as f:
    json.dump(schema, f, indent=1, sort_keys=True)
    f.write("\n")
print(len(elements), "elements,", len(rules), "rules")
