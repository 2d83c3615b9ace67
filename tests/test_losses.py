import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from cinerecon.errors import DataError
from cinerecon.train.config import LossConfig
from cinerecon.train.losses import complex_ssim_loss, reconstruction_loss, ssim
from conftest import random_problem


def _smooth(n, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, h, w, generator=g, dtype=torch.float64)
    x = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1)
    return x[:, 0]


def _sk(a, b, dr):
    return structural_similarity(a, b, win_size=7, data_range=dr, gaussian_weights=False)


def test_ssim_matches_skimage_uniform_window():
    y = _smooth(3, 17, 14, 0)
    x = y + 0.3 * _smooth(3, 17, 14, 1)
    dr = torch.tensor([2.0, 3.0, 5.0], dtype=torch.float64)
    ours = ssim(x, y, dr)
    ref = [_sk(x[i].numpy(), y[i].numpy(), float(dr[i])) for i in range(3)]
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-10, atol=1e-12)
    assert float(ssim(y, y, 1.0).min()) == pytest.approx(1.0)


def test_complex_ssim_loss_is_one_minus_mean_of_channel_ssims():
    x, maps, mask = random_problem(2, 1, 3, 12, 11, seed=3)
    target = x
    pred = x + 0.4 * random_problem(2, 1, 3, 12, 11, seed=4)[0]
    loss = complex_ssim_loss(pred, target)
    vals = []
    for b in range(2):
        for part in (np.real, np.imag):
            t = part(target[b].numpy()).astype(np.float64)
            p = part(pred[b].numpy()).astype(np.float64)
            dr = t.max() - t.min()
            vals += [_sk(p[f], t[f], dr) for f in range(3)]
    assert float(loss) == pytest.approx(1.0 - np.mean(vals), abs=2e-5)


def _np_fft2c(a):
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(a, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def test_weighted_sum_matches_numpy_reference():
    x, maps, _ = random_problem(1, 3, 2, 10, 9, seed=5)
    pred = x + 0.2 * random_problem(1, 3, 2, 10, 9, seed=6)[0]
    cfg = LossConfig(w_kspace=0.25, w_image=0.5, w_ssim=1.0)
    terms = reconstruction_loss(pred, x, maps, cfg)
    p, t, s = pred.numpy().astype(np.complex128), x.numpy().astype(np.complex128), maps.numpy()
    kp = _np_fft2c(s * p[:, None])
    kt = _np_fft2c(s * t[:, None])
    d = kp - kt
    k_ref = np.mean(np.concatenate([d.real.ravel() ** 2, d.imag.ravel() ** 2]))
    e = p - t
    l1_ref = np.mean(np.abs(np.concatenate([e.real.ravel(), e.imag.ravel()])))
    mse_ref = np.mean(np.concatenate([e.real.ravel() ** 2, e.imag.ravel() ** 2]))
    s_ref = float(complex_ssim_loss(pred, x))
    assert float(terms.kspace) == pytest.approx(k_ref, rel=1e-5)
    assert float(terms.l1) == pytest.approx(l1_ref, rel=1e-5)
    assert float(terms.mse) == pytest.approx(mse_ref, rel=1e-5)
    total_ref = 0.25 * k_ref + 0.5 * (l1_ref + mse_ref) + 1.0 * s_ref
    assert float(terms.total) == pytest.approx(total_ref, rel=1e-5)


def test_zero_weights_ablate_terms_and_perfect_prediction_is_zero():
    x, maps, _ = random_problem(1, 2, 2, 9, 9, seed=7)
    pred = x + 0.1
    only_l1 = reconstruction_loss(pred, x, maps, LossConfig(w_kspace=0, w_ssim=0, image_mse=0))
    assert float(only_l1.kspace) == 0 and float(only_l1.ssim) == 0 and float(only_l1.mse) == 0
    assert float(only_l1.total) == pytest.approx(0.5 * 0.1 / 2, rel=1e-5)  # 0.1 on the real part only
    perfect = reconstruction_loss(x, x, maps)
    assert abs(float(perfect.total)) < 1e-6


def test_loss_is_differentiable_and_rejects_bad_shapes():
    x, maps, _ = random_problem(1, 2, 2, 9, 8, seed=8)
    pred = (x + 0.3).clone().requires_grad_(True)
    reconstruction_loss(pred, x, maps).total.backward()
    assert pred.grad is not None and torch.isfinite(torch.view_as_real(pred.grad)).all()
    with pytest.raises(DataError):
        reconstruction_loss(x[..., :5, :5], x[..., :5, :5], maps[..., :5, :5])  # smaller than the window
    with pytest.raises(DataError):
        reconstruction_loss(x, x[:, :1], maps)


def test_magnitude_prediction_is_compared_with_the_target_magnitude():
    x, maps, _ = random_problem(2, 2, 3, 12, 11, seed=9)
    mag = x.abs().double()
    pred = (mag + 0.05 * random_problem(2, 1, 3, 12, 11, seed=10)[0].real.double()).requires_grad_(True)
    terms = reconstruction_loss(pred, x, maps, LossConfig(w_kspace=0.25, w_image=0.5, w_ssim=1.0))
    p, t = pred.detach().numpy(), mag.numpy()
    vals = [_sk(p[b, f], t[b, f], t[b].max() - t[b].min()) for b in range(2) for f in range(3)]
    l1_ref, mse_ref = np.mean(np.abs(p - t)), np.mean((p - t) ** 2)
    assert float(terms.kspace) == 0  # a magnitude has no k-space to compare
    assert float(terms.l1) == pytest.approx(l1_ref, rel=1e-6)
    assert float(terms.mse) == pytest.approx(mse_ref, rel=1e-6)
    assert float(terms.ssim) == pytest.approx(1.0 - np.mean(vals), abs=1e-6)
    assert float(terms.total) == pytest.approx(0.5 * (l1_ref + mse_ref) + 1.0 - np.mean(vals), rel=1e-6)
    terms.total.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
    # the exact magnitude is a perfect prediction whatever the target's phase
    assert abs(float(reconstruction_loss(mag, x * 1j, maps).total)) < 1e-6
