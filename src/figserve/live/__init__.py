"""Live figures: data versions of figures that read changing data (``version=``), and the
streams that tell live pages of new ones (``streams.py``)."""

from ..figures.dataset import Dataset, FilesVersion, files_version
from .entries import PIN_PARAM, Change, DataVersion, VersionObserver
from .versions import Versions

__all__ = [
    "PIN_PARAM",
    "Change",
    "DataVersion",
    "Dataset",
    "FilesVersion",
    "VersionObserver",
    "Versions",
    "files_version",
]
