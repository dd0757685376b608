"""Argument parsing shared by the sub-commands."""
from __future__ import annotations

import argparse


def int_at_least(text: str, minimum: int, expected: str) -> int:
    """``text`` as an integer of at least ``minimum``: the core of an argparse ``type=`` function.

    Anything else, a non-number included, raises ArgumentTypeError "must be <expected>, not
    '<text>'", which argparse prints as that option's error.
    """
    try:
        value = int(text)
    except ValueError:
        value = None  # not a number: the same message as a number out of range
    if value is None or value < minimum:
        raise argparse.ArgumentTypeError(f"must be {expected}, not {text!r}")
    return value
