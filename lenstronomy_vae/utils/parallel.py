"""One way to spread independent work items over forked worker processes, in order."""

import multiprocessing


def chunk_bounds(n, processes, max_chunk):
    """(start, stop) bounds covering ``range(n)``: about 8 chunks per process, at most ``max_chunk`` items each."""
    chunk = max(1, min(max_chunk, n // (8 * processes)))
    return [(start, min(start + chunk, n)) for start in range(0, n, chunk)]


def parallel_map(function, items, processes=1):
    """Yield ``function(item)`` for every item, in order.

    Args:
        function: a picklable callable of one argument (e.g. a module-level function or a
            ``functools.partial`` of one).
        items: a sequence of arguments.
        processes: worker processes, forked from this one; 1 runs everything in this process.

    Results are yielded as they come, so a caller can fill its arrays and a progress bar while
    the workers go on.
    """
    if processes == 1:
        yield from map(function, items)
        return
    with multiprocessing.get_context("fork").Pool(min(processes, len(items))) as pool:
        yield from pool.imap(function, items)
