"""QUTE networks: a small base CNN with early exits, K early-view heads and a final exit.

Layout, as in the QUTE paper (Ghanathe & Wilton, ICML 2025):
- base: four blocks; early exit k sits on the output of block k (k = 1, 2);
- early exit k: pointwise conv (to the channel count of the last block), a depthwise
  conv, then a dense classifier;
- head k ("early view"): a depthwise conv with exit k's weights copied in, then its own
  dense classifier, on the output of the last block;
- final exit: the base network's own classifier, kept as the single-head baseline.

Only ops that the firmware's int8 kernel library implements: Conv2D, DepthwiseConv2D,
AveragePooling2D, Flatten (a reshape) and Dense. MNIST-1D's 1-D convolutions are 2-D
convolutions over an input of height 1, so the same kernels serve both models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np
from keras import layers

NUM_CLASSES = 10
# tau_k of the paper's loss: its weights for the early exits' own losses are not given
# in the notes we have; 1 is the plain early-exit training loss.
EXIT_LOSS_WEIGHTS = (1.0, 1.0)
# w_k of the paper's loss: 3 for the first head, rising by 0.5 per head.
HEAD_LOSS_WEIGHTS = (3.0, 3.5)


@dataclass
class QuteNetwork:
    """The trainable parts; `head_depthwise[k]` receives `exit_depthwise[k]`'s weights."""

    input_shape: tuple[int, int, int]
    blocks: list[keras.Sequential]
    exits: list[keras.Sequential]
    exit_depthwise: list[layers.DepthwiseConv2D]
    heads: list[keras.Sequential]
    head_depthwise: list[layers.DepthwiseConv2D]
    final: keras.Sequential
    labels: list[str] = field(default_factory=lambda: [str(i) for i in range(NUM_CLASSES)])

    def base_variables(self) -> list:
        """What is frozen in the last 10% of epochs: the base network and its own exit."""
        variables = [v for block in self.blocks for v in block.trainable_variables]
        return variables + list(self.final.trainable_variables)

    def branch_variables(self) -> list:
        """Exits and heads; the heads' depthwise weights are copies, never trained."""
        variables = [v for branch in self.exits + self.heads for v in branch.trainable_variables]
        return variables

    def copy_exit_weights_into_heads(self) -> None:
        for source, target in zip(self.exit_depthwise, self.head_depthwise):
            for source_weight, target_weight in zip(source.weights, target.weights):
                target_weight.assign(source_weight)

    def features(self, x):
        """Outputs of all four blocks."""
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        return outputs

    def __call__(self, x) -> dict:
        f1, f2, _f3, f4 = self.features(x)
        return {
            "exits": [self.exits[0](f1), self.exits[1](f2)],
            "heads": [head(f4) for head in self.heads],
            "final": self.final(f4),
        }

    # The three deployable functions. Stage 1 ends at the first block: its output is the
    # feature map handed to stage 2.
    def stage1(self, x) -> dict:
        f1 = self.blocks[0](x)
        return {"exit": self.exits[0](f1), "feature": f1}

    def _after_stage1(self, f1):
        x = f1
        for block in self.blocks[1:]:
            x = block(x)
        return x

    def stage2(self, f1) -> dict:
        f4 = self._after_stage1(f1)
        return {f"head_{k}": head(f4) for k, head in enumerate(self.heads)}

    def baseline(self, f1) -> dict:
        return {"final": self.final(self._after_stage1(f1))}


def _depthwise(kernel, strides=1) -> layers.DepthwiseConv2D:
    return layers.DepthwiseConv2D(kernel, strides=strides, padding="same", activation="relu")


def _pointwise(channels: int) -> layers.Conv2D:
    return layers.Conv2D(channels, 1, padding="same", activation="relu")


class Flatten(layers.Layer):
    """Flatten to (-1, features): one static RESHAPE in TFLite for any batch size.

    Keras' own Flatten reads the batch size at run time, which the converter turns into
    SHAPE, STRIDED_SLICE and PACK ops that the firmware has no kernels for.
    """

    def call(self, x):
        return keras.ops.reshape(x, (-1, int(np.prod(x.shape[1:]))))


def _classifier() -> list:
    return [Flatten(), layers.Dense(NUM_CLASSES)]


def _exit_and_head(channels: int, kernel, pool) -> tuple:
    """An early exit and its matching head; the two depthwise convs have the same shape."""
    exit_dw, head_dw = _depthwise(kernel), _depthwise(kernel)
    head_dw.trainable = False  # its weights are copied in from the exit before each batch
    exit_layers = [_pointwise(channels), exit_dw]
    if pool is not None:
        exit_layers.append(layers.AveragePooling2D(pool))
    exit_block = keras.Sequential(exit_layers + _classifier())
    head_block = keras.Sequential([head_dw] + _classifier())
    return exit_block, exit_dw, head_block, head_dw


def _assemble(input_shape, blocks, channels, kernel, pools) -> QuteNetwork:
    parts = [_exit_and_head(channels, kernel, pool) for pool in pools]
    network = QuteNetwork(
        input_shape=input_shape,
        blocks=blocks,
        exits=[p[0] for p in parts],
        exit_depthwise=[p[1] for p in parts],
        heads=[p[2] for p in parts],
        head_depthwise=[p[3] for p in parts],
        final=keras.Sequential(_classifier()),
    )
    network(keras.ops.zeros((1,) + input_shape))  # build every layer
    network.copy_exit_weights_into_heads()
    return network


def digits_cnn() -> QuteNetwork:
    """4-layer CNN on 8x8x1 digits; exits after blocks 1 (8x8) and 2 (4x4)."""
    conv = lambda c, s=1: layers.Conv2D(c, 3, strides=s, padding="same", activation="relu")  # noqa: E731
    blocks = [
        keras.Sequential([conv(16)]),
        keras.Sequential([conv(32, 2)]),
        keras.Sequential([conv(32)]),
        keras.Sequential([conv(32)]),
    ]
    # Exit 1 sees 8x8 maps: pool to the 4x4 the heads see, which keeps its classifier small.
    return _assemble((8, 8, 1), blocks, 32, 3, pools=[2, None])


def mnist1d_dscnn() -> QuteNetwork:
    """4-layer depthwise-separable 1-D CNN on 40-sample signals (as 1x40x1)."""

    def separable(stride: int) -> keras.Sequential:
        return keras.Sequential([_depthwise((1, 3), (1, stride)), _pointwise(32)])

    blocks = [
        keras.Sequential([layers.Conv2D(32, (1, 5), strides=(1, 2), padding="same", activation="relu")]),
        separable(1),
        separable(2),
        separable(1),
    ]
    return _assemble((1, 40, 1), blocks, 32, (1, 3), pools=[(1, 2), (1, 2)])


# Keyed by architecture name: a model names its architecture in model/registry.py.
ARCHITECTURES = {"digits_cnn": digits_cnn, "mnist1d_dscnn": mnist1d_dscnn}
