"""Every docstring example in the package runs (the public API's examples are tests)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import sib_engine

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(sib_engine.__path__, "sib_engine.")
    if m.name not in {"sib_engine.__main__"}
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
