"""figserve with the process-pool lever installed (benchmark only; see bench/procpool.py)."""

from bench import procpool

procpool.install()

from src.app import app  # noqa: E402  (after the patch, so the routes bind the patched job_for)

__all__ = ["app"]
