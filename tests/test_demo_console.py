"""The demo, as a person at a terminal runs it: its guide console, opened in a browser at the end of
the replayed day, shows today's totals equal to the terminal's summary."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import threading
import time

import pytest
from broker import mosquitto_path
from test_console import _browser, driver, login, screenshot, wait  # noqa: F401 - a fixture

pytestmark = pytest.mark.skipif(_browser() is None or mosquitto_path() is None,
                                reason="needs chromium, chromedriver and mosquitto")


class Terminal:
    """`footfall demo` with a terminal on its standard input (so it waits for Enter) and its output kept."""

    def __init__(self, env: dict[str, str], cwd) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([sys.executable, "-m", "footfall", "demo"], stdin=slave,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        os.close(slave)
        self.output = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        stream = self.proc.stdout
        assert stream is not None
        for chunk in iter(lambda: stream.read1(4096), b""):  # type: ignore[attr-defined]  # a BufferedReader
            self.output += chunk.decode(errors="replace")

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert self.proc.poll() is None or text in self.output, f"the demo ended:\n{self.output}"
            assert time.monotonic() < deadline, f"no {text!r} within {timeout} s:\n{self.output}"
            time.sleep(0.05)

    def enter(self) -> None:
        os.write(self.master, b"\n")

    def close(self) -> int:
        try:
            return self.proc.wait(60)
        finally:
            os.close(self.master)


def test_the_demo_console_shows_the_same_totals_as_the_terminal(faces_dir, tmp_path, driver):  # noqa: F811
    from selenium.webdriver.common.by import By

    env = {**os.environ, "FOOTFALL_SAMPLE_FACES": str(faces_dir), "PYTHONUNBUFFERED": "1"}
    terminal = Terminal(env, tmp_path)
    try:
        terminal.wait_for("press Enter to start the store day", 120)
        url, password = re.search(r"guide console: (\S+)\s+\(password (\S+);", terminal.output).groups()
        terminal.enter()
        terminal.wait_for("press Enter to end the demo", 180)
        summary = terminal.output[terminal.output.index("summary of"):].splitlines()
        counted = {line.rsplit(None, 2)[0].strip(): line.split()[-2] for line in summary[2:5]}

        driver.delete_all_cookies()
        login(driver, url, "Demo guide", password)
        totals = ("total-visits", "total-reentries", "total-members")
        expected = [counted["visits"], counted["re-entries"], counted["member visits"]]
        wait(driver, lambda d: [d.find_element(By.ID, i).text for i in totals] == expected, 10,
             f"the TODAY totals {expected} of the terminal summary")
        cards = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#cards .card.arrival .ago") or None, 10,
                     "the day's arrival cards")
        assert len(cards) == int(summary[5].split()[-2]), "one card per arrival alert of the summary"
        for card in cards:  # never "arrived 8762 min ago": an hour or more shows the clock time
            minutes = re.search(r"(\d+) min ago", card.text)
            assert minutes is None or int(minutes.group(1)) < 60, card.text
        screenshot(driver, tmp_path, "demo-console")
        terminal.enter()
        assert terminal.close() == 0, terminal.output
    finally:
        if terminal.proc.poll() is None:
            terminal.proc.kill()
