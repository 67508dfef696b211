"""The codes the API answers with live in one place (kernel.errors.CODES): the
README's table is printed from it, every domain error's code is in it at its status, and the
schema's per-operation enums name nothing else."""

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import artifacts
import runs
import stories
from kernel import errors
from kernel.api import domain_status

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- error-codes: start -->", "<!-- error-codes: end -->"
# Never an HTTP answer: node_refused is recorded in a run's step; already_locked and
# not_locked are the admin's (the API's lock and unlock are idempotent, SPEC §7); immutable is
# the model layer's guard, which no API write reaches (were one to, it would answer conflict).
NOT_ANSWERS = {"node_refused", "already_locked", "not_locked", "immutable", "gone"}  # gone: only its pruned is raised


def test_the_readme_table_is_the_one_errors_prints():
    text = README.read_text()
    assert START in text and END in text, "the README marks its error table"
    table = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert table == errors.markdown_table(), (
        "the README's error table is stale: paste the output of `python -m kernel.errors`"
    )


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def test_every_domain_error_is_answered_with_its_own_code():
    for package in (artifacts, stories, runs):  # every module that may define an error
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if ".migrations" not in info.name and ".management" not in info.name:
                importlib.import_module(info.name)
    checked = 0
    for error in _all_subclasses(errors.ArtifactError):
        if error.code in NOT_ANSWERS:
            continue
        exc = error("x", field="artifact_id")
        status = domain_status(exc, {"artifact_id": "x"})
        assert errors.public_code(status, error.code) == error.code, f"{error.__name__}: {status} {error.code}"
        checked += 1
    assert checked >= 30


def test_codes_outside_the_table_become_their_statuss_generic_code():
    assert errors.public_code(400, "null_characters_not_allowed") == "invalid_text"
    assert errors.public_code(400, "surrogate_characters_not_allowed") == "invalid_text"
    assert errors.public_code(400, "something_new") == "invalid"
    assert errors.public_code(409, "something_new") == "conflict"
    assert errors.public_code(502, None) == "server_error"


def test_the_readme_names_the_codes_the_issue_found_missing():
    table = errors.markdown_table()
    for code in ("duplicate_relation", "duplicate_link", "invalid_text", "invalid_link", "method_not_allowed"):
        assert f"`{code}`" in table
    assert "null_characters_not_allowed" not in table  # DRF's name, answered as invalid_text


@pytest.mark.django_db
def test_every_error_body_in_the_schema_enumerates_codes_of_its_status(reader):
    schema = reader.get("/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    components = schema["components"]["schemas"]
    seen = 0
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                ref = response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
                if not re.search(r"Error(\d{3})?$", ref):
                    continue
                body = components[ref.rsplit("/", 1)[1]]
                assert body["required"] == ["code", "message", "request_id"]
                for code in body["properties"]["code"]["enum"]:
                    assert errors.public_code(int(status), code) == code, (method, path, status, code)
                seen += 1
            assert "401" in operation["responses"], (method, path)
    assert seen > 150
