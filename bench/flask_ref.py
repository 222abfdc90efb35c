"""The naive pattern figserve is measured against: Flask + pyplot + ``savefig`` to ``BytesIO``.

Deliberately the code people start from, not a tuned server: global pyplot state, a new figure
per request, PNG at the default compression. ``/fig/<mean>_<var>`` draws the same red-hexagon
scatter as figserve's ``normal`` figure at 4x3 inches; ``?dpi=`` picks the pixel size (300, the
original's, gives 1200x900; 100 gives figserve's default 400x300). ``/normal/<mean>_<var>`` is a
page of six such images.

Served two ways by the benchmark:
    python -m bench.flask_ref --port 8001                        # Flask dev server, threaded
    gunicorn -k gthread -w 2 --threads 4 bench.flask_ref:app     # Gunicorn, one worker per core
"""

from __future__ import annotations

import argparse
import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from flask import Flask, render_template_string, request, send_file

app = Flask(__name__)

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>normal {{ mean }} {{ var }}</title></head>
<body><h1>Random normal: mean {{ mean }}, spread {{ var }}</h1>
{% for m, v in variants %}<img src="/fig/{{ m }}_{{ v }}?dpi={{ dpi }}" width="400" height="300">
{% endfor %}</body></html>"""


def render_png(mean: float, var: float, dpi: int = 300) -> bytes:
    """The original figure, drawn the way most tutorials do it."""
    plt.figure(figsize=(4, 3))
    xs = np.random.normal(mean, var, 100)
    ys = np.random.normal(mean, var, 100)
    plt.scatter(xs, ys, s=100, marker="h", color="red", alpha=0.3)
    img = io.BytesIO()
    plt.savefig(img, format="png", dpi=dpi)
    plt.close()
    return img.getvalue()


def _mean_var(text: str) -> tuple[float, float]:
    mean, var = text.split("_")
    return float(mean), float(var)


@app.get("/fig/<mean_var>")
def fig(mean_var: str):
    mean, var = _mean_var(mean_var)
    dpi = int(request.args.get("dpi", 300))
    return send_file(io.BytesIO(render_png(mean, var, dpi)), mimetype="image/png")


@app.get("/normal/<mean_var>")
def normal(mean_var: str) -> str:
    mean, var = _mean_var(mean_var)
    variants = [
        (mean, var),
        (mean, var * 2),
        (mean, var / 2),
        (mean + var, var),
        (mean - var, var),
        (-mean, var),
    ]
    dpi = int(request.args.get("dpi", 100))
    return render_template_string(PAGE, mean=mean, var=var, variants=variants, dpi=dpi)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # Loopback only, like every server the benchmark starts.
    app.run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    main()
