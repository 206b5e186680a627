#!/usr/bin/env python3
"""The baseline of the extraction benchmark: a plain Python extractor.

It reads a recorded Kubecost allocation response, parses it with json.loads, and inserts one
row per allocation with sqlite3's executemany in one transaction: what a straightforward
script-based extractor does. Usage: python_extractor.py RESPONSE.json OUT.db
"""
import json
import sqlite3
import sys

COLUMNS = [
    "window_start", "window_end", "cluster", "node", "namespace", "controller_kind", "controller",
    "pod", "container", "labels", "start", "end", "minutes",
    "cpu_cores", "cpu_core_request_average", "cpu_core_usage_average", "cpu_core_hours",
    "cpu_cost", "cpu_cost_adjustment", "cpu_efficiency",
    "gpu_count", "gpu_hours", "gpu_cost", "gpu_cost_adjustment",
    "ram_bytes", "ram_byte_request_average", "ram_byte_usage_average", "ram_byte_hours",
    "ram_cost", "ram_cost_adjustment", "ram_efficiency",
    "pv_bytes", "pv_byte_hours", "pv_cost", "pv_cost_adjustment",
    "network_transfer_bytes", "network_receive_bytes", "network_cost", "network_cost_adjustment",
    "load_balancer_cost", "load_balancer_cost_adjustment", "shared_cost", "external_cost",
    "total_cost", "total_efficiency",
]
KEYS = [
    "cpuCores", "cpuCoreRequestAverage", "cpuCoreUsageAverage", "cpuCoreHours",
    "cpuCost", "cpuCostAdjustment", "cpuEfficiency",
    "gpuCount", "gpuHours", "gpuCost", "gpuCostAdjustment",
    "ramBytes", "ramByteRequestAverage", "ramByteUsageAverage", "ramByteHours",
    "ramCost", "ramCostAdjustment", "ramEfficiency",
    "pvBytes", "pvByteHours", "pvCost", "pvCostAdjustment",
    "networkTransferBytes", "networkReceiveBytes", "networkCost", "networkCostAdjustment",
    "loadBalancerCost", "loadBalancerCostAdjustment", "sharedCost", "externalCost",
    "totalCost", "totalEfficiency",
]


def rows(doc):
    for s in doc.get("data") or []:
        if not s:
            continue
        for name, a in s.items():
            p = a.get("properties") or {}
            w = a.get("window") or {}
            yield (
                w.get("start"), w.get("end"), p.get("cluster"), p.get("node"), p.get("namespace"),
                p.get("controllerKind"), p.get("controller"), p.get("pod"), p.get("container"),
                json.dumps(p.get("labels") or {}, sort_keys=True), a.get("start"), a.get("end"),
                a.get("minutes"),
            ) + tuple((a.get(k) or 0.0) for k in KEYS)


def main():
    src, db = sys.argv[1], sys.argv[2]
    with open(src, "rb") as f:
        doc = json.loads(f.read())
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("CREATE TABLE IF NOT EXISTS allocations (%s)" % ", ".join(COLUMNS))
    with con:
        con.executemany(
            "INSERT INTO allocations VALUES (%s)" % ", ".join("?" * len(COLUMNS)), rows(doc)
        )
    n = con.execute("SELECT count(*), sum(total_cost) FROM allocations").fetchone()
    con.close()
    print("rows=%d total_cost=%.6f" % n)


if __name__ == "__main__":
    main()
