#!/usr/bin/env python3
"""Generate lifeboat's Kubernetes schema (src/k8s/schema/k8s.json) from a pinned release.

Reads, without copying anything into the repository:
  * every `generated.proto` of k8s.io/api and the k8s.io/apimachinery packages they import, for the
    wire shape of each message (field numbers, proto types, repeated, maps);
  * the Go `types.go` files of the same packages, for what Go's encoding/json does with each field:
    the JSON name, declaration order, `json:",inline"` embeddings, pointers, `omitempty`/`omitzero`;
  * `register.go` for each package's API group, and the `+genclient` markers for the kinds that
    are API resources (and `+genclient:nonNamespaced` for their scope).

Usage (see docs/kubernetes.md, "Regenerating the schema"):
  git clone --depth 1 -b v0.36.0 https://github.com/kubernetes/api           /tmp/k8s/api
  git clone --depth 1 -b v0.36.0 https://github.com/kubernetes/apimachinery  /tmp/k8s/apimachinery
  python3 scripts/k8s-schema/generate.py --api /tmp/k8s/api --apimachinery /tmp/k8s/apimachinery \
      --release v1.36.0 --api-commit "$(git -C /tmp/k8s/api rev-parse HEAD)" \
      --apimachinery-commit "$(git -C /tmp/k8s/apimachinery rev-parse HEAD)" > src/k8s/schema/k8s.json
"""

import argparse
import json
import os
import re
import sys

SCALARS = {"string", "int32", "int64", "bool", "bytes", "double", "float", "uint32", "uint64"}

# Messages whose Go type has its own JSON form (MarshalJSON), keyed by proto name. The emitter in
# src/k8s/decode.rs implements each kind.
SPECIAL = {
    "k8s.io.apimachinery.pkg.apis.meta.v1.Time": "time",
    "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime": "microtime",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Duration": "duration",
    "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1": "rawjson",
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "rawjson",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "intorstring",
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "quantity",
}


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def proto_files(root):
    for d, _, files in os.walk(root):
        if "testapigroup" in d or "/test" in d:
            continue
        for f in files:
            if f == "generated.proto":
                yield os.path.join(d, f)


FIELD_RE = re.compile(
    r"^\s*(optional|repeated)?\s*(map<\s*([\w.]+)\s*,\s*([\w.]+)\s*>|[\w.]+)\s+(\w+)\s*=\s*(\d+)"
)


def parse_proto(text):
    """(package, {message: [(number, name, type, repeated, map_kv)]}) in declaration order."""
    text = re.sub(r"//[^\n]*", "", text)
    package = re.search(r"^package\s+([\w.]+);", text, re.M).group(1)
    messages = {}
    for m in re.finditer(r"^message\s+(\w+)\s*\{(.*?)^\}", text, re.M | re.S):
        fields = []
        for line in m.group(2).split(";"):
            f = FIELD_RE.match(line)
            if not f:
                if line.strip() and not line.strip().startswith(("option", "reserved")):
                    sys.exit(f"unparsed line in message {m.group(1)}: {line.strip()!r}")
                continue
            label, typ, mk, mv, name, num = f.groups()
            mapkv = (mk, mv) if mk else None
            fields.append((int(num), name, typ, label == "repeated", mapkv))
        messages[m.group(1)] = fields
    return package, messages


def resolve(typ, package):
    if typ in SCALARS:
        return typ
    if typ.startswith("."):
        return typ[1:]
    if "." in typ:
        return typ
    return package + "." + typ


GO_FIELD_RE = re.compile(r"^\s*(?:(\w+)\s+)?([\w.*\[\]]+(?:\[[\w.*]+\][\w.*\[\]]+)?)\s+`([^`]*)`")


def parse_go_structs(text):
    """{struct: {"fields": [(go name, go type, tags)], "genclient", "nonNamespaced", "onlyCreate"}}
    and the set of named []string types."""
    structs, slices = {}, set()
    lines = text.split("\n")
    for i, line in enumerate(lines):
        s = re.match(r"^type (\w+) \[\]string\s*$", line)
        if s:
            slices.add(s.group(1))
        m = re.match(r"^type (\w+) struct \{\s*$", line)
        if not m:
            continue
        # The markers sit in the comment blocks right above the declaration (blank lines between
        # blocks allowed), up to the previous declaration.
        j, markers = i - 1, []
        while j >= 0 and (lines[j].startswith("//") or not lines[j].strip()):
            markers.append(lines[j])
            j -= 1
        joined = "\n".join(markers)
        fields = []
        k = i + 1
        while not lines[k].startswith("}"):
            fl = lines[k]
            if not fl.strip().startswith("//"):
                f = GO_FIELD_RE.match(fl)
                if f:
                    gname, gtype, tags = f.groups()
                    if gname is None:  # embedded: the type is the name
                        gname, gtype = gtype.split(".")[-1].lstrip("*"), gtype
                    fields.append((gname, gtype, tags))
            k += 1
        structs[m.group(1)] = {
            "fields": fields,
            "genclient": re.search(r"^// \+genclient\s*$", joined, re.M) is not None,
            "nonNamespaced": "+genclient:nonNamespaced" in joined,
            "onlyCreate": "+genclient:onlyVerbs=create" in joined or "+genclient:noVerbs" in joined,
        }
    return structs, slices


def tag(tags, key):
    m = re.search(key + r':"([^"]*)"', tags)
    return m.group(1) if m else None


def go_dir_of(package, roots):
    """Directory of a proto package's Go sources."""
    if package.startswith("k8s.io.api."):
        return os.path.join(roots["api"], *package[len("k8s.io.api."):].split("."))
    if package.startswith("k8s.io.apimachinery."):
        return os.path.join(roots["apimachinery"], *package[len("k8s.io.apimachinery."):].split("."))
    return None


def guess_resource(kind):
    """apimachinery's meta.UnsafeGuessKindToResource, which the apiserver uses for built-ins."""
    s = kind.lower()
    if s == "endpoints":
        return s
    if s.endswith("s"):
        return s + "es"
    if s.endswith("y"):
        return s[:-1] + "ies"
    return s + "s"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--api", required=True)
    ap.add_argument("--apimachinery", required=True)
    ap.add_argument("--release", required=True)
    ap.add_argument("--api-commit", default="")
    ap.add_argument("--apimachinery-commit", default="")
    a = ap.parse_args()
    roots = {"api": a.api, "apimachinery": a.apimachinery}

    protos = {}
    for root in (a.api, os.path.join(a.apimachinery, "pkg")):
        for p in sorted(proto_files(root)):
            package, messages = parse_proto(read(p))
            protos[package] = messages

    out_messages, kinds, groups, warnings = {}, [], {}, []
    for package, messages in sorted(protos.items()):
        d = go_dir_of(package, roots)
        structs, slices = {}, set()
        for f in sorted(os.listdir(d)):
            if f.endswith(".go") and not f.endswith("_test.go") and not f.startswith("zz_"):
                s, sl = parse_go_structs(read(os.path.join(d, f)))
                structs.update(s)
                slices |= sl
        group = None
        reg = os.path.join(d, "register.go")
        if os.path.exists(reg):
            g = re.search(r'GroupName\s*=\s*"([^"]*)"', read(reg))
            group = g.group(1) if g else None
        version = package.split(".")[-1]
        if package.startswith("k8s.io.api.") and group is not None:
            gv = f"{group}/{version}" if group else version
            groups[gv] = package

        for mname, pfields in messages.items():
            full = f"{package}.{mname}"
            entry = {}
            if full in SPECIAL:
                entry["special"] = SPECIAL[full]
            if mname in slices and len(pfields) == 1 and pfields[0][1] == "items":
                entry["special"] = "bareArray"
            by_num = {p[0]: p for p in pfields}
            st = structs.get(mname)
            fields = []
            if st is None:
                if "special" not in entry:
                    warnings.append(f"no Go struct for {full}; using proto order and names")
                for num, name, typ, rep, mapkv in pfields:
                    fields.append(field_entry(num, name, typ, rep, mapkv, package, None, ""))
            else:
                used = set()
                for gname, gtype, tags in st["fields"]:
                    pt = tag(tags, "protobuf")
                    jt = tag(tags, "json")
                    if pt is None or pt == "-":
                        continue
                    num = int(pt.split(",")[1])
                    if num not in by_num:
                        warnings.append(f"{full}: Go field {gname} has protobuf number {num} not in the proto")
                        continue
                    used.add(num)
                    _, pname, typ, rep, mapkv = by_num[num]
                    fields.append(field_entry(num, pname, typ, rep, mapkv, package, jt, gtype))
                for num, name, typ, rep, mapkv in pfields:
                    if num not in used:
                        warnings.append(f"{full}: proto field {name}={num} has no Go field; emitted last")
                        fields.append(field_entry(num, name, typ, rep, mapkv, package, None, ""))
                if (
                    st["genclient"]
                    and not st["onlyCreate"]
                    and group is not None
                    and pfields
                    and pfields[0][1] == "metadata"
                ):
                    kinds.append(
                        {
                            "group": group,
                            "version": version,
                            "kind": mname,
                            "resource": guess_resource(mname),
                            "namespaced": not st["nonNamespaced"],
                        }
                    )
            entry["fields"] = fields
            out_messages[full] = entry

    for w in warnings:
        print("warning:", w, file=sys.stderr)
    doc = {
        "release": a.release,
        "generatedFrom": {
            "k8s.io/api": a.api_commit,
            "k8s.io/apimachinery": a.apimachinery_commit,
            "by": "scripts/k8s-schema/generate.py",
        },
        "groupVersions": dict(sorted(groups.items())),
        "kinds": sorted(kinds, key=lambda k: (k["group"], k["version"], k["kind"])),
        "messages": out_messages,
    }
    json.dump(doc, sys.stdout, separators=(",", ":"), sort_keys=False)
    sys.stdout.write("\n")


def field_entry(num, pname, typ, rep, mapkv, package, jsontag, gotype):
    """One field: proto number and type, then the Go facts the JSON emitter needs."""
    f = {"no": num}
    if mapkv:
        f["map"] = [resolve(mapkv[0], package), resolve(mapkv[1], package)]
    else:
        f["type"] = resolve(typ, package)
        if rep:
            f["repeated"] = True
    if jsontag is None:
        f["json"] = pname
    else:
        parts = jsontag.split(",")
        if parts[0] == "" and "inline" in parts[1:]:
            f["inline"] = True
        f["json"] = parts[0] or pname
        if "omitempty" in parts[1:]:
            f["omitempty"] = True
        if "omitzero" in parts[1:]:
            f["omitzero"] = True
    if gotype.startswith("*"):
        f["pointer"] = True
    return f


if __name__ == "__main__":
    main()
