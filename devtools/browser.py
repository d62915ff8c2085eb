"""Headless Chromium for the template's tests, from Debian's ``chromium`` and ``chromium-driver``.

Nothing is downloaded at run time: Selenium is pointed at the system's browser and driver
and told to stay offline. Chromium runs without its sandbox (the tests run as root) and
without the background services that would reach for the network.
"""

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,900",
)


@contextmanager
def chromium():
    """Yield a Selenium driver for a fresh headless Chromium profile; quit it afterwards."""
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not look for downloads
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for argument in (*ARGUMENTS, f"--user-data-dir={profile}"):
            options.add_argument(argument)
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
        driver.set_page_load_timeout(30)
        try:
            yield driver
        finally:
            driver.quit()
