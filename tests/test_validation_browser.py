"""A user validates an external address in a real browser: headless Chromium
from Debian's packages, driven by Selenium, on the machine that runs pytest.

The browser reaches only the host under test: every other name resolves to
nothing (--host-resolver-rules), and Chromium's own background traffic is off.
It trusts the host's certificate as a user's browser would, by its chain: the
CA the host's certificates come from goes into a fresh NSS database of the
browser's own (or, with ACME, Chromium's own root store already has it).

Screenshots of each step go to SUBMISSION_VERIFY_SCREENSHOTS (default
.artefacts/screenshots in the repository).
"""

import os
import pathlib
import shutil
import subprocess
import tempfile
import time

import pytest
from validation_flow import confirmation_link, new_address, rcpt_code

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REPO = pathlib.Path(__file__).resolve().parents[1]


def web_name(host, deployment):
    variables = host.ansible.get_variables()
    if not variables.get("submission_validation_enabled", True):
        pytest.skip("submission_validation_enabled is false: this deployment has no validation service")
    return variables.get("submission_common_validation_hostname", f"senders.{deployment.domain}")


def host_address(host):
    """Where the browser finds the host: submission_verify_web_address, or the
    IPv4 address of the host's default-route interface (a test container's)."""
    address = host.ansible.get_variables().get("submission_verify_web_address")
    if address:
        return address
    interface = host.interface.default()
    return next(a for a in interface.addresses if ":" not in a)


@pytest.fixture(scope="module")
def browser(host, deployment, request):
    for program in (CHROMIUM, CHROMEDRIVER, shutil.which("certutil")):
        if not program or not os.path.exists(program):
            pytest.fail("the browser test needs chromium, chromium-driver and libnss3-tools (scripts/bootstrap.sh)")
    # Selenium 4 with the driver's path given never downloads a browser or driver.
    os.environ["SE_OFFLINE"] = "true"
    from selenium import webdriver  # noqa: PLC0415 (only this module needs it)
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    name = web_name(host, deployment)
    home = tempfile.mkdtemp(prefix="browser-home-")
    nssdb = pathlib.Path(home) / ".pki/nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True)
    tls_dir = host.ansible.get_variables().get("submission_common_tls_dir", "/etc/ssl/submission")
    ca = host.file(f"{tls_dir}/ca.crt")
    if ca.exists:
        ca_file = pathlib.Path(home) / "ca.crt"
        ca_file.write_bytes(ca.content)
        subprocess.run(
            ["certutil", "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "submission CA", "-i", ca_file], check=True
        )

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in CI; the pages are the test's own
        "--disable-dev-shm-usage",
        "--window-size=1000,760",
        f"--host-resolver-rules=MAP {name} {host_address(host)}, MAP * ~NOTFOUND",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-default-apps",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
    ):
        options.add_argument(argument)
    service = Service(CHROMEDRIVER, env=dict(os.environ, HOME=home))
    driver = webdriver.Chrome(service=service, options=options)
    driver.implicitly_wait(10)
    shots = pathlib.Path(os.environ.get("SUBMISSION_VERIFY_SCREENSHOTS", REPO / ".artefacts/screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    yield Browser(driver, f"https://{name}", shots / host.backend.get_hostname())
    driver.quit()
    shutil.rmtree(home, ignore_errors=True)


class Browser:
    def __init__(self, driver, base_url, shot_prefix):
        self.driver, self.base_url, self.shot_prefix = driver, base_url, shot_prefix
        self.shots = 0

    def open(self, url):
        self.driver.get(url if url.startswith("https://") else self.base_url + url)

    def find(self, css):
        from selenium.webdriver.common.by import By  # noqa: PLC0415

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def text(self):
        return self.find("body").text

    def submit(self, button):
        """Click a form's button and wait until the page it leads to has loaded.

        The old page is recognised by a mark on its window object, which a new
        document never has. Waiting for an element of the old page to go stale
        is not enough: during the navigation Chromium may answer "Node with
        given id does not belong to the document" instead of "stale element".
        """
        from selenium.common.exceptions import WebDriverException  # noqa: PLC0415
        from selenium.webdriver.support.wait import WebDriverWait  # noqa: PLC0415

        self.driver.execute_script("window.submittedFromHere = true")
        button.click()
        WebDriverWait(self.driver, 20, ignored_exceptions=(WebDriverException,)).until(
            lambda driver: driver.execute_script(
                "return !window.submittedFromHere && document.readyState === 'complete'"
            )
        )

    def shot(self, step):
        self.shots += 1
        self.driver.save_screenshot(f"{self.shot_prefix}-{self.shots:02d}-{step}.png")


def test_a_user_validates_an_address_in_a_browser_and_postfix_honours_it(browser, host, probe, deployment, sink):
    account = deployment.account(deployment.domain)
    sender = new_address()
    assert rcpt_code(probe, deployment, account, sender)[0] == 553, "an unvalidated address must be refused first"

    browser.open("/login")
    browser.find("#login").send_keys(account.login)
    browser.find("#password").send_keys(account.password)
    browser.shot("login")
    browser.submit(browser.find("#log-in"))
    browser.find("#address").send_keys(sender)
    browser.submit(browser.find("#add"))
    assert "confirmation link is on its way" in browser.find("#message").text
    assert sender in browser.find("#pending").text
    browser.shot("pending")

    link = confirmation_link(host, sink, sender, browser.base_url)
    browser.open(link)
    page = browser.text()
    assert sender in page and account.address in page, page
    browser.shot("confirm")
    browser.submit(browser.find("#confirm"))
    confirmed_at = time.monotonic()
    assert f"may now send as {sender}" in browser.text()
    code = rcpt_code(probe, deployment, account, sender)
    print(f"from the confirming POST's page to the first RCPT answer: {time.monotonic() - confirmed_at:.3f} s")
    assert code[0] == 250, f"the confirmed address must be accepted: {code}"
    browser.shot("confirmed")

    browser.open("/")
    assert sender in browser.find("#validated").text
    browser.shot("validated")
    row = next(li for li in browser.find("#validated").find_elements("css selector", "li") if sender in li.text)
    browser.submit(row.find_element("css selector", "button.remove"))
    assert sender not in browser.find("#validated").text
    assert rcpt_code(probe, deployment, account, sender)[0] == 553, "a removed address must be refused again"
