"""The repository's documentation stands on its own and names only what exists.

docs/method.md names the function that computes each formula; these tests fail when a name stops
resolving, when a cited test or section is gone, or when a file cites the design notes outside the
repository instead of the docs inside it.
"""

from __future__ import annotations

import importlib
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METHOD = ROOT / "docs" / "method.md"
PACKAGES = ("probes", "callbacks", "tasks", "analysis", "train", "runs", "dashboards")
CITED_NAME = re.compile(r"`((?:sparks\.)?(?:" + "|".join(PACKAGES) + r")(?:\.\w+)+)`")
CITED_TEST = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
CITED_SECTION = re.compile(r"(docs/[\w-]+\.md),?\s+\"([^\"]+)\"")
OUTSIDE = ("DESIGN.md", "../shared", "/work/shared")


def repository_files() -> list[Path]:
    """Tracked files and new files git does not ignore (what the next commit may hold)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the repository's files are those git lists")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, check=True, text=True,
    ).stdout
    return [ROOT / name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def resolve(name: str) -> object:
    """The object a dotted name under the sparks package names: the longest importable module, then attributes."""
    parts = ("sparks." + name if not name.startswith("sparks.") else name).split(".")
    for split in range(len(parts), 1, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            target = getattr(target, attribute)
        return target
    raise ModuleNotFoundError(name)


def headings(path: Path) -> set[str]:
    """The titles of a Markdown file's headings, any level."""
    return {line.lstrip("#").strip() for line in path.read_text().splitlines() if line.startswith("#")}


def test_no_file_cites_the_design_notes_outside_the_repository():
    this = Path(__file__).resolve()
    offenders = []
    for path in repository_files():
        if path.resolve() == this:
            continue
        text = path.read_bytes().decode("utf-8", errors="ignore")
        offenders += [f"{path.relative_to(ROOT)}: {needle}" for needle in OUTSIDE if needle in text]
    assert not offenders, "cite docs/method.md or docs/uncertainty.md instead:\n" + "\n".join(offenders)


def test_every_function_the_method_names_exists():
    names = sorted(set(CITED_NAME.findall(METHOD.read_text())))
    assert len(names) >= 30, f"only {len(names)} names found; has the citation style changed?"
    missing = []
    for name in names:
        try:
            resolve(name)
        except (ImportError, AttributeError) as error:
            missing.append(f"{name}: {error}")
    assert not missing, "docs/method.md names what does not exist:\n" + "\n".join(missing)


def test_every_test_the_method_cites_exists():
    cited = CITED_TEST.findall(METHOD.read_text())
    assert cited
    for path, name in cited:
        assert f"def {name}(" in (ROOT / path).read_text(), f"docs/method.md cites {path}::{name}, which is gone"


def test_relative_links_in_the_method_resolve():
    links = re.findall(r"\]\(([^)#]+)\)", METHOD.read_text())
    assert links
    for link in links:
        assert (METHOD.parent / link).exists(), f"docs/method.md links {link}, which does not exist"


def test_every_cited_docs_section_exists():
    cited = [(path, document, section) for path in repository_files() if path.suffix in (".py", ".md")
             for document, section in CITED_SECTION.findall(path.read_text())]
    assert any(document == "docs/method.md" for _, document, _ in cited)
    for path, document, section in cited:
        section = " ".join(section.split())  # a citation may wrap across lines
        assert section in headings(ROOT / document), f'{path.relative_to(ROOT)} cites {document}, "{section}": no such section'


def test_the_resolver_fails_on_a_name_that_does_not_exist():
    assert resolve("probes.ig.integrate") is importlib.import_module("sparks.probes.ig").integrate
    with pytest.raises(AttributeError):
        resolve("probes.ig.no_such_function")
    with pytest.raises((ImportError, AttributeError)):
        resolve("probes.no_such_module.f")
