"""A float32 numpy forward pass of the VAE decoder, for likelihood loops.

lenstronomy asks for one new latent vector at a time, where a Keras call costs a millisecond or
more of framework overhead for a few MFLOP of arithmetic. :class:`NumpyDecoder` reads the
weights of a plain decoder chain (Dense → Reshape → stride-2 Conv2DTranspose … → Conv2D, with
leaky-ReLU or linear activations) once and evaluates it with a few BLAS matrix products per
layer.

Formulation (sub-pixel decomposition). A 3×3, stride-2, 'same' transposed convolution is four
small convolutions on the input grid, one per output phase (row, column parity), interleaved
into the 2× larger output. With TensorFlow's alignment (output 2i + t gets input i · tap t)::

    out[2m,   2n  ] ← x[m, n], x[m−1, n], x[m, n−1], x[m−1, n−1]   (taps (0|2, 0|2))
    out[2m,   2n+1] ← x[m, n], x[m−1, n]                           (taps (0|2, 1))
    out[2m+1, 2n  ] ← x[m, n], x[m, n−1]                           (taps (1, 0|2))
    out[2m+1, 2n+1] ← x[m, n]                                      (tap  (1, 1))

so no multiply touches a zero-inserted pixel: 9 multiply-adds per input pixel and channel
pair, where the zero-inserted form spends 36. A stride-1 convolution is the one-phase case.

Activations are channels-first, ``(C, n, H, W)``, in buffers with a zero border ("halo") as
wide as the next layer's shifts. In a flattened buffer a shift (dy, dx) is the constant offset
``dy · W_padded + dx``, so the shifted copies of the input (the "im2col" rows) are contiguous
slice copies, and each phase is one matrix product
``(C_out, taps · C_in + 1) @ (taps · C_in + 1, n · H_padded · W_padded)`` over a run of those
rows, a row of ones carrying the bias. The leaky ReLU and one strided copy into the next
layer's buffer follow. Channels-first keeps every element-wise step on long contiguous rows.
All buffers, views and bound numpy calls are prepared once per thread (a "plan"), so that a
call runs only about 75 BLAS and ufunc calls for the default decoder. A product larger than
``MAX_PRODUCT`` is split into blocks of columns, to stay on OpenBLAS' single-threaded
small-matrix kernel.

Jacobian (:meth:`NumpyDecoder.jacobian`), by forward mode. A one-sample primal pass records
each leaky ReLU's slope mask (1 where the pre-activation is positive, the slope elsewhere);
then the d tangents e_1 … e_d, a few at a time, go through the same linear maps without bias
(rows without the ones row), each activation replaced by a product with the primal's mask.
After a first Dense layer the tangent of e_i is row i of its kernel times the mask, so no
product is needed there. It costs about d one-sample passes of the image layers, ~6 ms for the
default decoder (d = 32), 4–5× less than TensorFlow's forward mode.

This module imports numpy only: a :class:`NumpyDecoder` runs without TensorFlow once built.
"""

import functools
import threading

import numpy as np

# Keras 3 ``activation="leaky_relu"`` is keras.activations.leaky_relu(x, negative_slope=0.2).
KERAS_LEAKY_RELU_SLOPE = 0.2

# Activation name in a Keras layer config → negative slope (None: linear).
_ACTIVATIONS = {"linear": None, "leaky_relu": KERAS_LEAKY_RELU_SLOPE}

# Samples per pass through the layers. One: single-threaded, larger chunks were no faster per
# sample (the matrix products are already efficient at one sample), while their larger matrix
# products are where OpenBLAS starts a second thread, which spends a whole second core for a
# few per cent, and slows calls 10–100× when that core is busy (a parallel fit's other
# workers). Measured with benchmarks/decoder_throughput.py --chunks.
CHUNK = 1

# Largest matrix product (m·n·k) per BLAS call; larger ones are split into column blocks. Up to
# about 10⁶, the OpenBLAS that numpy ships (0.3.31, measured on AVX-512 x86-64) runs its
# unpacked small-matrix kernel on the calling thread at ~100 GFLOP/s; beyond, it packs (~60
# GFLOP/s on one thread) and starts a second thread, which waits 10–100× longer than the
# product takes when the other core is busy.
MAX_PRODUCT = 1_000_000

# Tangent directions per pass of NumpyDecoder.jacobian: a few share each pass's per-call
# overhead, while one pass's buffers still stay near the core's cache. For the default decoder,
# 4 beat 1, 2, 8 and 16 by 5–40 % (benchmarks/decoder_throughput.py --jacobian-chunks).
JACOBIAN_CHUNK = 4

_step = functools.partial  # a numpy call bound to its (fixed) arrays, run once per chunk


def _zeros(*shape):
    return np.zeros(shape, dtype=np.float32)


def _matmul_steps(a, b, out):
    """Steps for out ← a @ b, in blocks of b's and out's columns of at most MAX_PRODUCT m·n·k."""
    rows, inner = a.shape
    columns = b.shape[1]
    block = max(1, MAX_PRODUCT // max(1, rows * inner))
    return [_step(np.matmul, a, b[:, first:first + block], out=out[:, first:first + block])
            for first in range(0, columns, block)]


def _leaky_relu_steps(x, slope):
    """Steps for x ← max(x, slope·x) in place (leaky ReLU, 0 < slope < 1); none if linear."""
    if slope is None:
        return []
    scaled = np.empty_like(x)
    return [_step(np.multiply, x, np.float32(slope), out=scaled), _step(np.maximum, x, scaled, out=x)]


def _activation_steps(x, slope, mask):
    """Leaky-ReLU steps for x in place; with a ``mask`` buffer (x's shape), record its slope too.

    The mask is the activation's derivative, 1 where x > 0 and ``slope`` elsewhere (the
    derivative TensorFlow uses), and the activation is then x ← mask · x, which is
    max(x, slope·x) to the bit.
    """
    if slope is None:
        return []
    if mask is None:
        return _leaky_relu_steps(x, slope)
    positive = np.empty(x.shape, dtype=bool)
    slope, rise = np.float32(slope), np.float32(1) - np.float32(slope)
    assert rise + slope == 1, f"slope {slope}: mask = rise·(x > 0) + slope is not 1 for x > 0"
    return [_step(np.greater, x, np.float32(0), out=positive), _step(np.multiply, positive, rise, out=mask),
            _step(np.add, mask, slope, out=mask), _step(np.multiply, x, mask, out=x)]


class _Dense:
    """Dense layer: (n, d_in) → (n, d_out)."""

    takes_image = False
    halo_in = None  # reads a vector, not an image with a border

    def __init__(self, kernel, bias, slope):
        self.kernel = np.ascontiguousarray(kernel, dtype=np.float32)  # (d_in, d_out)
        self.bias = np.asarray(bias, dtype=np.float32)
        self.slope = slope

    def output_shape(self, shape):
        return (self.kernel.shape[1],)

    def flops(self, shape):
        return 2 * self.kernel.size

    def plan(self, x, halo_out, steps, masks=None):
        """Append the steps that compute this layer from buffer x; return the output buffer.

        With a list ``masks`` (a one-sample primal pass), also record the activation's slope
        mask (or None if linear) in it, for :meth:`plan_tangents`.
        """
        out = _zeros(x.shape[0], self.kernel.shape[1])
        steps += _matmul_steps(x, self.kernel, out) + [_step(np.add, out, self.bias, out=out)]
        mask = None if masks is None or self.slope is None else _zeros(*out.shape)
        steps += _activation_steps(out, self.slope, mask)
        if masks is not None:
            masks.append(mask)
        return out

    def plan_tangents(self, x, halo_out, steps, mask):
        """Steps for the tangents x (n, d_in) → (n, d_out): no bias, times the primal's slope mask."""
        out = _zeros(x.shape[0], self.kernel.shape[1])
        steps += _matmul_steps(x, self.kernel, out)
        if mask is not None:
            steps.append(_step(np.multiply, out, mask, out=out))
        return out

    def seed_tangents(self, first, stop, mask, out):
        """Tangents of latent directions e_first … e_(stop−1) after this (first) layer into out.

        The tangent of e_i is row i of the kernel, times the slope mask: no product needed.
        """
        if mask is None:
            np.copyto(out, self.kernel[first:stop])
        else:
            np.multiply(self.kernel[first:stop], mask, out=out)


class _ToImage:
    """Keras Reshape (n, H·W·C) → (n, H, W, C), written as a channels-first image with halo."""

    takes_image = False
    halo_in = None

    def __init__(self, shape):
        self.shape = tuple(int(s) for s in shape)

    def output_shape(self, shape):
        if np.prod(shape) != np.prod(self.shape):
            raise NotImplementedError(f"cannot reshape {shape} to {self.shape}")
        return self.shape

    def flops(self, shape):
        return 0

    def plan(self, x, halo_out, steps, masks=None):
        if masks is not None:
            masks.append(None)
        return self.plan_tangents(x, halo_out, steps, None)

    def plan_tangents(self, x, halo_out, steps, mask):
        """A reshape is linear without bias: tangents and values go the same way."""
        height, width, channels = self.shape
        top, bottom, left, right = halo_out
        image = _zeros(channels, x.shape[0], top + height + bottom, left + width + right)
        interior = image[:, :, top:top + height, left:left + width]
        steps.append(_step(np.copyto, interior, x.reshape(-1, *self.shape).transpose(3, 0, 1, 2)))
        return image


class _Convolution:
    """A convolution as ``stride²`` phase convolutions on the input grid ('same' padding).

    Output pixel (stride·m + a, stride·n + b) of phase (a, b) is
    Σ_(dy, dx) block(dy, dx) @ x[:, m + dy, n + dx] over that phase's taps. Two evaluations,
    whichever moves less data (the layer's shape decides, once):

    * gather: copy the input once per shift into the rows of one matrix, then one matrix
      product per phase over a contiguous run of those rows (needs ``shifts`` ordered so that
      every phase's shifts are a run); for C_in · shifts ≤ C_out · taps.
    * scatter: one matrix product of the input by all taps' blocks, then per phase the sum of
      its shifted tap planes; for few output channels (the final single-band layer).

    Args:
        phases: {(a, b): {(dy, dx): block (C_out, C_in)}}; every phase has the tap (0, 0).
        shifts: the union of the phases' shifts, in the order the gather form uses.
        bias: (C_out,).
        stride: upsampling factor (1 for a plain convolution).
        slope: leaky-ReLU negative slope, or None for linear.
    """

    takes_image = True

    def __init__(self, phases, shifts, bias, stride, slope):
        blocks = [block for taps in phases.values() for block in taps.values()]
        self.c_out, c_in = blocks[0].shape
        self.bias = np.asarray(bias, dtype=np.float32).reshape(-1, 1)
        self.stride = stride
        self.slope = slope
        self.phase_offsets = list(phases)
        self.gather = c_in * len(shifts) <= self.c_out * len(blocks)
        self.runs = []  # per phase: (first, stop) in self.shifts (scatter), row slice (gather)
        if self.gather:
            # Rows: C_in per shift, plus one row of ones right after the (0, 0) shift's rows.
            # Every phase has that shift, so its run of rows takes in the ones row, and its
            # matrix the bias as the matching column: the bias costs no pass of its own.
            self.shifts = list(shifts)
            self.matrices = []
            # Tangents (no bias): rows without the ones row, matrices without the bias column.
            self.linear_runs, self.linear_matrices = [], []
            zero = self.shifts.index((0, 0))
            self.ones_row = (zero + 1) * c_in
            self.row_starts = [k * c_in + (k > zero) for k in range(len(self.shifts))]
            for taps in phases.values():
                indices = sorted(self.shifts.index(shift) for shift in taps)
                first, stop = indices[0], indices[-1] + 1
                assert stop - first == len(taps), f"shift order {self.shifts} splits the taps {list(taps)}"
                self.runs.append(slice(self.row_starts[first], self.row_starts[stop - 1] + c_in + (stop - 1 == zero)))
                columns = []
                for k in range(first, stop):
                    columns.append(taps[self.shifts[k]])
                    if k == zero:
                        columns.append(self.bias)
                self.matrices.append(np.concatenate(columns, axis=1))
                self.linear_runs.append(slice(first * c_in, stop * c_in))
                self.linear_matrices.append(np.concatenate([taps[self.shifts[k]] for k in range(first, stop)], axis=1))
        else:
            # One shift per tap, (0, 0) first in each phase: its plane covers every column and
            # accumulates the others.
            self.shifts, ordered_blocks = [], []
            for taps in phases.values():
                ordered = sorted(taps, key=lambda shift: shift != (0, 0))
                self.runs.append((len(self.shifts), len(self.shifts) + len(ordered)))
                self.shifts += ordered
                ordered_blocks += [taps[shift] for shift in ordered]
            self.matrix = np.concatenate(ordered_blocks, axis=0)  # (taps · C_out, C_in)
        self.flops_per_pixel = 2 * c_in * self.c_out * len(blocks)  # per input pixel
        dys, dxs = [dy for dy, _ in self.shifts], [dx for _, dx in self.shifts]
        self.halo_in = (max(0, -min(dys)), max(0, max(dys)), max(0, -min(dxs)), max(0, max(dxs)))

    @classmethod
    def transposed(cls, kernel, bias, slope):
        """From a Keras Conv2DTranspose kernel (3, 3, C_out, C_in), stride 2, 'same' padding.

        TensorFlow's output pixel o gets x[i]·w[t] for o = 2i + t (no crop at the top-left for
        k = 3, s = 2): even o = 2m from (i, t) = (m, 0), (m − 1, 2); odd o = 2m + 1 from (m, 1).
        """
        kernel = np.asarray(kernel, dtype=np.float32)
        along = {0: ((0, 0), (-1, 2)), 1: ((0, 1),)}  # phase → ((shift, tap), ...) along one axis
        phases = {
            (a, b): {(dy, dx): kernel[ty, tx] for dy, ty in along[a] for dx, tx in along[b]}
            for a in (0, 1) for b in (0, 1)
        }
        # Runs: (0, 0) all four, (0, 1) [0:2], (1, 0) [1:3], (1, 1) [1:2].
        return cls(phases, [(-1, 0), (0, 0), (0, -1), (-1, -1)], bias, 2, slope)

    @classmethod
    def convolution(cls, kernel, bias, slope):
        """From a Keras Conv2D kernel (kh, kw, C_in, C_out), stride 1, 'same' padding.

        Output (i, j) = Σ x(i + ti − pt, j + tj − pl) · w(ti, tj) with TensorFlow's top/left
        padding pt, pl = (k − 1) // 2.
        """
        kernel = np.asarray(kernel, dtype=np.float32)
        kh, kw = kernel.shape[:2]
        pt, pl = (kh - 1) // 2, (kw - 1) // 2
        taps = {(ti - pt, tj - pl): kernel[ti, tj].T for ti in range(kh) for tj in range(kw)}
        return cls({(0, 0): taps}, list(taps), bias, 1, slope)

    def output_shape(self, shape):
        height, width, _ = shape
        return (self.stride * height, self.stride * width, self.c_out)

    def flops(self, shape):
        height, width, _ = shape
        return self.flops_per_pixel * height * width

    def plan(self, x, halo_out, steps, masks=None):
        """Steps from x (C_in, n, H + halo_in, W + halo_in) to (C_out, n, sH + halo_out, sW + halo_out).

        With a list ``masks`` (a one-sample primal pass), also record the activation's slope
        mask (or None if linear) in it, as an array (phases, C_out, plane size), for
        :meth:`plan_tangents`.
        """
        planes = self._plan_products(x, steps, bias=True)
        mask = None if masks is None or self.slope is None else _zeros(len(planes), *planes[0].shape)
        if self.gather:  # the phases' planes are one array: one pass for all
            steps += _activation_steps(planes, self.slope, mask)
        else:
            for index, plane in enumerate(planes):
                steps += _activation_steps(plane, self.slope, None if mask is None else mask[index])
        if masks is not None:
            masks.append(mask)
        return self._plan_interleave(planes, x.shape, halo_out, steps)

    def plan_tangents(self, x, halo_out, steps, mask):
        """Steps for the n tangents x: the same products without bias, times the primal's
        slope mask (recorded by :meth:`plan` of a one-sample pass; None if linear), the same
        for every tangent."""
        n = x.shape[1]
        planes = self._plan_products(x, steps, bias=False)
        if mask is not None:
            size = mask.shape[-1]
            if self.gather:
                per_sample = planes.reshape(len(planes), self.c_out, n, size)
                steps.append(_step(np.multiply, per_sample, mask[:, :, None], out=per_sample))
            else:
                for plane, plane_mask in zip(planes, mask):
                    per_sample = plane.reshape(self.c_out, n, size)
                    steps.append(_step(np.multiply, per_sample, plane_mask[:, None], out=per_sample))
        return self._plan_interleave(planes, x.shape, halo_out, steps)

    def _plan_products(self, x, steps, bias):
        """Steps for the phases' pre-activations over the whole padded grid; returns the planes
        (phase, C_out, n · H_padded · W_padded): one array (gather) or a list of views (scatter)."""
        c_in, _, _, padded_width = x.shape
        flat = x.reshape(c_in, -1)
        size = flat.shape[1]
        # Column p of a shifted copy is input position p + offset. Columns whose source falls
        # outside the buffer belong to halo positions, whose results are discarded.
        offsets = [dy * padded_width + dx for dy, dx in self.shifts]
        spans = [slice(max(0, -offset), size - max(0, offset)) for offset in offsets]
        sources = [slice(span.start + offset, span.stop + offset) for span, offset in zip(spans, offsets)]
        if self.gather:
            if bias:
                rows = _zeros(len(self.shifts) * c_in + 1, size)  # out-of-range columns stay zero
                rows[self.ones_row] = 1.0
                row_starts, runs, matrices = self.row_starts, self.runs, self.matrices
            else:
                rows = _zeros(len(self.shifts) * c_in, size)
                row_starts = range(0, len(self.shifts) * c_in, c_in)
                runs, matrices = self.linear_runs, self.linear_matrices
            steps += [_step(np.copyto, rows[start:start + c_in, span], flat[:, source])
                      for start, span, source in zip(row_starts, spans, sources)]
            planes = _zeros(len(runs), self.c_out, size)
            for plane, run, matrix in zip(planes, runs, matrices):
                steps += _matmul_steps(matrix, rows[run], plane)
            return planes
        products = _zeros(len(self.shifts), self.c_out, size)
        steps += _matmul_steps(self.matrix, flat, products.reshape(-1, size))
        planes = [products[first] for first, _ in self.runs]
        for plane, (first, stop) in zip(planes, self.runs):
            steps += [_step(np.add, plane[:, spans[k]], products[k, :, sources[k]], out=plane[:, spans[k]])
                      for k in range(first + 1, stop)]
            if bias:
                steps.append(_step(np.add, plane, self.bias, out=plane))
        return planes

    def _plan_interleave(self, planes, in_shape, halo_out, steps):
        """Steps copying each phase's interior into its pixels of a new output buffer (with
        halo_out); returns the buffer."""
        _, n, padded_height, padded_width = in_shape
        top, bottom, left, right = self.halo_in
        height, width = padded_height - top - bottom, padded_width - left - right
        s = self.stride
        out_top, out_bottom, out_left, out_right = halo_out
        out = _zeros(self.c_out, n, out_top + s * height + out_bottom, out_left + s * width + out_right)
        for plane, (a, b) in zip(planes, self.phase_offsets):
            grid = plane.reshape(self.c_out, n, padded_height, padded_width)[:, :, top:top + height, left:left + width]
            phase = out[:, :, out_top + a:out_top + a + s * height:s, out_left + b:out_left + b + s * width:s]
            steps.append(_step(np.copyto, phase, grid))
        return out


class _Plan:
    """Buffers and bound numpy calls that decode a chunk of exactly n samples.

    All slicing, reshaping and buffer allocation happens once, here; a call only runs the
    bound BLAS and ufunc calls, which is what makes batch-1 decoding cheap. Halo strips and
    out-of-range columns are zeroed at creation and never written afterwards.
    """

    def __init__(self, layers, halos, n, latent_dim, masks=None):
        self.latents = _zeros(n, latent_dim)
        self.steps = []
        x = self.latents
        for layer, halo in zip(layers, halos):
            x = layer.plan(x, halo, self.steps, masks)
        self.output = x.transpose(1, 2, 3, 0)  # (C, n, H, W) → (n, H, W, C)

    def __call__(self, z, out):
        np.copyto(self.latents, z)
        for step in self.steps:
            step()
        np.copyto(out, self.output)


class _TangentPlan:
    """Buffers and bound calls that push n tangents (rows of ``inputs``) through the layers.

    The layers' linear maps without bias, each activation replaced by the primal's slope mask
    (``masks``, one per layer, recorded by a one-sample primal :class:`_Plan`).
    """

    def __init__(self, layers, halos, masks, n, width):
        self.inputs = _zeros(n, width)
        self.steps = []
        x = self.inputs
        for layer, halo, mask in zip(layers, halos, masks):
            x = layer.plan_tangents(x, halo, self.steps, mask)
        self.output = x.transpose(1, 2, 3, 0)  # (C, n, H, W) → (n, H, W, C)

    def __call__(self, out):
        for step in self.steps:
            step()
        np.copyto(out, self.output)


class _JacobianPlan:
    """Forward-mode Jacobian of one latent vector: a primal pass recording the slope masks,
    then the d tangent directions in chunks of at most ``chunk``."""

    def __init__(self, layers, halos, latent_dim, chunk):
        masks = []
        self.primal = _Plan(layers, halos, 1, latent_dim, masks)
        self.latent_dim, self.chunk = latent_dim, chunk
        if isinstance(layers[0], _Dense):
            # The tangent of e_i after the first Dense layer is row i of its kernel (times the
            # mask): the tangent passes start after it.
            self.seed_layer, self.seed_mask = layers[0], masks[0]
            layers, halos, masks = layers[1:], halos[1:], masks[1:]
            width = self.seed_layer.kernel.shape[1]
        else:
            self.seed_layer, self.seed_mask = None, None
            width = latent_dim
            self.identity = np.eye(latent_dim, dtype=np.float32)
        sizes = {min(chunk, latent_dim - first) for first in range(0, latent_dim, chunk)}
        self.tangents = {n: _TangentPlan(layers, halos, masks, n, width) for n in sizes}

    def __call__(self, z, out, jacobian):
        """Decode z (1, d) into out (1, H, W, C) and its Jacobian into jacobian (d, H, W, C)."""
        self.primal(z, out)
        for first in range(0, self.latent_dim, self.chunk):
            stop = min(first + self.chunk, self.latent_dim)
            plan = self.tangents[stop - first]
            if self.seed_layer is not None:
                self.seed_layer.seed_tangents(first, stop, self.seed_mask, plan.inputs)
            else:
                np.copyto(plan.inputs, self.identity[first:stop])
            plan(jacobian[first:stop])


class NumpyDecoder:
    """A Keras decoder chain evaluated in float32 numpy; build it with :meth:`from_keras`.

    Calling it decodes a batch of latent vectors; :meth:`jacobian` gives one vector's output
    and its derivatives. Calls from several threads are safe (each thread has its own
    buffers); it pickles to its weights, so worker processes can use it without TensorFlow. It
    runs on the calling thread: every matrix product is kept (split, if need be) small enough
    that OpenBLAS keeps it there.

    Args:
        layers: the layer operations, in order: vector layers, then image layers.
        latent_dim: input size d.

    Attributes:
        latent_dim: dimension d of the latent vectors.
        output_shape: (H, W, C) of a decoded image.
        flops: floating-point operations (multiplies and adds) per sample, counting only
            products with real input pixels: a stride-2 transposed convolution counts 9/4 taps
            per output pixel, not the 9 of its zero-inserted form.
    """

    def __init__(self, layers, latent_dim, crop=((0, 0), (0, 0))):
        self.layers = list(layers)
        self.latent_dim = int(latent_dim)
        self.crop = tuple(tuple(int(c) for c in pair) for pair in crop)
        shape, flops = (self.latent_dim,), 0
        for layer in self.layers:
            if layer.takes_image != (len(shape) == 3):
                raise NotImplementedError(
                    f"{type(layer).__name__.strip('_')} cannot take an input of shape {shape}"
                )
            flops += layer.flops(shape)
            shape = layer.output_shape(shape)
        if len(shape) != 3:
            raise NotImplementedError(f"the decoder's output has shape {shape}, not (H, W, C)")
        (top, bottom), (left, right) = self.crop
        self._full_shape = shape
        self._window = (slice(top, shape[0] - bottom), slice(left, shape[1] - right))
        self.output_shape = (shape[0] - top - bottom, shape[1] - left - right, shape[2])
        self.flops = flops
        # Each layer writes its image with the border that the next layer's shifts read.
        self._halos = [following.halo_in for following in self.layers[1:]] + [(0, 0, 0, 0)]
        self._local = threading.local()

    def __getstate__(self):
        return {"layers": self.layers, "latent_dim": self.latent_dim, "crop": self.crop}

    def __setstate__(self, state):
        self.__init__(state["layers"], state["latent_dim"], state["crop"])

    @classmethod
    def from_keras(cls, decoder):
        """Read the weights of a Keras decoder made of a plain chain of supported layers.

        Supported: InputLayer; Dense; Reshape to (H, W, C); Conv2DTranspose with a 3×3
        kernel, stride 2 and 'same' padding; Conv2D with stride 1 and 'same' padding (any
        kernel size); a Cropping2D as the last layer; activations ``linear`` and ``leaky_relu``;
        channels-last, no dilation, no groups. The layers are read by class name and config, so no
        Keras import is needed.

        Args:
            decoder: a Keras functional or Sequential model mapping (n, d) to (n, H, W, C).

        Raises:
            NotImplementedError: naming the first layer, option or topology it cannot run.
        """
        layers, latent_dim, previous, crop = [], None, None, ((0, 0), (0, 0))
        for layer in decoder.layers:
            kind = type(layer).__name__
            if previous is not None and layer.input is not previous.output:
                raise NotImplementedError(
                    f"layer {layer.name!r} does not take the previous layer's output: "
                    "NumpyDecoder runs only a plain chain of layers"
                )
            previous = layer
            if latent_dim is None:
                latent_dim = layer.input.shape[-1] if kind != "InputLayer" else layer.output.shape[-1]
            if kind == "InputLayer":
                continue
            config = layer.get_config()
            if crop != ((0, 0), (0, 0)):
                raise NotImplementedError(f"layer {layer.name!r} follows a Cropping2D: only a final crop is supported")
            if kind == "Cropping2D":
                if config.get("data_format", "channels_last") != "channels_last":
                    raise NotImplementedError(f"Cropping2D {layer.name!r} is not channels-last")
                crop = tuple(tuple(pair) for pair in config["cropping"])
                continue
            if kind == "Dense":
                layers.append(_Dense(*_weights(layer, config), _slope(layer, config)))
            elif kind == "Reshape":
                if len(config["target_shape"]) != 3:
                    raise NotImplementedError(
                        f"Reshape {layer.name!r} to {tuple(config['target_shape'])}: only to (H, W, C)"
                    )
                layers.append(_ToImage(config["target_shape"]))
            elif kind == "Conv2DTranspose":
                _check_convolution(layer, config, kernel_size=(3, 3), strides=(2, 2))
                layers.append(_Convolution.transposed(*_weights(layer, config), _slope(layer, config)))
            elif kind == "Conv2D":
                _check_convolution(layer, config, kernel_size=None, strides=(1, 1))
                layers.append(_Convolution.convolution(*_weights(layer, config), _slope(layer, config)))
            else:
                raise NotImplementedError(
                    f"layer {layer.name!r} of type {kind} is not supported by NumpyDecoder "
                    "(supported: Dense, Reshape, Conv2DTranspose, Conv2D, a final Cropping2D)"
                )
        if len(decoder.inputs) != 1 or len(decoder.outputs) != 1 or previous.output is not decoder.outputs[0]:
            raise NotImplementedError("NumpyDecoder needs a single-input, single-output chain")
        return cls(layers, latent_dim, crop)

    def __call__(self, z):
        """Decode latent vectors.

        Args:
            z: latents, array (n, d); cast to float32.

        Returns:
            float32 array (n, H, W, C): the decoder's output.
        """
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"expected latents of shape (n, {self.latent_dim}); got {z.shape}")
        out = np.empty((z.shape[0], *self._full_shape), dtype=np.float32)
        # One plan per thread and chunk size in use: at most CHUNK of them, kept for reuse.
        plans = self._local.__dict__.setdefault("plans", {})
        for start in range(0, z.shape[0], CHUNK):
            chunk = z[start:start + CHUNK]
            plan = plans.get(len(chunk))
            if plan is None:
                plan = plans[len(chunk)] = _Plan(self.layers, self._halos, len(chunk), self.latent_dim)
            plan(chunk, out[start:start + CHUNK])
        return out[(slice(None), *self._window)]

    def jacobian(self, z):
        """Decode one latent vector and its Jacobian, by forward-mode differentiation.

        The primal pass records each activation's slope mask (1 where the pre-activation is
        positive, the leaky-ReLU slope elsewhere: TensorFlow's derivative); the d tangents
        e_1 … e_d then go through the same linear maps without bias, times those masks, in
        chunks of ``JACOBIAN_CHUNK`` directions. After a first Dense layer the tangent of e_i
        is row i of its kernel, so the passes start at the second layer. Agrees with
        TensorFlow's forward mode to float32 rounding.

        Args:
            z: one latent vector, shape (d,); cast to float32.

        Returns:
            (output, jacobian): float32 arrays (H, W, C), the decoder's output (the same as
            ``self(z[None])[0]``), and (d, H, W, C), ∂output/∂z_i along the first axis.
        """
        z = np.asarray(z, dtype=np.float32)
        if z.shape != (self.latent_dim,):
            raise ValueError(f"expected one latent vector of shape ({self.latent_dim},); got {z.shape}")
        plans = self._local.__dict__.setdefault("jacobian_plans", {})
        plan = plans.get((JACOBIAN_CHUNK, MAX_PRODUCT))
        if plan is None:
            plan = plans[JACOBIAN_CHUNK, MAX_PRODUCT] = _JacobianPlan(
                self.layers, self._halos, self.latent_dim, JACOBIAN_CHUNK)
        output = np.empty(self._full_shape, dtype=np.float32)
        jacobian = np.empty((self.latent_dim, *self._full_shape), dtype=np.float32)
        plan(z[None], output[None], jacobian)
        return output[self._window], jacobian[(slice(None), *self._window)]


def _slope(layer, config):
    """Leaky-ReLU slope (None for linear) of a layer's activation; raise for any other."""
    activation = config.get("activation", "linear")
    if not isinstance(activation, str) or activation not in _ACTIVATIONS:
        raise NotImplementedError(
            f"activation {activation!r} of layer {layer.name!r} is not supported "
            f"(only {', '.join(sorted(_ACTIVATIONS))})"
        )
    return _ACTIVATIONS[activation]


def _weights(layer, config):
    """Kernel and bias (zeros without a bias) of a Dense or convolution layer, float32."""
    kernel = np.asarray(layer.kernel, dtype=np.float32)
    # Dense (d_in, d_out) and Conv2D (kh, kw, in, out) end in C_out; Conv2DTranspose (kh, kw, out, in).
    c_out = kernel.shape[-2] if type(layer).__name__ == "Conv2DTranspose" else kernel.shape[-1]
    bias = np.asarray(layer.bias, dtype=np.float32) if config.get("use_bias", True) else np.zeros(c_out, np.float32)
    return kernel, bias


def _check_convolution(layer, config, kernel_size, strides):
    """Raise NotImplementedError for a convolution option that NumpyDecoder does not implement."""
    problems = []
    if kernel_size is not None and tuple(config["kernel_size"]) != kernel_size:
        problems.append(f"kernel_size={tuple(config['kernel_size'])} (only {kernel_size})")
    if tuple(config["strides"]) != strides:
        problems.append(f"strides={tuple(config['strides'])} (only {strides})")
    if config.get("padding") != "same":
        problems.append(f"padding={config.get('padding')!r} (only 'same')")
    if config.get("data_format", "channels_last") != "channels_last":
        problems.append(f"data_format={config['data_format']!r} (only 'channels_last')")
    if tuple(config.get("dilation_rate", (1, 1))) != (1, 1):
        problems.append(f"dilation_rate={tuple(config['dilation_rate'])} (only 1)")
    if config.get("groups", 1) != 1:
        problems.append(f"groups={config['groups']} (only 1)")
    if config.get("output_padding") is not None:
        problems.append(f"output_padding={config['output_padding']} (only None)")
    if problems:
        raise NotImplementedError(f"{type(layer).__name__} {layer.name!r}: unsupported {', '.join(problems)}")
