"""Labeling instructions: markdown rendered to HTML, then sanitized, so the stored HTML is
safe to put straight into the page whatever the owner typed."""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

# Inline HTML is allowed in the markdown (owners paste <br> and <img>); nh3 then keeps
# only harmless tags and attributes and drops scripts, handlers and javascript: URLs.
_md = MarkdownIt("commonmark", {"html": True, "linkify": False}).enable(
    ["table", "strikethrough"]
)

MAX_TEXT = 100_000


def render(text: str) -> str:
    """Markdown to sanitized HTML; links get rel=noopener noreferrer."""
    if not text:
        return ""
    return nh3.clean(_md.render(text), link_rel="noopener noreferrer")
