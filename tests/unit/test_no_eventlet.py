"""backupsvc runs on native threads: its processes never load eventlet.

Each case runs in a fresh interpreter, as the commands do: this test process
imported backupsvc long ago.
"""

import subprocess
import sys

import pytest


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("module", ["backupsvc.worker.server", "backupsvc.api.app",
                                    "backupsvc.cmd.manage", "backupsvc.chunking.engine"])
def test_importing_a_process_entry_loads_no_eventlet(module):
    done = _run("import sys, %s\n"
                "print(sorted(m for m, v in sys.modules.items()"
                " if m.startswith('eventlet') and v is not None))" % module)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
    # futurist's deprecation warning came with the import.
    assert "Eventlet is deprecated" not in done.stderr


def test_an_eventlet_imported_first_is_left_alone():
    # Whoever imported eventlet before us keeps it (and oslo.service's check
    # in the commands then decides).
    done = _run("import eventlet, sys, backupsvc\n"
                "print(sys.modules['eventlet'] is eventlet)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
