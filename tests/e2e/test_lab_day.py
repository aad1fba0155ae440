"""A lab user's day: the whole home is kept (settings, packages of one's own), and a home
from the layout that mounted it at ~/work only keeps every file where its user saw it."""

from __future__ import annotations

import ast
import base64
import io
import json
import zipfile

import pytest
import requests
import yaml
from hubclient import HubClient
from shared_facts import REPO
from testhost import TestHost, UserFactory, ok, size_in_bytes

# JupyterLab's theme setting, as the browser's settings editor stores it.
THEME = "/lab/api/settings/@jupyterlab/apputils-extension:themes"
IMAGES_VARS = REPO / "roles/jupyterhub_images/vars/main.yml"


def wheel(name: str, value: int) -> bytes:
    """A pure-Python wheel with one module, `name`, whose VALUE is `value` (tests send
    no traffic to PyPI; a wheel of their own stands for any package)."""
    info = f"{name}-1.0.dist-info"
    files = {
        f"{name}.py": f"VALUE = {value}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: e2e\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{info}/RECORD"])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return buffer.getvalue()


def upload(client: HubClient, user: str, path: str, data: bytes) -> None:
    body = {"type": "file", "format": "base64", "content": base64.b64encode(data).decode()}
    response = client.api("PUT", f"/user/{user}/api/contents/{path}", json=body)
    assert response.status_code in (200, 201), response.text[:300]


def run(client: HubClient, user: str, code: str) -> str:
    result = client.execute(user, client.start_kernel(user), code)
    assert result.error is None, result.error
    return result.stdout


@pytest.fixture(scope="module")
def lana(make_user: UserFactory) -> HubClient:
    client = make_user("lana")
    client.start_server("lana")
    return client


def test_own_packages_settings_and_history_survive_a_restart(
    host: TestHost, lana: HubClient
) -> None:
    upload(lana, "lana", "work/termpkg-1.0-py3-none-any.whl", wheel("termpkg", 7))
    upload(lana, "lana", "work/magicpkg-1.0-py3-none-any.whl", wheel("magicpkg", 9))
    # `pip install NAME` in a terminal: the user, not root, with the image's environment.
    server = host.server_of("lana")
    terminal = host.run(
        "docker",
        "exec",
        server,
        "bash",
        "-lc",
        "pip install --no-index work/termpkg-1.0-py3-none-any.whl && echo 'ls' >> ~/.bash_history",
    )
    assert "Successfully installed termpkg-1.0" in terminal, terminal
    # `%pip install NAME` in a notebook.
    magic = run(
        lana,
        "lana",
        "get_ipython().run_line_magic('pip', "
        "'install --no-index /home/jovyan/work/magicpkg-1.0-py3-none-any.whl')",
    )
    assert "Successfully installed magicpkg-1.0" in magic, magic
    # A setting changed the way the browser changes it.
    dark = {"raw": json.dumps({"theme": "JupyterLab Dark"})}
    assert lana.api("PUT", f"/user/lana{THEME}", json=dark).status_code == 204

    lana.stop_server("lana")
    lana.start_server("lana")
    imported = run(
        lana,
        "lana",
        "import termpkg, magicpkg; print(termpkg.VALUE + magicpkg.VALUE, termpkg.__file__)",
    )
    value, where = imported.split()
    assert value == "16"
    assert where.startswith("/home/jovyan/.local/lib/"), where
    settings = lana.api("GET", f"/user/lana{THEME}").json()
    assert json.loads(settings["raw"])["theme"] == "JupyterLab Dark"
    on_host = host.path("home", "lana", ".bash_history")
    assert host.run("tail", "-n1", on_host) == "ls\n"
    assert host.run("stat", "-c", "%u:%g", on_host).strip() == ":".join(host.user_ids())


def test_lab_opens_in_the_home_where_work_and_shared_are(lana: HubClient) -> None:
    listing = lana.api("GET", "/user/lana/api/contents/").json()
    folders = {item["name"] for item in listing["content"] if item["type"] == "directory"}
    assert {"work", "shared"} <= folders, folders


def test_a_home_from_the_work_only_layout_keeps_every_file_where_its_user_saw_it(
    host: TestHost, make_user: UserFactory
) -> None:
    """As on a host deployed before whole homes: the home's files were the user's ~/work.
    The layout record goes, a converge marks the homes it finds (every one on the host,
    as on an upgraded host), and the user's next start moves them into work/."""
    leo = make_user("leo")
    home = host.path("home", "leo")
    host.make_home(
        "leo",
        {
            "notes.txt": "seen at ~/work/notes.txt\n",
            "work/deep.txt": "seen at ~/work/work/deep.txt\n",
        },
    )
    host.run("rm", host.path("state", "home-layout"))
    homes = host.run("ls", host.path("home")).split()
    ok(host.converge("--tags", "jupyterhub_storage"))  # the role that marks them
    marks = host.path("state", "legacy-homes")
    assert host.run("ls", marks).split() == homes
    # Only leo's home is this test's to move; the other tests' homes stay as they are.
    for name in homes:
        if name != "leo":
            host.run("rm", f"{marks}/{name}")
    assert host.run("cat", host.path("state", "home-layout")) == "whole-home\n"

    leo.start_server("leo")
    notes = leo.api("GET", "/user/leo/api/contents/work/notes.txt?content=1").json()
    assert notes["content"] == "seen at ~/work/notes.txt\n"
    deep = leo.api("GET", "/user/leo/api/contents/work/work/deep.txt?content=1").json()
    assert deep["content"] == "seen at ~/work/work/deep.txt\n"
    assert "notes.txt" not in host.run("ls", "-A", home).split()
    assert host.run("ls", marks).strip() == ""


def test_the_announcement_is_on_every_hub_page(host: TestHost, lana: HubClient) -> None:
    announcement = host.scenario_var("jupyterhub_announcement")
    login = requests.get(f"{lana.url}/hub/login", verify=lana.verify, timeout=30)
    assert announcement in login.text
    for page in ("/hub/home", "/hub/token"):
        text = lana.session.get(lana.url + page, verify=lana.verify, timeout=30).text
        assert announcement in text, page


def test_extra_config_runs_after_gpuhubs_own(host: TestHost) -> None:
    """The scenario's snippet sets an environment variable for user containers."""
    snippet = host.scenario_var("jupyterhub_extra_config")["e2e"]
    expected = ast.literal_eval(snippet.split("=", 1)[1].strip())
    server = host.server_of("lana")
    for name, value in expected.items():
        assert host.run("docker", "exec", server, "printenv", name) == f"{value}\n"


def test_jupyterlab_news_prompt_is_answered_for_the_lab(host: TestHost, lana: HubClient) -> None:
    wanted = host.fact("jupyterhub_images_lab_news")
    plugin = "/lab/api/settings/@jupyterlab/apputils-extension:notification"
    # The lab's answer is the default every user starts from (their own choice wins).
    defaults = lana.api("GET", f"/user/lana{plugin}").json()["schema"]["properties"]
    assert defaults["fetchNews"]["default"] == str(wanted).lower()
    assert defaults["checkForUpdates"]["default"] is wanted


def test_the_meters_read_the_servers_own_limits(host: TestHost, lana: HubClient) -> None:
    """jupyter-resource-usage's API, which the Lab status bar shows."""
    metrics = lana.api("GET", "/user/lana/api/metrics/v1").json()
    memory = size_in_bytes(host.scenario_var("jupyterhub_mem_limit"))
    assert metrics["limits"]["memory"]["rss"] == memory
    assert 0 < metrics["rss"] < memory
    assert metrics["limits"]["cpu"]["cpu"] == float(host.scenario_var("jupyterhub_cpu_limit"))
    assert "cpu_percent" in metrics


def test_the_server_starts_without_what_the_images_take_out(lana: HubClient) -> None:
    """What the images role takes out after its installs (it costs every server start CPU)
    is not loaded by the Jupyter server, and no installed package needed it (pip check)."""
    removed = yaml.safe_load(IMAGES_VARS.read_text())["__jupyterhub_images_pip_remove"]
    modules = [name.replace("-", "_") for name in removed]
    code = (
        "import subprocess, sys, jupyter_server.serverapp, jupyterhub.singleuser\n"
        f"print([m for m in {modules!r} if m in sys.modules])\n"
        "check = subprocess.run([sys.executable, '-m', 'pip', 'check'], capture_output=True,"
        " text=True)\n"
        "print(check.returncode, check.stdout.strip())\n"
    )
    loaded, check = run(lana, "lana", code).splitlines()
    assert modules, "the images role takes nothing out: this test has nothing to prove"
    assert ast.literal_eval(loaded) == []
    assert check.startswith("0 "), check
