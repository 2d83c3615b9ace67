"""One checkpoint from two trained models of one kind: main weights plus a k-t specialist.

The shipped CRUNet-MR (``load_pretrained("crunet")``) reconstructs items whose mask has a
calibration block with its main weights and items without one (k-t masks without ACS) with a
second set (``uncalibrated_weights=True``, see :class:`cinerecon.models.unrolled.Unrolled`),
fine-tuned on such masks only. :func:`merge_uncalibrated` writes that checkpoint.

    python -m cinerecon.train.uncalibrated_merge MAIN.pt KT.pt OUT.pt
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import DataError
from ..files import check_writable
from ..models import architecture_change, full_kwargs
from .checkpoints import Checkpoint, atomic_torch_save, build_from_checkpoint, read_checkpoint, run_checkpoint_tool

PREFIX, SECOND = "cascades.", "uncalibrated_cascades."


def merge_uncalibrated(main: str | Path, kt: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Write ``out``: ``main``'s model with ``kt``'s cascades as its uncalibrated weights.

    The result has ``main``'s kwargs with ``uncalibrated_weights=True`` and ``kt``'s initial
    image, which must give calibrated items the start ``main`` was trained with (equal
    initial images, or ``"lplus_s"`` and ``"lplus_s_kt"``); ``main``'s training config with
    those kwargs as its model (so that ``cinerecon train --init OUT`` rebuilds this model), and
    no optimiser, scheduler or RNG states. The model is built and loaded (strict) before
    anything is written.

    Args:
        main: our checkpoint whose weights serve the calibrated items.
        kt: our checkpoint of the same architecture, for the items without a calibration block.
        out: the file to write (atomically); an existing file is refused unless ``overwrite``.

    Raises:
        DataError: unreadable checkpoints, or two models that differ in name or kwargs (other
            than the initial image), or that already hold a second set.
        OutputExistsError: ``out`` exists and ``overwrite`` is False (checked first).
    """
    out = Path(out)
    check_writable([out], overwrite)
    if out.is_dir():
        raise DataError(f"{out} is a folder; give the checkpoint file to write")
    a, b = read_checkpoint(main), read_checkpoint(kt)
    for path, ck in ((main, a), (kt, b)):
        if ck.model_kwargs.get("uncalibrated_weights"):
            raise DataError(f"{path}: already holds uncalibrated weights")
    if a.model_name != b.model_name or architecture_change(a.model_name, a.model_kwargs, b.model_kwargs):
        raise DataError(f"{main} and {kt}: different models ({a.model_name} {a.model_kwargs} vs {b.model_name} "
                        f"{b.model_kwargs})")
    ia = full_kwargs(a.model_name, a.model_kwargs).get("initial_image")
    ib = full_kwargs(b.model_name, b.model_kwargs).get("initial_image")
    if ia != ib and {ia, ib} != {"lplus_s", "lplus_s_kt"}:
        raise DataError(f"{main} (initial image {ia!r}) and {kt} ({ib!r}): calibrated items would not start "
                        "from the image the main weights were trained with")
    kwargs = {**a.model_kwargs, "uncalibrated_weights": True}
    if ib is not None:
        kwargs["initial_image"] = ib
    state = dict(a.state_dict)
    state.update({SECOND + k[len(PREFIX):]: v for k, v in b.state_dict.items() if k.startswith(PREFIX)})
    config = dict(a.config)
    config["model"] = {**dict(config.get("model") or {}), "name": a.model_name, "kwargs": kwargs}
    merged = Checkpoint(model_name=a.model_name, model_kwargs=kwargs, state_dict=state, config=config,
                        epoch=a.epoch, step=a.step)
    build_from_checkpoint(merged, f"{main} + {kt}")  # fits (strict) before anything is written
    return atomic_torch_save(merged.to_dict(), out, overwrite=overwrite)


def main(argv: list[str] | None = None) -> int:
    return run_checkpoint_tool(argv, "python -m cinerecon.train.uncalibrated_merge MAIN.pt KT.pt OUT.pt [--overwrite]",
                               3, merge_uncalibrated)


if __name__ == "__main__":
    sys.exit(main())
