"""K-FAC Fisher factors of flax Dense/Conv layers and Laplace posterior samples from them.

Fisher, not empirical Fisher: labels are drawn from the model's own predictive
distribution p(y | x; theta) (or, with `exact_labels=True`, every class is weighted by its
predicted probability, which gives the exact expectation over y).

Per layer with kernel W and bias b, write the layer's parameters as the matrix
Wb = [W_mat; b] of shape (d_in + 1, d_out) (bias appended as the last row; no bias row
when the layer has none) and vec(Wb) for its row-major (C-order) flattening, i.e.
`concatenate([W_mat.ravel(), b])`. The output at one position t is s_t = a_t W_mat + b
with a_t the layer input (Dense) or the im2col patch (Conv), so the per-sample gradient is
vec(sum_t abar_t g_t^T) = sum_t abar_t (x) g_t with abar_t = [a_t, 1] and g_t = dl/ds_t.
The K-FAC approximation of the layer's block of F = E_x E_{y~p}[grad grad^T] is
F_layer ~= A (x) G in that same vec order, with

    A = E_x [ (1/T) sum_t abar_t abar_t^T ]   (d_in + 1, d_in + 1), mean over positions
    G = E_x E_y [ sum_t g_t g_t^T ]           (d_out, d_out), sum over positions

(KFC of Grosse & Martens 2016 under spatial homogeneity and spatially uncorrelated
derivatives; only the product A (x) G matters, and this split keeps A comparable to a
Dense layer's input factor). For a Dense layer T = 1 (or the product of any extra
leading input dims), so both factors are the textbook ones. With one input and T = 1
the factorisation is exact: the tests check it against the explicit Fisher.

Flax kernel layouts map to W_mat by a plain reshape: Dense (d_in, d_out); Conv
(kh, kw, C_in, C_out) -> (kh * kw * C_in, C_out), so the patch features are ordered
(kh, kw, C_in), which differs from `lax.conv_general_dilated_patches` (C_in first) and is
permuted here.

Layer inputs and output gradients are captured with `flax.linen.intercept_methods`:
every Dense/Conv `__call__` records its input and adds a zero "tap" to its output; the
gradient of the loss w.r.t. the tap is g. Models stay untouched.

Variables: a bare parameter tree, or a flax variables dict {"params": ..., "batch_stats":
...} (gex_core.training.models' batch-norm convention). Module paths (LayerInfo.path) are
relative to the parameter tree, i.e. looked up under "params" in a variables dict
(`_param_root`, `_lookup`). "batch_stats" leaves are state, not parameters: they have
no Fisher block and every posterior draw is exactly zero there.

Diagonal blocks: the parameters of a flax nn.BatchNorm (scale, bias) get a diagonal
Fisher block, as kfac_jax's ScaleAndShiftDiagonal: F_diag = E_x E_y[grad^2], from
per-sample gradients (vmapped) w.r.t. those leaves only, with the same Fisher batches
and the same sampled labels as the Kronecker factors. The research code multiplies the
diagonal factors by a hard-coded 100 (a hack, noted there as a bug); it is not copied.
Any other parameter outside a Dense/Conv/BatchNorm module is an error.
"""

from gex_core.influence.kfac.blocks import (  # noqa: F401
    BlockInfo,
    DiagonalInfo,
    LayerInfo,
    block_to_params,
    discover_blocks,
    layer_block,
    layer_infos,
)
from gex_core.influence.kfac.factors import (  # noqa: F401
    DiagonalFactor,
    KFACFactors,
    kfac_factors,
)
from gex_core.influence.kfac.posterior import (  # noqa: F401
    eigen_blocks,
    eigen_factors,
    posterior_transform,
    sample_posterior,
)
