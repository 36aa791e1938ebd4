"""Sample requests from a data dir, and TF Serving's warmup file built from them.

TF Serving replays ``<version>/assets.extra/tf_serving_warmup_requests`` (a TFRecord file of
``PredictionLog`` protos) before it marks a version ready, so the first real request does not pay
for graph initialisation
(https://www.tensorflow.org/tfx/serving/saved_model_warmup). Two requests per signature, built
from real rows of the valid split (the sample batch and its first row), are written.
"""

from __future__ import annotations

import os
from typing import Dict, Iterable, List, Optional, Tuple

import jsr_tf  # noqa: F401
import numpy as np
import tensorflow as tf

from jsr_tf import features as F
from jsr_tf import filenames as FN
from jsr_tf.data import reader
from jsr_tf.export import signatures as SG


def sample_requests(data_dir: str, rows: int = 2, candidates: Optional[int] = None,
                    neighbours: bool = False) -> Dict[str, Dict[str, np.ndarray]]:
    """One request per registered signature (``jsr_tf.export.signatures``) from the first valid
    rows.

    Each request is drawn as its signature's ``Sample`` says: the signature's inputs, in order,
    from the valid batch of the sample's task (after the inputs of the signature it extends, with
    their values), ``flags`` all True, or the split's serialized Examples.

    Args:
        data_dir: A ``jsr-preprocess`` output directory.
        rows: Rows per request.
        candidates: Candidates per row; default all of a valid row's (the data's
            ``eval_candidates``).
        neighbours: Read the rows' stored neighbour payload (all padding if the data dir has
            none) for the ``feed_nbr`` / ``search_nbr`` requests; without it those signatures
            get no request.

    Returns:
        Signature name → input name → array.
    """
    if candidates is None:
        candidates = F.DataShape.read(data_dir).eval_candidates
    batches: Dict[F.Task, Dict[str, tf.Tensor]] = {}
    out: Dict[str, Dict[str, np.ndarray]] = {}
    for sig in SG.REGISTRY:
        sample = sig.sample
        if not sig.exported_with(neighbours, retriever=True):
            continue
        if sample.examples:
            (name,) = sig.inputs
            out[sig.name] = {name: np.asarray(serving_examples(data_dir, rows, sample.task),
                                              dtype=object)}
            continue
        if sample.task not in batches:
            batches[sample.task] = next(iter(reader.make_dataset(
                data_dir, F.Split.VALID.value, sample.task, rows, shuffle_buffer=0,
                neighbours=neighbours)))
        batch = batches[sample.task]
        inputs = {name: value for name, value in out.get(sample.base, {}).items()
                  if name in sig.inputs}
        for name in sig.inputs:
            if name in inputs:
                continue
            if name in sample.flags:
                inputs[name] = np.ones(len(batch[F.USER_ID]), bool)
            elif name == SG.CANDIDATES:
                inputs[name] = batch[name].numpy()[:, :candidates]
            else:
                inputs[name] = batch[name].numpy()
        out[sig.name] = inputs
    return out


def serving_examples(data_dir: str, rows: int, task: F.Task = F.Task.SEARCH) -> List[bytes]:
    """The first ``rows`` valid examples of ``task`` with a ``candidates`` feature added."""
    pattern = os.path.join(data_dir, F.file_pattern(F.Split.VALID.value, task))
    files = sorted(tf.io.gfile.glob(pattern))
    out = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").take(rows):
        example = tf.train.Example.FromString(record.numpy())
        feature = example.features.feature
        target = list(feature[F.TARGET_ITEM].int64_list.value)
        negatives = list(feature[F.NEGATIVES].int64_list.value)
        feature[SG.CANDIDATES].int64_list.value.extend(target + negatives)
        out.append(example.SerializeToString())
    return out


def predict_request(model_name: str, signature: str, inputs: Dict[str, np.ndarray]):
    """A ``tensorflow_serving.apis.predict_pb2.PredictRequest`` for one signature."""
    from tensorflow_serving.apis import predict_pb2

    req = predict_pb2.PredictRequest()
    req.model_spec.name = model_name
    req.model_spec.signature_name = signature
    for key, value in inputs.items():
        req.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return req


def write_warmup(version_dir: str, model_name: str,
                 requests: Dict[str, Dict[str, np.ndarray]], signatures: Iterable[str]) -> str:
    """Writes two ``PredictionLog`` s per signature (the sample batch, one row); returns the path."""
    from tensorflow_serving.apis import prediction_log_pb2

    directory = os.path.join(version_dir, FN.EXTRA_DIR)
    tf.io.gfile.makedirs(directory)
    path = os.path.join(directory, FN.WARMUP_FILE)
    with tf.io.TFRecordWriter(path) as writer:
        for signature in signatures:
            # The batch of the sample and a single row: the usual shapes (and, with
            # jit_compile, the XLA buckets B = 1 and B = 2) are ready before traffic.
            for rows in (None, 1):
                inputs = {k: v if rows is None else v[:rows]
                          for k, v in requests[signature].items()}
                log = prediction_log_pb2.PredictionLog(
                    predict_log=prediction_log_pb2.PredictLog(
                        request=predict_request(model_name, signature, inputs)))
                writer.write(log.SerializeToString())
    return path


def read_warmup(path: str) -> List[Tuple[str, Dict[str, np.ndarray]]]:
    """The (signature, inputs) pairs of a warmup file, decoded the way TF Serving does."""
    from tensorflow_serving.apis import prediction_log_pb2

    out = []
    for record in tf.data.TFRecordDataset([path]):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        req = log.predict_log.request
        out.append((req.model_spec.signature_name,
                    {k: tf.make_ndarray(v) for k, v in req.inputs.items()}))
    return out
