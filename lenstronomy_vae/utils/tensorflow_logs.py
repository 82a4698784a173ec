"""TensorFlow imported quietly: its start-up log lines held back, unless the user asked for them.

TensorFlow 2.21 writes its start-up notes (oneDNN, CUDA drivers, CPU features, absl's notice) to
file descriptor 2 while it loads, whatever ``TF_CPP_MIN_LOG_LEVEL`` says; that variable, read once
at the first import, still silences what it reaches later (e.g. ``failed call to cuInit``).
"""

import contextlib
import os
import re
import sys
import tempfile

# A line of TensorFlow's C++ log (absl's format, or TSL's dated one) or absl's notice before its first line.
_TENSORFLOW_LOG_LINE = re.compile(
    r"([IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] "
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] \S+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR)"
)


@contextlib.contextmanager
def without_tensorflow_log_lines():
    """Hold back the TensorFlow log lines written to file descriptor 2 inside the block; pass the rest on after it."""
    try:
        sys.stderr.flush()
        held = tempfile.TemporaryFile()
    except (AttributeError, OSError):  # no stderr (None under pythonw) or no temporary file: leave stderr be
        yield
        return
    with held:
        try:
            saved = os.dup(2)
        except OSError:  # a closed stderr
            yield
            return
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not _TENSORFLOW_LOG_LINE.match(line)))


def import_tensorflow_quietly():
    """Import TensorFlow with ``TF_CPP_MIN_LOG_LEVEL=3`` and its start-up lines held back.

    Nothing is changed when the user set ``TF_CPP_MIN_LOG_LEVEL`` or imported TensorFlow already:
    their choice stands.

    Returns:
        bool: whether TensorFlow was quieted here.
    """
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
        return False
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    with without_tensorflow_log_lines():
        import tensorflow  # noqa: F401  (first imported here, so that its start-up lines are held back)
    global SET_HERE
    SET_HERE = True
    return True


# Whether import_tensorflow_quietly set TF_CPP_MIN_LOG_LEVEL (not the user): child processes that start
# Python afresh should not inherit it, so that their own import quiets TensorFlow the same way.
SET_HERE = False
