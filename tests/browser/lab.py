"""A real JupyterLab driven through headless Chromium: the harness of the browser tests.

``Lab`` starts a JupyterLab server on 127.0.0.1 (a fresh token, its own settings and workspace folders, the
kernels in fast mode) and Debian's ``chromium`` through ``chromedriver`` with selenium; nothing is downloaded.
``Lab.run_all(path)`` opens a notebook through the UI, runs Run > Run All Cells and returns what a student would
see (``Page``): every cell's prompt, error and stderr outputs, unrendered widgets, broken images, red progress
bars. ``Lab.available()`` says why the browser cannot be had, or None.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CURRENT = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook in front (others may be open behind it)
SETTLE = 2.0  # seconds the notebook must look finished (no cell running, kernel idle) before its page is read
CHROMIUM = os.environ.get("WORKBENCH_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("WORKBENCH_CHROMEDRIVER", "/usr/bin/chromedriver")
SETTINGS = {  # JupyterLab user settings for the test's own settings folder: no news pop-up over the notebook
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                       "checkForUpdates": False},
}


def write_settings(folder: Path) -> Path:
    """Write ``SETTINGS`` as JupyterLab user settings into ``folder`` (for ``JUPYTERLAB_SETTINGS_DIR``)."""
    for name, value in SETTINGS.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(value))
    return folder


def available() -> str | None:
    """None when the browser test can run here, else the reason it cannot."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} not found: install Debian's {package} (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if shutil.which("jupyter-lab", path=str(Path(sys.executable).parent)) is None:
        return "jupyter-lab is not installed beside this Python"
    return None


@dataclass
class Page:
    """What a notebook showed after Run All: one entry per code cell, in order."""

    name: str
    prompts: list[str]
    errors: list[str] = field(default_factory=list)  # error and stderr outputs, with their cell number
    problems: list[str] = field(default_factory=list)  # unrendered widgets, broken images, red progress bars
    images: int = 0
    widgets: int = 0
    plotly: int = 0
    seconds: float = 0.0

    @property
    def unexecuted(self) -> list[int]:
        return [i for i, p in enumerate(self.prompts) if not p.strip("[]: ").isdigit()]

    def failures(self) -> list[str]:
        """Everything a student would take for a failure, as readable lines (empty when the notebook is fine)."""
        lines = [f"{self.name}: {e}" for e in self.errors + self.problems]
        if self.unexecuted:
            lines.append(f"{self.name}: code cells {self.unexecuted} did not run (prompts {self.prompts})")
        return lines


class Lab:
    """A JupyterLab server rooted at ``root`` and a headless Chromium, both stopped by ``close``."""

    def __init__(self, root: Path, scratch: Path, env: dict[str, str] | None = None):
        self.root, self.port, self.token = Path(root), _free_port(), secrets.token_hex(16)
        self.opened = 0
        self.server = self._start_server(Path(scratch), env or {})
        try:
            self._wait_for_server()
            self.driver = _chromium()
        except BaseException:
            self.server.terminate()
            raise

    def _start_server(self, scratch: Path, env: dict[str, str]) -> subprocess.Popen:
        settings = write_settings(scratch / "settings")
        # a student's environment: the kernel's own (inline) backend, no WORKBENCH_* settings of the test run
        environ = {k: v for k, v in os.environ.items() if k != "MPLBACKEND" and not k.startswith("WORKBENCH_")}
        environ.update(JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(scratch / "workspaces"),
                       **env)
        args = [str(Path(sys.executable).parent / "jupyter-lab"), "--no-browser", "--ip=127.0.0.1",
                f"--port={self.port}", f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
                "--ServerApp.open_browser=False", "--LabApp.news_url=", "--allow-root"]
        self.log = scratch / "jupyterlab.log"
        return subprocess.Popen(args, env=environ, cwd=self.root, stdout=open(self.log, "w"),
                                stderr=subprocess.STDOUT)

    def _wait_for_server(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.server.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(self.url("api/status"), timeout=2)
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"JupyterLab did not answer in {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            self.server.terminate()
            try:
                self.server.wait(20)
            except subprocess.TimeoutExpired:
                self.server.kill()

    # ------------------------------------------------------------------------------------------ notebooks
    def open(self, relative: str, timeout: float = 60.0) -> None:
        """Open a notebook (path relative to the server root) and wait until its cells and kernel are there."""
        self.opened += 1  # a fresh workspace each time: no tab of an earlier notebook is restored behind it
        self.driver.get(self.url(f"lab/workspaces/w{self.opened}/tree/{relative}") + "&reset")
        # steadily: on a loaded hub the indicator can read idle before the session has its kernel, and Run All
        # then asks for a kernel in one dialog per code cell (seen on CI)
        self.wait_for(_steadily(lambda: self.script(f"return document.querySelectorAll('{CURRENT} .jp-Cell')"
                                                    ".length") > 0 and self._kernel_idle(), SETTLE),
                      timeout, f"{relative} did not open with an idle kernel")

    def run_all(self, relative: str, timeout: float = 300.0, save: bool = True) -> Page:
        """Open ``relative``, click Run > Run All Cells, wait for the kernel to finish, save (File > Save, as a
        student would) and collect what the page shows."""
        self.open(relative)
        start = time.monotonic()
        for _ in range(2):
            self._click_run_all(relative)
            self.wait_for(_steadily(self._finished, SETTLE), timeout,
                          f"{relative}: cells still running after {timeout:.0f} s")
            time.sleep(1.0)  # let the widget views and images of the last outputs render
            page = self.page(relative)
            # A run that left cells unrun with no error anywhere did not run all cells (seen once on CI: only the
            # first cell ran, the kernel idle): click Run All once more. A failing notebook shows its error, and
            # a second incomplete run is reported as cells that did not run.
            if not page.unexecuted or page.errors:
                break
        page.seconds = time.monotonic() - start
        if save:
            self.menu("File", "docmanager:save")
            self.wait_for(lambda: not self.script("return !!document.querySelector('.lm-TabBar-tab.lm-mod-current"
                                                  ".jp-mod-dirty')"), 30, f"{relative}: not saved")
        return page

    def close_dialogs(self, timeout: float = 30.0) -> None:
        """Print and close every JupyterLab dialog open over the page (JupyterLab queues them: one may follow
        another), then wait for an idle kernel. A "Select Kernel" dialog is accepted (its preselected Python
        kernel) only while the notebook has no kernel: Run All asks once per code cell, and accepting each would
        restart the kernel under the cells already running. Any other dialog gets its default button."""
        from selenium.webdriver.common.by import By

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dialogs = self.driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog")
            if not dialogs:
                time.sleep(1.0)  # a queued dialog opens once the one before it has closed
                if not self.driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog"):
                    break
                continue
            text = dialogs[0].text
            buttons = dialogs[0].find_elements(By.CSS_SELECTOR, ".jp-mod-accept")
            cancel = "Select Kernel" in text and self._has_kernel()
            print(f"{'cancelling' if cancel else 'accepting'} a JupyterLab dialog: {text!r}")
            if buttons and not cancel:
                buttons[0].click()
            else:
                self.driver.find_element(By.TAG_NAME, "body").send_keys("\ue00c")  # Escape
            time.sleep(0.5)
        self.wait_for(_steadily(self._kernel_idle, SETTLE), max(deadline - time.monotonic(), 5.0),
                      "no idle kernel after closing the dialogs")

    def shut_down(self) -> None:
        """Shut down every kernel session of the server (what File > Shut Down does, without its dialogs)."""
        for session in self.api("GET", "api/sessions"):
            self.api("DELETE", f"api/sessions/{session['id']}")

    def api(self, method: str, path: str):
        request = urllib.request.Request(self.url(path), method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None

    def _click_run_all(self, relative: str) -> None:
        from selenium.common.exceptions import ElementClickInterceptedException

        for attempt in range(3):  # a fresh JupyterLab can swallow the first click while it finishes loading,
            try:  # or open a dialog over the page on its first start
                if attempt and self._started():  # the cells the dialogs held back ran once they closed
                    return
                self.menu("Run", "runmenu:run-all")
                self.wait_for(lambda: self._started(), 10, f"{relative}: Run All started nothing")
                return
            except (TimeoutError, ElementClickInterceptedException):
                if attempt == 2:
                    raise
                self.close_dialogs()

    def menu(self, top: str, command: str) -> None:
        """Click the top-level menu ``top``, then the item running JupyterLab's ``command``."""
        from selenium.webdriver.common.by import By

        for item in self.driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item"):
            if item.text.strip() == top:
                item.click()
                break
        else:
            raise RuntimeError(f"no menu {top!r}")
        enabled = f".lm-Menu-item[data-command='{command}']:not(.lm-mod-disabled)"
        try:
            entry = self.wait_for(lambda: self.driver.find_elements(By.CSS_SELECTOR, enabled), 10,
                                  f"menu item {command} missing or disabled")
        except TimeoutError:
            self.driver.find_element(By.TAG_NAME, "body").send_keys("\ue00c")  # Escape: close the menu
            raise
        entry[0].click()

    def page(self, name: str) -> Page:
        report = self.script(_COLLECT, CURRENT)
        return Page(name=name, **report)

    # ---------------------------------------------------------------------------------------------- panels
    def panels(self) -> list:
        """The workbench panels (``widgets.Panel``: rows of controls, a status line, an output) on the page."""
        from selenium.webdriver.common.by import By

        boxes = self.driver.find_elements(By.CSS_SELECTOR, f"{CURRENT} .jp-OutputArea-output .widget-vbox")
        return [b for b in boxes if b.find_elements(By.CSS_SELECTOR, ":scope > .widget-output")]

    def picture(self, panel) -> str:
        """What the panel's output area shows now (its images are data URLs: a new figure changes it)."""
        return self.script("return arguments[0].querySelector(':scope > .widget-output').innerHTML", panel)

    def key(self, panel, keys: str, slider: int = 0) -> None:
        """Focus the panel's ``slider``-th slider handle and press ``keys`` (as a student with the keyboard)."""
        handle = self._handle(panel, slider)
        handle.click()
        handle.send_keys(keys)

    def drag(self, panel, dx: int, slider: int = 0) -> None:
        """Drag the panel's ``slider``-th handle by ``dx`` pixels with the mouse."""
        from selenium.webdriver.common.action_chains import ActionChains

        handle = self._handle(panel, slider)
        ActionChains(self.driver).click_and_hold(handle).move_by_offset(dx, 0).pause(0.2).release().perform()

    def _handle(self, panel, slider: int):
        """The panel's ``slider``-th slider handle, scrolled into view."""
        from selenium.webdriver.common.by import By

        return self.into_view(panel.find_elements(By.CSS_SELECTOR, ".noUi-handle")[slider])

    def click(self, panel, label: str) -> None:
        """Click the panel's button (or toggle button) labelled ``label``."""
        from selenium.webdriver.common.by import By

        for button in panel.find_elements(By.CSS_SELECTOR, "button"):
            if button.text.strip() == label:
                self.into_view(button).click()
                return
        raise RuntimeError(f"no button {label!r} in the panel")

    def status(self, panel) -> str:
        return self.script("const s = arguments[0].querySelector(':scope > .widget-html');"
                           "return s ? s.textContent.trim() : ''", panel)

    def changed(self, panel, before: str, timeout: float = 60.0) -> str:
        """Wait until the panel's picture differs from ``before`` and the kernel is idle; return the new one."""
        self.wait_for(lambda: self.picture(panel) != before and self._kernel_idle(), timeout,
                      "the panel's output did not change")
        return self.picture(panel)

    def hover_plotly(self) -> str:
        """Hover the mouse over a point of the page's first plotly figure; return the hover label's text."""
        from selenium.webdriver.common.action_chains import ActionChains

        def hovered() -> str:
            self.into_view(self.script(_PLOTLY_POINT, CURRENT)[0])
            figure, dx, dy = self.script(_PLOTLY_POINT, CURRENT)  # where it is now
            chain = ActionChains(self.driver).move_to_element_with_offset(figure, -int(dx), -int(dy)).pause(0.2)
            chain.move_to_element_with_offset(figure, int(dx), int(dy)).pause(0.5).perform()
            return self.script("return [...document.querySelectorAll('.hoverlayer .hovertext')]"
                               ".map(t => t.textContent).join(' | ')")

        return self.wait_for(hovered, 20, "no plotly hover label")

    # --------------------------------------------------------------------------------------------- helpers
    def script(self, code: str, *args):
        return self.driver.execute_script(code, *args)

    def into_view(self, element):
        """Scroll ``element`` to the middle of the window (JupyterLab scrolls its notebook panel) and return it."""
        self.script("arguments[0].scrollIntoView({block: 'center'})", element)
        return element

    def wait_for(self, condition, timeout: float, message: str):
        """Poll ``condition`` until it is truthy (return its value); on timeout save a screenshot beside the
        server's log and raise with ``message`` and the screenshot's path."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.25)
        shot = self.log.with_name(f"timeout-{time.monotonic():.0f}.png")
        self.driver.save_screenshot(str(shot))
        raise TimeoutError(f"{message} (screenshot: {shot})")

    def _prompts(self) -> list[str]:
        return self.script(f"return [...document.querySelectorAll('{CURRENT} .jp-CodeCell .jp-InputPrompt')]"
                           ".map(p => p.textContent.trim())")

    def _kernel_idle(self) -> bool:
        return self._has_kernel() and bool(self.script(
            f"const s = document.querySelector('{CURRENT} .jp-Notebook-ExecutionIndicator');"
            "return !!s && s.getAttribute('data-status') === 'idle'"))

    def _has_kernel(self) -> bool:
        """The notebook's toolbar names a kernel: JupyterLab's ``hasNoKernel`` is false, so Run All will not
        ask for one."""
        name = self.script(f"const k = document.querySelector('{CURRENT} .jp-Toolbar-kernelName');"
                           "return k ? k.textContent.trim() : ''")
        return name not in ("", "No Kernel")

    def _started(self) -> bool:
        return any("*" in p or p.strip("[]: ").isdigit() for p in self._prompts())

    def _finished(self) -> bool:
        return not any("*" in p for p in self._prompts()) and self._kernel_idle()


def _steadily(condition, seconds: float):
    """A condition that is true once ``condition`` has been true on every poll for ``seconds``."""
    since: list[float] = []

    def check() -> bool:
        if not condition():
            since.clear()
            return False
        since[:] = since or [time.monotonic()]
        return time.monotonic() - since[0] >= seconds

    return check


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--disable-gpu", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(30)
    return driver


# The first plotly figure of the notebook in front, and the offset from its centre of the middle point of its
# second trace (what the mouse hovers over).
_PLOTLY_POINT = r"""
const gd = document.querySelector(arguments[0] + ' .js-plotly-plot');
const layout = gd._fullLayout, trace = gd._fullData[1], i = Math.floor(trace.x.length / 2);
const px = layout.xaxis._offset + layout.xaxis.l2p(trace.x[i]), py = layout.yaxis._offset + layout.yaxis.l2p(trace.y[i]);
const box = gd.getBoundingClientRect();
return [gd, px - box.width / 2, py - box.height / 2];
"""

# Run in the page after Run All: what the student sees, per code cell.
_COLLECT = r"""
const cells = [...document.querySelectorAll(arguments[0] + ' .jp-CodeCell')];
const out = {prompts: [], errors: [], problems: [], images: 0, widgets: 0, plotly: 0};
cells.forEach((cell, i) => {
  out.prompts.push(cell.querySelector('.jp-InputPrompt').textContent.trim());
  for (const o of cell.querySelectorAll('.jp-OutputArea-output')) {
    const mime = o.getAttribute('data-mime-type') || '';
    const text = o.textContent.trim();
    if (mime === 'application/vnd.jupyter.stderr' || o.classList.contains('jp-mod-error'))
      out.errors.push(`cell ${i}: ${text.slice(0, 1500)}`);
    if (/Error displaying widget|Loading widget|Failed to display|model not found/.test(text))
      out.problems.push(`cell ${i}: widget not rendered: ${text.slice(0, 300)}`);
    if (o.querySelector('.jupyter-widgets')) out.widgets += 1;
    if (o.querySelector('.plotly .main-svg')) out.plotly += 1;
  }
  for (const img of cell.querySelectorAll('.jp-OutputArea img:not(.js-plotly-plot img)')) {
    out.images += 1;
    if (!img.complete || img.naturalWidth === 0) out.problems.push(`cell ${i}: broken image`);
  }
  for (const bar of cell.querySelectorAll('.widget-progress [class*="danger"], .progress-bar-danger'))
    out.problems.push(`cell ${i}: a red (unfinished) progress bar: ${bar.closest('.widget-hprogress, .widget-hbox, .jp-OutputArea-output').textContent.trim().slice(0, 120)}`);
});
return out;
"""
