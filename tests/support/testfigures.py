"""The test figures of ``gates.py`` as a figure module of the documented kind, for processes
that load figures from ``FIGSERVE_FIGURES`` (a standalone job worker):
``FIGSERVE_FIGURES=tests.support.testfigures``. Importing it registers them in ``FIGURES``."""

from __future__ import annotations

from figserve.figures import FIGURES
from tests.support.gates import TEST_FIGURES, GateParams

for _name, _draw in TEST_FIGURES.items():
    if _name not in FIGURES:
        FIGURES.figure(_name, title=_name, description=f"{_name} (tests only).", params=GateParams)(
            _draw
        )
