"""Training: the joint input, callbacks, strategies and the ``train`` entry (``jsr-train``).

Modules import TensorFlow, so this package imports nothing eagerly: use
``from jsr_tf.training import trainer`` (or ``datasets``, ``callbacks``, ``strategy``).
"""
