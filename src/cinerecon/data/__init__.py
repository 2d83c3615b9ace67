"""Data: typed samples, our HDF5 format, simulators and converters, external readers."""

from .sample import CineBatch, CineSample, SampleMeta, collate

__all__ = ["CineBatch", "CineSample", "SampleMeta", "collate"]
