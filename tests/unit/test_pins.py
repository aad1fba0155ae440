"""The hub stack pinned for pytest is the one the images are built with, and it is a
combination that works together."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {
    "jupyterhub": "jupyterhub",
    "dockerspawner": "dockerspawner",
    "nativeauthenticator": "jupyterhub-nativeauthenticator",
    "ldapauthenticator": "jupyterhub-ldapauthenticator",
    "oauthenticator": "oauthenticator",
    "idle_culler": "jupyterhub-idle-culler",
    "jupyterlab": "jupyterlab",  # the lab extension test (hub/tests/test_lab_warning.py)
}


def test_image_pins_match_the_test_environment() -> None:
    defaults = yaml.safe_load((REPO / "roles/jupyterhub_images/defaults/main.yml").read_text())
    versions = defaults["jupyterhub_images_versions"]
    pins = dict(
        re.findall(
            r"^([A-Za-z0-9_.-]+)==([^\s#]+)", (REPO / "requirements-dev.txt").read_text(), re.M
        )
    )
    for key, package in PACKAGES.items():
        assert pins.get(package) == str(versions[key]), f"{package}: tests pin {pins.get(package)}"


def test_nativeauthenticator_login_handler_finds_what_it_needs() -> None:
    # NativeAuthenticator 1.3.0's LoginHandler.post times logins with self.statsd, which
    # JupyterHub 6 removed: every login then failed with a 500. The hub serves its own
    # subclass (hub/src/gpuhub_hub/nativecompat.py), which has one on either.
    from gpuhub_hub.nativecompat import LoginHandler
    from nativeauthenticator.handlers import LoginHandler as NativeLoginHandler

    source = Path(NativeLoginHandler.post.__code__.co_filename).read_text()
    if "self.statsd" in source:
        assert hasattr(LoginHandler, "statsd"), "this JupyterHub lacks statsd: logins would fail"


def test_the_upgrade_drill_starts_from_the_previous_jupyterhub_with_every_other_pin() -> None:
    defaults = yaml.safe_load((REPO / "roles/jupyterhub_images/defaults/main.yml").read_text())
    versions = defaults["jupyterhub_images_versions"]
    scenario = yaml.safe_load((REPO / "molecule/default/molecule.yml").read_text())
    host = scenario["provisioner"]["inventory"]["host_vars"]["gpuhub-default"]
    start = host["jupyterhub_images_versions"]
    assert {k: v for k, v in start.items() if k != "jupyterhub"} == {
        k: v for k, v in versions.items() if k != "jupyterhub"
    }
    assert int(start["jupyterhub"].split(".")[0]) < int(str(versions["jupyterhub"]).split(".")[0])
