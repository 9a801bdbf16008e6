#!/usr/bin/env python3
"""Add the allowed text of each text-only element to kiwi-8.5.grammar.json.

generate.py records only whether an element takes text; KIWI's schema also restricts the text of
some elements (<packagemanager> to a list of names, <rpm-excludedocs> to a boolean, <locale> to a
pattern). This reads those content patterns from kiwi.rnc and stores them as "content" on the
element, in the same shape as an attribute's "type". Elements whose text is free keep no
"content".

Usage (after generate.py): python3 schemas/element_text.py path/to/kiwi.rnc
"""
import json, os, re, sys

rnc = open(sys.argv[1]).read()
here = os.path.dirname(os.path.abspath(__file__))
path = os.path.join(here, "kiwi-8.5.grammar.json")
grammar = json.load(open(path))

def define(name):
    m = re.search(r"^\s*" + re.escape(name) + r"\s*=\s*(.*?)\n\s*(?:k\.|[a-z-]+\s*=|\})", rnc, re.S | re.M)
    return m.group(1).strip() if m else None

def alternatives(body):
    """The content pattern as attribute-type alternatives, or None for free text."""
    body = body.strip()
    if body == "text":
        return None
    if re.fullmatch(r'"[^"]*"(\s*\|\s*"[^"]*")*', body):
        return [{"values": re.findall(r'"([^"]*)"', body)}]
    m = re.fullmatch(r'xsd:(\w+)(?:\s*\{\s*pattern\s*=\s*"((?:[^"\\]|\\.)*)"\s*\})?', body)
    if m:
        alt = {"data": m.group(1)}
        if m.group(2) is not None:
            alt["pattern"] = m.group(2).replace("\\\\", "\\")
        return [alt]
    if re.fullmatch(r"[\w.-]+", body):
        inner = define(body)
        if inner is None:
            raise SystemExit("no definition of " + body)
        return alternatives(inner)
    raise SystemExit("unhandled content pattern: " + body)

for name, element in grammar["elements"].items():
    element.pop("content", None)
    if not element["text"] or element["children"]:
        continue
    m = re.search(r"element " + re.escape(name) + r"\s*\{(.*?)\n\s*\}", rnc, re.S)
    if not m:
        raise SystemExit("no element " + name)
    body = re.sub(r"k\." + re.escape(name) + r"\.attlist\s*[,&]?", "", m.group(1)).strip().rstrip("}").strip()
    content = alternatives(body)
    if content is not None:
        element["content"] = content

with open(path, "w") as f:
    json.dump(grammar, f, indent=1, sort_keys=True)
    f.write("\n")
