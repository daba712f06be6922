"""The report as JUnit XML and as a table."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from typing import Any

from .model import Check, Report


def junit_xml(reports: list[Report]) -> str:
    suites = ET.Element("testsuites")
    total = {"tests": 0, "failures": 0, "skipped": 0}
    for report in reports:
        counts = {
            "tests": len(report.checks),
            "failures": report.count("failed"),
            "skipped": report.count("skipped"),
        }
        for k, v in counts.items():
            total[k] += v
        suite = ET.SubElement(
            suites,
            "testsuite",
            {
                "name": f"smoke.{report.variant.name}",
                "tests": str(counts["tests"]),
                "failures": str(counts["failures"]),
                "errors": "0",
                "skipped": str(counts["skipped"]),
            },
        )
        props = ET.SubElement(suite, "properties")
        for name, value in (("result", report.result), ("closure", report.closure)):
            ET.SubElement(props, "property", {"name": name, "value": _xml_safe(value)})
        for check in report.checks:
            case = ET.SubElement(
                suite, "testcase", {"classname": f"smoke.{report.variant.name}", "name": check.id}
            )
            if check.status == "failed":
                node = ET.SubElement(case, "failure", {"message": _xml_safe(check.reason)})
                node.text = _xml_safe(_details_text(check))
            elif check.status == "skipped":
                ET.SubElement(case, "skipped", {"message": _xml_safe(check.reason)})
            else:
                out = ET.SubElement(case, "system-out")
                out.text = _xml_safe(check.reason)
    for k, v in total.items():
        suites.set(k, str(v))
    suites.set("errors", "0")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _xml_safe(text: str) -> str:
    return re.sub(r"[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]", "?", text)


def _details_text(check: Check) -> str:
    if check.details is None:
        return check.reason
    if isinstance(check.details, str):
        return f"{check.reason}\n{check.details}"
    return f"{check.reason}\n{json.dumps(check.details, indent=2, sort_keys=True)}"


STYLES = {"passed": "green", "failed": "bold red", "skipped": "yellow"}


def render_human(report: Report, console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    console.print(f"[bold]{escape(report.result)}[/] as [bold]{escape(report.variant.name)}[/]")
    console.print(f"closure: {escape(report.closure)}")
    table = Table("check", "status", "reason", show_lines=False)
    for check in report.checks:
        table.add_row(escape(check.id), f"[{STYLES[check.status]}]{check.status}[/]", escape(check.reason))
    console.print(table)
    console.print(
        f"smoke {escape(report.variant.name)}: {report.count('passed')} passed, {report.count('failed')} "
        f"failed, {report.count('skipped')} skipped"
    )
