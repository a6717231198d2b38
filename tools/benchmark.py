#!/usr/bin/env python3
"""Benchmark backupsvc against OpenStack Cinder's own POSIX chunked backup driver.

One command builds reproducible volumes, measures this machine's limits, and
runs every scenario through backupsvc's engine, through the running service
(HTTP API -> RabbitMQ -> worker) and through Cinder's driver (installed from
PyPI in a separate virtualenv, driven by tools/bench_cinder.py), in the same
run, on the same volumes, with the same codec, chunk size (Cinder's default
backup_file_size, 1999994880) and sha block size (32768)::

    python tools/benchmark.py [--create-cinder-venv | --cinder-venv DIR] [--runs 3]

Volumes (tools/bench_volumes.py; seed --seed, default 1):

* main, --size-gib (1): shuffled 1-4 MiB extents, 40% zeros (half written
  zeros, half holes), 30% text-like data (~3:1 with zlib), 30% random;
* versions 2-4: each the previous one with 1% of its 32 KiB blocks rewritten
  (random or text);
* sparse, --sparse-size-gib (16) holding --sparse-data-mib (256) of random
  data in scattered extents, holes elsewhere.

Scenarios, --runs times each (medians reported): a full backup of the main
volume with each of --codecs; with the first codec (zlib), three 1%
incrementals, then a restore of the full + 3 incrementals chain into a new
(sparse) volume and into an existing volume holding the main volume's data;
a full backup of the sparse volume and its restore into a new volume. Each
contender backs up a fresh copy of the volume (the main volume changes in
place in it between its backups), so the page cache holds what it reads,
whatever the runs before it pushed out. Every restore is checked byte for
byte against its source (the run fails otherwise), and for sparse restores
the allocated bytes are reported.

Order: per codec, one service is started; each run measures the engine,
the service, then Cinder, back to back (the service idles meanwhile). The
service follows the engine rather than Cinder, whose process frees 1-4 GiB
at its end: on a VM whose host takes freed memory back, what runs next pays
for touching those pages again.
Then --extra-pairs (4) more engine/service pairs run without Cinder: they
only sharpen the service's ratio to the engine (svc/eng), the median over
all the pairs; every other figure comes from the --runs runs.

Figures: MB/s = volume bytes / 10^6 / seconds, timed until durable (the
engine and Cinder end with os.sync(); the service is timed from the POST to
the moment the job had set the status a client waits for: the worker's end
notification, sent right after; the JSON also has ``observed_seconds``, until
the client had read that status). The client watches the worker's log for the
end notification and reads the status only then: status GETs during a job
would take CPU from the worker. CPU = CPU seconds of the measured process, all
threads. Peak RSS (MiB = 2^20 bytes) of a fresh process per measurement
(interpreter included), or the service worker's VmHWM reset before each job.
Stored = bytes the backup added to its repository, metadata included, in MB.

Machine limits are measured in the same run, and every engine figure gets a
fraction of the tightest bound for the work it had to do; tools/bench_limits.py
explains the model. --json FILE writes every raw measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from typing import Any

TOOLS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)

import bench_limits as limits_mod  # noqa: E402
import bench_report as report  # noqa: E402
import bench_volumes as vols  # noqa: E402
from bench_runners import (  # noqa: E402
    BenchError,
    CinderBackend,
    EngineBackend,
    ServiceBackend,
)

GiB, MiB = vols.GiB, vols.MiB
INCREMENTALS = 3


def full_label(codec: str) -> str:
    return "full backup, %s" % codec


def inc_label(k: int) -> str:
    return "incremental %d (1%%)" % k


RESTORE_NEW = "restore chain -> new volume"
RESTORE_OLD = "restore chain -> existing vol"
SPARSE_FULL = "sparse: full backup"
SPARSE_RESTORE = "sparse: restore -> new volume"


class Bench:
    """The state of one benchmark run: volumes, limits, measurements, failures."""

    def __init__(self, args: argparse.Namespace, workdir: str) -> None:
        self.args, self.workdir = args, workdir
        self.records: list[dict] = []
        self.errors: list[str] = []
        self.ids = random.Random("%d-ids" % args.seed)
        self.chain_codec = args.codecs[0]
        self.versions: list[vols.VolumeStats] = []
        self.sparse: vols.VolumeStats | None = None
        self.limits: dict = {}

    def log(self, text: str) -> None:
        if self.args.verbose:
            print(text, flush=True)

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.ids.getrandbits(128), version=4))

    # -- volumes and limits ------------------------------------------------------------

    def build_volumes(self) -> None:
        a = self.args
        block = a.sha_block_size
        path = os.path.join(self.workdir, "volume-1")
        extents = vols.build_main(path, a.seed, a.size, a.span)
        kinds = vols.block_kinds(extents, a.size, block)
        stats = vols.scan(path, block, kinds)
        for e in extents:
            stats.extent_bytes[e.kind] = stats.extent_bytes.get(e.kind, 0) + e.length
        self.versions = [stats]
        for k in range(1, INCREMENTALS + 1):
            path = os.path.join(self.workdir, "volume-%d" % (k + 1))
            changed = vols.build_version(self.versions[-1].path, path, a.seed, k,
                                         block=block, span=a.span)
            kinds = bytearray(kinds)
            for index, kind in changed.items():
                kinds[index] = kind
            stats = vols.scan(path, block, kinds)
            stats.changed = sorted(changed)
            stats.changed_blocks = len(changed)
            stats.changed_text_blocks = sum(1 for v in changed.values() if v == vols.TEXT)
            self.versions.append(stats)
        if a.sparse_size:
            path = os.path.join(self.workdir, "sparse")
            extents = vols.build_sparse(path, a.seed, a.sparse_size, a.sparse_data)
            self.sparse = vols.scan(path, block,
                                    vols.block_kinds(extents, a.sparse_size, block))

    def measure_limits(self) -> None:
        a, main = self.args, self.versions[0]
        lim: dict[str, Any] = {"sha256": limits_mod.sha256_rate(a.limit_sample),
                               "sha256_engine": limits_mod.engine_sha256_rate(a.limit_sample)}
        text = vols.sample(main.path, main.kinds, {vols.TEXT}, a.limit_sample // 2)
        mix = vols.sample(main.path, main.kinds, {vols.TEXT, vols.RANDOM}, a.limit_sample // 2)
        lim["codecs"] = {}
        for codec in a.codecs:
            lim["codecs"][codec] = {}
            for name, pieces in (("text", text), ("mix", mix)):
                comp, decomp, ratio = limits_mod.codec_rates(codec, pieces)
                lim["codecs"][codec][name] = dict(compress=comp, decompress=decomp, ratio=ratio)
        with open(main.path, "rb") as f:
            regions = vols.data_regions(f.fileno(), main.size)
        lim["read"] = limits_mod.read_rate(main.path, regions)
        lim.update(limits_mod.disk_rates(self.workdir, a.write_sample))
        self.limits = lim

    # -- recording -----------------------------------------------------------------------

    def record(self, who: str, label: str, run: int, size: int, out: dict, **extra: Any) -> dict:
        rec = dict(out, who=who, op=label, run=run, size=size, **extra)
        if run >= self.args.runs:
            rec["pair_only"] = True     # an extra engine/service pair (--extra-pairs)
        self.records.append(rec)
        self.log("  run %d %-7s %-30s %7.2f s %8.1f MB/s  RSS %5.0f MiB  stored %s" % (
            run, who, label, rec["seconds"], size / 1e6 / rec["seconds"], rec["rss_mib"],
            report.mb(rec.get("stored"))))
        return rec

    def check(self, who: str, label: str, target: str, expect: vols.VolumeStats) -> dict:
        """Byte-identity and allocation of a restored volume; a mismatch fails the run."""
        got = vols.scan(target, self.args.sha_block_size)
        ok = got.digest == expect.digest and got.size == expect.size
        if not ok:
            self.errors.append("%s %s: restored volume differs from its source" % (who, label))
        return dict(identical=ok, allocated=vols.allocated_bytes(target),
                    data=expect.nonzero_bytes)

    def engine_bound(self, rec: dict, codec: str, **work: int) -> None:
        b = limits_mod.bound(self.limits, codec, **work)
        rec["bound"] = b
        rec["fraction"] = b["seconds"] / rec["seconds"]
        # The same bound with the engine's own (faster) hashing as the limit.
        tighter = limits_mod.bound(self.limits, codec, sha256="sha256_engine", **work)
        rec["fraction_engine_sha"] = tighter["seconds"] / rec["seconds"]

    # -- scenarios -------------------------------------------------------------------------

    def new_target(self, size: int) -> str:
        path = os.path.join(self.workdir, "target")
        with open(path, "wb") as f:
            f.truncate(size)
        return path

    def main_block(self, backend, codec: str, run: int) -> None:
        """Full backup with ``codec``; for the chain codec also incrementals and restores.

        The volume is one file that changes in place between backups (Cinder's
        harness, like Cinder, knows a volume by its path), as the versions did.
        """
        v = self.versions
        who, size = backend.who, v[0].size
        engine = who == "engine"
        volume = os.path.join(self.workdir, "volume-%s" % who)
        vols.copy_sparse(v[0].path, volume)
        backend.begin("%s-%d" % (codec, run), codec)
        try:
            ids = [self.new_id() for _ in v]
            stored = []
            rec = self.record(who, full_label(codec), run, size,
                              backend.backup(volume, ids[0], None), codec=codec)
            stored.append(rec["stored"])
            if engine:
                self.engine_bound(rec, codec, hashed=v[0].nonzero_bytes,
                                  compressed=v[0].text_bytes, read=v[0].data_bytes,
                                  written=rec["stored"])
            if codec != self.chain_codec:
                return
            for k in range(1, INCREMENTALS + 1):
                vols.apply_changes(v[k].path, volume, v[k].changed, self.args.sha_block_size)
                rec = self.record(who, inc_label(k), run, size,
                                  backend.backup(volume, ids[k], ids[k - 1]), codec=codec)
                stored.append(rec["stored"])
                if engine:
                    self.engine_bound(rec, codec, hashed=v[k].nonzero_bytes,
                                      compressed=v[k].changed_text_bytes,
                                      read=v[k].data_bytes, written=rec["stored"])
            last = v[INCREMENTALS]
            for label, new in ((RESTORE_NEW, True), (RESTORE_OLD, False)):
                if new:
                    target = self.new_target(size)
                else:
                    target = os.path.join(self.workdir, "target")
                    vols.copy_sparse(v[0].path, target)
                cold = limits_mod.uncached_bytes(backend.repo) if engine else 0
                out = backend.restore(ids, target, new)
                rec = self.record(who, label, run, size, out, codec=codec,
                                  **self.check(who, label, target, last))
                os.unlink(target)
                if engine:
                    decompressed = v[0].text_bytes + sum(x.changed_text_bytes for x in v[1:])
                    self.engine_bound(rec, codec, decompressed=decompressed,
                                      read=sum(stored), read_from_disk=cold,
                                      written=last.nonzero_bytes)
        finally:
            backend.end()
            os.unlink(volume)

    def sparse_block(self, backend, run: int) -> None:
        s, codec = self.sparse, self.chain_codec
        assert s is not None
        # A fresh copy, as the service gets: the page cache holds it, as it holds
        # the main volume's copy. The file built at the start may have been pushed
        # out of the cache by the runs since (Cinder's restores write 16 GiB).
        volume = os.path.join(self.workdir, "sparse-%s" % backend.who)
        vols.copy_sparse(s.path, volume)
        backend.begin("sparse-%d" % run, codec)
        try:
            ids = [self.new_id()]
            rec = self.record(backend.who, SPARSE_FULL, run, s.size,
                              backend.backup(volume, ids[0], None), codec=codec,
                              data=s.nonzero_bytes)
            stored = rec["stored"]
            if backend.who == "engine":
                self.engine_bound(rec, codec, hashed=s.nonzero_bytes, compressed=s.text_bytes,
                                  read=s.data_bytes, written=stored)
            target = self.new_target(s.size)
            engine = backend.who == "engine"
            cold = limits_mod.uncached_bytes(backend.repo) if engine else 0
            out = backend.restore(ids, target, True)
            rec = self.record(backend.who, SPARSE_RESTORE, run, s.size, out, codec=codec,
                              **self.check(backend.who, SPARSE_RESTORE, target, s))
            os.unlink(target)
            if engine:
                self.engine_bound(rec, codec, decompressed=s.text_bytes, read=stored,
                                  read_from_disk=cold, written=s.nonzero_bytes)
        finally:
            backend.end()
            os.unlink(volume)

    def start_service(self, codec: str) -> ServiceBackend:
        a = self.args
        home = os.path.join(self.workdir, "service-%s" % codec)
        svc = ServiceBackend(home, codec, chunk_size=a.chunk_size,
                             sha_block_size=a.sha_block_size, format_version=a.format_version)
        self.log("  starting the service (%s)" % codec)
        try:
            svc.start()
        except BaseException:
            shutil.rmtree(home, ignore_errors=True)
            raise
        return svc

    def stop_service(self, svc: ServiceBackend) -> None:
        svc.stop()
        shutil.rmtree(svc.workdir, ignore_errors=True)

    def service_main(self, svc: ServiceBackend, codec: str, run: int) -> None:
        """The main scenarios through the running service: a volume adopted and changed
        in place, a new volume and an existing one (adopted) as restore targets."""
        v, bs = self.versions, self.args.sha_block_size
        size = v[0].size
        vol = os.path.join(svc.workdir, "vol-%d" % run)
        vols.copy_sparse(v[0].path, vol)
        vid = svc.manage(vol)
        out = svc.backup(vid, False)
        self.record("service", full_label(codec), run, size, out, codec=codec)
        if codec != self.chain_codec:
            return
        for k in range(1, INCREMENTALS + 1):
            vols.apply_changes(v[k].path, vol, v[k].changed, bs)
            out = svc.backup(vid, True)
            self.record("service", inc_label(k), run, size, out, codec=codec)
        last_id = out["backup_id"]
        out = svc.restore(last_id, None)
        self.record("service", RESTORE_NEW, run, size, out, codec=codec,
                    **self.check("service", RESTORE_NEW, out["volume_path"], v[INCREMENTALS]))
        os.unlink(out["volume_path"])
        old = os.path.join(svc.workdir, "old-%d" % run)
        vols.copy_sparse(v[0].path, old)
        out = svc.restore(last_id, svc.manage(old))
        self.record("service", RESTORE_OLD, run, size, out, codec=codec,
                    **self.check("service", RESTORE_OLD, old, v[INCREMENTALS]))

    def service_sparse(self, svc: ServiceBackend, run: int) -> None:
        s = self.sparse
        assert s is not None
        vol = os.path.join(svc.workdir, "sparse-%d" % run)
        vols.copy_sparse(s.path, vol)
        out = svc.backup(svc.manage(vol), False)
        self.record("service", SPARSE_FULL, run, s.size, out, codec=self.chain_codec,
                    data=s.nonzero_bytes)
        out = svc.restore(out["backup_id"], None)
        self.record("service", SPARSE_RESTORE, run, s.size, out, codec=self.chain_codec,
                    **self.check("service", SPARSE_RESTORE, out["volume_path"], s))
        os.unlink(out["volume_path"])

    def guarded(self, what: str, fn, *args: Any) -> None:
        """Run one block; a failure is reported (the run will fail), the others still run."""
        try:
            fn(*args)
        except BenchError as exc:
            self.errors.append("%s: %s" % (what, exc))
            print("ERROR in %s: %s" % (what, exc), file=sys.stderr, flush=True)
        except Exception as exc:   # e.g. the service refusing a job: keep the traceback
            self.errors.append("%s: %s: %s" % (what, type(exc).__name__, exc))
            print("ERROR in %s:" % what, file=sys.stderr, flush=True)
            traceback.print_exc()

    def run(self, cinder: CinderBackend | None) -> None:
        """Per codec (one service each) and run: engine, the service, then Cinder, back
        to back, so that the three see the same machine (and the same engine code).

        The service runs right after the engine, not after Cinder: Cinder's
        process frees 1-4 GiB when it ends, and on a VM whose host takes freed
        memory back, whatever runs next pays to touch those pages again.
        """
        a = self.args
        engine = EngineBackend(self.workdir, chunk_size=a.chunk_size,
                               sha_block_size=a.sha_block_size, workers=a.workers,
                               format_version=a.format_version)
        self.idle_rss = engine.idle_rss_mib()
        backends = [engine] + ([cinder] if cinder else [])
        for codec in a.codecs:
            svc = None
            if not a.skip_service:
                try:
                    svc = self.start_service(codec)
                except Exception as exc:
                    self.errors.append("service %s: %s: %s" % (codec, type(exc).__name__, exc))
                    traceback.print_exc()
            try:
                for run in range(a.runs):
                    for b in backends:
                        self.log("%s, %s, run %d" % (b.who, codec, run))
                        self.guarded("%s %s run %d" % (b.who, codec, run),
                                     self.main_block, b, codec, run)
                        if b is engine and svc is not None:
                            self.log("service, %s, run %d" % (codec, run))
                            self.guarded("service %s run %d" % (codec, run),
                                         self.service_main, svc, codec, run)
                if svc is not None:
                    self.extra_pairs(engine, svc, codec, sparse=False)
                if self.sparse is None or codec != self.chain_codec:
                    continue
                for run in range(a.runs):
                    for b in backends:
                        self.log("%s, sparse, run %d" % (b.who, run))
                        self.guarded("%s sparse run %d" % (b.who, run), self.sparse_block, b,
                                     run)
                        if b is engine and svc is not None:
                            self.log("service, sparse, run %d" % run)
                            self.guarded("service sparse run %d" % run, self.service_sparse,
                                         svc, run)
                if svc is not None:
                    self.extra_pairs(engine, svc, codec, sparse=True)
            finally:
                if svc is not None:
                    self.stop_service(svc)

    def extra_pairs(self, engine, svc, codec: str, *, sparse: bool) -> None:
        """More engine/service pairs, for the service's ratio to the engine only.

        Its target is 10 %, and the operations last 0.3-0.5 s on a machine
        where the same one moves by 30-60 % from run to run: three pairs cannot
        tell. These pairs need no Cinder run between them, so they are cheap;
        the engine's own figures still come from the regular runs only, which
        Cinder's alternate with.
        """
        a = self.args
        for run in range(a.runs, a.runs + a.extra_pairs):
            what = "sparse" if sparse else codec
            self.log("engine and service, %s, extra pair %d" % (what, run))
            if sparse:
                self.guarded("engine sparse pair %d" % run, self.sparse_block, engine, run)
                self.guarded("service sparse pair %d" % run, self.service_sparse, svc, run)
            else:
                self.guarded("engine %s pair %d" % (codec, run), self.main_block, engine,
                             codec, run)
                self.guarded("service %s pair %d" % (codec, run), self.service_main, svc,
                             codec, run)


# -- command line ---------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=limits_mod.__doc__)
    ap.add_argument("--cinder-venv", metavar="DIR",
                    help="virtualenv with Cinder installed (default: .venv-cinder if present)")
    ap.add_argument("--create-cinder-venv", action="store_true",
                    help="create the Cinder virtualenv (tools/cinder-venv.sh) if missing")
    ap.add_argument("--no-cinder", action="store_true", help="do not run Cinder")
    ap.add_argument("--skip-service", action="store_true",
                    help="do not run the service (API, RabbitMQ, worker)")
    ap.add_argument("--size-gib", type=int, default=1, help="main volume size (default 1)")
    ap.add_argument("--runs", type=int, default=3, help="runs per figure, medians (default 3)")
    ap.add_argument("--extra-pairs", type=int,
                    help="engine/service pairs beyond --runs, for the service's ratio to "
                         "the engine only (default 4; 1 with --quick)")
    ap.add_argument("--codecs", default="zlib,zstd,none",
                    help="full-backup codecs; the first one is also used for the "
                         "incrementals, restores and the sparse case (default zlib,zstd,none)")
    ap.add_argument("--sparse-size-gib", type=int, default=16,
                    help="sparse volume size, 0 to skip (default 16)")
    ap.add_argument("--sparse-data-mib", type=int, default=256,
                    help="random data in the sparse volume (default 256)")
    ap.add_argument("--chunk-size", type=int, default=1999994880,
                    help="backup_file_size (default Cinder's, 1999994880)")
    ap.add_argument("--sha-block-size", type=int, default=32768)
    ap.add_argument("--workers", type=int, default=2, help="engine worker threads (default 2)")
    ap.add_argument("--format-version",
                    help="backup format of the engine and the service (default: theirs)")
    ap.add_argument("--seed", type=int, default=1, help="volume generator seed (default 1)")
    ap.add_argument("--workdir", help="parent of the temporary directory (its file system "
                                      "holds the volumes and repositories)")
    ap.add_argument("--json", metavar="FILE", help="write every raw measurement here")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 64 MiB of mixed data in a 1 GiB volume, a 1 GiB sparse "
                         "volume with 16 MiB of data, 1 run, no Cinder unless asked for")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each measurement")
    a = ap.parse_args(argv)
    a.codecs = [c.strip() for c in a.codecs.split(",") if c.strip()]
    a.size, a.span = a.size_gib * GiB, None
    a.sparse_size, a.sparse_data = a.sparse_size_gib * GiB, a.sparse_data_mib * MiB
    a.limit_sample, a.write_sample = 256 * MiB, 512 * MiB
    if a.extra_pairs is None:
        a.extra_pairs = 1 if a.quick else 4
    if a.quick:
        a.size, a.span, a.runs = GiB, 64 * MiB, 1
        a.sparse_size, a.sparse_data = (GiB, 16 * MiB) if a.sparse_size else (0, 0)
        a.limit_sample, a.write_sample = 32 * MiB, 64 * MiB
    if a.quick and not (a.cinder_venv or a.create_cinder_venv):
        a.no_cinder = True
    return a


def cinder_backend(a: argparse.Namespace, workdir: str) -> CinderBackend | None:
    if a.no_cinder:
        return None
    venv = a.cinder_venv or os.path.join(ROOT, ".venv-cinder")
    python = os.path.join(venv, "bin", "python")
    if a.create_cinder_venv and not os.path.exists(python):
        print("creating the Cinder virtualenv in %s (tools/cinder-venv.sh)" % venv, flush=True)
        subprocess.run([os.path.join(TOOLS, "cinder-venv.sh"), venv], check=True)
    if not os.path.exists(python):
        if a.cinder_venv:
            raise SystemExit("%s has no bin/python; use --create-cinder-venv" % venv)
        print("no Cinder virtualenv (%s): Cinder is not measured; --create-cinder-venv "
              "makes one" % venv, flush=True)
        return None
    return CinderBackend(workdir, venv, chunk_size=a.chunk_size,
                         sha_block_size=a.sha_block_size)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    started = time.perf_counter()
    workdir = tempfile.mkdtemp(prefix="backupsvc-bench-", dir=a.workdir)
    try:
        bench = Bench(a, workdir)
        code = report.code_state(ROOT)     # every process loads the code as it is then
        cinder = cinder_backend(a, workdir)
        print("building volumes (seed %d) in %s" % (a.seed, workdir), flush=True)
        bench.build_volumes()
        print("measuring machine limits", flush=True)
        bench.measure_limits()
        bench.run(cinder)
        machine = report.machine(ROOT, workdir, cinder.version if cinder else None, code)
        if report.code_state(ROOT) != code:
            machine["code_changed_to"] = report.code_state(ROOT)
        rows = report.summarize(bench)
        report.print_all(bench, rows, machine, time.perf_counter() - started)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(report.raw(bench, rows, machine), f, indent=1, default=str)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if bench.errors:
        print("\nFAILED:\n  " + "\n  ".join(e.splitlines()[0] for e in bench.errors))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

