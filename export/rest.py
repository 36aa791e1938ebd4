"""TF Serving's REST request formats, mapped onto a signature's inputs (numpy + TensorFlow only).

TF Serving's ``:predict`` REST API takes one of two JSON bodies
(https://www.tensorflow.org/tfx/serving/api_rest#predict_api):

- **row format**: ``{"signature_name": S, "instances": [{name: value, ...}, ...]}``: one object
  per row; every row holds every named input with the row's (unbatched) value, and rows are
  stacked, so all rows' values of an input must have the same shape (pad them client-side).
- **columnar format**: ``{"signature_name": S, "inputs": {name: batched value, ...}}``.

The response is ``{"predictions": ...}`` (row format: a list of per-row objects, or of values if
the signature has one output) or ``{"outputs": ...}`` (columnar). This module builds and decodes
those bodies so tests, the demo and clients share one tested mapping. It imports no jsr_tf code:
``python -m export.rest --saved_model DIR --request body.json`` scores a REST body through a
SavedModel in a process that has only TensorFlow, as a stand-in for a real server.
"""

from __future__ import annotations

import argparse
import base64
import json
from typing import Any, Dict, Mapping

import numpy as np

def _jsonable(value: np.ndarray) -> Any:
    """An array as JSON values; bytes become ``{"b64": ...}`` as TF Serving's REST API wants."""
    value = np.asarray(value)
    if value.dtype == object or value.dtype.kind == "S":
        flat = [{"b64": base64.b64encode(bytes(v)).decode("ascii")} for v in value.ravel()]
        return np.array(flat, dtype=object).reshape(value.shape).tolist()
    return value.tolist()


def _decode(value: Any) -> Any:
    """Inverse of ``_jsonable`` for nested lists holding ``{"b64": ...}`` objects."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def row_body(signature: str, inputs: Mapping[str, np.ndarray]) -> Dict[str, Any]:
    """Batched inputs → a row-format (``instances``) body."""
    rows = {len(np.asarray(v)) for v in inputs.values()}
    if len(rows) != 1:
        raise ValueError(f"Every input needs the same batch size. Received sizes {sorted(rows)}")
    n = rows.pop()
    instances = [{name: _jsonable(np.asarray(value)[i]) for name, value in inputs.items()}
                 for i in range(n)]
    return {"signature_name": signature, "instances": instances}


def columnar_body(signature: str, inputs: Mapping[str, np.ndarray]) -> Dict[str, Any]:
    """Batched inputs → a columnar-format (``inputs``) body."""
    return {"signature_name": signature,
            "inputs": {name: _jsonable(value) for name, value in inputs.items()}}


def body_to_inputs(body: Mapping[str, Any], input_dtypes: Mapping[str, Any]) -> Dict[str, np.ndarray]:
    """A REST body (either format) → named batched numpy arrays, as TF Serving would build them.

    Args:
        body: The parsed JSON body.
        input_dtypes: Signature input name → numpy dtype.

    Raises:
        ValueError: On a body in neither or both formats, missing or unknown inputs, or rows of
            an input with different shapes (TF Serving rejects those too).
    """
    if ("instances" in body) == ("inputs" in body):
        raise ValueError('A predict body has exactly one of "instances" (row format) or '
                         '"inputs" (columnar format).')
    single = next(iter(input_dtypes)) if len(input_dtypes) == 1 else None
    if "instances" in body:
        rows = body["instances"]
        if not rows:
            raise ValueError('"instances" is empty.')
        if single is not None and not all(isinstance(r, dict) and single in r for r in rows):
            rows = [{single: row} for row in rows]  # a one-input signature takes bare values
        columns = {name: [row[name] for row in rows] for name in rows[0]}
        for i, row in enumerate(rows):
            if set(row) != set(columns):
                raise ValueError(f"Instance {i} has inputs {sorted(row)}, instance 0 has "
                                 f"{sorted(columns)}.")
        shapes = {name: {np.shape(v) for v in values} for name, values in columns.items()}
        ragged = [name for name, s in shapes.items() if len(s) > 1]
        if ragged:
            raise ValueError(f"Row-format inputs must have one shape across instances; pad "
                             f"them. Ragged: {ragged}")
    else:
        inputs = body["inputs"]
        if single is not None and not (isinstance(inputs, dict) and single in inputs):
            inputs = {single: inputs}
        columns = dict(inputs)
    missing = sorted(set(input_dtypes) - set(columns))
    unknown = sorted(set(columns) - set(input_dtypes))
    if missing or unknown:
        raise ValueError(f"Inputs do not match the signature: missing {missing}, unknown "
                         f"{unknown}.")
    out = {}
    for name in columns:
        values = np.asarray(_decode(columns[name]))
        dtype = np.dtype(input_dtypes[name])
        if dtype.kind in "iub" and values.size and values.dtype.kind not in "iub":
            raise ValueError(f"Input `{name}` takes {dtype.name} values. Received "
                             f"{values.dtype.kind == 'f' and 'floats' or values.dtype.name}.")
        if dtype.kind == "b" and values.dtype.kind in "iu" and not np.isin(values, (0, 1)).all():
            raise ValueError(f"Input `{name}` takes booleans. Received other integers.")
        out[name] = values.astype(dtype) if dtype.kind != "O" else values
    return out


def outputs_to_response(body: Mapping[str, Any], outputs: Mapping[str, np.ndarray]) -> Dict[str, Any]:
    """Signature outputs → the response body TF Serving sends for ``body``'s format."""
    values = {name: np.asarray(v).tolist() for name, v in outputs.items()}
    if "inputs" in body:
        return {"outputs": values if len(values) > 1 else next(iter(values.values()))}
    n = len(next(iter(values.values())))
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    return {"predictions": [{name: v[i] for name, v in values.items()} for i in range(n)]}


def predict(saved_model_dir: str, body: Mapping[str, Any]) -> Dict[str, Any]:
    """Loads a SavedModel and answers a REST predict body (TensorFlow only, no jsr_tf)."""
    import tensorflow as tf

    return answer(tf.saved_model.load(saved_model_dir), body)


def answer(loaded: Any, body: Mapping[str, Any]) -> Dict[str, Any]:
    """Answers a REST predict body with a loaded SavedModel (``tf.saved_model.load``)."""
    import tensorflow as tf

    name = body.get("signature_name", "serving_default")
    fn = loaded.signatures[name]
    specs = fn.structured_input_signature[1]
    dtypes = {key: spec.dtype.as_numpy_dtype for key, spec in specs.items()}
    inputs = body_to_inputs(body, dtypes)
    outputs = fn(**{k: tf.constant(v) for k, v in inputs.items()})
    return outputs_to_response(body, {k: v.numpy() for k, v in outputs.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saved_model", required=True, help="<export_base>/<name>/<version>")
    parser.add_argument("--request", required=True, help="JSON file: a REST predict body")
    parser.add_argument("--summary", action="store_true",
                        help="Print a short summary instead of the whole response body.")
    args = parser.parse_args()
    with open(args.request, encoding="utf-8") as f:
        body = json.load(f)
    response = predict(args.saved_model, body)
    if not args.summary:
        print(json.dumps(response))
        return
    print(f"signature {body.get('signature_name', 'serving_default')!r}:")
    for i, row in enumerate(response.get("predictions") or []):
        outputs = row if isinstance(row, dict) else {"scores": row}
        parts = []
        for name, value in outputs.items():
            value = np.asarray(value)
            shown = np.array2string(value[:5], precision=3, separator=", ")
            parts.append(f"{name}[{value.size}] = {shown}{' ...' if value.size > 5 else ''}")
        print(f"  row {i}: " + "; ".join(parts))


if __name__ == "__main__":
    main()
