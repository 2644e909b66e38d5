#!/usr/bin/env python3
"""Times `telestrip pcap` against ndpiReader (nDPI) and tshark on one generated capture, in
one run, and checks that each found the telemetry names the capture holds.

    python3 benches/compare.py [--packets 1000000] [--runs 5] [--out target/compare]

The capture comes from `examples/mixed_capture` (TLS with ordinary and post-quantum sized
ClientHellos, QUIC, HTTP, DNS over UDP and TCP, bulk data, IPv6, VLAN; 10% of named
sessions to telemetry names from the bundled rules) with the list of matches it must
produce. Every tool reads the same file, warm in the page cache, `--runs` times, in an order
that rotates from run to run; the table shows the median wall time of the whole process
(reading the file included), the cores it kept busy (CPU time over wall time), packets per
second, the peak resident memory, how many times faster telestrip is, and which expected
names each tool reported. Beside the tools, the read limits in the same runs: `cat FILE >
/dev/null`, a plain mmap pass that touches every page, and telestrip's capture reader
walking the records alone (`examples/read_limit`); the summary gives telestrip's time as a
multiple of each, what `--threads` gains, and the most it could gain on this machine.

Needs ndpiReader (Debian package libndpi-bin) and tshark (package tshark); as root the
script installs them when they are missing. `--inline` also runs the inline benchmark
(examples/inline_bench: iperf3 and new connections through a namespace gateway; root).
"""

import argparse
import collections
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TSHARK_FILTER = "tls.handshake.type == 1 || http.request || dns.flags.response == 0"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=1_000_000, help="packets in the capture")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of every tool")
    parser.add_argument("--out", default=os.path.join(ROOT, "target", "compare"),
                        help="directory for the capture, outputs and results")
    parser.add_argument("--threads", default="1,2",
                        help="telestrip --threads values to time (comma-separated)")
    parser.add_argument("--skip-build", action="store_true", help="use the binaries as built")
    parser.add_argument("--inline", action="store_true",
                        help="also run the inline benchmark (root)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    ensure_tools()
    if not args.skip_build:
        step("building telestrip (release)")
        subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "telestrip",
                        "--example", "mixed_capture", "--example", "inline_bench",
                        "--example", "read_limit"],
                       cwd=ROOT, check=True)
    telestrip = os.path.join(ROOT, "target", "release", "telestrip")
    capture = os.path.join(args.out, f"mix-{args.packets}.pcap")
    expected_file = os.path.join(args.out, f"mix-{args.packets}.expected.tsv")
    step(f"writing {capture}")
    subprocess.run([os.path.join(ROOT, "target", "release", "examples", "mixed_capture"),
                    capture, "--packets", str(args.packets), "--expect", expected_file],
                   check=True)
    expected = read_expected(expected_file)

    tools = []
    for threads in [t for t in args.threads.split(",") if t]:
        name = "telestrip" if threads == "1" else f"telestrip --threads {threads}"
        tools.append((name, [telestrip, "pcap", "-q", "--format", "json",
                             "--threads", threads, capture], "telestrip"))
    ndpi_csv = os.path.join(args.out, "ndpi.csv")
    tools.append(("ndpiReader", ["ndpiReader", "-q", "-i", capture, "-C", ndpi_csv], "ndpi"))
    tools.append(("tshark", ["tshark", "-r", capture, "-n", "-T", "fields", "-E", "separator=/t",
                             "-e", "frame.protocols", "-e", "tls.handshake.extensions_server_name",
                             "-e", "http.host", "-e", "dns.qry.name", "-Y", TSHARK_FILTER],
                  "tshark"))

    read_limit = os.path.join(ROOT, "target", "release", "examples", "read_limit")
    tools.append(("limit: cat", ["cat", capture], "limit"))
    tools.append(("limit: mmap pass", [read_limit, capture, "mmap"], "limit"))
    tools.append(("limit: reader alone", [read_limit, capture, "records"], "limit"))

    times = collections.defaultdict(list)
    cpu = collections.defaultdict(list)
    memory = collections.defaultdict(list)
    outputs = {}
    for run in range(args.runs):
        order = tools[run % len(tools):] + tools[:run % len(tools)]
        for name, command, kind in order:
            out_path = os.path.join(args.out, name.replace(" ", "_").replace(":", "") + ".out")
            # cat's output is the whole capture: thrown away, as `cat FILE > /dev/null`.
            # This VM's page cache loses pages of the file between runs, and its disk reads
            # them back at a few MB/s: without this, whichever tool came upon them paid.
            warm(capture)
            mapped_before = huge_file_mappings()
            seconds, cpu_seconds, peak_kb, code = timed(command, out_path, keep=kind != "limit")
            huge = huge_file_mappings() - mapped_before
            if code not in (0, 1):
                sys.exit(f"{name} failed (exit {code}): {' '.join(command)}; see {out_path}")
            times[name].append(seconds)
            cpu[name].append(cpu_seconds)
            memory[name].append(peak_kb)
            outputs[name] = out_path
            # How the kernel mapped the file for telestrip: 2 MB at a time (cheap for its
            # page helper) or page by page (a quarter of the run's CPU); see the README.
            folios = f"  {huge} of {-(-os.path.getsize(capture) // (2 << 20))} 2 MB pieces " \
                "mapped whole" if kind == "telestrip" else ""
            print(f"  run {run + 1}/{args.runs}  {name:<24} {seconds:7.3f} s  "
                  f"{cpu_seconds:7.3f} s CPU  {peak_kb / 1024:7.1f} MB{folios}", flush=True)

    packets = json.load(open(outputs["telestrip"]))["stats"]["packets"]
    findings = {}
    for name, _, kind in tools:
        if kind == "limit":
            findings[name] = {"names": "", "flows": "", "note": "reads only"}
        elif kind == "telestrip":
            findings[name] = check_telestrip(outputs[name], expected)
        elif kind == "ndpi":
            findings[name] = check_peer(ndpi_names(ndpi_csv), expected)
        else:
            findings[name] = check_peer(tshark_names(outputs[name]), expected)

    rows = []
    base = statistics.median(times["telestrip"])
    for name, _, _ in tools:
        median = statistics.median(times[name])
        rows.append({
            "tool": name,
            "median_seconds": median,
            # Cores kept busy: CPU time (user + system, all threads) over wall time.
            "median_cores": statistics.median(c / t for c, t in zip(cpu[name], times[name])),
            "packets_per_second": packets / median,
            "peak_rss_mb": max(memory[name]) / 1024,
            "telestrip_is_faster": median / base,
            "found": findings[name],
        })
    report(rows, packets, args, capture)


def step(text):
    print(f"== {text}", flush=True)


def ensure_tools():
    missing = [t for t in ("ndpiReader", "tshark") if shutil.which(t) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"missing {', '.join(missing)}: apt-get install libndpi-bin tshark (or run as root)")
    step("installing libndpi-bin and tshark")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                    "libndpi-bin", "tshark"], check=True, env=env)


def huge_file_mappings():
    """How many 2 MB file folios the kernel has mapped whole so far (all processes)."""
    with open("/proc/vmstat") as f:
        for line in f:
            key, value = line.split()
            if key == "thp_file_mapped":
                return int(value)
    return 0


def warm(path):
    """Reads `path` through, so that every page of it is in the page cache."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def timed(command, out_path, keep=True):
    """Runs `command` with stdout to `out_path` (to /dev/null unless `keep`): wall seconds,
    CPU seconds (user + system, all its threads), peak RSS (KiB), exit code."""
    with open(out_path if keep else os.devnull, "wb") as out, \
            open(out_path + ".err", "wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    cpu_seconds = usage.ru_utime + usage.ru_stime
    return seconds, cpu_seconds, usage.ru_maxrss, os.waitstatus_to_exitcode(status)


def read_expected(path):
    """(via, name, rule) -> flows, from the generator's list."""
    expected = collections.Counter()
    with open(path) as f:
        next(f)
        for line in f:
            via, name, rule, flows = line.rstrip("\n").split("\t")
            expected[(via, name, rule)] += int(flows)
    return expected


def check_telestrip(path, expected):
    """Every expected match with its rule, and nothing else."""
    found = collections.Counter()
    for flow in json.load(open(path))["flows"]:
        found[(flow["via"], flow["name"], flow["rule"])] += 1
    missing = sum((expected - found).values())
    unexpected = sum((found - expected).values())
    return {
        "names": f"{len({k[1] for k in expected if found[k] >= expected[k]})}/{len({k[1] for k in expected})}",
        "flows": f"{sum((found & expected).values())}/{sum(expected.values())}",
        "all": missing == 0 and unexpected == 0,
        "note": "" if unexpected == 0 else f"{unexpected} unexpected matches",
    }


def check_peer(seen, expected):
    """Whether a peer reported each expected name as often as it occurs, by how it was seen.
    Flows found only by a learned address carry no name on the wire; they are left out."""
    wanted = collections.Counter()
    for (via, name, _), flows in expected.items():
        if via != "learned":
            wanted[(via, name)] += flows
    found_flows = sum(min(seen[k], n) for k, n in wanted.items())
    names = {k[1] for k in wanted}
    names_found = {k[1] for k in wanted if seen[k] >= wanted[k]}
    short = collections.Counter()
    for (via, name), n in wanted.items():
        if seen[(via, name)] < n:
            short[via] += n - seen[(via, name)]
    return {
        "names": f"{len(names_found)}/{len(names)}",
        "flows": f"{found_flows}/{sum(wanted.values())}",
        "all": found_flows == sum(wanted.values()),
        "note": ", ".join(f"{n} {via} flows missed" for via, n in sorted(short.items())),
    }


def ndpi_names(path):
    """(via, name) -> flows from ndpiReader's CSV (server_name_sni per flow)."""
    seen = collections.Counter()
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = [h.lstrip("#") for h in next(reader)]
        proto_at = header.index("ndpi_proto")
        name_at = header.index("server_name_sni")
        l4_at = header.index("protocol")
        for row in reader:
            if len(row) <= max(proto_at, name_at, l4_at) or not row[name_at]:
                continue
            proto = row[proto_at].split(".")
            if "DNS" in proto:
                via = "dns"
            elif "QUIC" in proto:
                via = "quic"
            elif "HTTP" in proto and row[l4_at] == "6":
                via = "http"
            elif "TLS" in proto and row[l4_at] == "6":
                via = "sni"
            else:
                continue
            seen[(via, row[name_at].lower().rstrip("."))] += 1
    return seen


def tshark_names(path):
    """(via, name) -> packets from tshark's fields (one line per matching packet)."""
    seen = collections.Counter()
    with open(path, errors="replace") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            fields += [""] * (4 - len(fields))
            protocols, sni, host, query = fields[:4]
            layers = protocols.split(":")
            for name in filter(None, sni.split(",")):
                seen[("quic" if "quic" in layers else "sni", name.lower())] += 1
            for name in filter(None, host.split(",")):
                seen[("http", name.lower().split(":")[0])] += 1
            for name in filter(None, query.split(",")):
                seen[("dns", name.lower().rstrip("."))] += 1
    return seen


def report(rows, packets, args, capture):
    machine = f"{os.cpu_count()} cores, {platform_line()}"
    lines = [
        f"Capture: {capture} ({packets:,} packets), {args.runs} runs per tool, median wall "
        f"time of the whole process, page cache warm. Machine: {machine}.",
        "",
        "| tool | seconds | cores busy | packets/s | peak RSS | telestrip is faster | names found "
        "| flows found |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        found = r["found"]
        note = f" ({found['note']})" if found["note"] else ""
        lines.append(
            f"| {r['tool']} | {r['median_seconds']:.3f} | {r['median_cores']:.2f} "
            f"| {r['packets_per_second'] / 1e6:.2f} M "
            f"| {r['peak_rss_mb']:.0f} MB | {r['telestrip_is_faster']:.1f}x "
            f"| {found['names']} | {found['flows']}{note} |")
    medians = {r["tool"]: r["median_seconds"] for r in rows}
    one = medians["telestrip"]
    lines.append("")
    limits = [f"{one / medians[name]:.2f}x {name[len('limit: '):]}"
              for name in medians if name.startswith("limit: ")]
    lines.append(f"telestrip (one thread) takes {', '.join(limits)}.")
    for name, seconds in medians.items():
        if name.startswith("telestrip --threads"):
            lines.append(f"`{name[len('telestrip '):]}` is {one / seconds:.2f}x one thread.")
    # One thread already keeps more than one core busy (its page helper reads ahead on
    # another): more packet threads can at best fill the cores it leaves idle.
    one_cores = next(r["median_cores"] for r in rows if r["tool"] == "telestrip")
    cores = os.cpu_count() or 1
    lines.append(f"One thread keeps {one_cores:.2f} cores busy: on {cores} cores, more packet "
                 f"threads can gain at most {cores / one_cores:.2f}x.")
    text = "\n".join(lines)
    print()
    print(text)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"packets": packets, "runs": args.runs, "rows": rows}, f, indent=2)
    print(f"\n(written to {os.path.join(args.out, 'results.md')} and results.json)")
    if args.inline:
        step("inline benchmark (examples/inline_bench)")
        subprocess.run([os.path.join(ROOT, "target", "release", "examples", "inline_bench")],
                       check=True)


def platform_line():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
