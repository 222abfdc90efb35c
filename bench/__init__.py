"""figserve's benchmark: ``bash bench/run`` or ``python -m bench``; see ``__main__.py``.

Modules: ``server`` starts and stops every server; ``procs`` reads their processes from /proc;
``load`` drives wrk; ``client`` is the browser-like HTTP client; ``browser`` drives Chromium;
``raw`` is the limit without HTTP; ``measure`` holds the measurements made against one server;
``stats`` the percentiles, spreads and JSON. The suites: ``main`` (the default run, written by
``report``), ``variants`` (--layouts, --levers), ``soak``, ``jobs``, ``profile``.
"""
