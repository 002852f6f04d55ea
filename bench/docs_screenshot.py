"""Build the docs site and take headless Chromium screenshots of some of its pages, served over
HTTP on 127.0.0.1 as a browser sees them (Debian: apt-get install -y chromium).

    python bench/docs_screenshot.py [--out docs/assets/screenshots] [--width 1280 --height 900]

Writes home.png (the site's home page) and job-spec.png (the job spec reference, generated
from the code at build time)."""
from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGES = {"home.png": "", "job-spec.png": "reference/job-spec/"}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--hide-scrollbars"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "assets" / "screenshots"))
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("no chromium on PATH: apt-get install -y chromium", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="corpusmill-docs-") as scratch:
        site = Path(scratch) / "site"
        subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                        str(site)], cwd=REPO, check=True)
        port = _free_port()
        server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                                   "127.0.0.1", "--directory", str(site)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for(f"http://127.0.0.1:{port}/")
            for name, path in PAGES.items():
                subprocess.run([browser, *CHROMIUM_FLAGS,
                                f"--window-size={args.width},{args.height}",
                                f"--screenshot={out / name}",
                                f"http://127.0.0.1:{port}/{path}"],
                               check=True, capture_output=True, timeout=120)
                print(out / name)
        finally:
            server.terminate()
            server.wait(timeout=10)
    return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
