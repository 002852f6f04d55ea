"""Look at a run report as a person would: rebuild `<output>/.corpusmill/report/report.html` and take a
full-page screenshot of it with headless Chromium (Debian: apt-get install -y chromium).

    python bench/report_screenshot.py out/topics [--png report.png] [--width 1280]

Prints the PNG's path; open it in any image viewer."""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--hide-scrollbars"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="a job's output folder")
    parser.add_argument("--png", default=None, help="screenshot path (default: "
                        "<output>/.corpusmill/report/report.png)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=None,
                        help="page height in pixels (default: from the report's length)")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    from corpusmill.jobs.reporting.report import write_report

    html = Path(write_report(args.output)["report.html"])
    png = Path(args.png) if args.png else html.with_suffix(".png")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("no chromium on PATH: apt-get install -y chromium", file=sys.stderr)
        return 1
    # a screenshot is one viewport: make it tall enough for the page (images dominate its length)
    height = args.height or 900 + html.read_text().count("<img") * 330
    subprocess.run([browser, *CHROMIUM_FLAGS, f"--window-size={args.width},{height}",
                    f"--screenshot={png}", html.resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)
    print(png)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
