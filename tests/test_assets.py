"""HDF5StreamWriter's file holds exactly the rows written, over dtypes, row shapes, page sizes and chunk lengths."""

from __future__ import annotations

import h5py
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labctl.core.assets import FieldSpec, HDF5StreamWriter

DTYPES = ("float64", "float32", "int64", "int32", "uint8", "bool")


@st.composite
def streams(draw):
    """Fields (dtype, row shape) and the pages written into them (some empty, some longer than a chunk)."""
    names = draw(st.lists(st.sampled_from("abcdef"), min_size=1, max_size=4, unique=True))
    fields = {name: FieldSpec(dtype=draw(st.sampled_from(DTYPES)), shape=draw(st.sampled_from([(), (2,), (5,)])))
              for name in names}
    sizes = draw(st.lists(st.integers(0, 300), min_size=1, max_size=6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pages = [{name: _values(rng, spec, rows) for name, spec in fields.items()} for rows in sizes]
    return fields, pages, draw(st.integers(1, 128))


def _values(rng, spec: FieldSpec, rows: int) -> np.ndarray:
    values = rng.normal(0, 100, (rows, *spec.shape))
    if spec.shape:  # a strided view, as a page cut from a larger array can be
        values = np.asfortranarray(values)
    return values > 0 if spec.dtype == "bool" else values


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=streams())
def test_file_holds_the_rows_written(tmp_path, stream):
    fields, pages, chunk_rows = stream
    writer = HDF5StreamWriter(tmp_path, "s", fields, chunk_rows=chunk_rows)
    path = writer.open("run")
    try:
        written = [writer.write(page) for page in pages]
        announced = writer.announce()
    finally:
        writer.close()
    total = sum(len(next(iter(page.values()))) for page in pages)
    assert sum(written) == total
    assert all(doc["indices"] == {"start": 0, "stop": total} for name, doc in announced if name == "stream_datum")
    with h5py.File(path, "r") as file:
        for name, spec in fields.items():
            expected = np.concatenate([page[name] for page in pages]).astype(spec.dtype)
            stored = file[f"/data/{name}"][()]
            assert stored.dtype == np.dtype(spec.dtype) and stored.shape == (total, *spec.shape)
            np.testing.assert_array_equal(stored, expected)
