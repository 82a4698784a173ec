"""Simulation configurations: stored as JSON beside their data, with the checks the two simulators share."""

import dataclasses

from lenstronomy_vae.sims.rendering import EXACT_HALF_WIDTH
from lenstronomy_vae.sims.surveys import SURVEYS, get_survey
from lenstronomy_vae.utils.checks import checked_range


class JSONConfig:
    """Mixin for dataclass configurations stored as JSON beside the data they generated."""

    def to_dict(self):
        """A JSON-ready dict (tuples become lists)."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data):
        """Inverse of :meth:`to_dict`; unknown fields are an error naming them."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {unknown}; known fields: {sorted(known)}")
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in data.items()})


class SimConfig(JSONConfig):
    """Mixin of the simulation configurations (dataclasses): the checks of the fields they share.

    A configuration has ``survey`` (a key of :data:`lenstronomy_vae.sims.surveys.SURVEYS`),
    ``mag_range`` (AB magnitudes), ``hlr_range`` (arcsec), ``min_flux_in_stamp`` (a fraction) and
    ``max_offset`` (pixels); its own ``__post_init__`` calls this one first, then checks the rest.
    """

    def __post_init__(self):
        if self.survey not in SURVEYS:
            raise ValueError(f"unknown survey {self.survey!r}; known surveys: {sorted(SURVEYS)}")
        self.mag_range = checked_range("mag_range", self.mag_range)
        self.hlr_range = checked_range("hlr_range", self.hlr_range, low=0.0)
        if not 0.0 <= self.min_flux_in_stamp <= 1.0:
            raise ValueError(f"min_flux_in_stamp must lie in [0, 1], got {self.min_flux_in_stamp}")
        largest = self.largest_offset
        if not 0.0 <= self.max_offset <= largest:
            raise ValueError(f"max_offset must lie in [0, {largest}] pixels for {get_survey(self.survey).stamp_size}-"
                             f"pixel stamps, got {self.max_offset}")

    @property
    def largest_offset(self):
        """Largest shift of a galaxy centre from the stamp centre [pixels]: rendering integrates the 7 × 7
        pixels around each centre exactly, and they must lie in the stamp."""
        return get_survey(self.survey).stamp_size / 2 - EXACT_HALF_WIDTH - 1
