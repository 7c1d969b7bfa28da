"""The two dependency lists agree, notebooks are stored without outputs, the README documents the commands."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from workbench.course import classroom

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_lists_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = re.search(r"^EXTRAS := (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1).split(",")  # make install's
    wanted = {_name(r) for r in project["dependencies"]}
    wanted |= {_name(r) for extra in extras for r in project["optional-dependencies"][extra.strip()]}
    text = (ROOT / "environment.yml").read_text()
    pip_section = text.split("- pip:", 1)[1].splitlines()
    listed = {_name(line.strip()[2:]) for line in pip_section
              if line.strip().startswith("- ") and not line.strip().startswith("- -e")}
    assert listed == wanted


def test_notebooks_are_numbered_and_stored_without_outputs():
    books = [p for folder in ("", *classroom.FOLDERS) for p in sorted((ROOT / "notebooks" / folder).glob("*.ipynb"))]
    assert books
    for path in books:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), path.name
        assert classroom.tracked(path)
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, path.name
    # byte for byte what the save hook writes: a student's JupyterLab save leaves git status clean
    assert classroom.main(["check", *map(str, books)]) == 0


def test_the_save_hook_strips_tracked_notebooks_only(tmp_path):
    import nbformat

    path = ROOT / "notebooks" / "00_quickstart.ipynb"
    committed = path.read_text()
    nb = nbformat.reads(committed, as_version=4)
    run = nbformat.from_dict(json.loads(json.dumps(nb)))
    run.metadata["language_info"] = {"name": "python", "version": "3.11.7"}
    code = next(c for c in run.cells if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
    code.execution_count, code.metadata["execution"] = 3, {"iopub.status.idle": "2026-11-22T00:00:00Z"}

    class Manager:
        root_dir = str(ROOT)

    model = {"type": "notebook", "content": json.loads(json.dumps(run))}
    classroom.strip_on_save(model, "notebooks/00_quickstart.ipynb", Manager())
    assert nbformat.writes(nbformat.from_dict(model["content"])) + "\n" == committed
    mine = {"type": "notebook", "content": json.loads(json.dumps(run))}
    classroom.strip_on_save(mine, "notebooks/mine/00_quickstart.ipynb", Manager())
    assert mine["content"]["cells"][code_index(run)]["outputs"]  # not a tracked notebook: saved as it is
    assert not classroom.tracked(tmp_path / "00_quickstart.ipynb")


def code_index(nb) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")


def test_make_install_switches_the_classroom_extension_on():
    assert "$(BIN)/python -m workbench.course.classroom enable" in (ROOT / "Makefile").read_text()
    assert classroom._jupyter_server_extension_points() == [{"module": "workbench.course.classroom"}]


def test_readme_gives_the_two_commands_and_ci_calls_make_test():
    readme = (ROOT / "README.md").read_text()
    assert "make figures" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()




def test_the_docs_live_in_the_repo():
    """The README stays short and points only at files of the project; nothing in the project cites a folder
    its users lack (the developers' shared notes)."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 160
    for name in re.findall(r"`((?:docs|benchmarks|data|workbench|figures)/[\w./-]+\.md)`", readme):
        assert (ROOT / name).is_file(), name
    texts = [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("workbench/**/*.py"),
             *ROOT.glob("notebooks/**/*.ipynb"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("data/*.md")]
    for path in texts:
        text = path.read_text()
        assert "../shared" not in text and "DESIGN.md" not in text, path
