"""Training-time augmentation as the research code: reflect-pad 4, random crop back to
the input size, then (for natural images) a random horizontal flip.

Applied inside the jitted training step from a per-step key, so it is deterministic
given the seed and costs no host work. Scores, losses and evaluation never augment.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

PAD = 4


def augment_batch(key: jax.Array, x: jax.Array, mode: str) -> jax.Array:
    """x: (B, H, W, C) -> augmented (B, H, W, C). mode is static (one of AUGMENTATIONS)."""
    if mode == "none":
        return x
    batch, height, width, channels = x.shape
    crop_key, flip_key = jax.random.split(key)
    padded = jnp.pad(x, ((0, 0), (PAD, PAD), (PAD, PAD), (0, 0)), mode="reflect")
    corners = jax.random.randint(crop_key, (batch, 2), 0, 2 * PAD + 1)

    def crop(image, corner):
        start = (corner[0], corner[1], 0)
        return jax.lax.dynamic_slice(image, start, (height, width, channels))

    out = jax.vmap(crop)(padded, corners)
    if mode == "crop_flip":
        flip = jax.random.bernoulli(flip_key, 0.5, (batch,))
        out = jnp.where(flip[:, None, None, None], out[:, :, ::-1, :], out)
    return out
