"""Fixtures shared by the engine's tests."""

import hashlib

import pytest

from backupsvc.chunking import blocks


@pytest.fixture(params=["native", "hashlib"])
def hashed_blocks(request, monkeypatch) -> list[bytes]:
    """The blocks that get hashed, by the C helper or by hashlib block by block."""
    hashed: list[bytes] = []
    if request.param == "native":
        real_native = blocks._native
        assert real_native is not None, "the C helper _backupsvc_blocks is not built"

        class CountingNative:
            @staticmethod
            def sha256_blocks(buf, start, end, size):
                shas = real_native.sha256_blocks(buf, start, end, size)
                for i, sha in enumerate(shas):
                    if sha is not None:     # None: found to be zeros, not hashed
                        at = start + i * size
                        hashed.append(bytes(memoryview(buf)[at:min(at + size, end)]))
                return shas

        monkeypatch.setattr(blocks, "_native", CountingNative)
    else:
        real = hashlib.sha256

        class Counting:
            @staticmethod
            def sha256(data=b""):
                hashed.append(bytes(data))
                return real(data)

        monkeypatch.setattr(blocks, "_native", None)
        monkeypatch.setattr(blocks, "hashlib", Counting)
    return hashed
