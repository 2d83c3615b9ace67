"""cinerecon: accelerated cardiac cine MRI reconstruction (CRUNet-MR, baselines, evaluation)."""

__version__ = "0.1.0"
