#!/usr/bin/env python3
"""Benchmark the chunking engine against a naive, Cinder-style baseline.

Builds a test image (random data extents and zeros) in a temporary directory,
then measures, with a PosixStore in that directory:

* full backup,
* incremental backup after 1% of the volume changed in scattered 4 KiB writes,
* restore of the chain (full + incremental) to a new sparse file,
* the same restore over an existing, fully written file;

and, for a second, sparse image (``--sparse-size-mib``, default 2 GiB, holding
``--sparse-data-fraction`` random data in scattered 1 MiB extents, the rest
holes), a full backup and its restore to a new sparse file.

Each operation also runs through a naive single-threaded baseline in the same
invocation: read a whole chunk, sha256 its blocks, one-shot compress it, write
the whole object (no zero skipping); restore writes every object of every
backup of the chain, oldest first.

Peak RSS: every measurement runs in its own freshly spawned child process and
reports that child's ``ru_maxrss`` (which includes the interpreter; an idle
child's figure is printed for reference). Speeds are volume MiB per second,
the median of ``--runs`` runs (``--sparse-runs`` for the sparse image, whose
naive baseline reads, hashes, compresses and restores every zero). CPU is the
process's CPU seconds (all threads) divided by wall seconds: 2.0 means two
cores busy all along. ``--help`` lists the options (sizes, runs, compression).
"""

from __future__ import annotations

import argparse
import bz2
import ctypes
import ctypes.util
import hashlib
import multiprocessing
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import zstandard  # noqa: E402

from backupsvc.chunking import manifest  # noqa: E402
from backupsvc.chunking.engine import (  # noqa: E402
    BackupDescription,
    EngineParams,
    Layer,
    read_sha256s,
    run_backup,
    run_restore,
)
from backupsvc.drivers.posix import PosixStore  # noqa: E402

MiB = 1024 * 1024
CONTAINER = "bench"


# -- restore target -----------------------------------------------------------------

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_PUNCH_HOLE = 0x02 | 0x01      # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE


class FileTarget:
    """pwrite / write_zeros (hole punching, else zero writes) / fsync on a file."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR)

    def pwrite(self, data, offset: int) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view, offset)
            view, offset = view[n:], offset + n

    def write_zeros(self, offset: int, length: int) -> None:
        if _libc.fallocate(self.fd, _PUNCH_HOLE, ctypes.c_long(offset),
                           ctypes.c_long(length)) == 0:
            return
        zeros = bytes(min(length, 4 * MiB))
        while length:
            n = min(length, len(zeros))
            self.pwrite(zeros[:n], offset)
            offset, length = offset + n, length - n

    def flush(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


# -- naive baseline -----------------------------------------------------------------

_COMPRESS = {"zlib": zlib.compress, "bz2": bz2.compress,
             "zstd": lambda data: zstandard.ZstdCompressor().compress(data)}
_DECOMPRESS = {"zlib": zlib.decompress, "bz2": bz2.decompress,
               "zstd": lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data)}


def _compress(name: str, data: bytes) -> bytes:
    return _COMPRESS[name](data) if name in _COMPRESS else data


def _decompress(name: str, data: bytes) -> bytes:
    return _DECOMPRESS[name](data) if name in _DECOMPRESS else data


def naive_backup(image: str, size: int, store: PosixStore, prefix: str, params: EngineParams,
                 parent: list[str] | None) -> int:
    """Whole chunks in memory, one thread, every changed block stored (zeros too)."""
    store.ensure_container(CONTAINER)
    bs, stored, number = params.sha_block_size, 0, 0
    shas: list[str] = []
    entries = []
    with open(image, "rb") as f:
        for chunk_off in range(0, size, params.chunk_size):
            chunk = f.read(min(params.chunk_size, size - chunk_off))
            first = len(shas)
            shas += [hashlib.sha256(chunk[o:o + bs]).hexdigest()
                     for o in range(0, len(chunk), bs)]
            runs, start = [], None
            for i in range(first, len(shas)):
                changed = parent is None or i >= len(parent) or parent[i] != shas[i]
                if changed and start is None:
                    start = i
                elif not changed and start is not None:
                    runs.append((start, i))
                    start = None
            if start is not None:
                runs.append((start, len(shas)))
            for a, b in runs:
                data = chunk[(a - first) * bs:(b - first) * bs]
                blob = _compress(params.compression, data)
                comp = params.compression
                if len(blob) >= len(data):
                    blob, comp = data, "none"
                number += 1
                name = manifest.data_object_name(prefix, number)
                store.put(CONTAINER, name, blob)
                stored += len(blob)
                entries.append(manifest.ObjectEntry(name, chunk_off + (a - first) * bs,
                                                    len(data),
                                                    hashlib.md5(data).hexdigest(), comp))
    meta = dict(backup_id=prefix, volume_id="v", backup_name=None, backup_description=None,
                created_at="now")
    store.put(CONTAINER, manifest.sha256file_name(prefix), manifest.Sha256File(
        chunk_size=bs, sha256s=shas, **meta).to_json())
    store.put(CONTAINER, manifest.metadata_name(prefix), manifest.Metadata(
        parent_id=None, objects=entries, **meta).to_json())
    return stored


def naive_restore(store: PosixStore, prefixes: list[str], target: FileTarget) -> None:
    """Every object of every backup, oldest backup first, whole objects in memory."""
    for prefix in prefixes:
        meta = manifest.load_metadata(store, CONTAINER, prefix)
        for obj in meta.objects:
            data = _decompress(obj.compression, store.get(CONTAINER, obj.name))
            if hashlib.md5(data).hexdigest() != obj.md5:
                raise RuntimeError("md5 mismatch in %s" % obj.name)
            target.pwrite(data, obj.offset)
    target.flush()


# -- measurements (each in a fresh child process) -------------------------------------

def _desc(prefix: str) -> BackupDescription:
    return BackupDescription(prefix, "v", None, None, "now", None)


def measure(job: dict) -> dict:
    kind, params = job["kind"], EngineParams(**job["params"])
    store = PosixStore(job["store"])
    size, stored = job["size"], 0
    target = None
    if kind.startswith("restore"):
        if job["zeroed"]:
            with open(job["target"], "wb") as f:
                f.truncate(size)
        else:
            shutil.copyfile(job["existing"], job["target"])
        target = FileTarget(job["target"])
    start, cpu_start = time.perf_counter(), time.process_time()
    if kind == "backup":
        parent = None
        if job["parent"]:
            parent = read_sha256s(store, CONTAINER, job["parent"])[1]
        if job["engine"]:
            with open(job["image"], "rb") as f:
                stored = run_backup(f, size, store, CONTAINER, job["prefix"],
                                    _desc(job["prefix"]), params, parent).bytes_stored
        else:
            stored = naive_backup(job["image"], size, store, job["prefix"], params, parent)
    elif job["engine"]:
        run_restore([Layer(CONTAINER, p) for p in job["chain"]], target, size, params,
                    target_is_zeroed=job["zeroed"], store=store)
    else:
        naive_restore(store, job["chain"], target)
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    ok = None
    if target is not None:
        target.close()
        if job.get("verify"):
            ok = _digest(job["target"]) == job["expect"]
        os.unlink(job["target"])
    return {"seconds": seconds, "cpu": cpu, "stored": stored, "ok": ok,
            "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def idle(_: object) -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_child(fn, arg):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(fn, (arg,))


# -- images -----------------------------------------------------------------------------

def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(8 * MiB):
            h.update(data)
    return h.hexdigest()


def build_images(workdir: str, size: int, fraction: float, rng: random.Random) -> tuple[str, str]:
    """image1: random extents over zeros; image2: image1 with 1% scattered 4 KiB changes."""
    image1, image2 = os.path.join(workdir, "image1"), os.path.join(workdir, "image2")
    extent = 4 * MiB
    with open(image1, "wb") as f:
        f.truncate(size)
        for off in range(0, size, extent):
            if rng.random() < fraction:
                f.seek(off)
                f.write(os.urandom(min(extent, size - off)))
    shutil.copyfile(image1, image2)
    with open(image2, "r+b") as f:
        for _ in range(max(1, size // 100 // 4096)):
            f.seek(rng.randrange(0, size - 4096) // 4096 * 4096)
            f.write(os.urandom(4096))
    return image1, image2


def build_sparse_image(workdir: str, size: int, fraction: float, rng: random.Random) -> str:
    """A sparse file: random 1 MiB extents at scattered 4 KiB-aligned offsets, holes between."""
    path = os.path.join(workdir, "sparse")
    extent = MiB
    slots = max(1, size // extent)
    with open(path, "wb") as f:
        f.truncate(size)
        for slot in sorted(rng.sample(range(slots), max(1, int(slots * fraction)))):
            # Anywhere in its slot, so that extents start and end inside sha blocks.
            off = min(slot * extent + rng.randrange(0, extent, 4096), size - extent)
            f.seek(max(0, off))
            f.write(os.urandom(min(extent, size)))
    return path


# -- running and reporting ----------------------------------------------------------------

def run_steps(workdir: str, base: dict, runs: int,
              steps: Callable[[int], list[tuple[str, dict]]], expect: str,
              verbose: bool) -> dict[tuple[str, bool], list[dict]]:
    """``steps(run)``, engine then naive, ``runs`` times, each in a fresh child process."""
    results: dict[tuple[str, bool], list[dict]] = {}
    for run in range(runs):
        for engine in (True, False):
            who = "engine" if engine else "naive"
            store = os.path.join(workdir, "store-%s-%d" % (who, run))
            for label, step in steps(run):
                job = dict(base, **step, store=store, engine=engine,
                           target=os.path.join(workdir, "target"), verify=run == 0,
                           expect=expect)
                os.sync()   # don't charge one measurement for another's writeback
                out = in_child(measure, job)
                if out["ok"] is False:
                    raise SystemExit("%s %s restored wrong data" % (who, label))
                results.setdefault((label, engine), []).append(out)
                if verbose:
                    print("run %d %-6s %-18s %6.2f s  CPU %.2f"
                          % (run, who, label, out["seconds"], out["cpu"] / out["seconds"]))
            shutil.rmtree(store)
    return results


def print_table(size: int, labels: list[str], results: dict[tuple[str, bool], list[dict]]) -> None:
    head = ("operation", "engine MiB/s", "CPU", "peak RSS", "stored MiB",
            "naive MiB/s", "CPU", "peak RSS", "stored MiB", "speedup")
    fmt = "%-18s %12s %5s %9s %11s %12s %5s %9s %11s %8s"
    print(fmt % head)
    print("-" * 111)
    for label in labels:
        row = [label]
        speeds = []
        for engine in (True, False):
            outs = results[(label, engine)]
            speed = statistics.median(size / MiB / o["seconds"] for o in outs)
            speeds.append(speed)
            cpu = statistics.median(o["cpu"] / o["seconds"] for o in outs)
            rss = max(o["rss_mib"] for o in outs)
            stored = statistics.median(o["stored"] for o in outs) / MiB
            row += ["%.0f" % speed, "%.2f" % cpu, "%.0f MiB" % rss,
                    "%.1f" % stored if stored else "-"]
        row.append("%.2fx" % (speeds[0] / speeds[1]))
        print(fmt % tuple(row))


def main_steps(run: int, image1: str, image2: str) -> list[tuple[str, dict]]:
    full, inc = "full-%d" % run, "inc-%d" % run
    return [
        ("full backup", dict(kind="backup", image=image1, prefix=full, parent=None)),
        ("1% incremental", dict(kind="backup", image=image2, prefix=inc, parent=full)),
        ("restore, sparse", dict(kind="restore", chain=[full, inc], zeroed=True)),
        ("restore, existing", dict(kind="restore", chain=[full, inc], zeroed=False,
                                   existing=image1)),
    ]


def sparse_steps(run: int, image: str) -> list[tuple[str, dict]]:
    prefix = "sparse-%d" % run
    return [
        ("full backup", dict(kind="backup", image=image, prefix=prefix, parent=None)),
        ("restore, sparse", dict(kind="restore", chain=[prefix], zeroed=True)),
    ]


# -- main -------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--data-fraction", type=float, default=0.5,
                    help="fraction of the image that is random data (the rest is zeros)")
    ap.add_argument("--compression", default="zlib", help="zlib, bz2, zstd or none")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sparse-size-mib", type=int, default=2048,
                    help="size of the sparse image (0: skip that scenario)")
    ap.add_argument("--sparse-data-fraction", type=float, default=0.05,
                    help="fraction of the sparse image that is data, in 1 MiB extents")
    ap.add_argument("--sparse-runs", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk-size", type=int, default=1999994880)
    ap.add_argument("--sha-block-size", type=int, default=32768)
    ap.add_argument("-v", "--verbose", action="store_true", help="print every measurement")
    args = ap.parse_args()

    size = args.size_mib * MiB
    sparse_size = args.sparse_size_mib * MiB
    params = dict(chunk_size=args.chunk_size, sha_block_size=args.sha_block_size,
                  compression=args.compression, workers=args.workers)
    EngineParams(**params)      # validate early
    workdir = tempfile.mkdtemp(prefix="backupsvc-bench-")
    started = time.perf_counter()
    try:
        image1, image2 = build_images(workdir, size, args.data_fraction, random.Random(42))
        results = run_steps(workdir, dict(params=params, size=size), args.runs,
                            lambda run: main_steps(run, image1, image2), _digest(image2),
                            args.verbose)
        os.unlink(image1)
        os.unlink(image2)
        sparse_results = None
        if sparse_size:
            sparse = build_sparse_image(workdir, sparse_size, args.sparse_data_fraction,
                                        random.Random(7))

            sparse_results = run_steps(workdir, dict(params=params, size=sparse_size),
                                       args.sparse_runs, lambda run: sparse_steps(run, sparse),
                                       _digest(sparse), args.verbose)
        idle_rss = in_child(idle, None)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print("compression %s, chunk %d, sha block %d, %d workers, %d CPUs"
          % (args.compression, args.chunk_size, args.sha_block_size, args.workers,
             os.cpu_count() or 0))
    print("MiB/s = volume MiB / seconds, median of runs; CPU = process CPU seconds / wall "
          "seconds; peak RSS = max of a fresh child process per measurement (an idle "
          "child: %.0f MiB)" % idle_rss)
    print()
    print("volume %d MiB, %.0f%% random data in 4 MiB extents, %d run(s)"
          % (args.size_mib, args.data_fraction * 100, args.runs))
    print_table(size, [label for label, _ in main_steps(0, "", "")], results)
    if sparse_results is not None:
        print()
        print("sparse volume %d MiB, %.0f%% random data in scattered 1 MiB extents, "
              "holes elsewhere, %d run(s)"
              % (args.sparse_size_mib, args.sparse_data_fraction * 100, args.sparse_runs))
        print_table(sparse_size, [label for label, _ in sparse_steps(0, "")], sparse_results)
    print()
    print("total benchmark time %.0f s" % (time.perf_counter() - started))


if __name__ == "__main__":
    main()
