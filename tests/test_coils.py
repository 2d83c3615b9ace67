import ctypes
import math
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from cinerecon.classical.cg_sense import cg_sense
from cinerecon.coils import coil_compress, espirit_maps, maps_from_time_average, noise_edge
from cinerecon.errors import ConfigError, DataError
from cinerecon.fft import fft2c
from cinerecon.masks import MaskSpec, make_mask
from cinerecon.operators import SenseOp, sampled_mean
from conftest import load_benchmark

sigpy_mri = pytest.importorskip("sigpy.mri")


def _grid(h, w):
    y = (torch.arange(h, dtype=torch.float64) - h // 2) / (h / 2)
    x = (torch.arange(w, dtype=torch.float64) - w // 2) / (w / 2)
    return torch.meshgrid(y, x, indexing="ij")


def _truth(coils=8, h=64, w=64, seed=0):
    """Phantom (H, W) complex128 with a smooth phase and birdcage-like maps (C, H, W), sum |S|^2 = 1."""
    g = torch.Generator().manual_seed(seed)
    y, x = _grid(h, w)
    body = (((y / 0.85) ** 2 + (x / 0.7) ** 2) < 1).double()
    img = body * (0.6 + 0.4 * torch.cos(3 * x) * torch.sin(2 * y))
    img = img + 0.5 * ((((y + 0.1) / 0.3) ** 2 + ((x - 0.2) / 0.25) ** 2) < 1).double()
    img = img * torch.exp(1j * math.pi * (0.3 * x - 0.2 * y))
    rot = float(torch.rand((), generator=g)) * 2 * math.pi
    maps = []
    for c in range(coils):
        a = rot + 2 * math.pi * c / coils
        mag = torch.exp(-((y - 1.3 * math.sin(a)) ** 2 + (x - 1.3 * math.cos(a)) ** 2) / (2 * 0.8 ** 2))
        maps.append(mag * torch.exp(1j * (a + 0.6 * (x * math.cos(a) + y * math.sin(a)))))
    s = torch.stack(maps)
    return img, s / (s.abs() ** 2).sum(0).sqrt(), body.bool()


def _kspace(img, maps, noise=1e-3, seed=1):
    k = fft2c(maps * img)
    g = torch.Generator().manual_seed(seed)
    return (k + noise * k.abs().max() * torch.randn(k.shape, dtype=k.dtype, generator=g)).to(torch.complex64)


@contextmanager
def _numpy_blas_serial():
    """Run NumPy's OpenBLAS on one thread (its threaded SVD crawls on a shared, oversubscribed CPU)."""
    libs = {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()
            if "openblas" in line.lower()} if Path("/proc/self/maps").exists() else set()
    for lib in libs:
        dll = ctypes.CDLL(lib)
        for prefix, suffix in (("scipy_openblas_", "64_"), ("openblas_", "")):
            get = getattr(dll, f"{prefix}get_num_threads{suffix}", None)
            set_ = getattr(dll, f"{prefix}set_num_threads{suffix}", None)
            if get is not None and set_ is not None:
                n = get()
                set_(1)
                try:
                    yield
                finally:
                    set_(n)
                return
    yield


def _sigpy_maps(k2d, calib, thresh=0.02, kernel=6, crop=0.95):
    with _numpy_blas_serial():
        app = sigpy_mri.app.EspiritCalib(k2d.numpy(), calib_width=calib, thresh=thresh, kernel_width=kernel,
                                         crop=crop, show_pbar=False)
        return torch.from_numpy(np.asarray(app.run())).to(torch.complex64)


def _overlap(a, b):
    """|<a, b>| per pixel over coils (phase invariant), (H, W)."""
    return (a.conj() * b).sum(0).abs()


ACS = 24


@pytest.fixture(scope="module")
def case():
    """Phantom, true maps, body mask, R=4 k-space with 24 ACS lines, its mask, and sigpy's maps of it."""
    img, maps, body = _truth()
    mask = make_mask(MaskSpec("equispaced_acs", accel=4, acs=ACS), frames=1, width=img.shape[-1], seed=0)
    ku = _kspace(img, maps, noise=1e-4) * mask[0, 0]  # (C, H, W)
    return img, maps, body, ku, mask, _sigpy_maps(ku, ACS)


SIGPY_SETTINGS = dict(kernel=6, thresh=0.02, crop=0.95, crop_thresh=0.02, noise_thresh=0.0, edges="periodic",
                      support="eigen")
"""Our settings that match sigpy's EspiritCalib defaults (plain periodic ESPIRiT, relative threshold only)."""


def test_espirit_matches_sigpy(case):
    img, maps, body, k, mask, ref = case
    ours = espirit_maps(k, acs=(ACS, ACS), **SIGPY_SETTINGS)[:, 0]  # sigpy's square calibration region
    assert ours.shape == ref.shape == k.shape and ours.dtype == torch.complex64
    # same support (eigenvalue crop) up to a few boundary pixels; it covers the object
    s_ours, s_ref = (ours.abs() ** 2).sum(0) > 0, (ref.abs() ** 2).sum(0) > 0
    assert (s_ours == s_ref).float().mean() > 0.995
    both = s_ours & s_ref
    assert both[body].float().mean() > 0.99 and s_ours.float().mean() < 0.8
    # unit norm on the support, zero outside
    norm2 = (ours.abs() ** 2).sum(0)
    assert torch.allclose(norm2[s_ours], torch.ones(()), atol=1e-4) and norm2[~s_ours].max() == 0
    # same maps up to a per-pixel phase: |<S_ours, S_sigpy>| ~ 1, and the projectors S S^H agree
    assert _overlap(ours, ref)[both].min() > 0.9999
    p_ours = ours[:, None] * ours[None].conj()
    p_ref = ref[:, None] * ref[None].conj()
    assert (p_ours - p_ref)[..., both].abs().max() < 1e-3
    # and both are close to the true maps on the object
    truth = maps.to(torch.complex64)
    assert _overlap(ours, truth)[body].min() > 0.99 and _overlap(ours, truth)[body].mean() > 0.999


def test_espirit_odd_size_matches_sigpy():
    img, maps, body = _truth(coils=6, h=45, w=39)
    k = _kspace(img, maps, noise=1e-4)
    ref = _sigpy_maps(k, 20)
    ours = espirit_maps(k, acs=(20, 20), **SIGPY_SETTINGS)[:, 0]
    s_ours, s_ref = ours.abs().sum(0) > 0, ref.abs().sum(0) > 0
    assert (s_ours == s_ref).float().mean() > 0.995
    assert _overlap(ours, ref)[s_ours & s_ref].min() > 0.9999
    assert _overlap(ours, maps.to(torch.complex64))[body].min() > 0.98


@pytest.mark.slow
def test_espirit_full_size_is_fast():
    import time

    img, maps, body = _truth(coils=10, h=246, w=512)
    mask = make_mask(MaskSpec("equispaced_acs", accel=8, acs=ACS), frames=1, width=512, seed=0)
    k = _kspace(img, maps, noise=1e-4) * mask[0, 0]
    start = time.process_time()
    est = espirit_maps(k, calib_mask=mask)
    cpu = time.process_time() - start
    print(f"ESPIRiT 10 x 246 x 512: {cpu:.2f} s CPU")
    assert cpu < 10.0  # measured ~2.3 s on 2 shared cores
    assert _overlap(est[:, 0], maps.to(torch.complex64))[body].min() > 0.98


def test_espirit_phase_is_smooth_and_near_truth(case):
    img, maps, body, k, mask, _ = case
    ours = espirit_maps(k, calib_mask=mask)[:, 0].to(torch.complex128)
    # the residual phase between our maps and the truth is one smooth function
    inner = (maps.conj() * ours).sum(0)
    sup = body & (ours.abs().sum(0) > 0)
    step_x = (inner[:, 1:] * inner[:, :-1].conj()).angle().abs()[sup[:, 1:] & sup[:, :-1]]
    step_y = (inner[1:] * inner[:-1].conj()).angle().abs()[sup[1:] & sup[:-1]]
    assert max(step_x.max(), step_y.max()) < 0.1
    # each coil's map is smooth too (no per-pixel phase jumps)
    jumps = (ours[:, :, 1:] * ours[:, :, :-1].conj()).angle().abs()
    strong = (ours[:, :, 1:].abs() > 0.05) & (ours[:, :, :-1].abs() > 0.05)
    assert jumps[strong].max() < 0.3
    first = espirit_maps(k, calib_mask=mask, phase_ref="first")[:, 0]
    assert torch.allclose(first[0][sup].imag, torch.zeros(()), atol=1e-5) and (first[0][sup].real >= 0).all()


def test_sense_with_our_maps_as_good_as_sigpy(case):
    img, maps, body, k, mask, ref = case
    # ACS detected from the mask: 64 x 24 region; ESPIRiT's crop from sigpy's subspace (its thresh 0.02)
    ours = espirit_maps(k, calib_mask=mask, crop_thresh=0.02, support="eigen")
    ku = k[None, :, None]  # (1, C, 1, H, W)
    target = (img * body).abs()[None, None]

    def err(x):  # maps are defined up to a phase: compare magnitudes on the object
        return float(((x.abs() - target) * body).pow(2).sum() / (target * body).pow(2).sum())

    def sense(m, **kw):
        return err(cg_sense(ku, mask[None], m[None], **(kw or dict(iters=30, lam=0.0))))

    e_ours, e_ref = sense(ours), sense(ref[:, None])
    e_zf = err(SenseOp(ours[None], mask[None]).adjoint(ku))
    print(f"NMSE on the object: ours {e_ours:.3g}, sigpy {e_ref:.3g}, zero-filled {e_zf:.3g}")
    assert e_ours < 1.02 * e_ref
    assert e_ours < 0.1 * e_zf
    # The default support (the low-resolution image above 8x its noise) keeps faint real tissue
    # (benchmarks/coil_maps.py) and still crops this empty background: as good as sigpy's crop.
    default = espirit_maps(k, calib_mask=mask)
    e_def, e_ref_def = sense(default, iters=20, lam=1e-2), sense(ref[:, None], iters=20, lam=1e-2)
    print(f"NMSE on the object, CG-SENSE defaults: our defaults {e_def:.3g}, sigpy {e_ref_def:.3g}")
    assert e_def < 1.02 * e_ref_def
    # without any support the background costs: twice sigpy's error
    e_all = sense(espirit_maps(k, calib_mask=mask, support="eigen", crop=0.0), iters=20, lam=1e-2)
    assert e_all > 1.5 * e_ref_def


def test_cine_input_uses_time_average(case):
    img, maps, body, k, _, _ = case
    t = 5
    frames = torch.stack([img * (1 + 0.1 * i) for i in range(t)])  # (T, H, W): scaled copies
    k4 = fft2c(maps[:, None] * frames[None]).to(torch.complex64)  # (C, T, H, W)
    mask = make_mask(MaskSpec("equispaced_acs", accel=4, acs=20), frames=t, width=k.shape[-1], seed=3)
    m4 = espirit_maps(k4 * mask, calib_mask=mask)
    m3 = espirit_maps(k4.mean(1) * mask[0], calib_mask=mask)
    assert m4.shape == (k.shape[0], 1) + k.shape[1:]
    assert torch.allclose(m4, m3, atol=1e-4)
    # without a mask the sampled locations are read from the non-zero k-space
    assert torch.allclose(espirit_maps(k4 * mask), m4, atol=1e-6)


def test_maps_from_time_average_without_acs(case):
    img, maps, body, _, _, _ = case
    t, r = 6, 4
    frames = torch.stack([img * (1 + 0.05 * math.sin(i)) for i in range(t)])
    k4 = fft2c(maps[:, None] * frames[None]).to(torch.complex64)
    mask = make_mask(MaskSpec("time_varying", accel=r), frames=t, width=k4.shape[-1], seed=0)  # (1, T, 1, W)
    with pytest.raises(DataError, match="no ACS found"):
        espirit_maps(k4 * mask, calib_mask=mask)
    est = maps_from_time_average(k4 * mask, mask)[:, 0]
    sup = body & (est.abs().sum(0) > 0)
    assert sup[body].float().mean() > 0.99
    assert _overlap(est, maps.to(torch.complex64))[sup].min() > 0.99
    static = make_mask(MaskSpec("uniform", accel=r), frames=t, width=k4.shape[-1], seed=0)
    with pytest.raises(DataError, match=r"\(8, 6, 64, 64\)"):
        maps_from_time_average(k4 * static, static)


def test_espirit_bad_input_messages():
    with pytest.raises(DataError, match=r"\(4, 8\)"):
        espirit_maps(torch.zeros(4, 8, dtype=torch.complex64))
    with pytest.raises(DataError, match="complex"):
        espirit_maps(torch.zeros(2, 16, 16))
    k = torch.ones(2, 16, 16, dtype=torch.complex64)
    k[..., 6:10] = 0  # centre columns missing
    with pytest.raises(DataError, match=r"no ACS found.*\(16, 16\)"):
        espirit_maps(k)
    k = torch.ones(2, 16, 16, dtype=torch.complex64)
    with pytest.raises(DataError, match="smaller than the ESPIRiT kernel"):
        espirit_maps(k, acs=4, kernel=6)  # 16 readout rows x 4 lines
    with pytest.raises(DataError, match="smaller than the ESPIRiT kernel 3"):
        espirit_maps(k, acs=2)  # the automatic kernel is at least 3
    with pytest.raises(DataError, match="not fully sampled"):
        espirit_maps(k, acs=(8, 8), calib_mask=torch.arange(16) % 2 == 0)
    with pytest.raises(ConfigError, match="phase_ref"):
        espirit_maps(k, phase_ref="body")


def test_coil_compress_lossless_from_three_coils():
    g = torch.Generator().manual_seed(0)
    img, maps3, _ = _truth(coils=3, h=24, w=20)
    mix = torch.randn(8, 3, dtype=torch.complex128, generator=g)
    maps8 = torch.einsum("ij,jhw->ihw", mix, maps3)  # 8 coils spanning 3 dimensions
    frames = torch.stack([img, 0.5 * img.conj()])
    k8 = fft2c(maps8[:, None] * frames[None])  # (8, 2, H, W) complex128
    kv, mv, a = coil_compress(k8, 3, maps8[:, None])
    assert kv.shape == (3,) + k8.shape[1:] and mv.shape == (3, 1) + k8.shape[2:] and a.shape == (3, 8)
    assert torch.allclose(a @ a.mH, torch.eye(3, dtype=a.dtype), atol=1e-10)
    # lossless: the 8 coils are recovered from the 3 virtual ones
    back = torch.einsum("vc,vthw->cthw", a.conj(), kv)
    assert (back - k8).abs().max() < 1e-9 * k8.abs().max()
    # compressed maps describe the compressed data: F (A S) x = A k
    assert torch.allclose(fft2c(mv * frames[None]), kv, atol=1e-9 * float(k8.abs().max()))


def test_coil_compress_energy_matches_numpy_svd():
    g = torch.Generator().manual_seed(1)
    k = torch.randn(6, 3, 10, 9, dtype=torch.complex64, generator=g)
    k = k * torch.arange(1, 7).view(6, 1, 1, 1)  # unequal coil energies
    sv = np.linalg.svd(k.numpy().reshape(6, -1).astype(np.complex128), compute_uv=False)
    for n in (1, 2, 4, 6):
        kv, mv, a = coil_compress(k, n)
        assert mv is None
        kept = float((kv.abs().double() ** 2).sum() / (k.abs().double() ** 2).sum())
        assert kept == pytest.approx(float((sv[:n] ** 2).sum() / (sv ** 2).sum()), rel=1e-5)
    # coil axis other than 0 (batched data)
    kb, _, ab = coil_compress(k[None], 2, coil_dim=1)
    assert torch.allclose(kb[0], coil_compress(k, 2)[0], atol=1e-4)
    with pytest.raises(ConfigError, match=r"\[1, 6\]"):
        coil_compress(k, 7)


def test_espirit_recovers_simulated_cine_maps():
    simulate = pytest.importorskip("cinerecon.data.simulate")
    s = simulate.simulate_cine(simulate.SimConfig(frames=4, coils=8, size=(56, 48), seed=2))
    mask = make_mask(MaskSpec("equispaced_acs", accel=8, acs=ACS), frames=4, width=48, seed=0)
    est = espirit_maps(s.kspace * mask, calib_mask=mask)[:, 0]
    obj = s.target.abs().mean(0) > 0.1 * s.target.abs().max()
    sup = est.abs().sum(0) > 0
    assert sup[obj].float().mean() > 0.99
    assert _overlap(est, s.maps[:, 0])[obj & sup].min() > 0.99


def _filling_fov(coils=8, h=64, w=64, noise=1e-3, seed=0):
    """An object filling the whole FOV with smooth, non-periodic maps (coils on a ring), its k-space."""
    y, x = _grid(h, w)
    img = (0.7 + 0.3 * torch.cos(2.5 * x + 1.0) * torch.sin(1.7 * y + 0.3)) * torch.exp(1j * (0.4 * x - 0.3 * y))
    s = []
    for c in range(coils):
        a = 0.3 + 2 * math.pi * c / coils
        mag = 1.0 / (1.0 + ((y - 1.4 * math.sin(a)) ** 2 + (x - 1.4 * math.cos(a)) ** 2) / 0.7 ** 2)
        s.append(mag * torch.exp(1j * (a + 0.8 * (x * math.cos(a) + y * math.sin(a)))))
    maps = torch.stack(s)
    maps = maps / (maps.abs() ** 2).sum(0).sqrt()
    return img, maps, _kspace(img, maps, noise=noise, seed=seed)


def test_edge_extrapolation_fixes_non_periodic_maps():
    """ESPIRiT's maps are periodic: at FOV edges that the object reaches, plain ESPIRiT blends
    both sides; the extrapolated edges follow the true (non-periodic) maps."""
    img, maps, k = _filling_fov()
    mask = make_mask(MaskSpec("equispaced_acs", accel=4, acs=ACS), frames=1, width=64, seed=0)
    k = k * mask[0, 0]
    truth = maps.to(torch.complex64)
    plain = espirit_maps(k, calib_mask=mask, edges="periodic")[:, 0]
    ours = espirit_maps(k, calib_mask=mask)[:, 0]
    assert ((ours.abs() ** 2).sum(0) > 0).all()  # the object fills the FOV: nothing cropped
    edge = torch.zeros(64, 64, dtype=torch.bool)
    edge[:3], edge[-3:], edge[:, :3], edge[:, -3:] = True, True, True, True
    miss_plain = 1 - _overlap(plain, truth)[edge]
    miss_ours = 1 - _overlap(ours, truth)[edge]
    assert miss_plain.max() > 0.02  # the periodic estimate is off at the edges
    assert miss_ours.max() < 0.2 * miss_plain.max() and miss_ours.mean() < 0.1 * miss_plain.mean()
    # the interior is untouched
    inner = ~edge
    inner[:12], inner[-12:], inner[:, :12], inner[:, -12:] = False, False, False, False
    assert torch.allclose(_overlap(ours, plain)[inner], torch.ones(()), atol=1e-5)
    # and SENSE gains from it
    ku, target = k[None, :, None], img.abs()[None, None]

    def nmse(m):
        x = cg_sense(ku, mask[None], m[:, None][None], iters=30, lam=0.0)
        return float((x.abs() - target).pow(2).sum() / target.pow(2).sum())

    assert nmse(ours) < 0.5 * nmse(plain)
    assert nmse(ours) < 1.3 * nmse(truth)


def test_noise_floor_keeps_noise_out_of_the_signal_subspace():
    """With no relative threshold, only the estimated noise floor keeps the null space (and the maps)."""
    img, maps, body = _truth()
    mask = make_mask(MaskSpec("equispaced_acs", accel=4, acs=ACS), frames=1, width=64, seed=0)
    k = _kspace(img, maps, noise=3e-3) * mask[0, 0]
    truth = maps.to(torch.complex64)
    settings = dict(calib_mask=mask, thresh=0.0, support="eigen", crop=0.0, edges="periodic")  # nothing cropped
    without = espirit_maps(k, noise_thresh=0.0, **settings)[:, 0]
    with_floor = espirit_maps(k, **settings)[:, 0]
    assert _overlap(without, truth)[body].mean() < 0.9  # every singular vector kept: no null space left
    assert _overlap(with_floor, truth)[body].mean() > 0.999


def test_noise_edge_matches_random_matrix():
    g = torch.Generator().manual_seed(0)
    for rows, n, s in ((800, 360, 1.0), (1000, 250, 0.01)):
        a = s * torch.randn(rows, n, dtype=torch.complex128, generator=g)
        sig = torch.linalg.svdvals(a)
        assert noise_edge(sig, rows) == pytest.approx(float(sig.max()), rel=0.1)
    assert noise_edge(sig, n) == 0.0  # no estimate without more rows than columns


REAL_SERIES = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_cine" / "subj1_sax_EC.npz"


def test_cg_sense_with_our_maps_within_03_db_of_true_maps_on_real_series():
    """Issue 11, item 3, on the real short-axis series at R = 8 (benchmarks/coil_maps.py runs all)."""
    if not REAL_SERIES.exists():
        pytest.skip(f"{REAL_SERIES} not present")
    from cinerecon.data.simulate import real_cine_to_sample

    sample = real_cine_to_sample(REAL_SERIES, coils=10, snr_db=35, size=(128, 128), n_frames=12)
    mask = make_mask(MaskSpec("equispaced_acs", 8, ACS), 12, 128, seed=0)
    ku = sample.kspace * mask[0]
    target = sample.target.abs()

    def psnr(maps):
        x = cg_sense(ku[None], mask, maps[None])[0].abs()
        return float(10 * torch.log10(target.max() ** 2 / (x - target).pow(2).mean()))

    p_true, p_ours = psnr(sample.maps), psnr(espirit_maps(ku, calib_mask=mask))
    print(f"CG-SENSE R=8 PSNR: true maps {p_true:.2f} dB, our ESPIRiT {p_ours:.2f} dB")
    assert p_ours > p_true - 0.3
    if shutil.which("bart"):  # and not worse than BART's ecalib (its defaults) on the same data
        bench = _load_benchmark()
        avg = sampled_mean(ku, mask[0].bool().expand(ku.shape[1:]), dim=1)
        p_bart = psnr(bench.bart_maps("bart", avg, []))
        print(f"BART ecalib maps {p_bart:.2f} dB")
        assert p_ours >= p_bart


def _load_benchmark():
    return load_benchmark("coil_maps")


def _faint_band_case(noise=1e-3):
    """The phantom plus faint tissue (8 % of the object) in a band that reaches the right FOV edge."""
    img, maps, body = _truth()
    y, x = _grid(64, 64)
    band = (x > 0.72) & (y.abs() < 0.6)
    faint = img + 0.08 * band.double() * torch.exp(1j * (0.5 * y))
    return faint, maps, body, band, _kspace(faint, maps, noise=noise)


def test_signal_support_keeps_faint_tissue_and_crops_empty_background():
    """The default support follows the low-resolution image's SNR: faint tissue reaching an edge
    stays in, empty background goes (the real-series case against ESPIRiT's eigenvalue crop is
    the slow test below)."""
    img, maps, body, band, k = _faint_band_case()
    mask = make_mask(MaskSpec("equispaced_acs", accel=4, acs=ACS), frames=1, width=64, seed=0)
    k = k * mask[0, 0]
    ours = espirit_maps(k, calib_mask=mask)[:, 0].abs().sum(0) > 0
    signal = (body | band)[None, None].double()
    far = torch.nn.functional.max_pool2d(signal, 13, 1, 6)[0, 0] == 0  # > 6 pixels from any signal
    assert far.sum() > 200
    print(f"faint band kept {ours[band].float().mean():.3f}, far background cropped {(~ours[far]).float().mean():.3f}")
    # the threshold is in units of one coil's noise: the same image and coil noise with twice the
    # coils (the same noise after unit-norm coil combination) keep about the same support
    faint = img + 0.08 * band.double() * torch.exp(1j * (0.5 * _grid(64, 64)[0]))
    sigma = 1e-3 * float(fft2c(maps * faint).abs().max())  # _kspace's noise std with 8 coils
    maps16 = _truth(coils=16)[1]
    k16 = _kspace(faint, maps16, noise=sigma / float(fft2c(maps16 * faint).abs().max())) * mask[0, 0]
    ours16 = espirit_maps(k16, calib_mask=mask)[:, 0].abs().sum(0) > 0
    print(f"support with 8 / 16 coils: {ours.float().mean():.3f} / {ours16.float().mean():.3f}")
    assert (ours16 ^ ours).float().mean() < 0.02
    inner = -torch.nn.functional.max_pool2d(-band[None, None].double(), 3, 1, 1)[0, 0] > 0  # band less its rim
    assert ours[inner].float().mean() > 0.99 and ours[band].float().mean() > 0.95 and ours[body].float().mean() > 0.995
    assert (~ours[far]).float().mean() > 0.9
    # noiseless data: the relative floor still crops most of the far background
    _, _, _, _, k0 = _faint_band_case(noise=0.0)
    noiseless = espirit_maps(k0 * mask[0, 0], calib_mask=mask)[:, 0].abs().sum(0) > 0
    assert noiseless[band].all() and (~noiseless[far]).float().mean() > 0.5
    with pytest.raises(ConfigError, match="support"):
        espirit_maps(k, calib_mask=mask, support="body")


@pytest.mark.slow
def test_surface_array_maps_within_03_db_of_true_maps_on_real_series():
    """Issue 11, item 3, with anterior/posterior loop arrays on the rat series at R = 8: the case
    where ESPIRiT's eigenvalue crop was 0.44 dB behind the true maps and 0.25 dB behind BART."""
    rat = REAL_SERIES.parents[1] / "real_cine_extra" / "rat_sax_8fr.npz"
    if not rat.exists():
        pytest.skip(f"{rat} not present")
    bench = _load_benchmark()
    sample = bench.make_sample(rat, 1, bench.parse_args(["--geometry", "surface"]))
    c, t, h, w = sample.kspace.shape
    mask = make_mask(MaskSpec("equispaced_acs", 8, ACS), t, w, seed=1)
    ku = sample.kspace * mask[0]

    def psnr(maps):
        return bench.psnr(cg_sense(ku[None], mask, maps[None])[0], sample.target)

    p_true, p_ours = psnr(sample.maps), psnr(espirit_maps(ku, calib_mask=mask))
    p_eigen = psnr(espirit_maps(ku, calib_mask=mask, support="eigen"))
    print(f"CG-SENSE R=8, surface arrays: true maps {p_true:.2f} dB, ours {p_ours:.2f}, eigenvalue crop {p_eigen:.2f}")
    assert p_ours > p_true - 0.3
    assert p_ours > p_eigen + 0.1
    if shutil.which("bart"):
        avg = sampled_mean(ku, mask[0].bool().expand(t, h, w), dim=1)
        p_bart = psnr(bench.bart_maps("bart", avg, []))
        print(f"BART ecalib maps {p_bart:.2f} dB")
        assert p_ours >= p_bart


def test_noise_only_data_keeps_a_support():
    """Random k-space has nothing above the noise: the support falls back to the relative floor
    instead of cropping everything (all-zero maps would zero every reconstruction)."""
    g = torch.Generator().manual_seed(3)
    k = torch.randn(3, 3, 16, 16, dtype=torch.complex64, generator=g)
    maps = espirit_maps(k, acs=8)
    assert bool(torch.isfinite(torch.view_as_real(maps)).all())
    assert (maps.abs().pow(2).sum(0) > 0).float().mean() > 0.5


@pytest.mark.slow
def test_time_average_maps_keep_the_real_series_support():
    """k-t data: the time average mixes frames, so its calibration overstates the noise; the maps
    keep ESPIRiT's crop there and with it the rat series' faint tissue (view sharing as the probe)."""
    rat = REAL_SERIES.parents[1] / "real_cine_extra" / "rat_sax_8fr.npz"
    if not rat.exists():
        pytest.skip(f"{rat} not present")
    from cinerecon.classical.view_sharing import view_sharing
    from cinerecon.evaluate.metrics import series_metrics

    bench = _load_benchmark()
    sample = bench.make_sample(rat, 0, bench.parse_args([]))
    c, t, h, w = sample.kspace.shape
    mask = make_mask(MaskSpec("time_varying", 8, 0), t, w, seed=0)
    ku = sample.kspace * mask[0]
    est = maps_from_time_average(ku, mask)
    assert (est.abs().sum(0) > 0).float().mean() > 0.9

    def ssim(maps):
        return float(series_metrics(view_sharing(ku[None], mask, maps[None])[0], sample.target).ssim)

    s_true, s_est = ssim(sample.maps), ssim(est)
    s_signal = ssim(maps_from_time_average(ku, mask, support="signal"))
    print(f"view sharing SSIM: true maps {s_true:.3f}, time-averaged maps {s_est:.3f}, signal support {s_signal:.3f}")
    assert s_est > s_true - 0.03 and s_est > s_signal + 0.05


def test_low_resolution_noise_level_matches_noise():
    """One coil's noise in the windowed low-resolution image is the k-space noise std times the gain."""
    from cinerecon.coils import CalibRegion, _low_resolution_power

    g = torch.Generator().manual_seed(5)
    c, h, w, s = 6, 96, 80, 0.3
    noise = s * torch.randn(c, h, w, dtype=torch.complex128, generator=g)
    for region in (CalibRegion(16, 64, 28, 24), CalibRegion(10, 37, 31, 19)):  # centred, and off-centre odd
        power, gain = _low_resolution_power(noise, region)
        assert float(power.mean()) == pytest.approx(c * (s * gain) ** 2, rel=0.05)


def test_many_coils_keep_espirits_crop_and_crop_needs_eigen():
    """32 coils on 24 ACS lines: fewer patches than columns, no noise estimate, so ESPIRiT's crop."""
    img, maps, body = _truth(coils=32)
    mask = make_mask(MaskSpec("equispaced_acs", accel=4, acs=ACS), frames=1, width=64, seed=0)
    k = _kspace(img, maps) * mask[0, 0]
    ours = espirit_maps(k, calib_mask=mask)[:, 0].abs().sum(0) > 0
    eigen = espirit_maps(k, calib_mask=mask, support="eigen")[:, 0].abs().sum(0) > 0
    assert torch.equal(ours, eigen) and ours[body].all() and not ours.all()
    with pytest.raises(ConfigError, match="support='eigen'"):
        espirit_maps(k, calib_mask=mask, crop=0.9)


@pytest.mark.parametrize("kind, accel, acs, ok", [("uniform", 4, 0, False), ("equispaced_acs", 8, 8, True),
                                                  ("time_varying", 4, 0, True)])
def test_time_average_check_is_what_the_estimator_raises(kind, accel, acs, ok):
    """prepare's pre-check of a mask and the estimator's own refusal are one check with one message."""
    from cinerecon.commands.prepare import time_average_problem

    t, h, w = 4, 24, 32
    mask = make_mask(MaskSpec(kind, accel=accel, acs=acs), frames=t, width=w, seed=0)
    k = torch.randn(3, t, h, w, dtype=torch.complex64) * mask
    problem = time_average_problem(mask, h)
    if problem is None:
        assert maps_from_time_average(k, mask).shape == (3, 1, h, w)
    else:
        with pytest.raises(DataError) as err:
            maps_from_time_average(k, mask)
        assert problem in str(err.value)
    assert (problem is None) == ok


def test_time_average_refusal_names_a_missing_centre_point():
    """A pattern whose central line is sampled except at the k-space centre is refused for that point."""
    from cinerecon.coils import time_average_pattern_problem

    filled = torch.zeros(24, 32, dtype=torch.bool)
    filled[:, 10:22] = True
    assert time_average_pattern_problem(filled) is None
    filled[12, 16] = False
    assert "k-space centre (kx, ky) = (12, 16)" in time_average_pattern_problem(filled)
    filled[:, 16] = False
    assert "central k-space line (ky = 16" in time_average_pattern_problem(filled)
    with pytest.raises(DataError, match=r"\(H, W\)"):
        time_average_pattern_problem(torch.ones(2, 24, 32, dtype=torch.bool))
