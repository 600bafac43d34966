"""Checks of user-given values, in one place, each failing with a one-line UserError."""

from __future__ import annotations

from .errors import UserError


def check_image_side(label: str, value: int, multiple: int) -> None:
    """Image sides (and tile sizes) are positive multiples of the VAE's scale factor."""
    if value <= 0 or value % multiple:
        nearest = max(multiple, round(value / multiple) * multiple)
        raise UserError(f"{label} {value} must be a positive multiple of {multiple} (e.g. {nearest})")
