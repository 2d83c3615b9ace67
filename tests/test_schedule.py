import math

import pytest
import torch

from cinerecon.errors import ConfigError
from cinerecon.train.schedule import make_scheduler, warmup_cosine, warmup_note


def _lrs(sched, opt, n):
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_per_epoch_values_at_key_points():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=3e-4)
    sched = make_scheduler(opt, 3e-4, 1e-4, warmup_epochs=10, epochs=50)
    lrs = _lrs(sched, opt, 52)
    assert lrs[0] == pytest.approx(3e-4 / 11)  # first warm-up epoch
    assert lrs[9] == pytest.approx(3e-4 * 10 / 11)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))  # strictly rising to the peak
    assert lrs[10] == pytest.approx(3e-4)  # peak right after warm-up
    # half-way through the decay: the mean of peak and minimum
    assert lrs[10 + 39 // 2] == pytest.approx(1e-4 + 2e-4 * 0.5 * (1 + math.cos(math.pi * 19 / 39)))
    assert lrs[49] == pytest.approx(1e-4)  # the last epoch reaches the minimum
    assert all(a >= b for a, b in zip(lrs[10:50], lrs[11:50]))  # monotone decay
    assert lrs[51] == pytest.approx(1e-4)  # stays at the minimum afterwards


def test_per_step_matches_fractional_epochs():
    f = warmup_cosine(1.0, 0.5, warmup_epochs=2, epochs=8, steps_per_epoch=4)
    assert f(0) == pytest.approx(1 / 9) and f(7) == pytest.approx(8 / 9)
    assert f(8) == pytest.approx(1.0) and f(31) == pytest.approx(0.5)
    mid = 8 + (31 - 8) / 2
    assert f(int(mid)) > 0.75 > f(int(mid) + 1)  # cosine passes its midpoint half-way


def test_finetune_schedule_and_state_dict_round_trip():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-4)
    sched = make_scheduler(opt, 1e-4, 5e-5, warmup_epochs=5, epochs=32)
    lrs = _lrs(sched, opt, 7)
    assert lrs[5] == pytest.approx(1e-4) and lrs[0] == pytest.approx(1e-4 / 6)
    state = sched.state_dict()
    opt2 = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    sched2 = make_scheduler(opt2, 1e-4, 5e-5, warmup_epochs=5, epochs=32)
    sched2.load_state_dict(state)
    opt2.param_groups[0]["lr"] = opt.param_groups[0]["lr"]  # what optimizer.load_state_dict restores
    assert _lrs(sched2, opt2, 25) == pytest.approx(_lrs(sched, opt, 25))
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-5)


def test_bad_schedule_raises():
    with pytest.raises(ConfigError):
        warmup_cosine(1e-4, 2e-4, 1, 10)
    with pytest.raises(ConfigError):
        warmup_cosine(1e-4, 1e-5, 1, 0)


def test_warmup_takes_at_most_a_quarter_of_a_short_run():
    """The fine-tuning preset (5 warm-up epochs) cut to 6 epochs still reaches its peak and decays."""
    f = warmup_cosine(1e-4, 5e-5, warmup_epochs=5, epochs=6)
    assert f.warmup == 1 and f(1) == pytest.approx(1.0) and f(5) == pytest.approx(0.5)
    assert warmup_note(5, 6) is not None and "1 of 6 epochs" in warmup_note(5, 6)
    one = warmup_cosine(1e-4, 5e-5, warmup_epochs=5, epochs=1, steps_per_epoch=8)  # one epoch stepped per batch
    assert one.warmup == 2 and one(2) == pytest.approx(1.0) and one(7) == pytest.approx(0.5)
    assert warmup_note(5, 32) is None and warmup_cosine(1e-4, 5e-5, 5, 32).warmup == 5  # the paper's, as written
    assert warmup_note(10, 40) is None and warmup_cosine(3e-4, 1e-4, 10, 40).warmup == 10


def test_a_budget_refit_that_moves_the_warm_up_says_so(tmp_path, capsys):
    """The time budget's refit of the epoch count rebuilds the schedule; a warm-up it shortens is said."""
    from cinerecon.train.config import load_config
    from cinerecon.train.distributed import DistInfo
    from cinerecon.train.loop import _set_epochs

    cfg = load_config(None, ["epochs=32", "optim.lr=1e-4", "optim.warmup_epochs=5", "optim.min_lr=5e-5"])
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    sched = make_scheduler(opt, 1e-4, 5e-5, warmup_epochs=5, epochs=32)
    cfg = _set_epochs(cfg, 8, sched, 1, tmp_path, DistInfo())
    assert cfg.epochs == 8 and sched.lr_lambdas[0].warmup == 2
    err = capsys.readouterr().err
    assert "warm-up now 2 epochs instead of 5 for 8 epochs" in err
    _set_epochs(cfg, 9, sched, 1, tmp_path, DistInfo())  # the same warm-up: nothing to say
    assert "warm-up" not in capsys.readouterr().err


def test_a_refit_after_the_warm_up_is_over_says_nothing(tmp_path, capsys):
    from cinerecon.train.config import load_config
    from cinerecon.train.distributed import DistInfo
    from cinerecon.train.loop import _set_epochs

    cfg = load_config(None, ["epochs=32", "optim.lr=1e-4", "optim.warmup_epochs=5", "optim.min_lr=5e-5"])
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    sched = make_scheduler(opt, 1e-4, 5e-5, warmup_epochs=5, epochs=32)
    _lrs(sched, opt, 6)  # six epochs done: past any warm-up
    _set_epochs(cfg, 8, sched, 1, tmp_path, DistInfo())
    assert sched.lr_lambdas[0].warmup == 2 and "warm-up" not in capsys.readouterr().err
