#!/usr/bin/env python3
"""Strict JSON schemas for kubeconform from the Kubernetes OpenAPI (swagger 2.0) spec.

kubeconform's default schemas are downloaded from GitHub, which CI cannot reach; the same
spec ships in the k8s.io/kubernetes Go module (api/openapi-spec/swagger.json). For every
kind it writes OUT/<kind>[-<group>]-<version>.json (kubeconform's naming: group cut at its
first dot, all lower case) holding the kind's definition and every definition it refers to,
with additionalProperties false (kubeconform -strict) and the two string types that also
take numbers (IntOrString, Quantity) widened as Kubernetes accepts them.

usage: kube-schemas.py SWAGGER.json OUT_DIR
"""

import json
import os
import sys

NUMERIC_STRINGS = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
    "io.k8s.apimachinery.pkg.api.resource.Quantity",
}
REF = "#/definitions/"


def convert(node):
    """A swagger schema node as JSON schema: strict objects, int-or-string widened."""
    if isinstance(node, list):
        return [convert(n) for n in node]
    if not isinstance(node, dict):
        return node
    if node.get("format") == "int-or-string":
        return {"oneOf": [{"type": "string"}, {"type": "integer"}]}
    out = {k: convert(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def refs(node, found):
    """Adds the names of the definitions `node` refers to into `found`."""
    if isinstance(node, list):
        for n in node:
            refs(n, found)
    elif isinstance(node, dict):
        ref = node.get("$ref")
        # (JSONSchemaProps has a property named "$ref": a dict there.)
        if isinstance(ref, str) and ref.startswith(REF):
            found.add(ref[len(REF):])
        for v in node.values():
            refs(v, found)


def closure(definitions, name):
    """`name` and every definition reachable from it."""
    todo, seen = [name], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        found = set()
        refs(definitions[current], found)
        todo.extend(found - seen)
    return seen


def definitions_of(swagger):
    out = {}
    for name, schema in swagger["definitions"].items():
        if name in NUMERIC_STRINGS:
            out[name] = {"oneOf": [{"type": "string"}, {"type": "number"}]}
        else:
            out[name] = convert(schema)
    return out


def file_name(gvk):
    group = gvk["group"].split(".")[0].lower()
    parts = [gvk["kind"].lower()] + ([group] if group else []) + [gvk["version"].lower()]
    return "-".join(parts) + ".json"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        swagger = json.load(f)
    definitions = definitions_of(swagger)
    os.makedirs(sys.argv[2], exist_ok=True)
    written = 0
    for name, schema in swagger["definitions"].items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            # Core kinds also appear under meta types (e.g. WatchEvent in every group): the
            # definition whose own name ends in the kind is the kind's.
            if not name.endswith("." + gvk["kind"]):
                continue
            needed = closure(definitions, name)
            standalone = {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "$ref": REF + name,
                "definitions": {n: definitions[n] for n in sorted(needed)},
            }
            with open(os.path.join(sys.argv[2], file_name(gvk)), "w") as f:
                json.dump(standalone, f)
            written += 1
    print(f"{written} schemas in {sys.argv[2]}")


if __name__ == "__main__":
    main()
