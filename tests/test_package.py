"""The built wheel installs one top-level import name, `sparks`, with the repository's folders as its subpackages."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINKED = {"tasks", "probes", "callbacks", "analysis", "train"}  # the design card's folders, at the root as links
SUBPACKAGES = LINKED | {"runs", "dashboards"}


def build_wheel(tmp_path: Path) -> Path:
    """Builds the wheel from a copy of the files git would commit, so the checkout gets no build/ or egg-info."""
    listing = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]
    tracked = subprocess.run(listing, cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    source = tmp_path / "source"
    for name in tracked:
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path / "dist"), str(source)], check=True, capture_output=True, text=True)
    (wheel,) = (tmp_path / "dist").glob("sparks-*.whl")
    return wheel


def test_wheel_has_exactly_one_top_level_package(tmp_path):
    with zipfile.ZipFile(build_wheel(tmp_path)) as wheel:
        names = wheel.namelist()
        top_level_file = next(name for name in names if name.endswith(".dist-info/top_level.txt"))
        declared = wheel.read(top_level_file).decode().split()
        entry_points = wheel.read(next(name for name in names if name.endswith(".dist-info/entry_points.txt"))).decode()
    code_roots = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert code_roots == {"sparks"}, code_roots
    assert declared == ["sparks"], declared
    assert {name.split("/")[1] for name in names if name.startswith("sparks/") and name.count("/") == 2} == SUBPACKAGES
    assert "sparks/probes/edges.py" in names and "sparks/train/grpo.py" in names
    assert "sparks = sparks.analysis.cli:main" in entry_points


def test_source_imports_only_through_sparks():
    """No module imports a subpackage by its bare folder name (it would import a PyPI package of that name)."""
    bare = []
    for path in REPO.glob("**/*.py"):
        if any(part in {".venv", "outputs", "build"} for part in path.relative_to(REPO).parts):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            words = line.split()
            if len(words) >= 2 and words[0] in {"from", "import"} and words[1].split(".")[0] in SUBPACKAGES:
                bare.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not bare, "\n".join(bare)


def test_the_root_folders_are_links_to_the_package_not_copies():
    """train/, probes/, … at the root are git symlinks to src/sparks/…, so one file holds each module."""
    entries = subprocess.run(["git", "ls-files", "--stage", *sorted(LINKED)], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.splitlines()
    links = {line.split("\t")[1]: line.split()[0] for line in entries}
    assert links == dict.fromkeys(LINKED, "120000"), links
    for name in LINKED:
        assert (REPO / name).resolve() == REPO / "src" / "sparks" / name


def test_an_editable_install_is_a_static_path_entry():
    """The editable install adds src/ to sys.path (no import hook), so static tools resolve `sparks` too."""
    import sparks.probes.sites

    assert Path(sparks.probes.sites.__file__).resolve() == REPO / "src" / "sparks" / "probes" / "sites.py"
    pth = [path for entry in sys.path if Path(entry).is_dir() for path in Path(entry).glob("__editable__.sparks-*.pth")]
    assert pth and pth[0].read_text().split() == [str(REPO / "src")], pth
