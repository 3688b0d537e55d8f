"""README's Layout section names every module of `src/tenantry/`, and nothing that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "tenantry"


def _layout_block() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```text\n(.*?)```", section, re.S)
    assert found, "README's Layout section has no ```text block"
    return found.group(1)


def _modules() -> set[str]:
    return {p.name for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}


def test_every_module_of_the_package_is_on_the_map() -> None:
    block = _layout_block()
    missing = sorted(name for name in _modules() if name not in block)
    assert not missing, f"README's Layout section does not name: {', '.join(missing)}"


def test_the_map_names_no_module_that_is_gone() -> None:
    named = set(re.findall(r"[\w]+\.py\b", _layout_block()))
    gone = sorted(named - _modules())
    assert not gone, f"README's Layout section names modules that do not exist: {gone}"


def test_every_folder_of_the_package_is_on_the_map() -> None:
    block = _layout_block()
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    missing = sorted(f for f in folders if f"{f}/" not in block)
    assert not missing, f"README's Layout section does not name the folders: {missing}"
