"""A node's fingerprint: what it would make a version from (SPEC §10).

The basis is every part that decides the output: the node's name, its generator's dotted
path and ``version``, the ids of its input artifacts by type, the sha256 of the scene text
when the node reads it, and its params. It is hashed in one canonical, typed, delimited
encoding: JSON with sorted keys and no whitespace, where a string, a number, null and a
list can never be mistaken for one another, nor two adjacent parts run together (the way
joining parts without a delimiter lets different inputs collide, dagster #34184). Nested
params are encoded whole, never reduced to a constant (hamilton #1715).

The basis is kept beside the fingerprint (in the step that made the version), so
``--explain`` can say which part changed.
"""

from __future__ import annotations

import hashlib
import json

SCHEME = 1


def canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def basis(*, node: str, generator: str, generator_version: str, inputs: dict, text_sha256: str | None, params: dict):
    return {
        "scheme": SCHEME,
        "node": node,
        "generator": generator,
        "generator_version": generator_version,
        "inputs": {type_name: str(artifact_id) for type_name, artifact_id in inputs.items()},
        "text_sha256": text_sha256,
        "params": params,
    }


def fingerprint(of: dict) -> str:
    return hashlib.sha256(canonical(of).encode("utf-8")).hexdigest()


def differences(before: dict | None, after: dict) -> list[str]:
    """What changed between two bases, in words, for ``--explain``."""
    if before is None:
        return ["it was made outside the pipeline"]
    reasons = []
    if before.get("scheme") != after["scheme"]:
        reasons.append(f"the fingerprint scheme changed ({before.get('scheme')} -> {after['scheme']})")
    if before.get("generator") != after["generator"]:
        reasons.append(f"the generator changed ({before.get('generator')} -> {after['generator']})")
    elif before.get("generator_version") != after["generator_version"]:
        reasons.append(f"generator version changed ({before.get('generator_version')} -> {after['generator_version']})")
    old_inputs, new_inputs = before.get("inputs") or {}, after["inputs"]
    for type_name in sorted(set(old_inputs) | set(new_inputs)):
        if old_inputs.get(type_name) != new_inputs.get(type_name):
            reasons.append(f"input {type_name} changed")
    if before.get("text_sha256") != after["text_sha256"]:
        reasons.append("the scene text changed")
    old_params, new_params = before.get("params") or {}, after["params"]
    changed = sorted(k for k in set(old_params) | set(new_params) if old_params.get(k) != new_params.get(k))
    if changed:
        reasons.append(f"params changed ({', '.join(changed)})")
    return reasons or ["its fingerprint differs"]
