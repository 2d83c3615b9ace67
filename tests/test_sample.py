import pytest
import torch

from cinerecon.data.sample import CineSample, SampleMeta, collate
from cinerecon.errors import DataError


def _parts(c=3, t=4, h=6, w=5):
    return (torch.randn(c, t, h, w, dtype=torch.complex64), torch.ones(1, 1, 1, w),
            torch.randn(c, 1, h, w, dtype=torch.complex64), torch.randn(t, h, w, dtype=torch.complex64))


def test_valid_sample_and_collate():
    k, m, s, x = _parts()
    a = CineSample(k, m, s, x, SampleMeta(name="a"))
    b = CineSample(k, torch.ones(1, 4, 1, 5), s, x, SampleMeta(name="b"))
    batch = collate([a, b])
    assert batch.kspace.shape == (2, 3, 4, 6, 5)
    assert batch.mask.shape == (2, 1, 4, 1, 5)
    assert batch.target.shape == (2, 4, 6, 5)


@pytest.mark.parametrize("bad, msg", [
    (lambda k, m, s, x: (k, m, s[:2], x), "coil count mismatch"),
    (lambda k, m, s, x: (k[0], m, s, x), "kspace must be complex"),
    (lambda k, m, s, x: (k, torch.ones(1, 1, 1, 7), s, x), "not broadcastable"),
    (lambda k, m, s, x: (k, m, s, x[:, :3]), "target shape"),
    (lambda k, m, s, x: (k.index_put((torch.tensor([0]),), torch.tensor(float("nan"), dtype=torch.complex64)), m, s, x),
     "NaN"),
])
def test_bad_samples_name_the_source(bad, msg):
    parts = bad(*_parts())
    with pytest.raises(DataError, match=msg) as e:
        CineSample(*parts, SampleMeta(source="subj7.h5"))
    assert "subj7.h5" in str(e.value)


def test_collate_refuses_mixed_shapes():
    k, m, s, x = _parts()
    k2, m2, s2, x2 = _parts(w=7)
    with pytest.raises(DataError, match="different"):
        collate([CineSample(k, m, s, x), CineSample(k2, m2, s2, x2)])
