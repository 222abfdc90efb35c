"""The documentation agrees with the code: every setting in docs/configuration.md with its
default, and every relative link of the Markdown files leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from figserve.config import PREFIX, Settings
from tests.support.live import ROOT

CONFIGURATION = ROOT / "docs" / "configuration.md"
MARKDOWN = sorted(
    [ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").glob("*.md")]
    + [p for p in (ROOT / "bench" / "README.md", ROOT / "deploy" / "README.md") if p.exists()]
)
_ROW = re.compile(r"^\|(?P<names>[^|]*`FIGSERVE_[^|]*)\|(?P<defaults>[^|]*)\|(?P<meaning>.*)\|$")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def documented() -> dict[str, tuple[str, str]]:
    """Variable -> (its default as the page shows it, its meaning)."""
    out: dict[str, tuple[str, str]] = {}
    for line in CONFIGURATION.read_text().splitlines():
        row = _ROW.match(line.strip())
        if row is None:
            continue
        names = re.findall(r"`(FIGSERVE_[A-Z0-9_]+)`", row["names"])
        defaults = [d.strip() for d in row["defaults"].split(",")]
        if len(defaults) != len(names):
            defaults = [row["defaults"].strip()] * len(names)
        for name, default in zip(names, defaults, strict=True):
            assert name not in out, f"{name} is listed twice"
            out[name] = (default, row["meaning"].strip())
    return out


def shown_default(value: Any) -> str | None:
    """A default as the page writes it; None for "no value", which the page describes in
    words in parentheses."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def test_the_configuration_page_lists_every_setting_with_its_default() -> None:
    rows = documented()
    fields = {PREFIX + name.upper(): info for name, info in Settings.model_fields.items()}
    missing = sorted(set(fields) - set(rows))
    unknown = sorted(set(rows) - set(fields))
    hint = "; ".join(f"| `{n}` | {shown_default(fields[n].default)} | ... |" for n in missing)
    assert not missing, f"docs/configuration.md lacks {missing}: add rows such as {hint}"
    assert not unknown, f"docs/configuration.md lists settings that do not exist: {unknown}"
    for name, info in fields.items():
        default, meaning = rows[name]
        expected = shown_default(info.default)
        if expected is None:
            assert default.startswith("(") and default.endswith(")"), (name, default)
        else:
            assert default == expected, f"{name}: the page says {default!r}, config.py {expected!r}"
        assert meaning, f"{name} has no meaning on the page"


def _anchors(markdown: str) -> set[str]:
    """The anchors of a Markdown file's headings, as GitHub makes them."""
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, re.M):
        text = re.sub(r"[`*_]", "", heading).lower()
        out.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return out


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    text = page.read_text()
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # links in code are not links
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        missing_anchor = (
            file.exists() and anchor and file.suffix == ".md"
        ) and anchor not in _anchors(file.read_text())
        if not file.exists() or missing_anchor:
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: links that lead nowhere: {broken}"
    assert MARKDOWN  # the pages exist at all


def test_the_readme_stays_short() -> None:
    # What a newcomer reads in ten minutes; the rest belongs in docs/.
    assert len((ROOT / "README.md").read_text().splitlines()) <= 240
