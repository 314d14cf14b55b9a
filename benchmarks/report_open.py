"""Time to open an embedlab HTML report in headless Chromium (Debian's), and its size.

Usage: .venv/bin/python benchmarks/report_open.py REPORT.html [--repeats 3]

Measures, per run, a fresh page's navigation to the `load` event plus one paint (the
time until every plot is laid out), with playwright driving /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

from playwright.sync_api import sync_playwright


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("report", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    exe = shutil.which("chromium")
    if exe is None:
        raise SystemExit("Debian's chromium is not installed (make browser)")
    url = args.report.resolve().as_uri()
    times, errors = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        for _ in range(args.repeats):
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            t0 = time.perf_counter()
            page.goto(url, wait_until="load")
            n = page.evaluate(
                "() => new Promise(r => requestAnimationFrame(() => r("
                "document.querySelectorAll('svg.plot').length)))"
            )
            times.append(time.perf_counter() - t0)
            page.close()
        browser.close()
    size = args.report.stat().st_size / 1e6
    print(
        f"{args.report}: {size:.2f} MB, {n} plots, open to first paint "
        f"{statistics.median(times):.2f} s (median of {args.repeats}; runs "
        f"{', '.join(f'{t:.2f}' for t in times)}), console errors: {len(errors)}"
    )


if __name__ == "__main__":
    main()
