"""The hub as a person uses it, in a real browser (headless Chromium through nginx and TLS):
sign up, an admin approves, a wrong password is refused, log in, choose a profile, and
run the starter notebook in JupyterLab. Screenshots of each step go to
.cache/reports/screenshots/ (the README's "Using the hub" shows some of them)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from browser import SHOTS, Browser
from hubclient import HubClient
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import Select
from testhost import TestHost, new_password, size_in_bytes

USER = "bella"
STARTER = "work/PyTorch-Tour.ipynb"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if SHOTS.exists():
        shutil.rmtree(SHOTS)
    started = Browser()
    try:
        yield started
    finally:
        started.driver.quit()


def test_a_new_user_signs_up_is_approved_and_runs_the_starter_notebook(
    host: TestHost, hub_url: str, browser: Browser, admin: HubClient
) -> None:
    password = new_password()
    driver = browser.driver
    driver.get(f"{hub_url}/hub/signup")
    browser.fill(
        {"username": USER, "signup_password": password, "signup_password_confirmation": password}
    )
    browser.shot("sign-up")
    browser.submit("form")
    browser.wait(seen.presence_of_element_located((By.CSS_SELECTOR, ".alert")))
    browser.shot("signed-up")

    # An admin approves (NativeAuthenticator's authorization page).
    admin.approve(USER)

    driver.get(f"{hub_url}/hub/login")
    browser.fill({"username": USER, "password": "not-" + password})
    browser.submit("form")
    error = browser.wait(seen.visibility_of_element_located((By.CSS_SELECTOR, ".login_error")))
    assert "Invalid username or password" in error.text, error.text
    browser.shot("wrong-password")

    browser.fill({"username": USER, "password": password})
    browser.submit("form")
    # The spawn page offers the profiles the scenario defines; take the second.
    profiles = [p["display_name"] for p in host.scenario_var("jupyterhub_profiles")]
    picker = Select(browser.wait(seen.visibility_of_element_located((By.ID, "profile"))))
    assert [o.text.split(" - ")[0] for o in picker.options] == profiles
    picker.select_by_index(1)
    browser.shot("choose-a-profile")
    browser.submit("#spawn_form")

    # JupyterLab loads, in the home (work/ and shared/ in its file browser).
    browser.wait(seen.presence_of_element_located((By.CSS_SELECTOR, ".jp-LabShell")), 300)
    listing = browser.wait(
        seen.visibility_of_element_located((By.CSS_SELECTOR, ".jp-DirListing-content")), 120
    )
    browser.wait(lambda _: "work" in listing.text and "shared" in listing.text)
    browser.shot("jupyterlab")
    # The memory meter, against the profile's limit.
    meter = browser.wait(
        seen.visibility_of_element_located((By.XPATH, "//*[contains(text(), 'Mem: ')]"))
    )
    browser.shot("memory-meter")
    # "CPU: <%> | Mem: <used> / <limit> MB", against the chosen profile's own limit.
    limit = size_in_bytes(host.scenario_var("jupyterhub_profiles")[1]["limits"]["mem_limit"])
    assert meter.text.startswith("CPU: "), meter.text
    assert meter.text.endswith(f"/ {limit / 1024**2:.2f} MB"), meter.text

    driver.get(f"{hub_url}/user/{USER}/lab/tree/{STARTER}")
    browser.wait(seen.presence_of_element_located((By.CSS_SELECTOR, ".jp-Notebook .jp-Cell")))
    # The kernel is connected once the status bar names it ("Python 3 (ipykernel) | Idle").
    browser.wait(
        seen.visibility_of_element_located((By.XPATH, "//*[contains(text(), '| Idle')]")), 180
    )
    code_cells = driver.find_elements(By.CSS_SELECTOR, ".jp-CodeCell")
    run_all_cells(browser)
    try:
        browser.wait(lambda d: all_cells_ran(d, len(code_cells)), 300)
    except TimeoutException:
        browser.shot("notebook-timed-out")
        raise
    browser.shot("starter-notebook")
    errors = driver.find_elements(
        By.CSS_SELECTOR, ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
    )
    assert not [e.text for e in errors if "Error" in e.text], [e.text for e in errors]
    outputs = driver.find_elements(By.CSS_SELECTOR, ".jp-CodeCell .jp-OutputArea-output")
    assert outputs, "the starter notebook printed nothing"


def kernel_idle(driver: webdriver.Chrome) -> bool:
    status = driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator")
    return bool(status) and status[0].get_attribute("data-status") == "idle"


def run_all_cells(browser: Browser) -> None:
    """Run > Run All Cells, as a person does."""
    menu = browser.wait(
        seen.element_to_be_clickable(
            (By.XPATH, "//li[contains(@class,'lm-MenuBar-item')][.//div[text()='Run']]")
        )
    )
    menu.click()
    browser.wait(
        seen.element_to_be_clickable(
            (By.XPATH, "//li[contains(@class,'lm-Menu-item')][.//div[text()='Run All Cells']]")
        )
    ).click()


def all_cells_ran(driver: webdriver.Chrome, cells: int) -> bool:
    """Every code cell has an execution count and the kernel is idle again."""
    prompts = [
        p.text.strip()
        for p in driver.find_elements(By.CSS_SELECTOR, ".jp-CodeCell .jp-InputArea-prompt")
    ]
    done = [p for p in prompts if p.startswith("[") and p[1:-2].isdigit()]
    return len(prompts) == cells and len(done) == cells and kernel_idle(driver)
