#!/usr/bin/env python3
"""Extraction benchmark: kubecost-bridge against a plain Python extractor, side by side.

1. Starts the project's simulator (`kubecost-bridge simulate`) on a free loopback port with one
   cluster of PODS pods and records one closed hour of `/model/allocation` at the extractor's
   aggregate to a file (the "recorded 20k-pod hour").
2. Runs, alternately and RUNS times each, the whole process of
   - the Python baseline (scripts/bench/python_extractor.py: json.loads + sqlite3 executemany in
     one transaction), and
   - `kubecost-bridge import` (the extractor's streaming parser and SQLite writer, one
     transaction with the checkpoint), each into a fresh database;
   and reports the median wall time, rows/s and peak RSS of each, and the speed-up.
3. Also times `kubecost-bridge extract` of the same hour over loopback HTTP from the simulator
   (rows/s including the simulator's generation of the response on the other core).

Usage: extract_bench.py [--pods 20000] [--runs 5] [--bin target/release/kubecost-bridge]
Wall time and peak RSS come from os.wait4 on each child, so they cover the whole process.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
AGGREGATE = "cluster,namespace,pod,controllerKind,controller,node"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_measured(cmd):
    """Runs cmd with os.wait4 to get its own peak RSS; returns (seconds, MiB, stdout)."""
    r, w = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.dup2(w, 1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        try:
            os.execv(cmd[0], cmd)
        finally:
            os._exit(127)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    _, status, ru = os.wait4(pid, 0)
    dt = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit("command failed: %s" % " ".join(cmd))
    return dt, ru.ru_maxrss / 1024.0, b"".join(chunks).decode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "kubecost-bridge"))
    a = ap.parse_args()
    binary = os.path.abspath(a.bin)
    work = tempfile.mkdtemp(prefix="kb-extract-bench-")
    port = free_port()
    sim = subprocess.Popen(
        [binary, "simulate", "--listen", "127.0.0.1:%d" % port, "--clusters", "1",
         "--pods", str(a.pods)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = "http://127.0.0.1:%d" % port
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        now = int(time.time())
        start = now - now % 3600 - 2 * 3600
        window = "%s,%s" % (
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + 3600)))
        url = ("%s/model/allocation?window=%s&aggregate=%s&accumulate=true&idle=true"
               "&shareIdle=false" % (base, window, AGGREGATE))
        recorded = os.path.join(work, "hour.json")
        with urllib.request.urlopen(url, timeout=120) as resp, open(recorded, "wb") as f:
            while True:
                b = resp.read(1 << 20)
                if not b:
                    break
                f.write(b)
        size = os.path.getsize(recorded)
        cfg = os.path.join(work, "bridge.yaml")
        with open(cfg, "w") as f:
            f.write("kubecost:\n  endpoint: %s\ncloudtuner:\n  storage:\n    sqlite: %s\n"
                    "extract:\n  settle: 0s\n" % (base, os.path.join(work, "bridge.db")))

        def fresh(db):
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.remove(db + suffix)
                except FileNotFoundError:
                    pass

        py, rs, http = [], [], []
        rows = None
        for i in range(a.runs):
            db = os.path.join(work, "py.db")
            fresh(db)
            dt, rss, out = run_measured(
                [sys.executable, os.path.join(HERE, "python_extractor.py"), recorded, db])
            py.append((dt, rss))
            rows = int(out.split()[0].split("=")[1])
            fresh(os.path.join(work, "bridge.db"))
            dt, rss, out = run_measured(
                [binary, "import", "--config", cfg, "--cluster", "default", "--window", window,
                 "--file", recorded])
            rs.append((dt, rss))
            fresh(os.path.join(work, "bridge.db"))
            dt, rss, out = run_measured(
                [binary, "extract", "--config", cfg, "--window", window, "--log", "warn"])
            http.append((dt, rss))

        def report(name, xs):
            t = statistics.median(x[0] for x in xs)
            m = max(x[1] for x in xs)
            print("%-34s median %7.3f s  %9.0f rows/s  %7.1f MB/s  peak RSS %6.1f MiB"
                  % (name, t, rows / t, size / t / 1e6, m))
            return t

        print("recorded hour: %d pods requested, %d allocation rows, %.1f MB; %d runs each"
              % (a.pods, rows, size / 1e6, a.runs))
        tp = report("python (json.loads + executemany)", py)
        tr = report("kubecost-bridge import (file)", rs)
        report("kubecost-bridge extract (HTTP)", http)
        print("speed-up, import vs python: %.1fx" % (tp / tr))
        print(json.dumps({"rows": rows, "bytes": size, "python_s": tp, "import_s": tr,
                          "speedup": tp / tr}))
    finally:
        sim.terminate()
        sim.wait()


if __name__ == "__main__":
    main()
