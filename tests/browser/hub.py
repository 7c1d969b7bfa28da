"""A course server for the browser tests: JupyterHub on 127.0.0.1 with students who log in, pull the course with
nbgitpuller and work in their own JupyterLab, driven through headless Chromium.

``Hub`` starts JupyterHub (the ``hub`` extra: JupyterHub, its Python proxy, nbgitpuller) with the dummy
authenticator (one shared password, the students listed) and the simple local spawner (every student's server a
local process in a home folder of their own under the test's scratch folder, kernels in fast mode). It reuses
``lab.Lab``'s notebook driving (Run All, save, what the page shows) for whichever student is logged in.
``Hub.available()`` says why a hub cannot be had here, or None.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from lab import Lab, _chromium, _free_port, write_settings

PASSWORD = "course"
BIN = Path(sys.executable).parent


def available() -> str | None:
    """None when a hub can be started here, else the reason it cannot."""
    for command, package in (("jupyterhub", "jupyterhub"), ("jupyterhub-singleuser", "jupyterhub"),
                             ("configurable-http-proxy", "configurable-http-proxy"), ("gitpuller", "nbgitpuller")):
        if shutil.which(command, path=str(BIN)) is None:
            return f"{command} is not installed beside this Python (pip install -e '.[hub]', for {package})"
    if shutil.which("git") is None:
        return "git is not installed (nbgitpuller pulls with it)"
    return None


class Hub(Lab):
    """JupyterHub for ``students`` in ``scratch``, and a headless Chromium; ``login`` picks the student the
    inherited notebook methods act for. Stopped by ``close``."""

    def __init__(self, scratch: Path, students: tuple[str, ...]):
        self.scratch, self.students, self.user = Path(scratch), students, None
        self.port, self.opened = _free_port(), 0
        self.server = self._start_hub()
        try:
            self._wait_for_hub()
            self.driver = _chromium()
        except BaseException:
            self.server.terminate()
            raise

    def home(self, student: str) -> Path:
        return self.scratch / "home" / student

    def _start_hub(self) -> subprocess.Popen:
        settings = write_settings(self.scratch / "settings")
        for student in self.students:
            self.home(student).mkdir(parents=True, exist_ok=True)
        config = self.scratch / "jupyterhub_config.py"
        config.write_text(f"""c = get_config()  # noqa: F821
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {self.port}
c.JupyterHub.hub_port = {_free_port()}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{_free_port()}"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {PASSWORD!r}
c.Authenticator.allowed_users = {set(self.students)!r}
c.JupyterHub.spawner_class = "simple"
c.Spawner.cmd = [{str(BIN / "jupyterhub-singleuser")!r}]
c.Spawner.default_url = "/lab"
c.Spawner.args = ["--allow-root"]  # the test machine runs as root (a real course: one system user per student)
c.Spawner.http_timeout = c.Spawner.start_timeout = 180  # a loaded course server starts JupyterLab slowly
c.Spawner.environment = {{"WORKBENCH_FAST": "1", "JUPYTERLAB_SETTINGS_DIR": {str(settings)!r}}}
c.SimpleLocalProcessSpawner.home_dir_template = {str(self.scratch / "home" / "{username}")!r}
c.JupyterHub.db_url = "sqlite:///{self.scratch / "hub.sqlite"}"
c.JupyterHub.cookie_secret_file = {str(self.scratch / "cookie_secret")!r}
c.ConfigurableHTTPProxy.pid_file = {str(self.scratch / "proxy.pid")!r}
""")
        self.log = self.scratch / "jupyterhub.log"
        environ = {"PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": str(self.scratch), "LANG": "C.UTF-8"}
        return subprocess.Popen([str(BIN / "jupyterhub"), "-f", str(config)], cwd=self.scratch, env=environ,
                                stdout=open(self.log, "w"), stderr=subprocess.STDOUT)

    def _wait_for_hub(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError(f"JupyterHub exited with {self.server.returncode}:\n"
                                   f"{self.log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/hub/login", timeout=2)
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"JupyterHub did not answer in {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def url(self, path: str) -> str:  # the logged-in student's server (the cookie authenticates)
        return f"http://127.0.0.1:{self.port}/user/{self.user}/{path}?"

    # ------------------------------------------------------------------------------------------ students
    def login(self, student: str, timeout: float = 120.0) -> None:
        """Log in as ``student`` through the hub's login form and wait for their JupyterLab (spawned on login)."""
        from selenium.webdriver.common.by import By

        self.driver.delete_all_cookies()
        self.driver.get(f"http://127.0.0.1:{self.port}/hub/login")
        self.driver.find_element(By.ID, "username_input").send_keys(student)
        self.driver.find_element(By.ID, "password_input").send_keys(PASSWORD)
        self.driver.find_element(By.ID, "login_submit").click()
        self.user = student
        self.wait_for(lambda: f"/user/{student}/lab" in self.driver.current_url
                      and self.script("return !!document.querySelector('.jp-LabShell')"), timeout,
                      f"{student}'s JupyterLab did not start:\n{self.log.read_text()[-3000:]}")

    def pull(self, repo: str, branch: str, target: str, notebook: str, timeout: float = 180.0) -> None:
        """Follow the nbgitpuller link a course hands out: clone (or update) ``repo`` at ``branch`` into the
        student's ``target`` folder and open ``notebook`` (relative to it) in JupyterLab."""
        query = urllib.parse.urlencode({"repo": repo, "branch": branch, "targetpath": target,
                                        "urlpath": f"lab/tree/{target}/{notebook}"})
        self.driver.get(f"http://127.0.0.1:{self.port}/hub/user-redirect/git-pull?{query}")
        self.wait_for(lambda: "/lab/tree/" in self.driver.current_url
                      and self.script("return !!document.querySelector('.jp-LabShell')"), timeout,
                      f"nbgitpuller did not open {notebook} for {self.user}:\n{self.log.read_text()[-3000:]}")

    def logout(self) -> None:
        self.driver.get(f"http://127.0.0.1:{self.port}/hub/logout")
        self.driver.delete_all_cookies()
        self.user = None

    def shut_down(self) -> None:  # the hub stops every student's server when it stops
        pass
