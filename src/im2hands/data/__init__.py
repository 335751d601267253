"""Data: the sample format (``sample``), the torch ``Dataset`` (``dataset``) and the synthetic generator."""

from im2hands.data.sample import SampleFileError, read_sample, write_sample

__all__ = ["SampleFileError", "read_sample", "write_sample"]
