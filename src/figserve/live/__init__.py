"""Live figures: data versions of figures that read changing data (``version=``)."""

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
