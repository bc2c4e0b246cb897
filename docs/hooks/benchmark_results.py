"""MkDocs hook: one page per ``## `` section of ``benchmarks/RESULTS.md``, generated at build time.

``benchmarks/RESULTS.md`` stays the single record (engineers append sections to it); the site shows it split by
topic. At build time this hook

- cuts the file at its ``## `` headings (those inside fenced code blocks are output, not headings) and adds each
  section as ``results/<slug>.md``, its headings raised one level, with the commands found in its code blocks
  listed at the top;
- rewrites relative links, which were written from ``benchmarks/``: a page of the site (or a model card) becomes a
  link to it, any other file of the repository is copied into the site under ``repo/`` and linked there, and another
  Markdown file is named instead of linked;
- adds the pages under "Benchmark results" in the navigation, after ``results/index.md``, and replaces the
  ``<!-- results-index -->`` marker of that page with a table of the sections.

The model cards (``model_cards/<name>/README.md`` and their images) are added the same way, as
``model-cards/<name>.md`` and ``model-cards/<name>/images/``, so the explanations can show the cards' pictures
without a second copy.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import get_plugin_logger
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

RESULTS = Path("benchmarks/RESULTS.md")
RESULTS_DIR = "results"
INDEX = f"{RESULTS_DIR}/index.md"
INDEX_MARKER = "<!-- results-index -->"
NAV_TITLE = "Benchmark results"
CARDS = Path("model_cards")
CARDS_DIR = "model-cards"
REPO_FILES_DIR = "repo"

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})(\s.*)$")
# [text](target) and ![alt](target); the target stops at whitespace or ')' (no titles are used in RESULTS.md).
_LINK = re.compile(r"(?P<bang>!?)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)\)")
# A shell command in a code block: `$ anything`, or a line that runs a script, a module or lstm-interp (possibly after
# environment variables, nice, nohup or time). Output lines such as "python 3.11.7, torch 2.13.0" are not commands.
_COMMAND = re.compile(
    r"^\s*(?:\$ (?P<prompted>.+)|(?P<bare>(?:[A-Z_]+=\S+ +)*(?:(?:nice(?: -n \d+)?|nohup|time|/usr/bin/time -v) +)*"
    r"(?:python3? +(?:-[mc] |\S+\.py\b)|lstm-interp +[a-z]).*))$"
)

log = get_plugin_logger(__name__)


@dataclass
class Section:
    """One ``## `` section of RESULTS.md."""

    title: str
    slug: str
    lines: list[str] = field(default_factory=list)

    @property
    def src_uri(self) -> str:
        return f"{RESULTS_DIR}/{self.slug}.md"

    def commands(self) -> list[str]:
        """The shell commands in the section's code blocks, continuation lines and multi-line quotes joined."""
        found: list[str] = []
        in_fence = False
        lines = iter(self.lines)
        for line in lines:
            if _FENCE.match(line):
                in_fence = not in_fence
                continue
            if not in_fence or not (m := _COMMAND.match(line)):
                continue
            command = (m["prompted"] or m["bare"]).rstrip()
            # A trailing backslash or an unclosed double quote (`python -c "...`) carries on to the next line.
            while command.endswith("\\") or command.count('"') % 2:
                following = next(lines, None)
                if following is None or _FENCE.match(following):
                    in_fence = following is None and in_fence
                    break
                command = f"{command}\n{following.rstrip()}"
            if command not in found:
                found.append(command)
        return found


def slugify(title: str) -> str:
    """``The live explorer's speed (issue 13)`` -> ``the-live-explorers-speed``: the issue number is not a topic."""
    title = re.sub(r"\(issues? [\d, ]+\)", "", title)
    title = title.replace("'", "").replace("`", "")
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"


def split_sections(text: str) -> tuple[list[str], list[Section]]:
    """The lines before the first ``## `` heading, and the sections; fenced code is never split."""
    preamble: list[str] = []
    sections: list[Section] = []
    in_fence = False
    slugs: set[str] = set()
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        if not in_fence and line.startswith("## "):
            title = line[3:].strip()
            slug = base = slugify(title)
            n = 2
            while slug in slugs or slug == "index":
                slug, n = f"{base}-{n}", n + 1
            slugs.add(slug)
            sections.append(Section(title, slug))
        elif sections:
            sections[-1].lines.append(line)
        else:
            preamble.append(line)
    return preamble, sections


def _raise_headings(lines: list[str]) -> list[str]:
    """``### x`` -> ``## x``: the section's own title is the page's ``#``."""
    out: list[str] = []
    in_fence = False
    for line in lines:
        if _FENCE.match(line):
            in_fence = not in_fence
        if not in_fence and (m := _HEADING.match(line)) and len(m[1]) > 2:
            line = m[1][:-1] + m[2]
        out.append(line)
    return out


class _Links:
    """Rewrites links written relative to a repository file so they resolve from a page of the site."""

    def __init__(self, root: Path, docs_dir: Path, files: Files, config: MkDocsConfig) -> None:
        self.root, self.docs_dir, self.files, self.config = root, docs_dir, files, config

    def rewrite(self, markdown: str, source: Path, page_uri: str) -> str:
        """``markdown`` read from repository file ``source``, as it must read at ``page_uri`` in the site."""

        def one(match: re.Match[str]) -> str:
            target = match["target"]
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
                return match[0]  # a URL, an anchor on the same page, or an absolute path: left as written
            path_part, _, anchor = target.partition("#")
            resolved = (source.parent / path_part).resolve()
            if not resolved.is_file():
                log.warning("%s links to %s, which does not exist", source, target)
                return match[0]
            site_uri = self._site_uri(resolved)
            if site_uri is None:  # a Markdown file that is no page of the site: name it rather than link it
                return f"{match['text']} (`{resolved.relative_to(self.root).as_posix()}`)"
            link = posixpath.relpath(site_uri, posixpath.dirname(page_uri) or ".")
            return f"{match['bang']}[{match['text']}]({link}{'#' + anchor if anchor else ''})"

        out: list[str] = []
        in_fence = False
        for line in markdown.splitlines():
            if _FENCE.match(line):
                in_fence = not in_fence
            out.append(line if in_fence else _LINK.sub(one, line))
        return "\n".join(out)

    def _site_uri(self, path: Path) -> str | None:
        """Where ``path`` (a repository file) is in the site, adding it to the site if it is not there yet.

        ``None`` for a Markdown file that is neither a page of ``docs/`` nor a model card: copied into the site it
        would become a page of its own, with links written for another folder.
        """
        if path.is_relative_to(self.docs_dir):
            return path.relative_to(self.docs_dir).as_posix()
        rel = path.relative_to(self.root).as_posix()
        if path.parent.parent == (self.root / CARDS).resolve() and path.name == "README.md":
            return f"{CARDS_DIR}/{path.parent.name}.md"
        if path.is_relative_to((self.root / CARDS).resolve()):
            return f"{CARDS_DIR}/{path.relative_to((self.root / CARDS).resolve()).as_posix()}"
        if path.suffix == ".md":
            return None
        uri = f"{REPO_FILES_DIR}/{rel}"
        if self.files.get_file_from_path(uri) is None:
            self.files.append(File.generated(self.config, uri, abs_src_path=str(path)))
        return uri


# Filled by on_config, read by the later events of the same build.
_sections: list[Section] = []


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    root = Path(config.config_file_path).parent
    _, sections = split_sections((root / RESULTS).read_text(encoding="utf-8"))
    _sections[:] = sections
    nav = config.nav or []
    for entry in nav:
        if isinstance(entry, dict) and NAV_TITLE in entry:
            entry[NAV_TITLE] = [{"Overview": INDEX}, *({s.title: s.src_uri} for s in sections)]
            break
    else:
        log.warning("the nav of mkdocs.yml has no %r entry to list the results pages under", NAV_TITLE)
    return config


def on_files(files: Files, *, config: MkDocsConfig) -> Files:
    root = Path(config.config_file_path).parent.resolve()
    links = _Links(root, Path(config.docs_dir).resolve(), files, config)
    # Model cards first, so that links from the results to a card find its page.
    for card in sorted((root / CARDS).glob("*/README.md")):
        name = card.parent.name
        for image in sorted((card.parent / "images").glob("*.png")):
            files.append(File.generated(config, f"{CARDS_DIR}/{name}/images/{image.name}", abs_src_path=str(image)))
        # `model-cards/<name>.md`, not `<name>/index.md`: an index page would become its nav section's own page.
        uri = f"{CARDS_DIR}/{name}.md"
        content = links.rewrite(card.read_text(encoding="utf-8"), card.resolve(), uri)
        files.append(File.generated(config, uri, content=content))
    for section in _sections:
        files.append(File.generated(config, section.src_uri, content=_section_page(section, links, root)))
    return files


def _section_page(section: Section, links: _Links, root: Path) -> str:
    body = "\n".join(_raise_headings(section.lines)).strip("\n")
    body = links.rewrite(body, root / RESULTS, section.src_uri)
    commands = section.commands()
    head = [f"# {section.title}", ""]
    if commands:
        head += ['!!! tip "Reproduce"', "", "    ```bash"]
        head += [f"    {line}" for command in commands for line in command.splitlines()]
        head += ["    ```", ""]
    head += [
        f"*One section of `{RESULTS.as_posix()}`, where every measurement is recorded with the command that made it"
        " ([all sections](index.md)).*",
        "",
    ]
    return "\n".join(head) + "\n" + body + "\n"


def on_page_markdown(markdown: str, *, page: Page, config: MkDocsConfig, files: Files) -> str:
    if page.file.src_uri != INDEX:
        return markdown
    rows = ["| Topic | Reproduce with |", "| --- | --- |"]
    for section in _sections:
        commands = section.commands()
        # The first line of the first command: a table cell holds one line, and a `|` in it must be escaped.
        first = f"`{commands[0].splitlines()[0]}`".replace("|", "\\|") if commands else ""
        more = f" and {len(commands) - 1} more" if len(commands) > 1 else ""
        rows.append(f"| [{section.title}]({section.slug}.md) | {first}{more} |")
    return markdown.replace(INDEX_MARKER, "\n".join(rows))
