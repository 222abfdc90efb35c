"""Headless Chromium as the tests and the benchmark drive it: Debian's build, never a download."""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"
# Headless, and nothing that reaches out to the network on its own (it is closed here).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ALL_IMAGES_LOADED = "() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
