"""What the model families share, one concern a module: ``tables`` (vocabulary tables),
``builders`` (layers and tasks), ``forward`` (forward helpers), ``encoded_side`` (the
``EncodedSideMixin``), ``neighbour_inputs`` (the neighbour side) and ``losses``."""

from typing import Dict

import tensorflow as tf

Batch = Dict[str, tf.Tensor]  # one task's batch: field name -> tensor (jsr_tf.features)
