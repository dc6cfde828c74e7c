#!/usr/bin/python3
"""Runs fedcl-sim on a small scenario and opens its report.html in headless Chromium (offline,
from a file:// URL): every chart must render and the console must show no errors.

  report_render_test.py FEDCL_SIM SCENARIO WORK_DIR
"""
import json
import os
import re
import shutil
import subprocess
import sys


def main(sim, scenario, work):
    shutil.rmtree(work, ignore_errors=True)
    out = os.path.join(work, "out")
    subprocess.run([sim, f"--scenario={scenario}", f"--out={out}", "--progress=false"],
                   check=True, timeout=300)
    for name in ("metrics.jsonl", "summary.json", "report.html"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert len(summary["methods"]) == 4, summary
    lines = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
    assert len(lines) == 2 * 2 * 2 * 6, len(lines)  # methods × patterns × seeds × evaluations

    # Two accuracy charts, two heat-maps, one weight scatter.
    check_report(os.path.join(out, "report.html"), work, expected_charts=5)


def check_report(report, work, expected_charts):
    """Opens `report` in headless Chromium: every chart renders and nothing reaches the console."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    profile = os.path.join(work, "profile")
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=20000", "--dump-dom",
         "file://" + os.path.abspath(report)],
        capture_output=True, text=True, timeout=120)
    body = re.search(r"<body([^>]*)>", result.stdout)
    assert body, "no <body> in the rendered DOM:\n" + result.stdout[:2000] + result.stderr[-2000:]
    attributes = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))
    expected = int(attributes.get("data-charts-expected", "0"))
    rendered = int(attributes.get("data-charts-rendered", "0"))
    errors = int(attributes.get("data-errors", "-1"))
    assert expected == expected_charts, attributes
    assert rendered == expected, f"{rendered} of {expected} charts rendered"
    assert errors == 0, f"{errors} script error(s) on the page"
    console = [l for l in result.stderr.splitlines() if "CONSOLE" in l or "Uncaught" in l]
    assert not console, "console output:\n" + "\n".join(console)
    print(f"report.html: {rendered}/{expected} charts rendered, no console errors")


if __name__ == "__main__":
    main(*sys.argv[1:])
