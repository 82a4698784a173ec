"""Quarter turns and mirrors of stamp batches: galaxies have no preferred orientation on the sky.

Training draws one of the eight orientations per stamp (the regressor transforms its shape labels
to match; the VAE turns its observed stamp, target and χ² weights together).
"""

import keras
import tensorflow as tf


def random_orientations(count, seed_generator):
    """(quarter_turns, mirror) tensors of ``count`` uniform draws: ints in 0–3 and booleans."""
    turns = keras.random.randint((count,), 0, 4, seed=seed_generator, dtype="int32")
    mirror = keras.random.uniform((count,), seed=seed_generator) < 0.5
    return turns, mirror


def oriented(images, quarter_turns, mirror):
    """Stamps turned counter-clockwise by ``quarter_turns`` × 90° (``tf.image.rot90``), then mirrored.

    Args:
        images: tensor (n, H, W, C), rows y and columns x; H must equal W.
        quarter_turns: int tensor (n,).
        mirror: bool tensor (n,): after turning, mirror the columns (x → −x).
    """
    turned = tf.map_fn(lambda item: tf.image.rot90(item[0], item[1]), (images, quarter_turns),
                       fn_output_signature=images.dtype)
    return tf.where(mirror[:, None, None, None], tf.reverse(turned, axis=[2]), turned)
