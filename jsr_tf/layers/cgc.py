"""`CGC`: one-level progressive layered extraction (customised gate control), spec/unisar.md §8.

Shapes: `...` leading dimensions (`(B, C)`: one row per candidate); `F` input size (320 =
rec_interest, src_interest, candidate, user, query; 64 each); `H` expert size (64); `T` tasks.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from jsr_tf.layers import _checks
from jsr_tf.layers.mlp import MLP


@keras.saving.register_keras_serializable(package="jsr_tf")
class CGC(keras.layers.Layer):
    """Shared and task-specific experts mixed by per-task softmax gates, then a tower per task.

    For task `t`: `g_t = softmax(Dense(F -> E_t + E_s)(x))` weights the experts
    `[task t's experts..., shared experts...]` (in that order), and `out_t = tower_t(sum g_t e)`.
    Each expert is `Dense(H) ReLU Dropout`, each tower `Dense(128) ReLU Dropout Dense(64) ReLU
    Dropout` (`tower_units`). A task's experts and its gate run as one matmul over their
    concatenated kernels (the variables stay one `Dense` per expert and gate); the values are
    those of separate layers up to float32 round-off. A one-level CGC has no consumer for a
    shared gate, so, unlike the reference, none is built (3,852 unused parameters on KuaiSAR,
    spec/unisar.md §11).

    Args:
        num_tasks: Number of tasks `T` (UniSAR: 2, output 0 = feed, 1 = search).
        num_shared_experts: Experts shared by all tasks.
        num_task_experts: Experts owned by each task.
        expert_units: Output size `H` of every expert.
        tower_units: Layer sizes of every tower.
        dropout: Dropout rate after each expert and tower layer.
        activation: Activation of experts and towers.
        kernel_initializer: Initializer of every kernel.
        bias_initializer: Initializer of every bias.
        **kwargs: Base `Layer` arguments.

    Call arguments:
        inputs: Float tensor `(..., F)`.
        training: Python bool, enables dropout.
        tasks: Optional task indices to compute (default: all). A model scoring one task's
            batch computes only that task's experts, gate and tower.

    Returns:
        List of float tensors `(..., tower_units[-1])`, one per task in `tasks` order.
    """

    def __init__(
        self,
        num_tasks: int = 2,
        num_shared_experts: int = 4,
        num_task_experts: int = 4,
        expert_units: int = 64,
        tower_units: Sequence[int] = (128, 64),
        dropout: float = 0.1,
        activation: Any = "relu",
        kernel_initializer: Any = "glorot_normal",
        bias_initializer: Any = "zeros",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_tasks = _checks.positive_int("num_tasks", num_tasks)
        self.num_shared_experts = _checks.non_negative_int("num_shared_experts", num_shared_experts)
        self.num_task_experts = _checks.non_negative_int("num_task_experts", num_task_experts)
        if self.num_shared_experts + self.num_task_experts == 0:
            raise ValueError(
                "`num_shared_experts + num_task_experts` should be positive. Received: "
                f"`num_shared_experts={num_shared_experts}`, `num_task_experts={num_task_experts}`")
        self.expert_units = _checks.positive_int("expert_units", expert_units)
        self.tower_units = _checks.positive_int_tuple("tower_units", tower_units)
        self.dropout = _checks.rate("dropout", dropout)
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def _mlp(self, units: Sequence[int], name: str, shape: tf.TensorShape) -> MLP:
        layer = MLP(units, activation=self.activation, dropout=self.dropout, activate_last=True,
                    kernel_initializer=self.kernel_initializer,
                    bias_initializer=self.bias_initializer, name=name,
                    dtype=self.dtype_policy)
        return _checks.build_sublayer(layer, shape)

    def build(self, input_shape: tf.TensorShape) -> None:
        shape = tf.TensorShape(input_shape)
        _checks.last_dim("inputs", shape)
        expert_shape = shape[:-1].concatenate([self.expert_units])
        self._shared_experts = [
            self._mlp([self.expert_units], f"shared_expert_{k}", shape)
            for k in range(self.num_shared_experts)
        ]
        self._task_experts = []
        self._gates = []
        self._towers = []
        for t in range(self.num_tasks):
            self._task_experts.append([
                self._mlp([self.expert_units], f"task_{t}_expert_{k}", shape)
                for k in range(self.num_task_experts)
            ])
            gate = keras.layers.Dense(
                self.num_task_experts + self.num_shared_experts, activation="softmax",
                kernel_initializer=_checks.clone_initializer(self.kernel_initializer),
                bias_initializer=_checks.clone_initializer(self.bias_initializer),
                name=f"task_{t}_gate", dtype=self.dtype_policy)
            _checks.build_sublayer(gate, shape)
            self._gates.append(gate)
            self._towers.append(self._mlp(self.tower_units, f"task_{t}_tower", expert_shape))
        # The experts' dropout (each expert MLP's own, applied to all experts at once by
        # `_mixture`); it has no variables, so checkpoints are unchanged.
        self._expert_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        super().build(input_shape)

    @property
    def _flat_task_experts(self) -> List[MLP]:
        """Every task's experts in one flat list (empty before `build`), for the `.keras` format.

        Keras's `.keras` saving walks a layer's attributes and the layers in its lists, but not
        lists nested in lists: through `_task_experts` alone the task experts' weights were
        neither saved nor restored, and a reloaded model silently kept fresh ones. A property,
        not an attribute, so TF checkpoints, SavedModel and h5 (`_task_experts/t/k`) are
        unchanged.
        """
        return [expert for experts in getattr(self, "_task_experts", []) for expert in experts]

    def call(self, inputs: tf.Tensor, training: Optional[bool] = None,
             tasks: Optional[Sequence[int]] = None) -> List[tf.Tensor]:
        if tasks is None:
            tasks = range(self.num_tasks)
        for t in tasks:
            if not 0 <= int(t) < self.num_tasks:
                raise ValueError(f"`tasks` should hold indices in [0, {self.num_tasks}). "
                                 f"Received: `tasks={list(tasks)}`")
        outputs = []
        for t in tasks:  # only the requested tasks' experts, gates and towers run
            mixed = self._mixture(inputs, self._task_experts[t] + self._shared_experts,
                                  self._gates[t], training)
            outputs.append(self._towers[t](mixed, training=training))
        return outputs

    def _mixture(self, inputs: tf.Tensor, experts: List[MLP], gate: keras.layers.Dense,
                 training: Optional[bool]) -> tf.Tensor:
        """`sum_k softmax(gate(x))_k expert_k(x)`, `(..., F) -> (..., H)`.

        The experts' and the gate's kernels are concatenated into one `(F, E H + E)` matmul: at
        one row per candidate, eight `(rows, F) x (F, H)` products and a stack cost more than
        one wide product (issue 14's evaluation and serving paths).
        """
        x = _checks.to_compute_dtype(self, inputs)
        layers = [expert.dense_layers[0] for expert in experts] + [gate]
        kernel = tf.cast(tf.concat([layer.kernel for layer in layers], axis=1), x.dtype)
        bias = tf.cast(tf.concat([layer.bias for layer in layers], axis=0), x.dtype)
        width = self.expert_units * len(experts)
        dim = _checks.last_dim("inputs", x.shape)
        z = tf.matmul(tf.reshape(x, [-1, dim]), kernel) + bias  # (rows, E H + E)
        hidden = self._expert_dropout(self.activation(z[:, :width]), training=training)
        hidden = tf.reshape(hidden, [-1, len(experts), self.expert_units])  # (rows, E, H)
        weights = tf.nn.softmax(z[:, width:], axis=-1)[..., tf.newaxis]  # (rows, E, 1)
        mixed = tf.reduce_sum(weights * hidden, axis=-2)
        return tf.reshape(mixed, tf.concat([tf.shape(x)[:-1], [self.expert_units]], axis=0))

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({
            "num_tasks": self.num_tasks,
            "num_shared_experts": self.num_shared_experts,
            "num_task_experts": self.num_task_experts,
            "expert_units": self.expert_units,
            "tower_units": list(self.tower_units),
            "dropout": self.dropout,
            "activation": keras.activations.serialize(self.activation),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        })
        return config
