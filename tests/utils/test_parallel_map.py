"""The one parallel map of the simulators: same results in the same order, whatever the number of processes."""

import functools

import pytest

from lenstronomy_vae.utils.parallel import chunk_bounds, parallel_map


def _power(item, exponent):
    return item**exponent


@pytest.mark.parametrize("n, processes, max_chunk", [(1, 1, 64), (10, 2, 64), (1000, 2, 32), (7, 4, 3)])
def test_chunk_bounds_cover_every_item_once_in_order(n, processes, max_chunk):
    bounds = chunk_bounds(n, processes, max_chunk)
    assert [i for start, stop in bounds for i in range(start, stop)] == list(range(n))
    assert all(0 < stop - start <= max_chunk for start, stop in bounds)


def test_two_processes_give_the_serial_results_in_order():
    work = functools.partial(_power, exponent=3)
    items = list(range(23))
    assert list(parallel_map(work, items, processes=2)) == list(parallel_map(work, items)) == [i**3 for i in items]
