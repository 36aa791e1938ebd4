"""`IdLookup`: raw int64 ids -> dense indices, with a hash table that travels in the SavedModel.

Dense index layout (every id space of the model):
    0: padding: every negative raw id (the padding value is ``features.RAW_PAD_ID = -1``), and
       raw id 0 when the vocabulary does not hold it (0-padded data from before raw id 0 was
       supported keeps its meaning),
    1: out-of-vocabulary (unknown non-negative raw ids),
    k + 2: the k-th entry of the vocabulary (any non-negative int64, 0 included).

Shapes: any; the output has the input's shape.

Hash tables are host resources, so this layer cannot run inside `jit_compile=True`. Run it where
the raw ids enter: in the `tf.data` map or in the serving signature, before the compiled model.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence, Union

import numpy as np
import tensorflow as tf
import tf_keras as keras

from jsr_tf.features import PAD_ID, RAW_PAD_ID

OOV_INDEX = 1
NUM_RESERVED_INDICES = 2  # Padding and OOV.

Vocabulary = Union[str, Sequence[int], np.ndarray]


def read_vocabulary_file(path: str) -> np.ndarray:
    """Reads raw ids from a vocabulary file, one entry per line, in file order.

    The id is the first tab-separated field of each non-empty line (so the pipeline's
    ``vocab/*.tsv`` files can be read directly). If the first field of the *first* line is not an
    integer, that line is taken as a header and skipped; any other non-integer line is an error.

    Args:
        path: File path (anything `tf.io.gfile` can open).

    Returns:
        int64 array `(N,)` of raw ids.
    """
    ids = []
    with tf.io.gfile.GFile(path, "r") as f:
        for line_number, line in enumerate(f):
            field = line.rstrip("\n").split("\t", 1)[0].strip()
            if not field:
                continue
            try:
                ids.append(int(field))
            except ValueError:
                if line_number == 0:
                    continue
                raise ValueError(
                    f"Vocabulary file lines should start with an integer id. Received: line "
                    f"{line_number + 1} of {path!r} = {line.rstrip()!r}") from None
    return np.asarray(ids, dtype=np.int64)


def _vocabulary_array(vocabulary: Vocabulary) -> np.ndarray:
    if isinstance(vocabulary, str):
        ids = read_vocabulary_file(vocabulary)
    else:
        ids = np.asarray(vocabulary)
        if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
            raise ValueError(
                "`vocabulary` should be a file path or a 1-D sequence of integer ids. "
                f"Received: `vocabulary` with shape {ids.shape} and dtype {ids.dtype}")
        ids = ids.astype(np.int64)
    if ids.size == 0:
        raise ValueError("`vocabulary` should hold at least one id. Received: an empty vocabulary")
    if np.any(ids < 0):
        bad = ids[ids < 0][:5].tolist()
        raise ValueError(
            f"`vocabulary` should hold non-negative ids only (negative ids, e.g. {RAW_PAD_ID}, "
            f"are padding). Received: `vocabulary` containing {bad}")
    unique, counts = np.unique(ids, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(
            "`vocabulary` should not repeat ids. Received: `vocabulary` repeating "
            f"{unique[counts > 1][:5].tolist()}")
    return ids


@keras.saving.register_keras_serializable(package="jsr_tf")
class IdLookup(keras.layers.Layer):
    """Maps raw int64 ids to dense indices through a static hash table.

    Index = position in `vocabulary` + 2; negative ids (padding, `RAW_PAD_ID = -1`) -> 0; raw 0
    -> 0 too when it is not in `vocabulary`; other unknown ids -> 1 (OOV). The table is a tracked resource of the layer, so it is saved in, and restored from,
    a SavedModel (it does not need the vocabulary file at load time).

    **Config and large vocabularies.** `get_config()` returns `vocabulary` exactly as it was
    given: a file path stays a path (a few bytes of config; `from_config` rereads the file), a
    sequence is stored as a list of ints (for the KuaiSAR item vocabulary, 673k ids, about 5 MB
    of JSON). Production code should therefore pass the pipeline's vocabulary file. A
    SavedModel holds the table contents either way.

    Args:
        vocabulary: Path of a vocabulary file (see `read_vocabulary_file`) or a 1-D sequence of
            distinct non-negative raw ids.
        **kwargs: Base `Layer` arguments (`name`, ...).

    Call arguments:
        inputs: Integer tensor of raw ids, any shape.

    Returns:
        int64 tensor of dense indices with the input's shape, in `[0, vocabulary_size + 2)`.
    """

    def __init__(self, vocabulary: Vocabulary, **kwargs: Any) -> None:
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if isinstance(vocabulary, np.ndarray):
            vocabulary = vocabulary.tolist()
        elif not isinstance(vocabulary, str):
            vocabulary = list(vocabulary)
        self._ids = _vocabulary_array(vocabulary)
        self.vocabulary = vocabulary
        self._table = None

    @property
    def vocabulary_size(self) -> int:
        """Number of raw ids in the vocabulary (without padding and OOV)."""
        return int(self._ids.size)

    @property
    def holds_raw_zero(self) -> bool:
        """Whether raw id 0 is in the vocabulary (else it is read as padding)."""
        return bool(np.any(self._ids == 0))

    @property
    def num_indices(self) -> int:
        """Size of the dense index space: `vocabulary_size + 2` (padding, OOV, vocabulary)."""
        return self.vocabulary_size + NUM_RESERVED_INDICES

    def build(self, input_shape: tf.TensorShape) -> None:
        keys = self._ids
        values = np.arange(NUM_RESERVED_INDICES, self.num_indices, dtype=np.int64)
        if not self.holds_raw_zero:  # raw 0 is not an id of this vocabulary: legacy padding
            keys = np.append(keys, np.int64(0))
            values = np.append(values, np.int64(PAD_ID))
        initializer = tf.lookup.KeyValueTensorInitializer(
            keys=tf.constant(keys, dtype=tf.int64), values=tf.constant(values, dtype=tf.int64))
        self._table = tf.lookup.StaticHashTable(initializer, default_value=OOV_INDEX)
        super().build(input_shape)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        ids = tf.cast(inputs, tf.int64)
        indices = self._table.lookup(ids)
        return tf.where(ids < 0, tf.constant(PAD_ID, tf.int64), indices)

    def compute_output_shape(self, input_shape: tf.TensorShape) -> tf.TensorShape:
        return tf.TensorShape(input_shape)

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({"vocabulary": self.vocabulary})
        return config
