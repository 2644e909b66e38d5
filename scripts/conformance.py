#!/usr/bin/env python3
"""Peer conformance report: runs `telestrip pcap` over the peer corpus (../shared/corpus: real
captures from the test suites of Suricata, Zeek and Arkime) and compares the names telestrip
extracts (TLS SNI, QUIC SNI, DNS query names, HTTP Host) with what those projects' own tests
expect, and with an independent tshark dissection. Lists every disagreement.

Usage: scripts/conformance.py [--corpus DIR] [--telestrip BIN] [--out REPORT.md]

telestrip reports matched flows only, so the captures are read with a rule set of one `log`
rule that matches every name: every flow or DNS query with a name is then listed with how the
name was seen (sni, quic, http, dns). Only the python3 standard library is needed.
"""

import argparse
import collections
import csv
import json
import os
import subprocess
import sys
import tempfile

# telestrip's `via` for each field of the corpus expectations.
FIELD_VIA = {
    "tls.sni": {"sni"},
    "quic.sni": {"quic"},
    "http.host": {"http"},
    "dns.query": {"dns"},
    "dns.rrname": {"dns"},
}

CATCH_ALL = """vendor: conformance
rules:
  - id: every-name
    action: log
    description: Matches every name, so that every extracted name is listed.
    domains: ["regex:.+"]
  - id: every-address
    action: log
    description: Matches every address, so that address literals in SNI and Host are listed.
    cidrs: [0.0.0.0/0, "::/0"]
"""


def normalise(field, value):
    value = value.strip().lower().rstrip(".")
    if field == "http.host":
        if value.startswith("["):
            value = value[1:].split("]")[0]
        elif value.count(":") == 1:
            value = value.split(":")[0]
    return value


def extracted(telestrip, rules, pcap):
    """(set of (via, name), problem text or None) for one capture."""
    try:
        run = subprocess.run(
            [telestrip, "pcap", "--rules", rules, "--format", "json", pcap],
            capture_output=True, text=True, timeout=120,
        )
    except subprocess.TimeoutExpired:
        return set(), "timed out"
    try:
        document = json.loads(run.stdout)
    except json.JSONDecodeError:
        return set(), (run.stderr.strip().splitlines() or ["no output"])[-1]
    names = {(f.get("via"), normalise("", f.get("name") or "")) for f in document["flows"] if f.get("name")}
    problem = "; ".join(document.get("problems", [])) or None
    return names, problem


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=os.path.join(here, "..", "..", "shared", "corpus"))
    parser.add_argument("--telestrip", default=os.path.join(here, "..", "target", "release", "telestrip"))
    parser.add_argument("--out", help="also write the report (Markdown) to this file")
    args = parser.parse_args()
    corpus = os.path.abspath(args.corpus)
    expectations_path = os.path.join(corpus, "EXPECTATIONS.tsv")
    if not os.path.exists(expectations_path):
        sys.exit(f"no {expectations_path}: pass --corpus")
    if not os.access(args.telestrip, os.X_OK):
        sys.exit(f"no telestrip binary at {args.telestrip}: cargo build --release, or pass --telestrip")

    # (file, field, value) -> {origin kind: count}
    expected = collections.defaultdict(dict)
    with open(expectations_path, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["field"] not in FIELD_VIA:
                continue
            kind = "upstream" if row["origin"].startswith("upstream") else "tshark"
            key = (row["file"], row["field"], normalise(row["field"], row["value"]))
            count = int(row["count"] or 1)
            expected[key][kind] = max(count, expected[key].get(kind, 0)) if count else 0

    files = sorted({key[0] for key in expected})
    seen, problems = {}, {}
    with tempfile.TemporaryDirectory() as rules:
        with open(os.path.join(rules, "all.yaml"), "w") as f:
            f.write(CATCH_ALL)
        for i, name in enumerate(files, 1):
            seen[name], problem = extracted(args.telestrip, rules, os.path.join(corpus, name))
            if problem:
                problems[name] = problem
            if i % 100 == 0:
                print(f"  {i}/{len(files)} captures read", file=sys.stderr)

    # Classes: both peers expect it / only the peer project / only tshark / must be absent.
    totals = collections.defaultdict(lambda: collections.Counter())
    disagreements = []
    for (name, field, value), kinds in sorted(expected.items()):
        present = any((via, value) in seen[name] for via in FIELD_VIA[field])
        if kinds.get("upstream") == 0:
            cls = "must be absent (peer count 0)"
            agree = not present
        elif "upstream" in kinds and "tshark" in kinds:
            cls = "both peers"
            agree = present
        elif "upstream" in kinds:
            cls = "peer project only"
            agree = present
        else:
            cls = "tshark only"
            agree = present
        totals[(cls, field)]["cases"] += 1
        totals[(cls, field)]["agree"] += agree
        if not agree:
            disagreements.append((cls, field, name, value, "found" if present else "not found"))

    lines = ["# telestrip vs peer expectations", "",
             f"Corpus: {corpus} ({len(files)} captures). telestrip: {args.telestrip}.", "",
             "| class | field | cases | telestrip agrees |", "|---|---|---|---|"]
    for (cls, field), counter in sorted(totals.items()):
        lines.append(f"| {cls} | {field} | {counter['cases']} | {counter['agree']} |")
    lines += ["", f"## Disagreements ({len(disagreements)})", "",
              "| class | field | capture | name | telestrip |", "|---|---|---|---|---|"]
    for cls, field, name, value, result in disagreements:
        lines.append(f"| {cls} | {field} | {name} | `{value}` | {result} |")
    if problems:
        lines += ["", f"## Captures telestrip could not read completely ({len(problems)})", ""]
        lines += [f"- {name}: {problem}" for name, problem in sorted(problems.items())]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
    both = [c for (cls, _), c in totals.items() if cls == "both peers"]
    missed = sum(c["cases"] - c["agree"] for c in both)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
