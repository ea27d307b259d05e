#!/usr/bin/env python3
"""Drives the admin web UI in headless Chromium, as a new user would, and saves a screenshot of each page.

    admin_test.py --url http://127.0.0.1:PORT --admin-password … --viewer-password … --api-token … --artifacts DIR

Run by scripts/test-browser.sh, which starts `integrator dev` with those users. Exits non-zero on the first failed
check, naming it.
"""
import argparse
import json
import sys
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

SECRET = "browser-test-token-9f8e7d6c5b4a"


class Check(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise Check(message)


class Admin:
    def __init__(self, url, artifacts):
        self.url = url.rstrip("/")
        self.artifacts = Path(artifacts)
        self.artifacts.mkdir(parents=True, exist_ok=True)
        options = webdriver.ChromeOptions()
        for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                     "--disable-gpu", "--no-first-run"]:
            options.add_argument(flag)
        options.binary_location = "/usr/bin/chromium"
        # The Debian driver, named explicitly: Selenium's own driver manager would try to download one.
        self.driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
        # While a page is being replaced, a script may fail with errors other than a stale element; the waits retry.
        self.wait = WebDriverWait(self.driver, 30, ignored_exceptions=(WebDriverException,))
        self.shots = []

    def open(self, path):
        self.driver.get(self.url + path)

    def shot(self, name):
        path = self.artifacts / f"{len(self.shots) + 1:02d}-{name}.png"
        self.driver.save_screenshot(str(path))
        self.shots.append(path)

    def heading(self):
        return self.driver.find_element(By.TAG_NAME, "h1").text

    def source(self):
        return self.driver.page_source

    def fill(self, name, value):
        field = self.driver.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)

    def click_and_wait(self, element):
        """Clicks something that loads a new page, and waits until the new one has loaded.

        The old page is marked with a script variable, which the new one does not have. Watching the old page's
        element instead (staleness_of) raced the navigation: Chromium sometimes answered a query about it with an
        error other than "stale element" while the page was being replaced, and the test failed on a loaded machine.
        """
        self.driver.execute_script("window.integratorPageBeforeClick = true")
        element.click()
        self.wait.until(lambda d: d.execute_script(
            "return window.integratorPageBeforeClick === undefined && document.readyState === 'complete'"))

    def submit(self, label):
        self.click_and_wait(self.driver.find_element(By.XPATH, f"//main//button[normalize-space()='{label}']"))

    def log_in(self, username, password):
        self.open("/admin/login")
        self.fill("username", username)
        self.fill("password", password)
        self.click_and_wait(self.driver.find_element(By.ID, "login"))
        self.wait.until(lambda d: d.find_elements(By.ID, "signed-in-as"))
        expect(username in self.driver.find_element(By.ID, "signed-in-as").text, f"logged in as {username}")

    def log_out(self):
        self.click_and_wait(self.driver.find_element(By.ID, "logout"))
        self.wait.until(lambda d: d.find_elements(By.ID, "login"))

    def wait_for_text(self, path, text, seconds=90):
        deadline = time.time() + seconds
        while time.time() < deadline:
            self.open(path)
            if text in self.source():
                return
            time.sleep(1)
        raise Check(f"{path} never showed {text!r}")


def api(url, token, method, path, body=None):
    request = urllib.request.Request(
        url + path, method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def run(arguments):
    admin = Admin(arguments.url, arguments.artifacts)
    try:
        # / sends a browser to the admin, which asks it to log in.
        admin.open("/")
        expect("/admin/login" in admin.driver.current_url, "/ leads to the login form")
        admin.shot("login")
        admin.log_in("admin", arguments.admin_password)
        expect(admin.heading() == "Dashboard", "the dashboard comes first")
        expect(admin.driver.find_elements(By.CSS_SELECTOR, ".chart svg"), "the dashboard draws its chart")
        admin.shot("dashboard")

        # Credentials through the form generated from the type's fields; the secret comes back masked.
        admin.open("/admin/credentials/new")
        Select(admin.driver.find_element(By.NAME, "type")).select_by_value("http-bearer")
        admin.submit("Next")
        expect(admin.driver.find_element(By.NAME, "secret.token").get_attribute("type") == "password", "secret input")
        admin.fill("name", "github")
        admin.fill("secret.token", SECRET)
        admin.shot("credentials-form")
        admin.submit("Create")
        expect(admin.heading() == "github", "the new credentials' page")
        expect("********" in admin.source(), "the secret is masked")
        expect(SECRET not in admin.source(), "the secret is not in the page")
        admin.shot("credentials")
        admin.open("/admin/credentials")
        expect(SECRET not in admin.source(), "the secret is not in the list")

        # A demo integration from the provider's config fields.
        admin.open("/admin/integrations/new?provider=demo")
        admin.fill("name", "first")
        admin.fill("config.records", "25")
        admin.shot("integration-form")
        admin.submit("Create")
        expect(admin.heading() == "first", "the new integration's page")
        integration_url = admin.driver.current_url

        # A crontab schedule with a zone: the preview lists the next ten fire times as it is typed.
        admin.open("/admin/schedules/new")
        admin.fill("name", "every-minute")
        Select(admin.driver.find_element(By.NAME, "integration")).select_by_visible_text("first")
        Select(admin.driver.find_element(By.NAME, "timing")).select_by_value("crontab")
        admin.fill("expression", "*/1 * * * *")
        admin.fill("timezone", "America/Sao_Paulo")
        admin.wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#schedule-preview li")) == 10
                         and "America/Sao_Paulo" in d.find_element(By.ID, "schedule-preview").text)
        times = [item.text for item in admin.driver.find_elements(By.CSS_SELECTOR, "#schedule-preview li")]
        expect(all(time.endswith("-03:00") for time in times), f"fire times in the zone: {times}")
        admin.fill("expression", "61 * * * *")
        admin.wait.until(lambda d: "minute" in d.find_element(By.ID, "schedule-preview").text)
        admin.fill("expression", "*/1 * * * *")
        admin.wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#schedule-preview li")) == 10)
        admin.shot("schedule-preview")
        admin.submit("Create")
        expect(admin.heading() == "every-minute", "the new schedule's page")

        # Run it now: the fetch succeeds on the task-runs page, and its records are there.
        admin.submit("Run now")
        expect(admin.heading().startswith("Run of"), "run now leads to the run")
        run_url = admin.driver.current_url
        admin.wait_for_text(run_url.replace(admin.url, ""), "state-succeeded")
        admin.shot("task-run")
        admin.open("/admin/tasks?state=succeeded")
        expect("integration.fetch" in admin.source(), "the run is listed as succeeded")
        admin.open(integration_url.replace(admin.url, "") + "/records")
        expect("demo-1" in admin.source() or "demo-" in admin.source(), "the fetch's records are listed")
        admin.shot("records")

        # A failed run, retried from the list.
        failing = api(admin.url, arguments.api_token, "POST", "/api/v1/tasks",
                      {"task": "integration.fetch", "args": {"integration_id": "00000000-0000-7000-8000-000000000000"}})
        admin.wait_for_text("/admin/tasks?state=failed&state=dead", failing["id"])
        admin.shot("failed-runs")
        row = admin.driver.find_element(By.XPATH, f"//tr[.//a[contains(@href, '{failing['id']}')]]")
        admin.click_and_wait(row.find_element(By.XPATH, ".//button[normalize-space()='Retry']"))
        expect("Retry enqueued" in admin.source(), "the retry is confirmed")
        deadline = time.time() + 90
        while api(admin.url, arguments.api_token, "GET", f"/api/v1/tasks/{failing['id']}")["attempt"] < 2:
            expect(time.time() < deadline, "the retried run never started its second attempt")
            time.sleep(1)

        # A forged form without the CSRF token is refused.
        admin.open("/admin/schedules")
        admin.driver.execute_script("""
            const form = document.createElement('form');
            form.method = 'post';
            form.action = '/admin/schedules/new';
            for (const [name, value] of [['name', 'forged'], ['task', 'core.noop'], ['timing', 'interval'], ['every', '60']]) {
                const input = document.createElement('input');
                input.name = name; input.value = value; form.appendChild(input);
            }
            document.body.appendChild(form);
            form.submit();
        """)
        admin.wait.until(lambda d: d.find_element(By.TAG_NAME, "h1").text == "Form refused")
        admin.shot("forged-form-refused")
        admin.open("/admin/schedules")
        expect("forged" not in admin.source(), "the forged schedule was not created")
        admin.shot("schedules")
        admin.open("/admin/tasks")
        admin.shot("task-runs")
        admin.open("/admin")
        admin.shot("dashboard-after-runs")

        admin.log_out()

        # A viewer finds no write controls anywhere.
        admin.log_in("viewer", arguments.viewer_password)
        for path in ["/admin", "/admin/credentials", "/admin/integrations", "/admin/schedules", "/admin/tasks",
                     "/admin/webhooks/tenants", integration_url.replace(admin.url, "")]:
            admin.open(path)
            forms = admin.driver.find_elements(By.CSS_SELECTOR, "form[method=post]")
            expect(len(forms) == 1, f"{path}: only the logout form posts for a viewer, found {len(forms)}")
            expect(not admin.driver.find_elements(By.CSS_SELECTOR, "a.button[href$='/new']"), f"{path}: no 'New' links")
        admin.shot("viewer")
        admin.log_out()
    except Exception:
        admin.shot("failure")
        raise
    finally:
        admin.driver.quit()
    return admin.shots


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--admin-password", required=True)
    parser.add_argument("--viewer-password", required=True)
    parser.add_argument("--api-token", required=True)
    parser.add_argument("--artifacts", required=True)
    arguments = parser.parse_args()
    try:
        shots = run(arguments)
    except Check as failure:
        print(f"admin browser test FAILED: {failure}", file=sys.stderr)
        return 1
    print(f"admin browser test passed; {len(shots)} screenshots in {arguments.artifacts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
