"""What ``pip install .`` installs: every package of figserve, and nothing else at the top."""

from __future__ import annotations

import tomllib

from tests.support.live import ROOT


def test_every_package_of_figserve_is_listed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    source = ROOT / "src" / "figserve"
    found = {
        ".".join(("figserve", *path.parent.relative_to(source).parts))
        for path in source.rglob("__init__.py")
    }
    # Listed by hand (discovery would install the checkout's src/app.py as a module "app").
    assert found <= listed, f"add {sorted(found - listed)} to pyproject.toml's packages"
    assert {p for p in listed if not p.startswith("figserve")} == set()
