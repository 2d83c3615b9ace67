"""Simulated datasets never store fully sampled (or empty) masks under an accelerated name.

At ``--size 8 8`` the default 8 ACS lines cover the whole width, so the masks R04 ... R24 used
to sample all 8 of 8 lines: ``reconstruct`` reported R24 for fully sampled data and
``evaluate`` wrote PSNR inf. Such accelerations are refused in one line before anything is
written (not dropped: a dataset never lacks a mask that was asked for).
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from cinerecon.data.simulate import SimConfig, check_accels, simulate_dataset
from cinerecon.errors import ConfigError
from conftest import run_cli


def test_cli_refuses_masks_whose_acs_covers_the_width(tmp_path, capsys):
    out = tmp_path / "out"
    rc, err = run_cli(["simulate", str(out), "--subjects", "1", "--frames", "4", "--coils", "1",
                       "--size", "8", "8"], capsys)
    assert rc not in (0, None)
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in ("8 8", "R04", "R24", "8 ACS", "W = 8"):
        assert fragment in lines[0], (fragment, lines[0])
    assert not out.exists()


def test_api_refuses_before_writing(tmp_path):
    with pytest.raises(ConfigError, match="R04"):
        simulate_dataset(tmp_path / "out", 1, SimConfig(frames=2, coils=1, size=(8, 8)), accels=(4,))
    assert not (tmp_path / "out").exists()


def test_offset_dependent_full_sampling_is_refused():
    # W = 10 with 8 ACS lines leaves lines 0 and 9: R = 3 with offset 0 samples both
    with pytest.raises(ConfigError, match="R03"):
        check_accels((8, 10), (3,), 8)
    check_accels((8, 10), (4, 8), 8)  # no offset samples both 0 and 9


def test_masks_without_any_line_are_refused():
    with pytest.raises(ConfigError, match="R24"):
        check_accels((8, 12), (4, 24), 0)
    check_accels((8, 12), (4, 24), 4)  # the ACS block is always sampled


def test_r1_is_an_honest_fully_sampled_mask():
    check_accels((8, 8), (1,), 8)


def test_small_sizes_that_can_be_undersampled_still_work(tmp_path, capsys):
    out = tmp_path / "out"
    rc, err = run_cli(["simulate", str(out), "--subjects", "1", "--frames", "2", "--coils", "1",
                       "--size", "16", "16"], capsys)
    assert rc == 0, err
    with h5py.File(out / "sim0000_sax.h5", "r") as f:
        assert sorted(f["masks"]) == ["R04", "R08", "R10", "R24"]
        for key in f["masks"]:
            m = np.asarray(f["masks"][key])
            assert m.any() and not m.all(), key


def test_huge_acceleration_is_checked_quickly():
    with pytest.raises(ConfigError, match="no phase-encode line"):
        check_accels((16, 16), (10**9,), 0)
    check_accels((16, 16), (10**9,), 8)
