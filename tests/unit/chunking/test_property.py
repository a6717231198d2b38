"""Property: every backup of a random chain restores byte-identical."""

import pathlib
import random
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backupsvc.chunking.engine import EngineParams
from tests.unit.chunking import Chain

mutation = st.tuples(
    st.sampled_from(["random", "zero", "text", "grow"]),
    st.floats(0, 1),                 # where, as a fraction of the size
    st.integers(1, 6000),            # how many bytes
)


@st.composite
def scenarios(draw):
    block = draw(st.sampled_from([512, 1024, 2048]))
    return dict(
        block=block,
        chunk=block * draw(st.integers(1, 6)),
        piece=block * draw(st.integers(1, 5)),
        size=draw(st.integers(0, 24 * block + block - 1)),
        compression=draw(st.sampled_from(["zlib", "bz2", "zstd", "none"])),
        skip_zero=draw(st.booleans()),
        workers=draw(st.integers(1, 3)),
        seed=draw(st.integers(0, 2**32)),
        steps=draw(st.lists(st.lists(mutation, max_size=4), min_size=0, max_size=3)),
    )


def mutate(image: bytearray, changes, rng: random.Random) -> bytearray:
    image = bytearray(image)
    for kind, where, length in changes:
        if kind == "grow":
            image += rng.randbytes(length) if rng.random() < 0.5 else bytes(length)
            continue
        if not image:
            continue
        off = int(where * (len(image) - 1))
        n = len(image[off:off + length])
        if kind == "random":
            image[off:off + n] = rng.randbytes(n)
        elif kind == "zero":
            image[off:off + n] = bytes(n)
        else:
            image[off:off + n] = (b"words %d " % rng.randrange(9) * n)[:n]
    return image


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_random_chains_restore_identical(sc):
    rng = random.Random(sc["seed"])
    params = EngineParams(chunk_size=sc["chunk"], sha_block_size=sc["block"],
                          piece_size=sc["piece"], compression=sc["compression"],
                          skip_zero_blocks=sc["skip_zero"], workers=sc["workers"])
    with tempfile.TemporaryDirectory() as tmp:
        chain = Chain(pathlib.Path(tmp), params)
        image = bytearray(rng.randbytes(sc["size"]))
        # Start with holes so that zero handling is exercised from the full backup on.
        for _ in range(3):
            off = rng.randrange(sc["size"] + 1)
            n = min(rng.randrange(4000), sc["size"] - off)
            image[off:off + n] = bytes(n)
        chain.backup(image)
        for changes in sc["steps"]:
            image = mutate(image, changes, rng)
            chain.backup(image)
        for i, expected in enumerate(chain.images):
            assert chain.restore(i, zeroed=True)[0] == expected
            assert chain.restore(i, zeroed=False, junk_seed=i)[0] == expected
