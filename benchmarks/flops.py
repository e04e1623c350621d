"""The U-Net's arithmetic, counted analytically from its layers (no profiler, any Keras backend).

A convolution costs one multiply-add per kernel tap, input channel and output channel at every output
pixel; a transposed convolution the same at every *input* pixel (each input pixel is spread through
the whole kernel: for the U-Net's 2x2, stride-2 up-sampling that is one tap per output pixel). A
multiply-add is two floating-point operations; a training step (forward, then the gradients with
respect to the activations and to the weights) is counted as three forward passes, the usual
convention. Pooling, activations, bias and the loss are left out: they are a few per cent at most.
"""

from __future__ import annotations

import math

import keras

from cloud_tasks.hdf import N_CHANNELS
from cloud_tasks.ml.model import build_unet

FLOPS_PER_MAC = 2
TRAINING_PASSES = 3  # forward + backward to the activations + backward to the weights


def layer_macs(layer: keras.layers.Layer) -> int:
    """Multiply-adds of one forward pass through a built 2-D (transposed) convolution; 0 for other layers."""
    if isinstance(layer, keras.layers.Conv2DTranspose):
        kernel_h, kernel_w, n_out, n_in = layer.kernel.shape  # Keras stores transposed kernels (h, w, out, in)
        return math.prod(layer.input.shape[1:3]) * kernel_h * kernel_w * n_in * n_out
    if isinstance(layer, keras.layers.Conv2D):
        kernel_h, kernel_w, n_in_per_group, n_out = layer.kernel.shape
        return math.prod(layer.output.shape[1:3]) * kernel_h * kernel_w * n_in_per_group * n_out
    return 0


def unet_macs(height: int, width: int, **unet_options) -> int:
    """Multiply-adds of one forward pass of ``build_unet(**unet_options)`` over one ``height x width`` image."""
    model = build_unet((height, width, N_CHANNELS), **unet_options)
    return sum(layer_macs(layer) for layer in model.layers)


def forward_flops(height: int, width: int, **unet_options) -> int:
    """Floating-point operations of one forward pass (inference) over one image."""
    return FLOPS_PER_MAC * unet_macs(height, width, **unet_options)


def training_flops(height: int, width: int, **unet_options) -> int:
    """Floating-point operations of training on one patch (forward and backward)."""
    return TRAINING_PASSES * forward_flops(height, width, **unet_options)
