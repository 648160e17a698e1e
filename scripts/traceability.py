#!/usr/bin/env python3
"""Requirements traceability for Qrusty.

Reads the Doorstop tree under requirements/ and scans the code for two kinds of
tag, each written at the start of a comment line:

    Requirements: DLV-0003, DLV-0004    (the code below implements these items)
    Verifies: DLV-0003                   (the test below verifies this item)

and reports, per item, where it is implemented and where it is tested, which
items nothing names, and which tags name no item.

    traceability.py                  print the report as text
    traceability.py --report FILE    also write it as markdown to FILE
    traceability.py --check          exit 1 on a tag naming no item, on a tag
                                     with no id, on an item whose `verification`
                                     is missing or unknown, and on an item with
                                     `verification: test` that no test verifies

Only the standard library and PyYAML (a dependency of Doorstop) are used.
"""
# Requirements: SYS-0021

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import textwrap
from pathlib import Path

import yaml

VERIFICATIONS = ("inspection", "analysis", "demonstration", "test")

# Folders scanned for tags, and single files beside them, relative to the root.
SCAN_DIRS = ("src", "tests", "fuzz", "benches", "scripts")
SCAN_FILES = ("Makefile", "Dockerfile", ".ci/run")
SKIP_DIRS = {"target", "node_modules", "__pycache__", ".git", "corpus", "artifacts", "coverage"}
SKIP_SUFFIXES = {".png", ".jpg", ".ico", ".woff", ".woff2", ".gz", ".lock", ".bin"}
MAX_FILE_BYTES = 2 * 1024 * 1024

# A tag must open a comment line, so that prose which merely mentions the
# syntax (like this module's docstring) is not taken for a tag.
TAG_RE = re.compile(r"^\s*(?://[/!]?|#|/\*+|<!--)\s*(Requirements|Verifies)\s*:(.*)$")
ID_RE = re.compile(r"\b[A-Z][A-Z0-9]*-\d+\b")


@dataclasses.dataclass
class Item:
    uid: str
    document: str
    header: str
    text: str
    verification: str | None
    links: list[str]
    implemented_at: list[str] = dataclasses.field(default_factory=list)
    verified_at: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Tag:
    kind: str  # "Requirements" or "Verifies"
    ids: list[str]
    location: str  # path:line, relative to the root


@dataclasses.dataclass
class Trace:
    items: dict[str, Item]
    documents: list[str]
    tags: list[Tag]

    def unknown_tags(self) -> list[tuple[Tag, str]]:
        return [(t, uid) for t in self.tags for uid in t.ids if uid not in self.items]

    def empty_tags(self) -> list[Tag]:
        return [t for t in self.tags if not t.ids]

    def untraced(self) -> list[Item]:
        return [i for i in self.items.values() if not i.implemented_at and not i.verified_at]

    def unverified_tests(self) -> list[Item]:
        return [i for i in self.items.values() if i.verification == "test" and not i.verified_at]

    def bad_verification(self) -> list[Item]:
        return [i for i in self.items.values() if i.verification not in VERIFICATIONS]

    def problems(self) -> list[str]:
        """Everything --check fails on, one line each."""
        out = [f"{t.location}: {t.kind} tag names no item: {uid}" for t, uid in self.unknown_tags()]
        out += [f"{t.location}: {t.kind} tag without an item id" for t in self.empty_tags()]
        out += [
            f"{i.uid}: verification is {i.verification!r}, not one of {', '.join(VERIFICATIONS)}"
            for i in self.bad_verification()
        ]
        out += [f"{i.uid}: verification is test, but no test verifies it"
                for i in self.unverified_tests()]
        return out


def load_items(requirements: Path) -> tuple[dict[str, Item], list[str]]:
    """Reads every active item of every Doorstop document below `requirements`."""
    items: dict[str, Item] = {}
    documents: list[str] = []
    for config in sorted(requirements.rglob(".doorstop.yml")):
        settings = (yaml.safe_load(config.read_text()) or {}).get("settings", {})
        prefix = settings.get("prefix")
        if not prefix:
            raise ValueError(f"{config}: no settings.prefix")
        documents.append(prefix)
        for path in sorted(config.parent.glob("*.yml")):
            if path.name == ".doorstop.yml":
                continue
            data = yaml.safe_load(path.read_text()) or {}
            # An inactive item is withdrawn: a tag naming it is reported as naming no item.
            if not data.get("active", True):
                continue
            links = [next(iter(link)) if isinstance(link, dict) else str(link)
                     for link in data.get("links") or []]
            items[path.stem] = Item(
                uid=path.stem,
                document=prefix,
                header=str(data.get("header") or "").strip(),
                text=str(data.get("text") or "").strip(),
                verification=data.get("verification"),
                links=links,
            )
    return items, documents


def scanned_files(root: Path) -> list[Path]:
    files = [root / f for f in SCAN_FILES if (root / f).is_file()]
    for top in SCAN_DIRS:
        for dirpath, dirnames, filenames in os.walk(root / top):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if path.suffix in SKIP_SUFFIXES or path.stat().st_size > MAX_FILE_BYTES:
                    continue
                files.append(path)
    return files


def scan_tags(root: Path) -> list[Tag]:
    tags = []
    for path in scanned_files(root):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (UnicodeDecodeError, OSError):
            continue
        rel = path.relative_to(root).as_posix()
        for number, line in enumerate(lines, start=1):
            match = TAG_RE.match(line)
            if match:
                ids = ID_RE.findall(match.group(2))
                tags.append(Tag(match.group(1), ids, f"{rel}:{number}"))
    return tags


def trace(root: Path) -> Trace:
    items, documents = load_items(root / "requirements")
    tags = scan_tags(root)
    for tag in tags:
        for uid in tag.ids:
            item = items.get(uid)
            if item is None:
                continue
            target = item.implemented_at if tag.kind == "Requirements" else item.verified_at
            if tag.location not in target:
                target.append(tag.location)
    return Trace(items, documents, tags)


def _summary_lines(t: Trace) -> list[str]:
    total = len(t.items)
    implemented = sum(1 for i in t.items.values() if i.implemented_at)
    verified = sum(1 for i in t.items.values() if i.verified_at)
    tests = sum(1 for i in t.items.values() if i.verification == "test")
    return [
        f"items: {total}; implemented (tagged): {implemented}; verified by a test: {verified}",
        f"items with verification test: {tests}, of which unverified: {len(t.unverified_tests())}",
        f"untraced items: {len(t.untraced())}; tags naming no item: "
        f"{len(t.unknown_tags()) + len(t.empty_tags())}",
    ]


def render_text(t: Trace) -> str:
    out = []
    for doc in t.documents:
        out.append(f"== {doc}")
        for item in (i for i in t.items.values() if i.document == doc):
            out.append(f"{item.uid:<10} {str(item.verification):<13} {item.header}")
            out += [f"    impl: {loc}" for loc in item.implemented_at]
            out += [f"    test: {loc}" for loc in item.verified_at]
    out.append("")
    out += _summary_lines(t)
    problems = t.problems()
    if problems:
        out.append("")
        out.append("problems:")
        out += [f"  {p}" for p in problems]
    untested = [i.uid for i in t.untraced() if i.verification == "test"]
    other_untraced = [i.uid for i in t.untraced() if i.verification != "test"]
    for label, uids in (("untraced, verified otherwise", other_untraced),
                        ("untraced, verification test", untested)):
        if uids:
            out.append(textwrap.fill(f"{label}: " + ", ".join(uids), width=100,
                                     subsequent_indent="    "))
    return "\n".join(out) + "\n"


def _cell(locations: list[str]) -> str:
    return "<br>".join(f"`{loc}`" for loc in locations) if locations else "—"


def render_markdown(t: Trace) -> str:
    out = ["# Traceability report", ""]
    out.append("Generated by `scripts/traceability.py` (`make traceability-report`) from "
               "`requirements/` and the `Requirements:` / `Verifies:` tags in the code.")
    out.append("")
    out += [f"- {line}" for line in _summary_lines(t)]
    out.append("")
    problems = t.problems()
    out.append("## Problems")
    out.append("")
    out += [f"- {p}" for p in problems] if problems else ["None."]
    out.append("")
    untraced = t.untraced()
    out.append("## Untraced items")
    out.append("")
    if untraced:
        out += [f"- {i.uid} ({i.verification}): {i.header}" for i in untraced]
    else:
        out.append("None.")
    for doc in t.documents:
        out += ["", f"## {doc}", ""]
        out.append("| Item | Title | Verification | Implemented in | Verified by |")
        out.append("|---|---|---|---|---|")
        for item in (i for i in t.items.values() if i.document == doc):
            title = item.header.replace("|", "\\|")
            out.append(f"| {item.uid} | {title} | {item.verification} | "
                       f"{_cell(item.implemented_at)} | {_cell(item.verified_at)} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="project root (default: the parent of scripts/)")
    parser.add_argument("--report", type=Path, help="write the markdown report to this file")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 on an unknown or empty tag, a bad verification, "
                             "or an unverified test item")
    parser.add_argument("--quiet", action="store_true", help="print only the problems")
    args = parser.parse_args(argv)

    result = trace(args.root)
    if not result.items:
        print(f"no requirement items under {args.root / 'requirements'}", file=sys.stderr)
        return 1
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(render_markdown(result))
        print(f"wrote {args.report}")
    if not args.quiet:
        sys.stdout.write(render_text(result))

    problems = result.problems()
    if args.check and problems:
        if args.quiet:
            sys.stdout.write("".join(f"{p}\n" for p in problems))
        print(f"traceability check failed: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
