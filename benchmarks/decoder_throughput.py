"""Decoder throughput: Keras eager ``model(z)``, ``tf.function`` and :class:`NumpyDecoder`.

Samples per second at several batch sizes, side by side in one process: the three ways are
timed in interleaved rounds, so that load from other processes hits them alike. For scale, the
same run measures a plain float32 matrix product (GFLOP/s) and shows the fraction of that rate
each decoder reaches, from the decoder's FLOP count (multiply-adds with real pixels only: a
stride-2 transposed convolution counts 9/4 taps per output pixel, not the 9 of its
zero-inserted form). ``--chunks`` adds a sweep of NumpyDecoder's chunk size at the largest
batch. It also times the Jacobian of one latent vector (all d directions), interleaved the same
way: :meth:`NumpyDecoder.jacobian` against TensorFlow's forward mode (the fallback of
:func:`lenstronomy_vae.networks.jacobian.unit_flux_stamp_jacobian`), with their largest difference;
``--jacobian-chunks`` adds a sweep of ``JACOBIAN_CHUNK``. Prints a table and writes JSON.

    python benchmarks/decoder_throughput.py [--model NAME_OR_PATH] [--batches 1,32,256]
        [--seconds 1.5] [--threads N] [--chunks 1,2,4,8,16] [--jacobian-chunks 1,2,4,8]
        [--out FILE]

Without ``--model`` the decoder is the default architecture ``VAEConfig()`` with random
weights. ``--threads N`` limits BLAS and TensorFlow to N threads (1 is the setting for
parallel worker processes).
"""

import argparse
import os
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="VAE model name or .keras path (default: random VAEConfig())")
    parser.add_argument("--batches", default="1,32,256", help="comma-separated batch sizes")
    parser.add_argument("--seconds", type=float, default=1.5, help="timing budget per batch size and method")
    parser.add_argument("--threads", type=int, default=None, help="BLAS and TensorFlow threads (default: all)")
    parser.add_argument("--chunks", default="", help="NumpyDecoder chunk sizes to sweep at the largest batch")
    parser.add_argument("--jacobian-chunks", default="", help="NumpyDecoder.jacobian chunk sizes to sweep")
    parser.add_argument("--out", default="benchmarks/decoder_throughput.json")
    return parser.parse_args()


ARGS = parse_args()
if ARGS.threads:  # BLAS reads these when it is loaded: before the numpy import
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(ARGS.threads)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from lenstronomy_vae import fast_decoder  # noqa: E402
from lenstronomy_vae.networks.jacobian import _jvp_graph  # noqa: E402
from lenstronomy_vae.networks.model_files import load_vae  # noqa: E402
from lenstronomy_vae.networks.numpy_decoder import NumpyDecoder  # noqa: E402
from lenstronomy_vae.networks.vae import VAEConfig, build_decoder  # noqa: E402
from lenstronomy_vae.utils.files import write_json  # noqa: E402

ROUNDS = 5


def decoder_under_test(model):
    """The Keras decoder of a model file, or the default architecture with seeded random weights."""
    if model is not None:
        return load_vae(model).decoder
    keras.utils.set_random_seed(0)
    return build_decoder(VAEConfig())


def time_interleaved(functions, seconds):
    """Seconds per call of each function: ROUNDS rounds, each running every function in turn.

    Returns:
        {name: array of per-call seconds}.
    """
    for function in functions.values():  # warm-up: tracing, buffers, caches
        function()
    calls = {}
    for name, function in functions.items():
        begin = time.perf_counter()
        function()
        calls[name] = max(1, int(seconds / ROUNDS / max(time.perf_counter() - begin, 1e-6)))
    timings = {name: [] for name in functions}
    for _ in range(ROUNDS):
        for name, function in functions.items():
            for _ in range(calls[name]):
                begin = time.perf_counter()
                function()
                timings[name].append(time.perf_counter() - begin)
    return {name: np.array(values) for name, values in timings.items()}


def matmul_gflops(size=1024, seconds=1.0):
    """Median float32 GFLOP/s of a (size × size) @ (size × size) numpy product."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    out = np.empty_like(a)
    per_call = np.median(time_interleaved({"matmul": lambda: np.matmul(a, b, out=out)}, seconds)["matmul"])
    return 2 * size**3 / per_call / 1e9


def summary(seconds, batch, flops, matmul_rate):
    median = float(np.median(seconds))
    gflops = batch * flops / median / 1e9
    return {
        "samples_per_s": batch / median,
        "ms_per_call": 1e3 * median,
        "p16_ms": 1e3 * float(np.percentile(seconds, 16)),
        "p84_ms": 1e3 * float(np.percentile(seconds, 84)),
        "calls": len(seconds),
        "gflops": gflops,
        "fraction_of_matmul": gflops / matmul_rate,
    }


def main():
    if ARGS.threads:
        tf.config.threading.set_intra_op_parallelism_threads(ARGS.threads)
        tf.config.threading.set_inter_op_parallelism_threads(ARGS.threads)
    decoder = decoder_under_test(ARGS.model)
    fast = NumpyDecoder.from_keras(decoder)
    graph = tf.function(
        lambda z: decoder(z, training=False),
        input_signature=[tf.TensorSpec((None, fast.latent_dim), tf.float32)],
        reduce_retracing=True,
    )
    matmul_rate = matmul_gflops()
    batches = [int(b) for b in ARGS.batches.split(",")]
    rng = np.random.default_rng(0)
    results = {}
    for batch in batches:
        z = rng.standard_normal((batch, fast.latent_dim), dtype=np.float32)
        timings = time_interleaved({
            "keras eager": lambda: np.asarray(decoder(z, training=False)),
            "tf.function": lambda: graph(z).numpy(),
            "numpy": lambda: fast(z),
        }, ARGS.seconds)
        results[str(batch)] = {name: summary(seconds, batch, fast.flops, matmul_rate)
                               for name, seconds in timings.items()}
    chunks = {}
    if ARGS.chunks:
        batch = max(batches)
        z = rng.standard_normal((batch, fast.latent_dim), dtype=np.float32)
        default_chunk = fast_decoder.CHUNK
        functions = {}
        for chunk in (int(c) for c in ARGS.chunks.split(",")):
            def run(chunk=chunk):
                fast_decoder.CHUNK = chunk
                return fast(z)
            functions[str(chunk)] = run
        timings = time_interleaved(functions, ARGS.seconds)
        fast_decoder.CHUNK = default_chunk
        chunks = {"batch": batch, "samples_per_s": {c: batch / float(np.median(s)) for c, s in timings.items()}}

    jacobians = jacobian_timings(decoder, fast, rng)

    threads = ARGS.threads or "all"
    print(f"decoder {ARGS.model or 'VAEConfig() (random weights)'}: {fast.latent_dim} latents → "
          f"{fast.output_shape}, {fast.flops / 1e6:.2f} MFLOP/sample; {os.cpu_count()} CPU cores, "
          f"threads: {threads}; float32 matmul 1024³: {matmul_rate:.1f} GFLOP/s")
    print(f"{'batch':>6} {'method':>12} {'samples/s':>11} {'ms/call':>9} {'16–84 % ms':>17} "
          f"{'GFLOP/s':>8} {'of matmul':>9}")
    for batch, rows in results.items():
        for name, row in rows.items():
            print(f"{batch:>6} {name:>12} {row['samples_per_s']:11.1f} {row['ms_per_call']:9.3f} "
                  f"{row['p16_ms']:8.3f}–{row['p84_ms']:<8.3f} {row['gflops']:8.2f} "
                  f"{100 * row['fraction_of_matmul']:8.1f}%")
    if chunks:
        print(f"NumpyDecoder chunk size at batch {chunks['batch']}: " + ", ".join(
            f"{c}: {rate:.0f}/s" for c, rate in chunks["samples_per_s"].items()))
    print(f"Jacobian of one latent vector ({fast.latent_dim} directions), ms/call (16–84 %): " + ", ".join(
        f"{name} {row['ms_per_call']:.2f} ({row['p16_ms']:.2f}–{row['p84_ms']:.2f})"
        for name, row in jacobians["methods"].items())
        + f"; numpy {jacobians['speedup']:.1f}× faster; max |Δ| = {jacobians['max_abs_difference']:.1e} "
        f"of max |J| = {jacobians['max_abs_jacobian']:.1e}")
    if jacobians["chunk_sweep_ms"]:
        print("NumpyDecoder.jacobian chunk size: " + ", ".join(
            f"{c}: {ms:.2f} ms" for c, ms in jacobians["chunk_sweep_ms"].items()))
    write_json(ARGS.out, {
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "model": ARGS.model,
        "decoder": {"latent_dim": fast.latent_dim, "output_shape": list(fast.output_shape),
                    "flops_per_sample": fast.flops, "parameters": decoder.count_params()},
        "matmul_gflops": matmul_rate,
        "results": results,
        "numpy_chunk_sweep": chunks,
        "jacobian": jacobians,
    })


def jacobian_timings(decoder, fast, rng):
    """Jacobian of one latent vector: NumpyDecoder.jacobian vs TensorFlow forward mode, interleaved."""
    z = rng.standard_normal(fast.latent_dim, dtype=np.float32)
    forward_mode = _jvp_graph(decoder, fast.latent_dim)
    functions = {
        "numpy": lambda: fast.jacobian(z),
        "tf forward mode": lambda: [t.numpy() for t in forward_mode(tf.constant(z))],
    }
    default_chunk = fast_decoder.JACOBIAN_CHUNK
    for chunk in (int(c) for c in ARGS.jacobian_chunks.split(",") if c):
        def run(chunk=chunk):
            fast_decoder.JACOBIAN_CHUNK = chunk
            try:
                return fast.jacobian(z)
            finally:
                fast_decoder.JACOBIAN_CHUNK = default_chunk
        functions[f"chunk {chunk}"] = run
    timings = time_interleaved(functions, ARGS.seconds)
    methods = {name: summary(timings[name], 1, 0, 1.0) for name in ("numpy", "tf forward mode")}
    for row in methods.values():  # one call is one Jacobian: no sample or FLOP rates
        del row["samples_per_s"], row["gflops"], row["fraction_of_matmul"]
    (_, numpy_jacobian), (_, tf_jacobian) = fast.jacobian(z), forward_mode(tf.constant(z))
    return {
        "latent_dim": fast.latent_dim,
        "chunk": default_chunk,
        "methods": methods,
        "speedup": methods["tf forward mode"]["ms_per_call"] / methods["numpy"]["ms_per_call"],
        "max_abs_difference": float(np.abs(numpy_jacobian - tf_jacobian.numpy()).max()),
        "max_abs_jacobian": float(np.abs(tf_jacobian.numpy()).max()),
        "chunk_sweep_ms": {name.split()[1]: 1e3 * float(np.median(seconds))
                           for name, seconds in timings.items() if name.startswith("chunk ")},
    }


if __name__ == "__main__":
    main()
