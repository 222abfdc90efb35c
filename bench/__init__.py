"""figserve's benchmark harness; see ``bench/__main__.py`` and the README."""
