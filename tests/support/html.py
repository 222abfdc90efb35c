"""Reading the images and title of an HTML page."""

from __future__ import annotations

import re
from html.parser import HTMLParser


class Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.sources: list[dict[str, str]] = []  # <source> of a <picture>, in order
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
        elif tag == "source":
            self.sources.append(dict(attrs))
        self._in_title = tag == "title"

    def handle_data(self, data):
        if self._in_title:
            self.title += data

    def handle_endtag(self, tag):
        self._in_title = False


def parse(html: str) -> Images:
    parser = Images()
    parser.feed(html)
    return parser


def image_urls(html: str) -> list[str]:
    """Every image URL of a page, ``src`` and each ``srcset`` candidate (of images and of
    their ``<picture>`` sources), once each."""
    urls: list[str] = []
    page = parse(html)
    for tag in [*page.images, *page.sources]:
        found = re.findall(r"(\S+) [0-9.]+[xw]", tag.get("srcset", ""))
        for url in [*([tag["src"]] if "src" in tag else []), *found]:
            if url not in urls:
                urls.append(url)
    return urls
