#!/usr/bin/env python3
"""Renders every overlay with `kubectl kustomize` and validates each object
strictly: built-in kinds against the Kubernetes OpenAPI schemas of the
oldest and newest versions we support (PyPI kubernetes-validate), custom
resources (KEDA ScaledObject, Prometheus Operator ServiceMonitor) against
the CRDs they publish, kept in deploy/k8s/crds/ (see its README).

Usage: deploy/k8s/check.py [OVERLAY...]   (a name under overlays/ or a path;
default: every overlay)
Prints one line per overlay; exits non-zero naming each problem.
"""

import copy
import pathlib
import subprocess
import sys

import jsonschema
import kubernetes_validate
import yaml

HERE = pathlib.Path(__file__).resolve().parent
# Oldest and newest Kubernetes versions the manifests are written for.
VERSIONS = ["1.30.0", "1.37.0"]


def strict(schema):
    """The schema with unknown fields refused, as `kubectl apply
    --validate=strict` refuses them, except where the CRD keeps them."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def crd_schemas():
    """(apiVersion, kind) -> strict JSON schema, from the kept CRDs."""
    schemas = {}
    for path in sorted((HERE / "crds").glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd:
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = version["schema"]["openAPIV3Schema"]
                schemas[(f"{group}/{version['name']}", kind)] = strict(schema)
    return schemas


def render(overlay):
    """The overlay's objects, as `kubectl kustomize` renders them."""
    out = subprocess.run(
        ["kubectl", "kustomize", str(overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def problems(objects, crds):
    """Every schema violation in `objects`, one line each."""
    found = []
    for obj in objects:
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key in crds:
            for error in jsonschema.Draft7Validator(crds[key]).iter_errors(obj):
                where = ".".join(str(p) for p in error.absolute_path)
                found.append(f"{name}: {where}: {error.message}")
            continue
        for version in VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                where = ".".join(str(p) for p in e.path)
                found.append(f"{name} (Kubernetes {version}): {where}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError:
                found.append(f"{name}: no schema for {key} (add its CRD to deploy/k8s/crds/)")
    return found


def main(argv):
    overlays = [
        pathlib.Path(a) if "/" in a else HERE / "overlays" / a for a in argv
    ] or sorted((HERE / "overlays").iterdir())
    crds = crd_schemas()
    failed = False
    for overlay in overlays:
        try:
            objects = render(overlay)
        except subprocess.CalledProcessError as e:
            print(f"{overlay.name}: kubectl kustomize failed: {e.stderr.strip()}")
            failed = True
            continue
        found = problems(objects, crds)
        kinds = ", ".join(sorted({o["kind"] for o in objects}))
        status = "ok" if not found else f"{len(found)} problem(s)"
        print(f"{overlay.name}: {len(objects)} objects ({kinds}): {status}")
        for line in found:
            print(f"  {line}")
        failed |= bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
