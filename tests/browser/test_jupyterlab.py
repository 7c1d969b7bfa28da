"""Every notebook as a student meets it: a real JupyterLab on 127.0.0.1 in headless Chromium, fast mode.

Run with ``make test-browser`` (not part of ``make test``). Each notebook is opened through the UI, run with
Run > Run All Cells and saved with File > Save; a cell error, any stderr output, an unrendered widget, a broken
image or a red progress bar fails it. Four panels are then driven with the keyboard, the mouse and their buttons,
and their pictures must change; the plotly figure must render and hover with whole trace names. Afterwards
``git status`` must be what it was before (fast mode writes no committed figure, the save hook keeps the
notebooks stripped). A deliberately broken copy of a notebook, in the test's own temporary folder, must fail.
"""

from __future__ import annotations

import re
import subprocess

import nbformat
import pytest

from workbench import paths
from workbench.course import notebooks, site

from lab import CURRENT, Lab, Page, available

ROOT = paths.notebooks_dir().parent
WHY = available()
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"browser test skipped: {WHY}")


def _git_status() -> str | None:
    try:
        return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, text=True,
                              capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


@pytest.fixture(scope="module")
def git_before() -> str | None:
    return _git_status()


@pytest.fixture(scope="module")
def lab(git_before, tmp_path_factory):
    lab = Lab(ROOT, tmp_path_factory.mktemp("jupyterlab"), {"WORKBENCH_FAST": "1"})
    yield lab
    lab.close()


def _run(lab: Lab, relative: str) -> Page:
    page = lab.run_all(relative)
    print(f"{relative}: {page.seconds:.1f} s in JupyterLab, {page.images} images, {page.widgets} widgets")
    return page


# ------------------------------------------------------------------------------------------ the panels
def _replay(lab: Lab) -> None:
    """01: the attack replay's query slider, with the keyboard."""
    panel, = lab.panels()
    before = lab.picture(panel)
    lab.key(panel, "\ue014\ue014\ue014")  # ArrowRight x3
    lab.changed(panel, before)


def _aaa(lab: Lab) -> None:
    """02: AAA's explorer: tau with the keyboard, the curve toggle, tau again with the mouse."""
    panel, = lab.panels()
    before = lab.picture(panel)
    lab.key(panel, "\ue012")  # ArrowLeft: tau 6.0 -> 5.5
    before = lab.changed(panel, before)
    lab.click(panel, "sine")
    before = lab.changed(panel, before)
    lab.drag(panel, 60)
    lab.changed(panel, before)


def _unig(lab: Lab) -> None:
    """03: UniG's explorer: p (the second slider) with the keyboard."""
    panel, = lab.panels()
    before = lab.picture(panel)
    lab.key(panel, "\ue014", slider=1)  # p 1 -> 2
    lab.changed(panel, before)


def _noise(lab: Lab) -> None:
    """04: the noise explorer: sigma with the keyboard changes nothing until run is clicked; the button is
    disabled while it runs, the status line says when it is done."""
    panel, = lab.panels()
    assert "press run" in lab.status(panel)
    before = lab.picture(panel)
    lab.key(panel, "\ue012")  # sigma 0.02 -> 0.01
    lab.click(panel, "run")  # (tests/test_widgets.py checks the button is disabled while it runs)
    lab.wait_for(lambda: lab.status(panel).startswith("done: sigma = 0.01"), 120, "no done message")
    after = lab.changed(panel, before)  # "done" is said once the new picture is shown
    assert "<img" in after and "robust" in after, after[:300]
    assert lab.script("return [...arguments[0].querySelectorAll('button')].every(b => !b.disabled)", panel)


PANELS = {"01": _replay, "02": _aaa, "03": _unig, "04": _noise}
PLOTLY = {"02", "07"}


@pytest.mark.parametrize("path", notebooks.notebooks(), ids=lambda p: p.name)
def test_notebook_runs_in_jupyterlab(lab, path):
    page = _run(lab, str(path.relative_to(ROOT)))
    assert not page.failures(), "\n".join(page.failures())
    assert page.images > 0, f"{path.name} showed no figure"
    number = path.name[:2]
    if number in PLOTLY:
        assert page.plotly >= 1, f"{path.name}: the plotly figure did not render"
        label = lab.hover_plotly()
        assert re.search(r"image \d+: (observed|undefended)", label), f"hover label {label!r} lost the trace name"
    if number in PANELS:
        PANELS[number](lab)
        assert not lab.page(path.name).failures()  # nothing broke while the panels were driven
    lab.shut_down()


def test_a_broken_notebook_fails(tmp_path_factory):
    """The checks are not blind: a copy of notebook 00 with a raising cell, in this test's own folder, fails."""
    folder = tmp_path_factory.mktemp("broken")
    nb = nbformat.read(notebooks.notebooks("00")[0], as_version=4)
    nb.cells.insert(3, nbformat.v4.new_code_cell('raise RuntimeError("deliberately broken")'))
    nbformat.write(nb, str(folder / "00_broken.ipynb"))
    lab = Lab(folder, tmp_path_factory.mktemp("jupyterlab-broken"), {"WORKBENCH_FAST": "1"})
    try:
        page = lab.run_all("00_broken.ipynb", save=False)
    finally:
        lab.close()
    failures = "\n".join(page.failures())
    assert "deliberately broken" in failures and "did not run" in failures, failures


def test_the_site_index_and_a_page_open_in_chromium(lab, tmp_path):
    """``make site`` (here: two notebooks into a temporary folder): the index lists them, its link opens a page
    whose figures load, whose plotly figure draws offline and whose panel shows its opening picture; the API
    reference it links lists the modules."""
    from selenium.webdriver.common.by import By

    index = site.render(tmp_path, ["00", "02"])
    driver = lab.driver
    driver.get(index.as_uri())
    links = driver.find_elements(By.CSS_SELECTOR, "ol a")
    assert [a.get_attribute("href").rsplit("/", 1)[1] for a in links] == [
        "00_quickstart.html", "02_aaa_loss_attractors.html"]
    links[1].click()
    lab.wait_for(lambda: driver.execute_script("return document.readyState") == "complete", 30, "page not loaded")
    images = driver.execute_script("return [...document.images].map(i => i.complete && i.naturalWidth > 0)")
    assert len(images) >= 5 and all(images), images
    lab.wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .main-svg"), 30,
                 "the plotly figure did not draw")
    assert "An interactive panel" in driver.find_element(By.TAG_NAME, "body").text
    driver.get(index.as_uri())  # the API reference, from the docstrings (pdoc)
    driver.find_element(By.LINK_TEXT, "API reference").click()
    lab.wait_for(lambda: driver.execute_script("return document.readyState") == "complete", 30, "page not loaded")
    listed = set(driver.find_element(By.TAG_NAME, "body").text.split("\n"))
    assert {"runs", "oracle", "protocol", "speed"} <= listed, listed  # the package page lists its modules
    assert (tmp_path / "api" / "workbench" / "oracle.html").is_file()


def test_check_cells_say_pass_or_fail_in_jupyterlab(lab):
    """A self-check as a student sees it: lesson 06's worked solutions show PASS under each of its four check
    cells; its unanswered student sheet (``notebooks/exercises/``) shows FAIL with the "not answered yet" hint,
    and raises nothing. Both are saved as a student would (the save hook keeps them as committed)."""
    for folder, verdict in (("solutions", ": PASS"), ("exercises", ": FAIL: not answered yet: set ")):
        page = _run(lab, f"notebooks/{folder}/06_defense_benchmark.ipynb")
        assert not page.failures(), "\n".join(page.failures())
        shown = lab.script("return [...document.querySelectorAll(arguments[0] + ' .jp-OutputArea-output')]"
                           ".map(o => o.textContent.trim()).filter(t => t.startsWith('Exercise 06.'))", CURRENT)
        assert len(shown) == 4 and all(verdict in text for text in shown), shown
        lab.shut_down()


def test_git_status_is_unchanged_after_running_everything(lab, git_before):
    """Runs after the notebooks (pytest keeps file order): the saved notebooks are byte-identical to the
    committed ones and fast mode wrote no tracked or untracked file outside git-ignored folders."""
    if git_before is None:
        pytest.skip("not a git checkout")
    assert "workbench.course.classroom" in lab.log.read_text(), (
        "the JupyterLab server did not load workbench.course.classroom: run make install (or "
        "python -m workbench.course.classroom enable)")
    assert _git_status() == git_before
