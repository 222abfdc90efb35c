"""figserve: matplotlib figures drawn on the server and served as real image URLs.

What a figure module of your own needs::

    from figserve import FIGURES, FigureParams, SeededParams, rng_for, title_field

and for figures of data that changes (see docs/live.md)::

    from figserve import Dataset, files_version
"""

from .figures import FIGURES, FigureParams, FigureSpec, Registry, SeededParams, rng_for, title_field
from .live.dataset import Dataset, files_version

__version__ = "0.2.0"

__all__ = [
    "FIGURES",
    "Dataset",
    "FigureParams",
    "FigureSpec",
    "Registry",
    "SeededParams",
    "__version__",
    "files_version",
    "rng_for",
    "title_field",
]
