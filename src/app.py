"""The app Hypercorn serves from a checkout: ``hypercorn --config hypercorn.toml src.app:app``.

figserve itself is the package ``figserve`` (``src/figserve``); this file only builds its app.
"""

from figserve.app import create_app

app = create_app()
