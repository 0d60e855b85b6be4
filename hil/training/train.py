"""QUTE training: early exits trained with the network, their depthwise weights copied into
the heads before every batch, the paper's loss weights, the base frozen for the last 10%."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from hil.model import datasets
from hil.model.registry import MODELS


@dataclass(frozen=True)
class TrainingSettings:
    epochs: int
    batch_size: int = 64
    learning_rate: float = 2e-3
    seed: int = 1
    frozen_fraction: float = 0.1  # the paper freezes the base for the last 10% of epochs


def settings_for(model_name: str) -> TrainingSettings:
    return TrainingSettings(epochs=MODELS[model_name].epochs)


def _seed_everything(seed: int) -> None:
    os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def qute_loss(outputs: dict, labels):
    """sum_k tau_k CE(exit_k) + sum_k w_k CE(head_k) + CE(final)."""
    import keras

    from hil.training.network import EXIT_LOSS_WEIGHTS, HEAD_LOSS_WEIGHTS

    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    loss = ce(labels, outputs["final"])
    for weight, logits in zip(EXIT_LOSS_WEIGHTS, outputs["exits"]):
        loss += weight * ce(labels, logits)
    for weight, logits in zip(HEAD_LOSS_WEIGHTS, outputs["heads"]):
        loss += weight * ce(labels, logits)
    return loss


def train(model_name: str, log=print):
    """Train one QUTE network; returns it with the heads holding the exits' final weights."""
    entry = MODELS[model_name]
    settings = settings_for(model_name)
    _seed_everything(settings.seed)
    import keras
    import tensorflow as tf

    from hil.training.network import ARCHITECTURES

    split = datasets.SOURCES[entry.dataset]()
    network = ARCHITECTURES[entry.architecture]()
    all_variables = network.base_variables() + network.branch_variables()
    branch_variables = network.branch_variables()
    optimizer = keras.optimizers.Adam(settings.learning_rate)
    optimizer.build(all_variables)

    def make_step(variables):
        @tf.function(reduce_retracing=True)
        def step(x, y):
            with tf.GradientTape() as tape:
                loss = qute_loss(network(x), y)
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return loss

        return step

    full_step, frozen_base_step = make_step(all_variables), make_step(branch_variables)
    frozen_from = int(round(settings.epochs * (1.0 - settings.frozen_fraction)))
    rng = np.random.default_rng(settings.seed)
    n = len(split.y_train)
    for epoch in range(settings.epochs):
        step = full_step if epoch < frozen_from else frozen_base_step
        order = rng.permutation(n)
        losses = []
        for start in range(0, n, settings.batch_size):
            batch = order[start : start + settings.batch_size]
            network.copy_exit_weights_into_heads()  # QUTE's distillation: before each batch
            losses.append(float(step(split.x_train[batch], split.y_train[batch])))
        if epoch % 10 == 0 or epoch == settings.epochs - 1:
            frozen = " (base frozen)" if epoch >= frozen_from else ""
            log(f"{model_name}: epoch {epoch + 1}/{settings.epochs} loss {np.mean(losses):.4f}{frozen}")
    network.copy_exit_weights_into_heads()
    return network, split
