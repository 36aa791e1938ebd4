"""`FusedAdam`: Keras's Adam with each dense update applied by one fused kernel.

Keras's `Adam.update_step` updates a dense variable with about a dozen element-wise ops (each
a pass over the variable, its two slots and temporaries). UniSAR's coupled L2 makes every
gradient dense, including the 21.5 M-entry item table and the 12.6 M-entry word table, so those
passes are a visible part of a training step (issue 14). `tf.raw_ops.ResourceApplyAdam` does
the same update in one pass:

    m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
    var <- var - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps_hat)

which is Keras's formula (`eps_hat = eps sqrt(1 - b2^t)` with `adaptive_epsilon=True`, i.e.
PyTorch's placement of epsilon). Results agree with Keras's Adam to float32 round-off
(`tests/test_optimizers.py`). Sparse gradients and AMSGrad keep Keras's own path.
"""

from __future__ import annotations

import jsr_tf  # noqa: F401
import tensorflow as tf
import tf_keras as keras


@keras.saving.register_keras_serializable(package="jsr_tf")
class FusedAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` whose dense updates run as one `ResourceApplyAdam` kernel.

    Takes Keras Adam's arguments; state (slots, iterations) and checkpoints are Adam's, so a run
    saved with one restores into the other.
    """

    def update_step(self, gradient, variable):
        if isinstance(gradient, tf.IndexedSlices) or self.amsgrad:
            return super().update_step(gradient, variable)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        beta_2_power = tf.pow(beta_2, step)
        epsilon = tf.cast(self.epsilon, dtype)
        if self.adaptive_epsilon:
            epsilon = epsilon * tf.sqrt(1 - beta_2_power)
        index = self._index_dict[self._var_key(variable)]
        return tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].handle,
            v=self._velocities[index].handle, beta1_power=tf.pow(beta_1, step),
            beta2_power=beta_2_power, lr=tf.cast(self.learning_rate, dtype), beta1=beta_1,
            beta2=beta_2, epsilon=epsilon, grad=tf.cast(gradient, dtype), use_locking=False)

    def get_config(self):
        # Keras's Adam leaves `adaptive_epsilon` out of its config (a reloaded optimizer would
        # silently switch to the other epsilon placement).
        config = super().get_config()
        config["adaptive_epsilon"] = self.adaptive_epsilon
        return config
