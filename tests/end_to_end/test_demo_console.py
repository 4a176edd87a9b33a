"""The demo, as a person at a terminal runs it: its guide console, opened in a browser at the end of
the replayed day, shows today's totals, arrivals, the no-show and the guide's ack of the terminal's
summary, and the HQ dashboard (with PostgreSQL) has the day's figures in every view."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import threading
import time

import pytest
from support.broker import mosquitto_path
from support.browser import MISSING, cells, chromium_paths, found, login, screenshot, wait

pytestmark = pytest.mark.skipif(chromium_paths() is None or mosquitto_path() is None,
                                reason=f"{MISSING} and mosquitto")


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


def test_the_demo_console_shows_the_same_totals_as_the_terminal(faces_dir, tmp_path, driver):
    from selenium.webdriver.common.by import By

    env = {**os.environ, "FOOTFALL_SAMPLE_FACES": str(faces_dir), "PYTHONUNBUFFERED": "1"}
    terminal = Terminal(env, tmp_path)
    try:
        terminal.wait_for("press Enter to start the store day", 120)
        url, password = re.search(r"guide console: (\S+)\s+\(password (\S+);", terminal.output).groups()
        terminal.enter()
        terminal.wait_for("press Enter to end the demo", 180)
        summary = terminal.output[terminal.output.index("summary of"):].splitlines()
        counted = {line.rsplit(None, 2)[0].strip(): int(line.split()[-2]) for line in summary[2:11]}

        driver.delete_all_cookies()
        login(driver, url, "Demo guide", password)
        totals = ("total-visits", "total-reentries", "total-members")
        expected = [str(counted[k]) for k in ("visits", "re-entries", "member visits")]
        wait(driver, lambda d: [d.find_element(By.ID, i).text for i in totals] == expected, 10,
             f"the TODAY totals {expected} of the terminal summary")
        cards = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#cards .card.arrival .ago") or None, 10,
                     "the day's arrival cards")
        assert len(cards) == counted["arrival alerts"], "one card per arrival alert of the summary"
        for card in cards:  # never "arrived 8762 min ago": an hour or more shows the clock time
            minutes = re.search(r"(\d+) min ago", card.text)
            assert minutes is None or int(minutes.group(1)) < 60, card.text
        # the CRM's no-show and the guide's ack of the terminal's summary are on the console too
        no_shows = found(driver, "#cards .card.no-show")
        assert len(no_shows) == counted["no-show alerts"] == 1
        taken = [c.find_element(By.CSS_SELECTOR, ".taken-by").text for c in found(driver, "#cards .card.arrival.taken")]
        assert taken == ["Taken by Wang Fang"] * counted["guide acks"] and taken
        screenshot(driver, tmp_path, "demo-console")

        hq = re.search(r"HQ dashboard:\s+(\S+)\s+\(password (\S+);", terminal.output)
        if hq is not None:  # PostgreSQL installed: every view of the dashboard has the day's figures
            booked, arrived, missed, acked = (int(n) for n in re.search(
                r"HQ appointments, all stores: (\d+) booked, (\d+) arrived, (\d+) no-shows; guides answered (\d+)",
                terminal.output).groups())
            driver.delete_all_cookies()
            login(driver, hq.group(1), "Demo analyst", hq.group(2))
            for view, rows in (("chain", "#chain-table tbody tr"), ("stores", "#stores-table tbody tr"),
                               ("conversion", "#conversion-table tfoot tr"), ("no-shows", "#no-shows-table tbody tr"),
                               ("response", "#response-table tbody tr")):
                driver.get(f"{hq.group(1)}/#{view}")
                found(driver, rows)
                screenshot(driver, tmp_path, f"demo-hq-{view}")
                if view == "conversion":
                    assert cells(driver, rows)[0][1:4] == [str(booked), str(arrived), str(missed)]
                elif view == "no-shows":
                    assert len(cells(driver, rows)) == missed
                elif view == "response":
                    answered = {r[0]: r[2] for r in cells(driver, rows)}
                    assert answered["demo-store"] == str(acked) == "1", answered
        terminal.enter()
        assert terminal.close() == 0, terminal.output
    finally:
        if terminal.proc.poll() is None:
            terminal.proc.kill()

