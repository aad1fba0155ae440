"""A headless Chromium for the browser tests (tests/e2e/test_browser.py through the test
host's nginx; hub/tests/test_lab_warning.py against a local JupyterLab), a screenshot per
step in .cache/reports/screenshots/."""

from __future__ import annotations

import shutil
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait

SHOTS = Path(__file__).resolve().parents[1] / ".cache" / "reports" / "screenshots"


class Browser:
    """One headless Chromium, with a screenshot per step."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        options = webdriver.ChromeOptions()
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1400,900",
            # The test host's certificate is self-signed; the TLS tests check it.
            "--ignore-certificate-errors",
        ):
            options.add_argument(flag)
        options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
        service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
        self.driver = webdriver.Chrome(options=options, service=service)
        self.step = 0

    def shot(self, name: str) -> Path:
        self.step += 1
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{self.prefix}{self.step:02d}-{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def wait(self, condition: object, seconds: float = 60) -> WebElement:
        return WebDriverWait(self.driver, seconds).until(condition)

    def css(self, selector: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def fill(self, fields: dict[str, str]) -> None:
        for name, value in fields.items():
            field = self.wait(seen.visibility_of_element_located((By.NAME, name)))
            field.clear()
            field.send_keys(value)

    def submit(self, form: str) -> None:
        self.css(f"{form} [type=submit]").click()
