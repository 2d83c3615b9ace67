import numpy as np
import pytest
import torch

from cinerecon.errors import ConfigError
from cinerecon.masks import (PAPER_ACCELS, MaskSpec, acs_lines, effective_acceleration, equispaced,
                             make_mask)


@pytest.mark.parametrize("accel", PAPER_ACCELS)
@pytest.mark.parametrize("width", [246, 204, 448])
def test_cmrxrecon_masks_statistics(accel, width):
    m = make_mask(MaskSpec("equispaced_acs", accel, 24), frames=12, width=width, seed=3)
    assert m.shape == (1, 1, 1, width)
    line = m.flatten().numpy().astype(bool)
    centre = np.arange(width // 2 - 12, width // 2 + 12)
    assert line[centre].all()
    assert acs_lines(m) >= 24
    # outside the ACS block the lines are exactly equispaced with spacing R
    out = np.flatnonzero(line & ~np.isin(np.arange(width), centre))
    assert set(np.diff(out)) <= {accel} | {accel * k for k in range(2, 30)}
    n_expected = len(set(range(out[0] % accel, width, accel)) | set(centre))
    assert int(line.sum()) == n_expected
    eff = effective_acceleration(m)
    assert eff == pytest.approx(width / n_expected)
    assert eff < accel  # the ACS lowers the effective acceleration


def test_uniform_has_no_acs_and_time_varying_shifts():
    u = make_mask(MaskSpec("uniform", 4), frames=8, width=64, seed=0)
    assert effective_acceleration(u) == pytest.approx(4.0)
    assert acs_lines(u) <= 1
    tv = make_mask(MaskSpec("time_varying", 4), frames=8, width=64, seed=0)
    assert tv.shape == (1, 8, 1, 64)
    # each frame is uniform at R=4 and the union over 4 consecutive frames covers all lines
    assert torch.all(tv.sum(-1) == 16)
    assert torch.all(tv[0, :4].amax(0) == 1)
    assert not torch.equal(tv[0, 0], tv[0, 1])


def test_random_acs_per_frame_and_seeding_leaves_global_rng():
    state_np = np.random.get_state()[1].copy()
    state_t = torch.random.get_rng_state().clone()
    a = make_mask(MaskSpec("random_acs", 8, 8), frames=5, width=128, seed=7)
    b = make_mask(MaskSpec("random_acs", 8, 8), frames=5, width=128, seed=7)
    c = make_mask(MaskSpec("random_acs", 8, 8), frames=5, width=128, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0, 0], a[0, 1])
    assert torch.all(a.sum(-1) == 8 + 15)  # the ACS block plus round((128 - 8) / 8) random lines
    assert np.array_equal(np.random.get_state()[1], state_np)
    assert torch.equal(torch.random.get_rng_state(), state_t)


@pytest.mark.parametrize("width", [96, 128, 192, 246])
def test_random_acs_has_random_lines_beyond_a_wide_acs_block(width):
    """R = 8 with 24 ACS: W / R <= 24 at these widths, and the random lines must still be there."""
    m = make_mask(MaskSpec("random_acs", 8, 24), frames=12, width=width, seed=0)[0, :, 0]  # (T, W)
    eq = make_mask(MaskSpec("equispaced_acs", 8, 24), frames=1, width=width, seed=0)
    assert torch.all(m.sum(-1) == 24 + round((width - 24) / 8))
    assert abs(int(m[0].sum()) - int(eq.sum())) <= 2  # as many lines as the equispaced mask
    lo = width // 2 - 12
    assert torch.all(m[:, lo:lo + 24] == 1)
    assert len({tuple(f.tolist()) for f in m}) > 6  # the random lines differ from frame to frame


def test_bad_mask_arguments():
    with pytest.raises(ConfigError):
        MaskSpec("nope", 4)
    with pytest.raises(ConfigError):
        equispaced(32, 0)
    with pytest.raises(ConfigError):
        equispaced(32, 4, acs=40)


@pytest.mark.parametrize("kind", ["equispaced_acs", "uniform", "time_varying", "time_varying_acs"])
@pytest.mark.parametrize("accel", [1.5, 7.5, float("inf"), float("nan")])
def test_line_patterns_refuse_fractional_or_infinite_r(kind, accel):
    """Every R-th line needs a whole R: 1.5 must not silently become R = 1 (all lines), 7.5 R = 7."""
    with pytest.raises(ConfigError, match="accel must be"):
        MaskSpec(kind, accel, 4)


def test_random_acs_keeps_fractional_r_but_not_infinite():
    m = make_mask(MaskSpec("random_acs", 2.5, 4), 3, 40)
    assert 12 <= int(m[0, 0].sum()) <= 20  # about 40 / 2.5 lines
    with pytest.raises(ConfigError, match="finite"):
        MaskSpec("random_acs", float("inf"), 4)


def test_regular_lines_tells_grids_from_random_lines():
    """Equispaced grids (any offset, width, ACS, shifting per frame) are regular; random lines are not."""
    from cinerecon.masks import regular_lines

    for seed in range(8):
        for w in (96, 97, 128, 246):
            for spec in (MaskSpec("equispaced_acs", 8, 24), MaskSpec("equispaced_acs", 4, 16), MaskSpec("uniform", 10, 0),
                         MaskSpec("time_varying", 8, 0), MaskSpec("time_varying_acs", 10, 24)):
                assert regular_lines(make_mask(spec, 12, w, seed=seed)), (spec, w, seed)
            assert not regular_lines(make_mask(MaskSpec("random_acs", 8, 24), 12, w, seed=seed))
    # one frame off the grid is enough
    m = make_mask(MaskSpec("equispaced_acs", 8, 24), 12, 128, seed=0).repeat(1, 12, 1, 1)
    m[0, 5, 0, 3] = 1 - m[0, 5, 0, 3]
    assert not regular_lines(m)
    # two random lines beside a small block, moving every frame: too few to show a spacing, and moving
    few = torch.zeros(1, 4, 1, 16)
    few[..., 6:10] = 1
    for t, (a, b) in enumerate(((0, 13), (2, 11), (1, 15), (3, 12))):
        few[0, t, 0, [a, b]] = 1
    assert not regular_lines(few) and regular_lines(few[:, :1])  # the same two lines in every frame: can't tell
