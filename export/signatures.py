"""The serving signatures' registry: each signature's inputs, outputs, answer and sample request.

One ``Signature`` per SavedModel signature, in ``REGISTRY`` (the export order). Everything that
needs a signature's shape reads it from here:

- ``jsr_tf.export.serving.ServingModule.signatures`` builds one concrete function per exported entry
  (``exported_signatures``) with ``concrete_function``: ``input_signature`` is ``inputs`` in
  order, and the function returns ``answer(module, inputs)``, whose keys must be ``outputs``;
- ``jsr_tf.export.warmup.sample_requests`` draws each entry's sample request as its ``sample`` says
  (the warmup file and the ``sample_request_<signature>.json`` REST bodies come from those);
- the tests compare the README's signature table and the exported SavedModels with it.

What the signatures mean (ids, padding, shapes, limits) is described in ``jsr_tf.export.serving``.
"""

from __future__ import annotations

import dataclasses
import enum
from types import MappingProxyType
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import jsr_tf  # noqa: F401
import tensorflow as tf

from jsr_tf import features as F

# Input names that are not batch fields of the example contract.
CANDIDATES = F.CANDIDATES
EXAMPLES = "examples"
EXCLUDE_HISTORY = "exclude_history"
# Output names.
SCORES = "scores"
FEED_SCORES = "feed_scores"
SEARCH_SCORES = "search_scores"
ITEM_IDS = "item_ids"

FEED_SIGNATURE = "feed"
SEARCH_SIGNATURE = "search"
FEED_NBR_SIGNATURE = "feed_nbr"
SEARCH_NBR_SIGNATURE = "search_nbr"
DEFAULT_SIGNATURE = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY  # "serving_default"
RETRIEVE_SIGNATURE = "retrieve"


def _spec(name: str, rank: int, dtype: tf.DType = tf.int64) -> tf.TensorSpec:
    """The input ``name`` of ``rank`` free axes."""
    return tf.TensorSpec([None] * rank, dtype, name=name)


def _inputs(*parts) -> Mapping[str, tf.TensorSpec]:
    """Specs and ordered groups of them → a read-only ``name → TensorSpec``, in order."""
    groups = [part if isinstance(part, Mapping) else {part.name: part} for part in parts]
    return MappingProxyType({name: spec for group in groups for name, spec in group.items()})


# The contract's fields (ranks and dtypes; the sizes stay free: ``fit_request`` fits them).
_FIELDS = F.DataShape().batch_fields(neighbours=True)


def _field_spec(name: str) -> tf.TensorSpec:
    """The input ``name`` as the batch contract lays it out: ``[B, *inner]``, its dtype."""
    field = _FIELDS[name]
    return _spec(name, 1 + len(field.inner), tf.as_dtype(field.dtype))


# The user's histories, as every signature but ``serving_default`` takes them.
HISTORY_SPECS = _inputs(*(_field_spec(name) for name in (
    F.USER_ID, F.FEED_ITEMS, F.FEED_TS, F.SEARCH_TS, F.SEARCH_WORDS, F.SEARCH_CLICKS)))
# The similar-user payload of the ``*_nbr`` signatures.
NEIGHBOUR_SPECS = _inputs(*(_field_spec(name) for name in F.NEIGHBOUR_INPUTS))
QUERY_SPEC = _field_spec(F.QUERY_WORDS)
CANDIDATES_SPEC = _field_spec(CANDIDATES)
EXCLUDE_SPEC = _spec(EXCLUDE_HISTORY, 1, tf.bool)
EXAMPLES_SPEC = _spec(EXAMPLES, 1, tf.string)


class Exported(enum.Enum):
    """When a signature is part of an export."""

    ALWAYS = "always"
    NEIGHBOURS = "the ranker is built with neighbours"
    RETRIEVER = "a two-tower retrieval head is exported"


@dataclasses.dataclass(frozen=True)
class Sample:
    """How a signature's sample request (warmup, sample REST body) is drawn from the valid split.

    Attributes:
        task: The reader batch (``reader.make_dataset`` of the valid split) the rows come from;
            for ``examples``, the split file of serialized Examples.
        base: A signature whose sample request this one extends: its inputs come first, with
            the same values, then this signature's other inputs from the batch.
        examples: The request is the split's serialized Examples with a ``candidates`` feature
            (``warmup.serving_examples``) rather than batch fields.
        flags: Boolean ``[B]`` inputs that are True for every row (not in the batch).
    """

    task: F.Task
    base: Optional[str] = None
    examples: bool = False
    flags: Tuple[str, ...] = ()


Answer = Callable[[Any, Dict[str, tf.Tensor]], Dict[str, tf.Tensor]]


@dataclasses.dataclass(frozen=True)
class Signature:
    """One serving signature.

    Attributes:
        name: The signature's key in the SavedModel (``signature_name`` of a request).
        inputs: ``input name → TensorSpec``, in ``input_signature`` order.
        outputs: The output names, which are the keys ``answer`` returns.
        answer: ``answer(module, inputs)``: the outputs of a ``ServingModule`` for a request
            (``inputs``: ``input name → tensor``).
        exported: When the signature is part of an export.
        sample: How its sample request is drawn.
    """

    name: str
    inputs: Mapping[str, tf.TensorSpec]
    outputs: Tuple[str, ...]
    answer: Answer
    exported: Exported
    sample: Sample

    def exported_with(self, neighbours: bool, retriever: bool) -> bool:
        """Whether an export of a ranker (with ``neighbours``) and ``retriever`` has it."""
        return {Exported.ALWAYS: True, Exported.NEIGHBOURS: neighbours,
                Exported.RETRIEVER: retriever}[self.exported]


def _scores(task: F.Task) -> Answer:
    return lambda module, inputs: {SCORES: module.score(inputs, task)}


REGISTRY: Tuple[Signature, ...] = (
    Signature(FEED_SIGNATURE, _inputs(HISTORY_SPECS, CANDIDATES_SPEC), (SCORES,),
              _scores(F.Task.FEED), Exported.ALWAYS, Sample(F.Task.FEED)),
    Signature(SEARCH_SIGNATURE, _inputs(HISTORY_SPECS, QUERY_SPEC, CANDIDATES_SPEC), (SCORES,),
              _scores(F.Task.SEARCH), Exported.ALWAYS, Sample(F.Task.SEARCH)),
    Signature(DEFAULT_SIGNATURE, _inputs(EXAMPLES_SPEC), (FEED_SCORES, SEARCH_SCORES),
              lambda module, inputs: module.score_examples(inputs[EXAMPLES]),
              Exported.ALWAYS, Sample(F.Task.SEARCH, examples=True)),
    Signature(FEED_NBR_SIGNATURE, _inputs(HISTORY_SPECS, NEIGHBOUR_SPECS, CANDIDATES_SPEC),
              (SCORES,), _scores(F.Task.FEED), Exported.NEIGHBOURS,
              Sample(F.Task.FEED, base=FEED_SIGNATURE)),
    Signature(SEARCH_NBR_SIGNATURE,
              _inputs(HISTORY_SPECS, NEIGHBOUR_SPECS, QUERY_SPEC, CANDIDATES_SPEC), (SCORES,),
              _scores(F.Task.SEARCH), Exported.NEIGHBOURS,
              Sample(F.Task.SEARCH, base=SEARCH_SIGNATURE)),
    Signature(RETRIEVE_SIGNATURE, _inputs(HISTORY_SPECS, QUERY_SPEC, EXCLUDE_SPEC),
              (ITEM_IDS, SCORES), lambda module, inputs: module.retrieve(inputs),
              Exported.RETRIEVER, Sample(F.Task.SEARCH, flags=(EXCLUDE_HISTORY,))),
)
BY_NAME: Mapping[str, Signature] = MappingProxyType({sig.name: sig for sig in REGISTRY})


def exported_signatures(neighbours: bool, retriever: bool) -> Tuple[Signature, ...]:
    """The registry entries an export has (see ``Signature.exported_with``), in export order."""
    return tuple(sig for sig in REGISTRY if sig.exported_with(neighbours, retriever))


def concrete_function(signature: Signature, module: Any) -> tf.types.experimental.ConcreteFunction:
    """``signature``'s concrete function for ``module`` (``tf.saved_model.save(signatures=)``).

    Raises:
        ValueError: ``signature.answer`` returns other keys than ``signature.outputs``.
    """
    names = list(signature.inputs)

    def serve(*args):
        outputs = signature.answer(module, dict(zip(names, args)))
        if tuple(outputs) != signature.outputs:
            raise ValueError(f"Signature {signature.name!r} should return "
                             f"{list(signature.outputs)}. Received {list(outputs)}")
        return outputs

    serve.__name__ = signature.name  # the traced function's name, as with one def per signature
    function = tf.function(serve, input_signature=list(signature.inputs.values()))
    return function.get_concrete_function()
