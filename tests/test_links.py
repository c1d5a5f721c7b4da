"""Every hyperlink in the lessons and in the exercise and quiz data is well-formed; every reading list complete.

Checked for form only (there is no network here): an absolute link is https with a host and no
spaces; a relative link in a lesson points at a file that exists next to the notebooks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from mnistlib.course.exercises import LESSONS, material

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

MD_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)>\s]*(?:\s[^)>]*)?)>?\s*\)")
AUTOLINK = re.compile(r"<((?:https?|ftp|mailto):[^>]*)>")
BARE = re.compile(r"(?<![(<\"'])\b(?:https?|ftp)://[^\s)>\]\"'`]+")
#: The papers the series builds on: each must be in some lesson's reading list.
KEY_PAPERS = {
    "https://doi.org/10.1109/5.726791": "LeCun et al. 1998",
    "https://doi.org/10.1109/ICDAR.2003.1227801": "Simard et al. 2003",
    "https://arxiv.org/abs/1502.03167": "Ioffe & Szegedy 2015",
    "https://arxiv.org/abs/1708.07120": "Smith & Topin 2018",
    "https://arxiv.org/abs/1311.2901": "Zeiler & Fergus 2014",
    "https://arxiv.org/abs/1810.03292": "Adebayo et al. 2018",
    "https://arxiv.org/abs/1412.6806": "Springenberg et al. 2015",
    "https://arxiv.org/abs/1312.4400": "Lin et al. 2013",
    "https://arxiv.org/abs/1503.02531": "Hinton et al. 2015",
}


def links(text: str) -> list[str]:
    """Every link target in a markdown text (markdown links, autolinks, bare URLs)."""
    found = [m.group(1).strip() for m in MD_LINK.finditer(text)]
    found += AUTOLINK.findall(text)
    stripped = MD_LINK.sub("", AUTOLINK.sub("", text))
    found += BARE.findall(stripped)
    return found


def problem(url: str, base: Path | None = None) -> str | None:
    """Why ``url`` is malformed (None when it is fine)."""
    if not url or any(c.isspace() for c in url):
        return "empty or contains whitespace"
    parts = urlsplit(url)
    if parts.scheme:
        if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost"):
            return None  # a server on the learner's own machine (the app, the page): no TLS there
        if parts.scheme != "https":
            return f"scheme {parts.scheme!r}: use https"
        if "." not in parts.netloc or parts.netloc.startswith(".") or "@" in parts.netloc:
            return f"no proper host in {url!r}"
        return None
    if url.startswith("#"):
        return None
    if base is not None and not (base / parts.path).exists():
        return f"relative link to a missing file {parts.path!r}"
    return None


def _material_texts() -> list[tuple[str, str]]:
    out = []
    for n in LESSONS:
        m = material(n)
        for ex in m.exercises:
            out.append((f"{n:02d} exercise {ex.key}", ex.prompt_md))
        for i, q in enumerate(m.quiz, 1):
            out.append((f"{n:02d} quiz {i}", " ".join([q.text, *q.options, *q.explain])))
    return out


#: One further-reading entry in a lesson: ``- Authors (Year). [title](url) — why`` (authors and year for papers).
READING_LINE = re.compile(
    r"^- (?:(?P<who>[^\n]+?) \((?P<year>\d{4})\)\. )?\[(?P<title>[^\]]+)\]\((?P<url>[^)]+)\) — (?P<why>.+)$")


def _readings(notebook: Path) -> dict[str, list[re.Match]]:
    """The further-reading entries of a lesson (the cell tagged ``lesson-reading``), by heading."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    cells = ["".join(c["source"]) for c in nb["cells"] if "lesson-reading" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{notebook.name}: one further-reading cell (tagged lesson-reading) expected"
    found: dict[str, list[re.Match]] = {}
    heading = ""
    for line in cells[0].splitlines():
        if line.startswith("**"):
            heading = line.strip("* ").lower()
        elif line.startswith("- "):
            match = READING_LINE.match(line)
            assert match, f"{notebook.name}: a reading entry not of the form '- [title](url) — why': {line!r}"
            found.setdefault(heading, []).append(match)
    return found


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_lesson_links_are_well_formed(notebook: Path) -> None:
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    bad = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for url in links("".join(cell["source"])):
            why = problem(url, notebook.parent)
            if why:
                bad.append((url, why))
    assert not bad, bad


def test_material_links_are_well_formed() -> None:
    bad = [(where, url, problem(url)) for where, text in _material_texts() for url in links(text) if problem(url)]
    assert not bad, bad


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_reading_entry_is_an_https_link_with_a_reason(notebook: Path) -> None:
    found = _readings(notebook)
    assert set(found) == {"papers", "documentation"}, f"{notebook.name}: papers and documentation expected"
    urls = [m["url"] for entries in found.values() for m in entries]
    assert len(urls) == len(set(urls)), f"{notebook.name} lists a link twice"
    for m in (m for entries in found.values() for m in entries):
        assert problem(m["url"]) is None and m["url"].startswith("https://"), m.group(0)
        assert m["title"].strip() and m["why"].strip()
    for m in found["papers"]:
        assert m["who"] and 1950 < int(m["year"]) < 2100, m.group(0)


def test_the_key_papers_are_all_cited() -> None:
    cited = {m["url"] for nb in NOTEBOOKS for m in _readings(nb).get("papers", [])}
    missing = {name for url, name in KEY_PAPERS.items() if url not in cited}
    assert not missing, missing


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://arxiv.org/abs/1502.03167", True),
        ("http://yann.lecun.com/exdb/mnist/", False),
        ("https://exa mple.org/x", False),
        ("ftp://example.org/file", False),
        ("https://localhost/x", False),
        ("#section", True),
    ],
)
def test_the_form_rules_themselves(url: str, ok: bool) -> None:
    assert (problem(url) is None) == ok


def test_link_extraction() -> None:
    text = "See [a](https://a.org/x) and <https://b.org/y>, or https://c.org/z. ![img](images/pad.png) `https://code.org`"
    assert links(text)[:3] == ["https://a.org/x", "images/pad.png", "https://b.org/y"]
    assert "https://c.org/z." in links(text) or "https://c.org/z" in links(text)
