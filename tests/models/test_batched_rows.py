"""The batched kernels' row loader: its numpy body and its compiled form agree on both weight layouts."""

import numpy as np

from sonolatent.models.batched import _load_row
from sonolatent.models.compiled import _compiled


@_compiled()
def _compiled_row(w, r, bits):
    _load_row(w, r, bits)


def test_row_loader_numpy_and_compiled_agree():
    rng = np.random.default_rng(0)
    f32 = rng.standard_normal((3, 7)).astype(np.float32)
    bf16 = (f32.view(np.uint32) >> 16).astype(np.uint16)
    for w, want in ((f32, f32[1]), (bf16, (bf16[1].astype(np.uint32) << 16).view(np.float32))):
        a, b = np.zeros(7, np.uint32), np.zeros(7, np.uint32)
        _load_row(w, 1, a)
        _compiled_row(w, 1, b)
        assert np.array_equal(a, b) and np.array_equal(a.view(np.float32), want)
