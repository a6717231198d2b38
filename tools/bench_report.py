"""Tables, targets and the JSON dump of tools/benchmark.py.

MB = 10^6 bytes (speeds, stored and allocated sizes); MiB / GiB = 2^20 / 2^30
bytes (memory, volume sizes). Per figure: the median over runs, except peak
RSS (the largest of the runs).
"""

from __future__ import annotations

import hashlib
import os
import platform
import statistics
import subprocess
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from backupsvc.chunking import blocks  # noqa: E402  (which hasher the engine uses)

WHO = ("engine", "cinder", "service")


def mb(n: float | None, digits: int = 1) -> str:
    return "-" if n is None else "%.*f" % (digits, n / 1e6)


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern % value


# -- aggregation --------------------------------------------------------------------

def _median(values: list[float | None]) -> float | None:
    real = [v for v in values if v is not None]
    return statistics.median(real) if real and len(real) == len(values) else None


def aggregate(records: list[dict]) -> dict | None:
    if not records:
        return None
    size = records[0]["size"]
    agg: dict[str, Any] = {
        "runs": len(records),
        "size": size,
        "seconds": _median([r["seconds"] for r in records]),
        "mbps": _median([size / 1e6 / r["seconds"] for r in records]),
        "cpu": _median([r.get("cpu") for r in records]),
        "rss_mib": max(r["rss_mib"] for r in records),
        "stored": _median([r.get("stored") for r in records]),
        "fraction": _median([r.get("fraction") for r in records]),
        "fraction_engine_sha": _median([r.get("fraction_engine_sha") for r in records]),
        "worker_seconds": _median([r.get("worker_seconds") for r in records]),
    }
    if "identical" in records[0]:
        agg["identical"] = all(r["identical"] for r in records)
        agg["allocated"] = max(r["allocated"] for r in records)
    bounds = [r["bound"] for r in records if "bound" in r]
    if bounds:
        agg["bound"] = {k: _median([b[k] for b in bounds])
                        for k in ("cpu", "read", "write", "disk", "seconds")}
        agg["bound"]["from_disk"] = _median([b["work"].get("read_from_disk", 0)
                                             for b in bounds])
        agg["bound"]["limit"] = statistics.mode(b["limit"] for b in bounds)
    return agg


def _pair_ratios(records: list[dict], op: str) -> list[float]:
    """The service's speed over the engine's, per run (extra pairs included).

    The two are measured one right after the other in each run, so a slow
    spell of this shared machine weighs on both of a pair; the ratio of
    medians taken over different runs would mix their spells.
    """
    speed = {(r["who"], r["run"]): r["size"] / r["seconds"] for r in records if r["op"] == op}
    return [speed[("service", run)] / speed[("engine", run)]
            for who, run in speed if who == "service" and ("engine", run) in speed]


def summarize(bench: Any) -> list[dict]:
    """One row per operation, in the order they were first measured."""
    order: list[str] = []
    for r in bench.records:
        if r["op"] not in order:
            order.append(r["op"])
    rows = []
    for op in order:
        row: dict[str, Any] = {"op": op}
        for who in WHO:
            # The extra pairs serve the service's ratio only (see Bench.extra_pairs).
            row[who] = aggregate([r for r in bench.records if r["op"] == op
                                  and r["who"] == who and not r.get("pair_only")])
        e, c, s = row["engine"], row["cinder"], row["service"]
        row["x_cinder"] = e["mbps"] / c["mbps"] if e and c else None
        ratios = _pair_ratios(bench.records, op) if e and s else []
        row["svc_engine"] = _median(ratios) if ratios else None
        row["svc_engine_pairs"] = len(ratios)
        rows.append(row)
    return rows


# -- machine --------------------------------------------------------------------------

def _cmd(argv: list[str], cwd: str | None = None) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, cwd=cwd,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def code_state(root: str) -> str:
    """The backupsvc code measured: commit, plus a digest of uncommitted changes."""
    commit = _cmd(["git", "rev-parse", "--short=12", "HEAD"], root)
    diff = _cmd(["git", "diff", "HEAD", "--", "backupsvc"], root)
    if diff not in ("", "?"):
        commit += " + uncommitted changes %s" % hashlib.sha1(diff.encode()).hexdigest()[:8]
    return commit


def machine(root: str, workdir: str, cinder_version: str | None, code: str) -> dict:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpu": cpu, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem / 2**30, 1), "kernel": platform.release(),
        "python": platform.python_version(), "filesystem": _cmd(["stat", "-f", "-c", "%T",
                                                                 workdir]),
        "backupsvc_commit": code, "cinder_version": cinder_version,
        "block_hashing": ("C helper, two blocks at once" if blocks.native_two_streams()
                          else "C helper") if blocks.native_hashing()
        else "hashlib (the C helper _backupsvc_blocks is not built: pip install . builds it)",
    }


# -- printing ---------------------------------------------------------------------------

def _table(head: tuple[str, ...], rows: list[tuple[str, ...]], widths: list[int]) -> None:
    line = " ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in
                    enumerate(zip(head, widths, strict=True)))
    print(line)
    print("-" * len(line))
    for row in rows:
        print(" ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                       enumerate(zip(row, widths, strict=True))))


def print_volumes(bench: Any) -> None:
    v, a = bench.versions, bench.args
    main = v[0]
    kinds = main.extent_bytes
    print("Volumes (seed %d; MB = 10^6 bytes):" % a.seed)
    print("  main %d GiB: %s MB text-like, %s MB random, %s MB written zeros, %s MB holes "
          "(%s); %d non-zero 32 KiB blocks, %s MB read by a hole-aware reader"
          % (main.size // 2**30, mb(kinds.get("text", 0)), mb(kinds.get("random", 0)),
             mb(kinds.get("zeros", 0)), mb(kinds.get("hole", 0)),
             "the last %s MB a hole: --quick" % mb(main.size - a.span) if a.span else
             "in shuffled 1-4 MiB extents", main.nonzero_blocks, mb(main.data_bytes)))
    for k, s in enumerate(v[1:], 1):
        print("  version %d: %d blocks (%s MB) rewritten, %d of them text"
              % (k + 1, s.changed_blocks, mb(s.changed_bytes), s.changed_text_blocks))
    if bench.sparse is not None:
        s = bench.sparse
        print("  sparse %d GiB: %s MB of random data in scattered extents, holes elsewhere"
              % (s.size // 2**30, mb(s.data_bytes)))


def print_limits(lim: dict, idle_rss: float) -> None:
    print("Machine limits, measured in this run (MB/s):")
    print("  SHA-256, 2 threads, 32 KiB blocks: %.0f (hashlib); %s (the engine's hashing)"
          % (lim["sha256"] / 1e6, _fmt(lim.get("sha256_engine", 0) / 1e6 or None, "%.0f")))
    for codec, samples in lim["codecs"].items():
        if codec == "none":
            continue
        t, m = samples["text"], samples["mix"]
        print("  %s, 2 threads: compress %.0f text / %.0f mix, decompress %.0f text / %.0f mix"
              " (ratio %.2f text, %.2f mix)" % (codec, t["compress"] / 1e6, m["compress"] / 1e6,
                                                t["decompress"] / 1e6, m["decompress"] / 1e6,
                                                t["ratio"], m["ratio"]))
    print("  page-cache read, 2 threads: %.0f; durable write (write + fsync): %.0f"
          % (lim["read"] / 1e6, lim["write"] / 1e6))
    if "disk_read" in lim:
        print("  disk read (O_DIRECT), 2 threads: %.0f; disk read and write at once: %.0f "
              "(read + written)" % (lim["disk_read"] / 1e6, lim["disk_mixed"] / 1e6))
    print("  an idle engine child process: %.0f MiB RSS" % idle_rss)


def print_main(rows: list[dict]) -> None:
    head = ("operation", "MB/s", "CPU s", "RSS MiB", "stored MB", "bound",
            "Cinder MB/s", "CPU s", "RSS MiB", "stored MB", "xCinder",
            "svc MB/s", "svc/eng", "svc RSS")
    out = []
    for r in rows:
        e, c, s = r["engine"] or {}, r["cinder"] or {}, r["service"] or {}
        out.append((r["op"], _fmt(e.get("mbps"), "%.1f"), _fmt(e.get("cpu"), "%.2f"),
                    _fmt(e.get("rss_mib"), "%.0f"), mb(e.get("stored") or None),
                    _fmt(e.get("fraction"), "%.2f"), _fmt(c.get("mbps"), "%.1f"),
                    _fmt(c.get("cpu"), "%.2f"), _fmt(c.get("rss_mib"), "%.0f"),
                    mb(c.get("stored") or None), _fmt(r["x_cinder"], "%.2fx"),
                    _fmt(s.get("mbps"), "%.1f"), _fmt(r["svc_engine"], "%.2f"),
                    _fmt(s.get("rss_mib"), "%.0f")))
    _table(head, out, [29, 7, 6, 7, 9, 5, 11, 6, 7, 9, 7, 8, 7, 7])


def print_bounds(rows: list[dict]) -> None:
    head = ("operation", "engine s", "bound s", "CPU s", "read s", "disk MB", "write s",
            "r+w s", "limit", "bound MB/s", "fraction", "own SHA")
    out = []
    for r in rows:
        e = r["engine"]
        if not e or "bound" not in e:
            continue
        b = e["bound"]
        size_mb = e["size"] / 1e6
        out.append((r["op"], "%.2f" % e["seconds"], "%.2f" % b["seconds"], "%.2f" % b["cpu"],
                    "%.2f" % b["read"], mb(b.get("from_disk")), "%.2f" % b["write"],
                    _fmt(b.get("disk"), "%.2f"), b["limit"],
                    "%.0f" % (size_mb / b["seconds"]) if b["seconds"] else "-",
                    _fmt(e["fraction"], "%.2f"), _fmt(e.get("fraction_engine_sha"), "%.2f")))
    _table(head, out, [29, 8, 8, 7, 7, 7, 7, 7, 6, 10, 8, 7])


def print_sparse(bench: Any, rows: list[dict]) -> None:
    s = bench.sparse
    byop = {r["op"]: r for r in rows}
    full, restore = byop.get("sparse: full backup"), byop.get("sparse: restore -> new volume")
    if s is None or not full or not restore:
        return
    print("Sparse volume: %d GiB holding %s MB of data" % (s.size // 2**30, mb(s.data_bytes)))
    for who in WHO:
        f, r = full[who], restore[who]
        if not f or not r:
            continue
        print("  %-7s stored %9s MB = data %+6.1f%%; restored file allocates %9s MB = data "
              "%+6.1f%%; byte-identical: %s"
              % (who, mb(f["stored"]), 100 * (f["stored"] / s.data_bytes - 1),
                 mb(r["allocated"]), 100 * (r["allocated"] / s.data_bytes - 1),
                 "yes" if r["identical"] else "NO"))


def targets(bench: Any, rows: list[dict]) -> list[tuple[str, str, bool | None]]:
    """The issue's targets: (what, measured, met); met is None when not measured."""
    byop = {r["op"]: r for r in rows}
    out: list[tuple[str, str, bool | None]] = []

    def ratio(op: str, need: float) -> None:
        x = byop.get(op, {}).get("x_cinder")
        out.append(("%s >= %gx Cinder" % (op, need), _fmt(x, "%.2fx"),
                    None if x is None else x >= need))

    for codec, need in (("zlib", 3), ("zstd", 4), ("none", 4)):
        ratio("full backup, %s" % codec, need)
    for k in (1, 2, 3):
        ratio("incremental %d (1%%)" % k, 2.5)
    ratio("restore chain -> new volume", 6)
    ratio("restore chain -> existing vol", 6)
    ratio("sparse: full backup", 20)
    s = bench.sparse
    full, rest = byop.get("sparse: full backup"), byop.get("sparse: restore -> new volume")
    if s is not None and full and rest and full["engine"] and rest["engine"]:
        stored, alloc = full["engine"]["stored"], rest["engine"]["allocated"]
        out.append(("sparse: engine stores <= data + 1%", "%+.1f%%" % (100 * (stored /
                    s.data_bytes - 1)), stored <= s.data_bytes * 1.01))
        out.append(("sparse: restore allocates <= data + 1%", "%+.1f%%" % (100 * (alloc /
                    s.data_bytes - 1)), alloc <= s.data_bytes * 1.01))
    for who, what in (("engine", "engine process"), ("service", "service worker")):
        peaks = [r[who]["rss_mib"] for r in rows if r[who]]
        peak = max(peaks) if peaks else None
        out.append(("peak RSS of the %s <= 256 MiB" % what, _fmt(peak, "%.0f MiB"),
                    None if peak is None else peak <= 256))
    ratios = [r["svc_engine"] for r in rows if r["svc_engine"] is not None]
    low = min(ratios) if ratios else None
    out.append(("service within 10% of the engine (worst op)", _fmt(low, "%.2f"),
                None if low is None else low >= 0.9))
    fractions = [r["engine"]["fraction"] for r in rows
                 if r["engine"] and r["engine"].get("fraction") is not None]
    low = min(fractions) if fractions else None
    out.append((">= 70% of the machine bound (worst op)", _fmt(low, "%.2f"),
                None if low is None else low >= 0.7))
    own = [r["engine"]["fraction_engine_sha"] for r in rows
           if r["engine"] and r["engine"].get("fraction_engine_sha") is not None]
    low = min(own) if own else None
    out.append(("  the same, the engine's SHA-256 as the limit", _fmt(low, "%.2f"),
                None if low is None else low >= 0.7))
    identical = all(r[w]["identical"] for r in rows for w in WHO
                    if r[w] and "identical" in r[w])
    out.append(("every restore byte-identical", "yes" if identical else "NO", identical))
    return out


def print_all(bench: Any, rows: list[dict], info: dict, total: float) -> None:
    a = bench.args
    print()
    print("backupsvc benchmark%s" % (" (--quick: a smoke test, not a measurement)"
                                     if a.quick else ""))
    print("Machine: %s, %d cores (%d usable), %.1f GiB RAM, kernel %s, Python %s, "
          "file system %s" % (info["cpu"], info["cores"], info["usable_cores"],
                              info["memory_gib"], info["kernel"], info["python"],
                              info["filesystem"]))
    print("backupsvc %s (block hashing: %s); Cinder %s"
          % (info["backupsvc_commit"], info.get("block_hashing", "?"),
             info["cinder_version"] or "not measured"))
    if info.get("code_changed_to"):
        print("WARNING: backupsvc/ changed during the run (now %s): later processes ran "
              "other code" % info["code_changed_to"])
    print("chunk size %d, sha block %d, engine workers %d%s; %d run(s), medians; "
          "codec of the chain and sparse case: %s"
          % (a.chunk_size, a.sha_block_size, a.workers,
             ", format %s" % a.format_version if a.format_version else "", a.runs,
             bench.chain_codec))
    print()
    print_volumes(bench)
    print()
    print_limits(bench.limits, bench.idle_rss)
    before = [r["rss_before_mib"] for r in bench.records if "rss_before_mib" in r]
    if before:
        # What a job's peak starts from: the worker keeps buffers between jobs.
        print("  the service worker before each job: %.0f-%.0f MiB RSS"
              % (min(before), max(before)))
    print()
    print("MB/s = volume MB / seconds until durable; CPU s = CPU seconds of the process; "
          "RSS = peak (MiB);\nbound = fraction of the machine bound; xCinder = engine MB/s / "
          "Cinder MB/s; svc = through the service;\nsvc/eng = median over %d pairs (the runs "
          "and --extra-pairs) of service MB/s / engine MB/s measured back to back"
          % (a.runs + (0 if a.skip_service else a.extra_pairs)))
    print_main(rows)
    print()
    print("Engine vs the machine bound (seconds; bound = max of CPU, read, write, r+w; "
          "disk MB = read from the disk, not the page cache; r+w = disk reads and writes "
          "sharing the disk; "
          "own SHA = fraction of the bound with the engine's\nSHA-256 rate, not hashlib's, as "
          "the limit; tools/bench_limits.py):")
    print_bounds(rows)
    print()
    print_sparse(bench, rows)
    print()
    print("Targets:")
    for what, value, met in targets(bench, rows):
        print("  %-46s %10s  %s" % (what, value,
                                    "n/a" if met is None else "met" if met else "NOT met"))
    print()
    print("total benchmark time %.0f s" % total)


def raw(bench: Any, rows: list[dict], info: dict) -> dict:
    a = vars(bench.args).copy()
    return {
        "machine": info, "args": a, "limits": bench.limits, "idle_rss_mib": bench.idle_rss,
        "volumes": [v.summary() for v in bench.versions]
        + ([bench.sparse.summary()] if bench.sparse else []),
        "measurements": bench.records, "summary": rows,
        "targets": [dict(what=w, value=v, met=m) for w, v, m in targets(bench, rows)],
        "errors": bench.errors,
    }
