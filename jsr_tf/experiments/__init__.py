"""Experiments: grids of training runs above ``jsr_tf.training`` (``jsr-compare``).

``compare`` trains models × seeds on one data dir through ``jsr_tf.training.trainer`` and
summarises the runs with ``jsr_tf.evaluation``. It imports TensorFlow, so this package imports
nothing eagerly: use ``from jsr_tf.experiments import compare``.
"""
