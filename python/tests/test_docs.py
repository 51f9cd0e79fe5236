"""The documentation's Python runs: the ```python blocks of docs/python.md, in order, in one namespace (as a
notebook would), and those of the README, must finish without an error; the blocks' asserts are part of
what the documentation claims."""

import os
import re

import pytest

from helpers import SOURCE_DIR


def blocks(*path):
    text = open(os.path.join(SOURCE_DIR, *path), encoding="utf-8").read()
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


@pytest.mark.parametrize("path", [("docs", "python.md"), ("README.md",)], ids=["docs/python.md", "README.md"])
def test_the_python_examples_run(path, tmp_path, monkeypatch):
    code = blocks(*path)
    assert code, f"no python blocks in {os.path.join(*path)}"
    monkeypatch.chdir(tmp_path)  # in case an example writes files
    namespace = {"__name__": "__docs__"}
    for i, block in enumerate(code):
        try:
            exec(compile(block, f"{os.path.join(*path)} block {i + 1}", "exec"), namespace)
        except Exception as e:  # name the block in the failure
            pytest.fail(f"{os.path.join(*path)} python block {i + 1} raised {type(e).__name__}: {e}\n{block}")
