"""A pass runs with Python's cycle collector off, and always turns it back on."""

from __future__ import annotations

import gc

import pytest

from devspace.sync.once import without_collector_pauses


def test_the_collector_is_off_during_a_pass_and_on_after_it_even_after_an_error() -> None:
    assert gc.isenabled()
    with without_collector_pauses():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), without_collector_pauses():
        raise RuntimeError("the pass failed")
    assert gc.isenabled()


def test_a_pass_inside_a_pass_leaves_it_off_until_the_outer_one_ends() -> None:
    with without_collector_pauses():
        with without_collector_pauses():
            pass
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_turned_off_by_the_program_stays_off() -> None:
    gc.disable()
    try:
        with without_collector_pauses():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
