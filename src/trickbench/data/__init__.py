"""Data: sources (a registry of plug-ins), safe reading of archives, decoding, preparation and augmentation."""


class DataWarning(UserWarning):
    """Input that is tolerated but worth knowing about (skipped non-image members, unlabelled files)."""
