"""figserve: matplotlib figures drawn on the server and served as real image URLs.

What a figure module of your own needs::

    from figserve import FIGURES, FigureParams, SeededParams, rng_for, title_field
"""

from .figures import FIGURES, FigureParams, FigureSpec, Registry, SeededParams, rng_for, title_field

__version__ = "0.2.0"

__all__ = [
    "FIGURES",
    "FigureParams",
    "FigureSpec",
    "Registry",
    "SeededParams",
    "__version__",
    "rng_for",
    "title_field",
]
