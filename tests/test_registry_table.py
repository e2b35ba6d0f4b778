"""The preset table in :mod:`stvsr.models`' docstring matches the live registry: every preset
listed once, with the module that registers it, the class it builds, its weights file and its
official parts."""

from __future__ import annotations

import typing

import pytest

from stvsr import models, registry


def table_rows(doc: str, columns: int) -> list[list[str]]:
    """Rows of the reStructuredText simple tables in ``doc`` with ``columns`` columns (the
    header row excluded)."""
    rows: list[list[str]] = []
    lines = doc.splitlines()
    rules = [i for i, ln in enumerate(lines) if ln.startswith("===")]
    for start, head, end in zip(rules[0::3], rules[1::3], rules[2::3], strict=True):
        if len(lines[start].split()) != columns:
            continue
        assert head == start + 2, "one header line per table"
        rows += [ln.split() for ln in lines[head + 1:end] if ln.strip()]
    return rows


def built_class(builder: typing.Callable) -> str:
    """The class a preset's builder builds: the class itself, or a function's return type."""
    if isinstance(builder, type):
        return builder.__name__
    return typing.get_type_hints(builder)["return"].__name__


def live_rows() -> tuple[list[list[str]], list[list[str]]]:
    """``[preset, file, class, weights file]`` and ``[preset, part file]`` from the registry."""
    main, parts = [], []
    for name in registry.list_models():
        spec = registry.get_spec(name)
        module = spec.builder.__module__
        assert module.rsplit(".", 1)[0] == "stvsr.models", (name, module)
        file = module.rsplit(".", 1)[1] + ".py"
        weights = spec.weights.filename if spec.weights is not None else "–"
        main.append([name, file, built_class(spec.builder), weights])
        parts += [[name, p.filename] for p in spec.parts]
    return main, parts


def check(doc: str) -> None:
    main, parts = live_rows()
    assert table_rows(doc, 4) == main
    assert table_rows(doc, 2) == parts


def test_preset_table_matches_the_registry() -> None:
    assert models.__doc__ is not None
    assert len(table_rows(models.__doc__, 4)) == len(registry.list_models()) > 20
    check(models.__doc__)


@pytest.mark.parametrize("old,new", [
    ("sfnet_s.py          SFNetS         sfnet_s2", "sfnet_s.py          SFNetSV1       sfnet_s2"),
    ("sfnet-s-v1              sfnet_s_v1.py", "sfnet-s-v1              sfnet_s.py   "),
    ("sfnet_s2_head.safetensors", "sfnet_s_head.safetensors"),
    ("sfnet-lite              sfnet.py            SFNet          –\n", ""),
    ("stvsr-twostage          BasicVSR", "stvsr-bicubic           BasicVSR"),
])
def test_a_wrong_row_fails(old: str, new: str) -> None:
    doc = models.__doc__
    assert doc is not None and old in doc
    with pytest.raises(AssertionError):
        check(doc.replace(old, new, 1))
