"""Helpers for the board tests (no tests here): synthetic boards in tmp dirs and a WebDriver client.

Synthetic submissions exist only inside pytest's tmp dirs: the repository's board holds real runs only.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from sde_datagen.design import grid

MASA = ("kappa", "accuracy", "exact_match", "format_error_rate")
EXTRACTION = ("precision", "recall", "f1", "soft_precision", "soft_recall", "soft_f1", "format_error_rate")
TASK_METRICS = {"sde_masa_id": MASA, "sde_masa_ood": MASA, "sde_ed": EXTRACTION, "sde_ner": EXTRACTION}


def synthetic_results(tasks: dict[str, dict[str, float]]) -> dict:
    """An lm-eval-shaped results dict carrying the given metric values (no samples behind it)."""
    results = {}
    for task, values in tasks.items():
        entry = {"alias": task}
        for metric, value in values.items():
            entry[f"{metric},none"] = value
            entry[f"{metric}_stderr,none"] = "N/A"
        results[task] = entry
    return {
        "results": results,
        "configs": {t: {"task": t, "metadata": {"version": 1.0}} for t in tasks},
        "versions": {t: 1.0 for t in tasks},
        "higher_is_better": {t: {m: m != "format_error_rate" for m in v} for t, v in tasks.items()},
        "n-samples": {t: {"original": 500, "effective": 500} for t in tasks},
        "config": {"model": "hf", "limit": None},
    }


def write_submission(board: Path, name: str, meta: dict, results: dict) -> Path:
    folder = board / "submissions" / name
    folder.mkdir(parents=True)
    (folder / "submission.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    (folder / "results.json").write_text(json.dumps(results, ensure_ascii=False), encoding="utf-8")
    return folder


def meta_for(model: str, design: str, seed: int = 0) -> dict:
    return {
        "schema_version": 1,
        "base_model": {"id": model, "revision": "0123abc"},
        "adapter": {"id": f"someone/{design}-lora", "revision": "main"},
        "design": design,
        "training": {"task": "masa", "domain": "D1", "size": 500},
        "seed": seed,
        "submitter": "tests",
        "date": "2026-11-21",
    }


def synthetic_board(board: Path, n: int, seed: int = 0, models: tuple[str, ...] = ("tiny/llama", "tiny/qwen")) -> Path:
    """n submissions over the valid design grid, random scores, all four tasks each."""
    rng = random.Random(seed)
    designs = [d.id for d in grid("classification")]
    for i in range(n):
        design = rng.choice(designs)
        values = {task: {m: round(rng.random(), 6) for m in metrics} for task, metrics in TASK_METRICS.items()}
        write_submission(board, f"run-{i:04d}", meta_for(models[i % len(models)], design, seed=i), synthetic_results(values))
    return board


# ------------------------------------------------------------------------------------ headless Chromium
# Driven through chromedriver's W3C WebDriver HTTP API with the standard library only: no extra pin.
import base64  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,1000",
]
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


def ensure_chromium() -> tuple[str, str] | str:
    """(chromium, chromedriver) paths, installing Debian's packages with apt-get when missing.

    Returns a reason string instead when they cannot be had (no apt-get, not root, install failed).
    """
    def found() -> tuple[str, str] | None:
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        driver = shutil.which("chromedriver")
        return (browser, driver) if browser and driver else None

    if found():
        return found()
    if not shutil.which("apt-get"):
        return "chromium/chromedriver missing and no apt-get to install Debian's chromium + chromium-driver"
    sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if sudo is None:
        return "chromium/chromedriver missing; not root and no sudo to run apt-get install chromium chromium-driver"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium", "chromium-driver"]):
        done = subprocess.run(sudo + command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            return f"`{' '.join(sudo + command)}` failed: {done.stderr.strip()[-500:]}"
    return found() or "apt-get installed chromium + chromium-driver, yet they are not on PATH"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """A headless Chromium session through chromedriver (W3C WebDriver)."""

    def __init__(self, chromium: str, chromedriver: str, profile: Path):
        port = _free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.driver = subprocess.Popen([chromedriver, f"--port={port}"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                self._call("GET", "/status")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline or self.driver.poll() is not None:
                    self.driver.kill()
                    raise RuntimeError("chromedriver did not start")
                time.sleep(0.1)
        options = {"binary": chromium, "args": CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]}
        try:
            value = self._call("POST", "/session", {"capabilities": {"alwaysMatch": {
                "browserName": "chrome", "goog:chromeOptions": options}}})
        except BaseException:
            self.driver.kill()
            raise
        self.session = f"/session/{value['sessionId']}"

    def _call(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as err:
            raise RuntimeError(f"WebDriver {method} {path}: {err.read().decode(errors='replace')[:800]}") from None

    def cmd(self, method: str, path: str, body: dict | None = None):
        return self._call(method, self.session + path, body)

    def get(self, url: str) -> None:
        self.cmd("POST", "/url", {"url": url})

    def find(self, css: str) -> str:
        return self.cmd("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def find_all(self, css: str) -> list[str]:
        return [e[ELEMENT] for e in self.cmd("POST", "/elements", {"using": "css selector", "value": css})]

    def click(self, element: str) -> None:
        self.cmd("POST", f"/element/{element}/click", {})

    def type(self, element: str, text: str) -> None:
        self.cmd("POST", f"/element/{element}/value", {"text": text})

    def text(self, element: str) -> str:
        return self.cmd("GET", f"/element/{element}/text")

    def js(self, script: str, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.cmd("GET", "/screenshot")))
        return path

    def close(self) -> None:
        try:
            self.cmd("DELETE", "")
        finally:
            self.driver.terminate()
            try:
                self.driver.wait(10)
            except subprocess.TimeoutExpired:
                self.driver.kill()
