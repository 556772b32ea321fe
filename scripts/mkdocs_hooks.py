"""MkDocs hooks of the documentation site (mkdocs.yml): one source for each text.

A page may include another Markdown file of the repository, or one section of it, with a
line of its own (paths are relative to the page, as links are)::

    <!-- include ../SECURITY.md -->
    <!-- include ../../README.md section="## Quickstart" -->
    <!-- include ../../README.md section="## Quickstart" stop="The `peersockets` command" -->

A section runs from its heading to the next heading of the same or a higher level; it is
included without its heading (the page has its own title) and its subheadings move up to
match. ``stop`` ends the included text before the first line (outside code blocks) that
starts with it. A missing file, section or stop line fails the build.

Relative links are rewritten on every page, included text or not, so that the files keep the
links that work on GitHub: a link to a page of the site points at that page, a link to
SECURITY.md or CHANGELOG.md at their site pages, and a link to any other file of the
repository (benchmarks/README.md, a test) at that file in the repository (``repo_url``).
README.md's links are absolute (it is the package index's long description): those to a file
the site has a page for (``repo_url``/blob/main/docs/dht.md) point at that page instead.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

INCLUDE = re.compile(
    r'^<!-- include (?P<path>\S+)(?: section="(?P<section>[^"]+)")?(?: stop="(?P<stop>[^"]+)")? -->$'
)
LINK = re.compile(r"(\]\()(?P<target>[^)\s]+)(\))")
HEADING = re.compile(r"^(#{1,6}) ")
FENCE = re.compile(r"^\s*(```|~~~)")

ROOT_PAGES = {"SECURITY.md": "security.md", "CHANGELOG.md": "changelog.md"}
"""Files outside docs/ that the site has a page for (repository path -> site page)."""


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    root = Path(config["config_file_path"]).resolve().parent
    docs = Path(config["docs_dir"]).resolve()
    page_path = (docs / page.file.src_uri).resolve()
    pages = {f.src_uri for f in files.documentation_pages()}
    out: list[str] = []
    for chunk, source in _expand(markdown, page_path):
        out.append(_rewrite_links(chunk, source, page_path, root, docs, pages, config))
    return "\n".join(out)


def _expand(markdown: str, page_path: Path) -> list[tuple[str, Path]]:
    """The page as chunks of text, each with the file it comes from."""
    chunks: list[tuple[str, Path]] = []
    lines: list[str] = []
    for line in markdown.split("\n"):
        match = INCLUDE.match(line.strip())
        if match is None:
            lines.append(line)
            continue
        chunks.append(("\n".join(lines), page_path))
        lines = []
        source = (page_path.parent / match["path"]).resolve()
        if not source.is_file():
            raise ValueError(f"{page_path.name}: included file not found: {match['path']}")
        text = source.read_text(encoding="utf-8")
        if match["section"]:
            text = _section(text, match["section"], source)
        if match["stop"]:
            text = _stop(text, match["stop"], source)
        chunks.append((text, source))
    chunks.append(("\n".join(lines), page_path))
    return chunks


def _section(text: str, heading: str, source: Path) -> str:
    """The body of the section whose heading line is ``heading``, its subheadings moved up."""
    lines = text.split("\n")
    level = len(heading) - len(heading.lstrip("#"))
    start = None
    fenced = False
    body: list[str] = []
    for line in lines:
        if FENCE.match(line):
            fenced = not fenced
        heading_match = None if fenced else HEADING.match(line)
        if start is None:
            if line.rstrip() == heading:
                start = True
            continue
        if heading_match and len(heading_match[1]) <= level:
            break
        if heading_match:
            line = line[level - 1 :]
        body.append(line)
    if start is None:
        raise ValueError(f"{source.name}: no section {heading!r} to include")
    return "\n".join(body).strip("\n") + "\n"


def _stop(text: str, stop: str, source: Path) -> str:
    """``text`` up to the first line outside code blocks that starts with ``stop``."""
    lines = text.split("\n")
    fenced = False
    for number, line in enumerate(lines):
        if FENCE.match(line):
            fenced = not fenced
        if not fenced and line.startswith(stop):
            return "\n".join(lines[:number]).rstrip("\n") + "\n"
    raise ValueError(f"{source.name}: no line starting with {stop!r} to stop at")


def _site_page(path: Path, root: Path, docs: Path, pages: set[str]) -> str | None:
    """The site page (its path in docs/) that shows the repository file ``path``, if any."""
    path = path.resolve()
    if path.is_relative_to(docs) and path.relative_to(docs).as_posix() in pages:
        return path.relative_to(docs).as_posix()
    if path.is_relative_to(root):
        return ROOT_PAGES.get(path.relative_to(root).as_posix())
    return None


def _relative(site_page: str, page_path: Path, docs: Path) -> str:
    """A link from the page at ``page_path`` to ``site_page``."""
    here = posixpath.dirname(page_path.relative_to(docs).as_posix()) or "."
    return posixpath.relpath(site_page, here)


def _rewrite_links(
    text: str, source: Path, page_path: Path, root: Path, docs: Path, pages: set[str], config: Any
) -> str:
    repo_url = str(config.get("repo_url") or "").rstrip("/")

    blob = f"{repo_url}/blob/main/"

    def rewrite(match: re.Match[str]) -> str:
        target = match["target"]
        if repo_url and target.startswith(blob):  # README's absolute links (for the index)
            path, _, anchor = target[len(blob) :].partition("#")
            page = _site_page(root / path, root, docs, pages)
            if page is None:
                return match[0]
            return f"{match[1]}{_relative(page, page_path, docs)}{'#' + anchor if anchor else ''}{match[3]}"
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
            return match[0]
        path, _, anchor = target.partition("#")
        resolved = (source.parent / path).resolve()
        try:
            repo_path = resolved.relative_to(root).as_posix()
        except ValueError:
            raise ValueError(f"{source.name}: link outside the repository: {target}") from None
        site_page = _site_page(resolved, root, docs, pages)
        if site_page is not None:
            new = _relative(site_page, page_path, docs)
        else:
            if not resolved.exists():
                raise ValueError(f"{source.name}: link to a missing file: {target}")
            kind = "tree" if resolved.is_dir() else "blob"
            new = f"{repo_url}/{kind}/main/{repo_path}"
        return f"{match[1]}{new}{'#' + anchor if anchor else ''}{match[3]}"

    out: list[str] = []
    fenced = False
    for line in text.split("\n"):
        if FENCE.match(line):
            fenced = not fenced
        out.append(line if fenced else LINK.sub(rewrite, line))
    return "\n".join(out)
