"""``export_run``: a trained run directory → ``<export_base>/<model_name>/<version>/`` for TF Serving.

The version directory is a SavedModel (tag ``serve``) with the signatures of
``jsr_tf.export.serving``, the id lookup tables and item side-feature tables inside it (the serving
side needs no vocabulary files), ``assets.extra/tf_serving_warmup_requests`` (two requests per
signature: a batch and one row) and ``assets.extra/export_info.json`` (source run, signatures, TF version).

It is written under a hidden temporary name and renamed into place at the end, so a TF Serving
instance that polls ``<export_base>/<model_name>`` on a local (POSIX) file system never loads a
half-written version (a directory rename on GCS is not atomic: export elsewhere and copy there).
TF Serving does not reload a version number it has already loaded, so publish a new version
rather than ``--overwrite`` a live one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Dict, Optional

import jsr_tf  # noqa: F401
import tensorflow as tf
from absl import logging

from jsr_tf import filenames as FN
from jsr_tf.models import factory
from jsr_tf.export import rest
from jsr_tf.export import serving as S
from jsr_tf.export import signatures as SG
from jsr_tf.export import warmup



def run_data_dir(model_dir: str) -> str:
    """The data dir a run was trained on, from its ``metrics.json``."""
    path = os.path.join(model_dir, FN.METRICS_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path!r} not found: pass --data_dir, or train {model_dir!r} "
                                "to the end first.")
    with tf.io.gfile.GFile(path) as f:
        data_dir = json.load(f).get("data_dir")
    if not data_dir:
        raise ValueError(f"{path!r} records no data_dir: pass --data_dir.")
    return data_dir


def next_version(model_base: str) -> int:
    """1 + the highest numeric version under ``<export_base>/<model_name>`` (1 if none)."""
    if not tf.io.gfile.isdir(model_base):
        return 1
    versions = [int(name.strip("/")) for name in tf.io.gfile.listdir(model_base)
                if name.strip("/").isdigit()]
    return max(versions, default=0) + 1


def export_run(model_dir: str, export_base: str, model_name: str = "jsr",
               version: Optional[int] = None, data_dir: Optional[str] = None,
               retrieval_dir: Optional[str] = None, top_k: int = 100,
               overwrite: bool = False, cache_items: bool = True,
               jit_compile: bool = False,
               limits: S.RequestLimits = S.RequestLimits()) -> str:
    """Exports a trained ranker (and optionally a two-tower retrieval head).

    Args:
        model_dir: ``jsr-train`` run directory of the ranker (``config.json``, best weights).
        export_base: TF Serving's base path; the model goes to ``<export_base>/<model_name>``.
        model_name: TF Serving model name (also written into the warmup requests).
        version: Version number; default: the next free one.
        data_dir: Pipeline output the run was trained on (vocabularies, warmup rows); default:
            the one recorded in the run's ``metrics.json``.
        retrieval_dir: ``jsr-train --model two_tower`` run directory; adds ``retrieve``.
        top_k: Results per ``retrieve`` row.
        overwrite: Replace an existing version directory instead of failing.
        cache_items: Ship precomputed item vectors (see ``ServingModule``).
        jit_compile: XLA-compile the ranker (see ``ServingModule``; TF Serving then needs
            ``--xla_cpu_compilation_enabled=true`` on CPU).
        limits: The largest request the signatures take (``jsr_tf.export.serving.RequestLimits``).

    Returns:
        The version directory.
    """
    start = time.time()
    data_dir = data_dir or run_data_dir(model_dir)
    model_base = os.path.join(export_base, model_name)
    version = next_version(model_base) if version is None else int(version)
    if version <= 0:
        raise ValueError(f"`version` should be a positive integer. Received: `version={version}`")
    target = os.path.join(model_base, str(version))
    if tf.io.gfile.exists(target) and not overwrite:
        raise FileExistsError(f"{target!r} exists: pick another --version or pass --overwrite.")
    ranker, config = factory.load_trained(model_dir, data_dir)
    retriever = None
    if retrieval_dir:
        retriever, _ = factory.load_trained(retrieval_dir, data_dir)
    module = S.ServingModule(ranker, retriever, top_k=top_k, cache_items=cache_items,
                             jit_compile=jit_compile, limits=limits)
    signatures = module.signatures()
    tmp = os.path.join(model_base, f".tmp-{version}-{os.getpid()}")
    if tf.io.gfile.exists(tmp):
        tf.io.gfile.rmtree(tmp)
    logging.info("Writing the SavedModel (%s) to %s", ", ".join(signatures), target)
    tf.saved_model.save(module, tmp, signatures=signatures)
    requests = warmup.sample_requests(data_dir, neighbours=ranker.uses_neighbours)
    warmup.write_warmup(tmp, model_name, requests, sorted(signatures))
    for sig in SG.REGISTRY:  # one-row REST bodies, for smoke tests against a server
        if sig.name not in signatures:
            continue
        one_row = {key: value[:1] for key, value in requests[sig.name].items()}
        with tf.io.gfile.GFile(os.path.join(tmp, FN.EXTRA_DIR,
                                            FN.SAMPLE_REQUEST.format(sig.name)), "w") as f:
            f.write(json.dumps(rest.row_body(sig.name, one_row)))
    info: Dict[str, Any] = {
        "model_name": model_name, "version": version, "model": config.model.name,
        "model_dir": os.path.abspath(model_dir), "retrieval_dir": retrieval_dir and
        os.path.abspath(retrieval_dir), "data_dir": os.path.abspath(data_dir),
        "signatures": sorted(signatures), "tensorflow_version": tf.__version__,
        "min_tf_serving_version": tf.__version__.rsplit(".", 1)[0],
        "top_k": getattr(module, "top_k", None), "cached_item_vectors": cache_items,
        "jit_compile": jit_compile, "neighbour_inputs": ranker.uses_neighbours,
        "request_limits": dataclasses.asdict(limits)}
    with tf.io.gfile.GFile(os.path.join(tmp, FN.EXTRA_DIR, FN.EXPORT_INFO_FILE), "w") as f:
        f.write(json.dumps(info, indent=2))
    if tf.io.gfile.exists(target):  # checked again: another export may have taken the number
        if not overwrite:
            tf.io.gfile.rmtree(tmp)
            raise FileExistsError(f"{target!r} appeared while exporting (another export?): "
                                  "pick another --version or pass --overwrite.")
        tf.io.gfile.rmtree(target)
    tf.io.gfile.rename(tmp, target, overwrite=False)
    logging.info("Exported %s in %.1f s", target, time.time() - start)
    return target
