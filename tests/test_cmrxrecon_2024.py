"""``prepare cmrxrecon`` and ``reconstruct --accel`` on tiny CMRxRecon2024-style trees (k-t masks).

A hand-made 2024 tree (after the user audit's builder): ``FullSample/P001/cine_sax.mat`` (key
``kspace``), ``Mask_Task2/<P>/cine_sax_mask_ktGaussian8.mat`` (key ``mask``, MATLAB (kx, ky, t))
and ``UnderSample_Task2/<P>/cine_sax_kus_ktGaussian8.mat`` (key ``kus``); 2 coils, 4 frames, 16 x 16.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cinerecon.cli import main
from test_cmrxrecon import rand_kspace, write_mat73

KX, KY, T, C = 16, 16, 4, 2


def kt_mask(lines_per_frame: list[list[int]]) -> np.ndarray:
    """MATLAB-order (kx, ky, t) mask sampling the given ky lines in each frame."""
    m = np.zeros((KX, KY, len(lines_per_frame)))
    for t, lines in enumerate(lines_per_frame):
        m[:, lines, t] = 1
    return m


def kt_gaussian(acs: int = 4, seed: int = 0) -> np.ndarray:
    """k-t random lines around ``acs`` central lines, new lines every frame (like ktGaussian)."""
    rng = np.random.default_rng(seed)
    lo = KY // 2 - acs // 2
    outside = [i for i in range(KY) if not lo <= i < lo + acs]
    return kt_mask([list(range(lo, lo + acs)) + list(rng.choice(outside, 2, replace=False)) for _ in range(T)])


NO_CENTRE = kt_mask([[1, 4, 11], [2, 5, 12], [3, 6, 13], [0, 4, 14]])  # ky = 8 never sampled
TOO_LITTLE = kt_mask([[8, 2], [9, 12], [8, 3], [9, 13]])  # frames together: ky 8-9 only (2 < kernel 3)


def tree(root: Path, full_mask: np.ndarray, val_mask: np.ndarray | None = None, kus_for_full: bool = False,
         name: str = "ktGaussian8") -> Path:
    """TrainingSet/P001 fully sampled (+ mask); ValidationSet/P003 undersampled only, when ``val_mask`` is given."""
    cine = root / "MultiCoil" / "Cine"
    k = rand_kspace(KX, KY, C, 1, T, seed=1)
    write_mat73(cine / "TrainingSet" / "FullSample" / "P001" / "cine_sax.mat", {"kspace": k})
    write_mat73(cine / "TrainingSet" / "Mask_Task2" / "P001" / f"cine_sax_mask_{name}.mat", {"mask": full_mask})
    if kus_for_full:
        write_mat73(cine / "TrainingSet" / "UnderSample_Task2" / "P001" / f"cine_sax_kus_{name}.mat",
                    {"kus": k * full_mask[:, :, None, None, :]})
    if val_mask is not None:
        kv = rand_kspace(KX, KY, C, 1, T, seed=3) * val_mask[:, :, None, None, :]
        write_mat73(cine / "ValidationSet" / "UnderSample_Task2" / "P003" / f"cine_sax_kus_{name}.mat", {"kus": kv})
        write_mat73(cine / "ValidationSet" / "Mask_Task2" / "P003" / f"cine_sax_mask_{name}.mat", {"mask": val_mask})
    return root


def prepare(src: Path, dst: Path, *extra: str) -> int:
    return main(["prepare", "cmrxrecon", str(src), str(dst), "--views", "sax", "--acs", "4", *extra])


@pytest.mark.parametrize("mask, missing", [(NO_CENTRE, "no frame samples the central k-space line"),
                                           (TOO_LITTLE, "only 2 contiguous central line(s)")])
def test_kt_mask_without_central_lines_skips_that_file_with_one_line(tmp_path, capsys, mask, missing):
    src = tree(tmp_path / "src", kt_gaussian(), val_mask=mask)
    dst = tmp_path / "dst"
    assert prepare(src, dst, "--quiet") == 0  # the other subjects are converted
    err = capsys.readouterr().err
    line = [x for x in err.splitlines() if "skipped" in x]
    assert len(line) == 1 and "Traceback" not in err  # one line
    assert "ValidationSet/Mask_Task2/P003/cine_sax_mask_ktGaussian8.mat" in line[0]
    assert "'R08_ktGaussian'" in line[0] and "(1, 4, 1, 16)" in line[0] and missing in line[0]
    assert "use maps_from_time_average" not in err
    assert not list(dst.rglob("P003/*.h5")) and list(dst.rglob("P001/*.h5"))  # that file only is left out


def test_reconstruct_no_acs_maps_names_the_file_and_mask(tmp_path, capsys):
    src = tree(tmp_path / "src", NO_CENTRE)  # fully sampled: maps from the full data, prepare is fine
    assert prepare(src, tmp_path / "dst", "--quiet") == 0
    f = tmp_path / "dst" / "TrainingSet" / "P001" / "cine_sax_s00.h5"
    capsys.readouterr()
    assert main(["reconstruct", str(f), "--method", "zero_filled", "--accel", "R08_ktGaussian", "--no-acs-maps",
                 "--out", str(tmp_path / "rec"), "--formats", "h5", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(f) in err and "'masks/R08_ktGaussian'" in err and "(1, 4, 1, 16)" in err
    assert "no frame samples the central k-space line" in err and "use maps_from_time_average" not in err
    assert not (tmp_path / "rec").exists() or not any((tmp_path / "rec").rglob("*.h5"))


def test_radial_mask_of_fully_sampled_subject_is_stored_and_reconstructs(tmp_path, capsys):
    """A ktRadial mask (varies along kx too) is kept as masks/R08_ktRadial (T, H, W) and used by --accel."""
    rad = np.zeros((KX, KY, T))
    rad[KX // 2, :, :] = 1
    rad[:, KY // 2, :] = 1
    rad[6:10, 6:10, :] = 1
    rad[np.arange(KX), np.arange(KY), 1::2] = 1  # a diagonal spoke in odd frames: the mask varies in time
    src = tree(tmp_path / "src", rad, name="ktRadial8")
    assert prepare(src, tmp_path / "dst", "--quiet") == 0
    assert "ktRadial" not in capsys.readouterr().err  # nothing skipped
    f = tmp_path / "dst" / "TrainingSet" / "P001" / "cine_sax_s00.h5"
    import h5py

    with h5py.File(f) as h:  # MATLAB (kx, ky, t) -> ours (T, H = kx, W = ky)
        np.testing.assert_array_equal(h["masks/R08_ktRadial"][()], rad.transpose(2, 0, 1).astype(np.float32))
    assert main(["reconstruct", str(f), "--method", "zero_filled", "--accel", "ktRadial8", "--out",
                 str(tmp_path / "rec"), "--formats", "h5", "--quiet"]) == 0
    from cinerecon.data.h5 import read_h5

    full = read_h5(f)
    with h5py.File(tmp_path / "rec" / "cine_sax_s00_zero_filled_R08_ktRadial.h5") as h:
        recon = torch.from_numpy(h["recon"][()])
    from cinerecon.operators import SenseOp

    mask = torch.from_numpy(rad.transpose(2, 0, 1).astype(np.float32))[None]
    expect = SenseOp(full.maps[None]).reduce(full.kspace[None] * mask)[0]  # S^H F^-1 (mask k)
    torch.testing.assert_close(recon, expect.to(recon.dtype), rtol=1e-4, atol=1e-4 * float(expect.abs().max()))


def test_mask_file_named_off_the_pattern_is_warned_about(tmp_path, capsys):
    src = tree(tmp_path / "src", kt_gaussian(), name="ktGaussian")  # factor missing
    kus = src / "MultiCoil/Cine/TrainingSet/UnderSample_Task2/P001/cine_sax_kus_ktGaussian8_v2.mat"
    write_mat73(kus, {"kus": rand_kspace(KX, KY, C, 1, T)})
    assert prepare(src, tmp_path / "dst", "--quiet") == 0
    err = capsys.readouterr().err.splitlines()
    warned = [x for x in err if "not recognised" in x]
    assert len(warned) == 2
    assert "Mask_Task2/P001/cine_sax_mask_ktGaussian.mat" in warned[0] and "cine_sax_mask_<pattern><R>.mat" in warned[0]
    assert "cine_sax_kus_ktGaussian8_v2.mat" in warned[1] and "cine_sax_kus_<pattern><R>.mat" in warned[1]


def test_prepare_names_the_stored_keys_and_reconstruct_takes_the_challenge_names(tmp_path, capsys):
    src = tree(tmp_path / "src", kt_gaussian())
    dst = tmp_path / "dst"
    assert prepare(src, dst, "--quiet") == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "mask keys stored" in x)
    assert "R08_ktGaussian (1 slice)" in line and "R24 (1 slice)" in line and "ktGaussian8 = R08_ktGaussian" in line
    f = dst / "TrainingSet" / "P001" / "cine_sax_s00.h5"
    base = ["reconstruct", str(f), "--method", "zero_filled", "--formats", "h5", "--quiet", "--out"]
    assert main(base + [str(tmp_path / "a"), "--accel", "ktGaussian8"]) == 0
    assert (tmp_path / "a" / "cine_sax_s00_zero_filled_R08_ktGaussian.h5").is_file()
    assert main(base + [str(tmp_path / "b"), "--accel", "8"]) == 2  # R08 (equispaced) is not stored: no guess
    err = capsys.readouterr().err
    assert "'masks/R08'" in err and "R08_ktGaussian" in err and "R24" in err
    assert "nearest stored mask: --accel R08_ktGaussian (or ktGaussian8)" in err


def test_challenge_names_are_aliases_and_ambiguous_numbers_list_the_keys():
    from cinerecon.commands.reconstruct import nearest_mask_key, normalise_accel

    assert normalise_accel("ktGaussian8") == "R08_ktGaussian" and normalise_accel("ktgaussian10") == "R10_ktGaussian"
    assert normalise_accel("Uniform8") == "R08" and normalise_accel("ktRadial8") == "R08_ktRadial"
    assert normalise_accel("R8_ktGaussian") == "R8_ktGaussian"  # a key is used as typed (a user's R8_x may exist)
    assert normalise_accel("R08_uniform") == "R08_uniform"
    assert normalise_accel("8") == "R08" and normalise_accel("none") is None
    hint = nearest_mask_key("R08", ("R08_ktGaussian", "R08_ktRadial", "R24"))
    assert "2 masks have R = 8 (R08_ktGaussian, R08_ktRadial)" in hint
    assert nearest_mask_key("R10", ("R04_ktGaussian", "R08_ktGaussian", "R24")).endswith("R08_ktGaussian (or "
                                                                                          "ktGaussian8)")


def test_ignored_undersampled_file_of_a_fully_sampled_subject_is_noted(tmp_path, capsys):
    src = tree(tmp_path / "src", kt_gaussian(), kus_for_full=True)
    assert prepare(src, tmp_path / "dst", "--quiet") == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("note: ignored"))
    assert line.startswith("note: ignored 1 undersampled file(s)") and "cine_sax_kus_ktGaussian8.mat" in line


def test_maps_failing_on_the_data_skip_the_slice_naming_the_file(tmp_path, capsys, monkeypatch):
    """A calibration the mask allows but the data defeat: skipped like all-zero maps, nothing half-written."""
    import cinerecon.commands.prepare as prep
    from cinerecon.errors import DataError

    src = tree(tmp_path / "src", kt_gaussian(), val_mask=kt_gaussian(seed=4))
    real = prep.estimate_maps

    def fail_with_mask(kspace, mask, acs):
        if mask is not None:
            raise DataError("kspace (2, 4, 16, 16): the calibration region 16 x 4 is all zeros")
        return real(kspace, mask, acs)

    monkeypatch.setattr(prep, "estimate_maps", fail_with_mask)
    written = prep.prepare_cmrxrecon(src, tmp_path / "dst", ("sax",), prep.PrepareConfig(acs=4), verbose=False)
    assert len(written["train"]) == 1 and not written["test"]
    err = capsys.readouterr().err
    assert "skipped ValidationSet/P003/cine_sax/R08_ktGaussian/slice00" in err
    assert "cine_sax_kus_ktGaussian8.mat key 'kus' slice 0" in err and "all zeros" in err
    assert (tmp_path / "dst" / "train.txt").is_file() and not (tmp_path / "dst" / "test.txt").exists()


def test_mask_key_aliases_are_shared_by_every_verb():
    """reconstruct's --accel and evaluate's --accel read the challenge names alike."""
    from cinerecon.commands.reconstruct import normalise_accel
    from cinerecon.data.transforms import parse_mask_key
    from cinerecon.evaluate.runner import accel_key

    cases = {"ktGaussian8": "R08_ktGaussian", "KTGAUSSIAN10": "R10_ktGaussian", "Uniform4": "R04",
             "ktRadial24": "R24_ktRadial", "8": "R08", "r10": "R10", "R08_uniform": "R08_uniform",
             "my_key": "my_key", "R8_foo": "R8_foo", "r10_acs16": "r10_acs16", "R08_ktgaussian": "R08_ktgaussian"}
    for text, key in cases.items():
        assert parse_mask_key(text) == key and accel_key(text) == key and normalise_accel(text) == key, text
    assert normalise_accel("none") is None
    from cinerecon.data.cmrxrecon import accel_key as cmrx_key

    assert cmrx_key(8, "ktgaussian") == cmrx_key(8, "KTGAUSSIAN") == "R08_ktGaussian" and cmrx_key(8, "uniform") == "R08"


def test_a_transposed_mask_is_named_as_such():
    import torch

    from cinerecon.data.cmrxrecon import check_mask
    from cinerecon.errors import DataError

    with pytest.raises(DataError, match="another order") as e:
        check_mask(torch.ones(1, 16, 1, 4), 4, 20, 16, "m.mat")  # (T, W) swapped: (1, W, 1, T)
    assert "m.mat" in str(e.value) and "(1, 16, 1, 4)" in str(e.value)
    with pytest.raises(DataError) as e:
        check_mask(torch.ones(1, 4, 1, 15), 4, 20, 16, "m.mat")  # a wrong width: no such hint
    assert "another order" not in str(e.value)
