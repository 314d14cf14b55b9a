"""schemathesis against the service's own OpenAPI schema: generated requests for every
operation, every check schemathesis runs by default — 0 failures. Bounded: a fixed number of
examples per operation, derandomised, no example database."""

from __future__ import annotations

import shutil

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from embedlab.serve import ServeConfig, create_app  # noqa: E402
from embedlab.serve.registry import Registry  # noqa: E402


def test_every_operation_conforms_to_its_schema(quick_model, demo_index, table_model, tmp_path):
    model, index = tmp_path / "model", tmp_path / "examples"  # copies: classes get added
    shutil.copytree(quick_model, model)
    shutil.copytree(demo_index, index)
    registry = Registry([model, index, table_model])
    service = create_app(ServeConfig(max_texts=8, max_chars=300), registry)
    schema = schemathesis.openapi.from_asgi("/openapi.json", service)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/v1/classify",
        "/v1/embeddings",
        "/v1/detect",
        "/v1/search",
        "/v1/models/{name}/classes",
        "/v1/models/{name}/records",
    }
    for op in operations:  # a loop over API operations, each a bounded property test

        @given(case=op.as_strategy())
        @settings(
            max_examples=30,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case):
            case.call_and_validate()

        check()


def test_blank_means_one_thing_in_the_schema_the_server_and_the_library():
    """A text the schema calls blank is one the library refuses, whichever regex flavour
    reads the pattern (pydantic's Rust engine, Python's re for schemathesis, ECMAScript for
    JSON Schema clients): the characters where they differ are named in the pattern."""
    import re
    import sys
    from typing import Annotated

    from pydantic import BaseModel, StringConstraints, ValidationError

    from embedlab.serve.schemas import NOT_BLANK

    class Checked(BaseModel):
        text: Annotated[str, StringConstraints(pattern=NOT_BLANK)]

    blanks = [c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace()] + ["\ufeff"]
    for c in blanks:
        with pytest.raises(ValidationError):
            Checked(text=c * 2)
        assert re.search(NOT_BLANK, c) is None
    for text in ["a", " a ", "\u0085x", "x\ufeff", "日本"]:
        assert Checked(text=text).text == text and text.strip()
