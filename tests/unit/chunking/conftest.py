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
            def sha256_digests(buf, start, end, size):
                # The helper hashes the blocks of the range it is given that
                # are not all zeros (those it recognises with a memcmp).
                for at in range(start, end, size):
                    block = bytes(memoryview(buf)[at:min(at + size, end)])
                    if any(block):
                        hashed.append(block)
                return real_native.sha256_digests(buf, start, end, size)

            differing_blocks = staticmethod(real_native.differing_blocks)

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
