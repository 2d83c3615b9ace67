"""Process-wide compute settings: the CPU allocator, TF32 / cuDNN, bf16 inference precision.

**Allocator.** glibc serves every allocation above its mmap threshold (which grows to at
most 32 MiB) with a fresh ``mmap`` and returns it with ``munmap`` when freed, so a model
whose feature maps exceed 32 MiB (CRUNet-MR at 64 channels on a batch of slices) page-faults
its whole working set in again at every layer. :func:`tune_cpu_allocator` stops that for the
running process through ``mallopt``: no mmapped chunks (``M_MMAP_MAX = 0``) and no trimming
of the heap top (``M_TRIM_THRESHOLD``), so freed memory is reused. The cost: the process
keeps its peak heap until it exits (RSS does not shrink after a large batch). ``cinerecon``
and the benchmarks call it at start-up; set ``CINERECON_MALLOC=system`` (or any glibc
``MALLOC_*_`` variable, which then wins) to keep the system's behaviour. It does nothing
where glibc's ``mallopt`` is not available (macOS, musl).

**TF32 / cuDNN.** :func:`configure_cuda` sets ``torch.backends.cuda.matmul.allow_tf32``,
``torch.backends.cudnn.allow_tf32`` and ``torch.backends.cudnn.benchmark`` explicitly,
instead of PyTorch's defaults (TF32 off for matmuls but on for convolutions).

**bf16.** :func:`check_precision` accepts ``fp32``, ``bf16`` (refused, in one line, where the
device has no bf16 arithmetic: a CPU without ``avx512_bf16`` / ``amx_bf16``, a GPU before
Ampere) or ``bf16-or-fp32`` (bf16 where supported, else fp32, said once on stderr).
:func:`precision_context` is the matching autocast; complex FFTs and data consistency stay
in float32 (autocast leaves them alone) and every model casts its network output back to
float32.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from contextlib import AbstractContextManager, nullcontext

import torch

from .errors import ConfigError

#: glibc mallopt parameter numbers (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
#: The precisions ``--precision`` accepts.
PRECISIONS = ("fp32", "bf16", "bf16-or-fp32")
_ENV_OPT_OUT = "CINERECON_MALLOC"
_GLIBC_ENV = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
_tuned: str | None = None


def _libc() -> ctypes.CDLL:
    """The C library (glibc on Linux); OSError where it cannot be loaded."""
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def tune_cpu_allocator() -> str:
    """Keep freed memory in glibc's heap for reuse (see the module docstring); idempotent.

    Returns:
        What was done, one phrase (for benchmark headers and logs).
    """
    global _tuned
    if _tuned is not None:
        return _tuned
    if os.environ.get(_ENV_OPT_OUT, "").lower() in ("system", "default", "0", "off"):
        _tuned = f"system allocator ({_ENV_OPT_OUT}={os.environ[_ENV_OPT_OUT]})"
        return _tuned
    given = [v for v in _GLIBC_ENV if v in os.environ]
    if given:
        _tuned = f"glibc malloc as set by {', '.join(given)}"
        return _tuned
    try:
        mallopt = _libc().mallopt
    except (OSError, AttributeError):
        _tuned = "system allocator (no glibc mallopt here)"
        return _tuned
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    _tuned = "glibc malloc: no mmap, no trim (freed memory reused)" if ok else "system allocator (mallopt refused)"
    return _tuned


def configure_cuda(tf32: bool, benchmark: bool = False) -> None:
    """Set TF32 for CUDA matmuls and cuDNN convolutions, and cuDNN autotuning, explicitly.

    Args:
        tf32: allow TensorFloat-32 (faster on Ampere and later, ~1e-3 relative precision);
            False computes in full float32 (golden checks, reproducibility).
        benchmark: let cuDNN time its algorithms for each new input shape (worth it when
            shapes repeat, as in training on fixed-size crops).
    """
    torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
    torch.backends.cudnn.allow_tf32 = bool(tf32)
    torch.backends.cudnn.benchmark = bool(benchmark)


def cpu_flags() -> set[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def bf16_support(device: torch.device | str) -> tuple[bool, str]:
    """(whether ``device`` computes in bf16 natively, the reason in words)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ok, f"{torch.cuda.get_device_name(dev)} {'supports' if ok else 'lacks'} bf16"
    if dev.type != "cpu":
        return False, f"bf16 inference is only offered on cpu and cuda, not {dev.type}"
    flags = cpu_flags() & {"avx512_bf16", "amx_bf16"}
    if flags:
        return True, f"this CPU has {', '.join(sorted(flags))}"
    return False, "this CPU has neither avx512_bf16 nor amx_bf16 (lscpu flags), so bf16 would be emulated and slow"


def check_precision(precision: str, device: torch.device | str, flag: str = "--precision") -> str:
    """Resolve ``precision`` for ``device`` to ``"fp32"`` or ``"bf16"``; refuse bf16 where unsupported.

    Raises:
        ConfigError: one line naming ``flag`` and the value: an unknown precision, or
            ``bf16`` on a device without bf16 arithmetic (``bf16-or-fp32`` falls back instead).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"{flag} {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return "fp32"
    ok, why = bf16_support(device)
    if ok:
        return "bf16"
    if precision == "bf16":
        raise ConfigError(f"{flag} bf16: {why}; use {flag} fp32, or {flag} bf16-or-fp32 to fall back to fp32")
    print(f"{flag} bf16-or-fp32: {why}; computing in fp32", file=sys.stderr)
    return "fp32"


def precision_context(precision: str, device: torch.device | str) -> AbstractContextManager:
    """bf16 autocast on ``device`` for ``"bf16"``, nothing for ``"fp32"``."""
    if precision == "bf16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return nullcontext()


# ----------------------------------------------------------------------------- host memory (Linux)

def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_memory_bytes() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (None where it cannot be read)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def reusable_heap_bytes() -> int | None:
    """Free bytes glibc's heap holds for reuse (``mallinfo2().fordblks``, all arenas); None where
    unavailable (glibc < 2.33, musl, macOS). MemAvailable does not count them."""

    class MallInfo2(ctypes.Structure):
        _fields_ = [(f, ctypes.c_size_t) for f in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                    "fsmblks", "uordblks", "fordblks", "keepcost")]

    try:
        fn = _libc().mallinfo2
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [], MallInfo2
    return int(fn().fordblks)


def measure_peak_rss(fn):
    """Run ``fn()``; return (its result, the rise of this process's peak RSS during it in bytes, or None).

    Resets the peak (``/proc/self/clear_refs``, Linux >= 4.0) first; None where that is not allowed.
    """
    rss = _status_kib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return fn(), None
    hwm = _status_kib("VmHWM")
    if rss is None or hwm is None or hwm > 1.1 * rss + 1024:  # the reset did not take
        return fn(), None
    out = fn()
    peak = _status_kib("VmHWM")
    return out, None if peak is None else max(0, peak - rss) * 1024
