"""TF Serving's REST request formats, mapped onto a signature's inputs (numpy + TensorFlow only).

TF Serving's ``:predict`` REST API takes one of two JSON bodies
(https://www.tensorflow.org/tfx/serving/api_rest#predict_api):

- **row format**: ``{"signature_name": S, "instances": [{name: value, ...}, ...]}``: one object
  per row; every row holds every named input with the row's (unbatched) value, and rows are
  stacked, so all rows' values of an input must have the same shape (pad them client-side).
- **columnar format**: ``{"signature_name": S, "inputs": {name: batched value, ...}}``.

The response is ``{"predictions": ...}`` (row format: a list of per-row objects, or of values if
the signature has one output) or ``{"outputs": ...}`` (columnar). This module builds and decodes
those bodies so tests, the demo and clients share one tested mapping. It imports no jsr_tf module
(as ``jsr_tf.export.rest`` only the package's ``__init__``, which sets ``TF_USE_LEGACY_KERAS``):
``python -m jsr_tf.export.rest --saved_model DIR --request body.json`` scores a REST body through
a SavedModel in a process that has only TensorFlow, as a stand-in for a real server.

A body the signature cannot take raises ``RequestError`` with one line that says why (TF Serving
answers those with HTTP 400): an unknown ``signature_name`` (the valid ones are listed), missing,
unknown or ragged inputs, ids outside int64, booleans, floats or strings where integers are due,
or a request over the export's limits (``jsr_tf.export.serving.RequestLimits``). The command prints
that line and exits 1, as it does for a file that is not JSON.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

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
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (TypeError, ValueError):
            raise RequestError(f"Not base64: {str(value['b64'])[:40]!r}.") from None
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


class RequestError(ValueError):
    """A body that the signature cannot take (TF Serving answers HTTP 400); the message says why."""


INT64_RANGE = (-2 ** 63, 2 ** 63 - 1)


def _shape(value: Any, name: str) -> tuple:
    """The shape of nested JSON lists; RequestError if they are ragged."""
    if not isinstance(value, list):
        return ()
    shapes = {_shape(v, name) for v in value}
    if len(shapes) > 1:
        raise RequestError(f"Input `{name}` is ragged (lists of different lengths): pad it.")
    return (len(value), *(shapes.pop() if shapes else ()))


def _leaves(value: Any):
    if isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def _check_leaf(name: str, leaf: Any, dtype: np.dtype) -> None:
    """One scalar of a numeric input: booleans only for bool inputs, integers in int64, and
    no floats for integer inputs."""
    kind = dtype.kind
    if isinstance(leaf, bool):
        if kind != "b":
            raise RequestError(f"Input `{name}` takes {dtype.name} values. Received booleans.")
    elif isinstance(leaf, int):
        if kind == "b" and leaf not in (0, 1):
            raise RequestError(f"Input `{name}` takes booleans. Received other integers.")
        if kind in "iu" and not INT64_RANGE[0] <= leaf <= INT64_RANGE[1]:
            raise RequestError(f"Input `{name}` takes {dtype.name} values. Received {leaf}, "
                               "outside [-2^63, 2^63 - 1].")
    elif isinstance(leaf, float):
        if kind in "iub":
            raise RequestError(f"Input `{name}` takes {dtype.name} values. Received floats.")
    else:
        raise RequestError(f"Input `{name}` takes {dtype.name} values. Received "
                           f"{type(leaf).__name__} {str(leaf)[:40]!r}.")


def _to_array(name: str, raw: Any, dtype: Any) -> np.ndarray:
    """One input's JSON value → a numpy array of ``dtype`` (checked, never wrapped or cast)."""
    dtype = np.dtype(dtype)
    shape = _shape(raw, name)
    if dtype.kind == "O":  # tf.string: text or {"b64": ...}
        values = _decode(raw)
        for leaf in _leaves(values):
            if not isinstance(leaf, (bytes, str)):
                raise RequestError(f"Input `{name}` takes strings (or {{\"b64\": ...}} objects). "
                                   f"Received {type(leaf).__name__}.")
        out = np.empty(shape, dtype=object)
        flat = [v.encode("utf-8") if isinstance(v, str) else v for v in _leaves(values)]
        out.reshape(-1)[:] = flat
        return out
    for leaf in _leaves(raw):
        _check_leaf(name, leaf, dtype)
    return np.array(raw, dtype=dtype).reshape(shape)


def body_to_inputs(body: Mapping[str, Any], input_dtypes: Mapping[str, Any]) -> Dict[str, np.ndarray]:
    """A REST body (either format) → named batched numpy arrays, as TF Serving would build them.

    Args:
        body: The parsed JSON body.
        input_dtypes: Signature input name → numpy dtype.

    Raises:
        RequestError: On a body in neither or both formats, missing or unknown inputs, rows of an
            input with different shapes (TF Serving rejects those too), values of the wrong
            type (booleans or floats for integers, integers outside int64, ...).
    """
    if not isinstance(body, Mapping):
        raise RequestError(f"A predict body is a JSON object. Received {type(body).__name__}.")
    if ("instances" in body) == ("inputs" in body):
        raise RequestError('A predict body has exactly one of "instances" (row format) or '
                           '"inputs" (columnar format).')
    single = next(iter(input_dtypes)) if len(input_dtypes) == 1 else None
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list):
            raise RequestError('"instances" is a list of rows.')
        if not rows:
            raise RequestError('"instances" is empty.')
        if single is not None and not all(isinstance(r, dict) and single in r for r in rows):
            rows = [{single: row} for row in rows]  # a one-input signature takes bare values
        if not all(isinstance(row, dict) for row in rows):
            raise RequestError('Each of "instances" is an object {input name: value}.')
        for i, row in enumerate(rows):
            if set(row) != set(rows[0]):
                raise RequestError(f"Instance {i} has inputs {sorted(row)}, instance 0 has "
                                   f"{sorted(rows[0])}.")
        columns = {name: [row[name] for row in rows] for name in rows[0]}
        for name, values in columns.items():
            if len({_shape(v, name) for v in values}) > 1:
                raise RequestError(f"Row-format inputs must have one shape across instances; "
                                   f"pad them. Ragged: ['{name}']")
    else:
        inputs = body["inputs"]
        if single is not None and not (isinstance(inputs, dict) and single in inputs):
            inputs = {single: inputs}
        if not isinstance(inputs, dict):
            raise RequestError('"inputs" is an object {input name: batched value}.')
        columns = dict(inputs)
    missing = sorted(set(input_dtypes) - set(columns))
    unknown = sorted(set(columns) - set(input_dtypes))
    if missing or unknown:
        raise RequestError(f"Inputs do not match the signature: missing {missing}, unknown "
                           f"{unknown}.")
    return {name: _to_array(name, columns[name], input_dtypes[name]) for name in columns}


def outputs_to_response(body: Mapping[str, Any], outputs: Mapping[str, np.ndarray]) -> Dict[str, Any]:
    """Signature outputs → the response body TF Serving sends for ``body``'s format."""
    values = {name: np.asarray(v).tolist() for name, v in outputs.items()}
    if "inputs" in body:
        return {"outputs": values if len(values) > 1 else next(iter(values.values()))}
    n = len(next(iter(values.values())))
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    return {"predictions": [{name: v[i] for name, v in values.items()} for i in range(n)]}


DEFAULT_SIGNATURE = "serving_default"


def predict(saved_model_dir: str, body: Mapping[str, Any]) -> Dict[str, Any]:
    """Loads a SavedModel and answers a REST predict body (TensorFlow only, no jsr_tf)."""
    import tensorflow as tf

    return answer(tf.saved_model.load(saved_model_dir), body)


def signature(loaded: Any, body: Mapping[str, Any]) -> Tuple[str, Any]:
    """``(name, concrete function)`` the body asks for (``serving_default`` if it names none).

    Raises:
        RequestError: An unknown name (the message lists the valid ones).
    """
    if not isinstance(body, Mapping):
        raise RequestError(f"A predict body is a JSON object. Received {type(body).__name__}.")
    names = sorted(loaded.signatures.keys())
    name = body.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(name, str) or name not in loaded.signatures:
        given = ("The body names no signature and the model has no serving_default"
                 if "signature_name" not in body else f"Unknown signature_name {name!r}")
        raise RequestError(f"{given}. Valid signature names: {', '.join(names)}.")
    return name, loaded.signatures[name]


def answer(loaded: Any, body: Mapping[str, Any]) -> Dict[str, Any]:
    """Answers a REST predict body with a loaded SavedModel (``tf.saved_model.load``).

    Raises:
        RequestError: A body the signature cannot take, or a request the model refuses (e.g.
            more rows or candidates than the export allows): one line, as TF Serving's 400.
    """
    import tensorflow as tf

    name, fn = signature(loaded, body)
    specs = fn.structured_input_signature[1]
    dtypes = {key: spec.dtype.as_numpy_dtype for key, spec in specs.items()}
    try:
        inputs = body_to_inputs(body, dtypes)
    except RequestError as error:
        if "signature_name" in body:
            raise
        raise RequestError(f"{error} (the body names no signature_name, so {name} was used; "
                           f"signatures: {', '.join(sorted(loaded.signatures.keys()))})") from None
    for key, value in inputs.items():
        if not specs[key].shape.is_compatible_with(value.shape):
            raise RequestError(f"Input `{key}` has shape {list(value.shape)}; signature {name} "
                               f"takes {specs[key].shape.as_list()} (None = any size).")
    try:
        outputs = fn(**{k: tf.constant(v) for k, v in inputs.items()})
    except tf.errors.InvalidArgumentError as error:
        raise RequestError(f"Signature {name} refused the request: "
                           f"{_refusal(error.message)}") from None
    return outputs_to_response(body, {k: v.numpy() for k, v in outputs.items()})


def _refusal(message: str) -> str:
    """The reason in a TensorFlow runtime error: a failed assertion's message, else its last line
    that is not a node name or a stack frame."""
    found = re.search(r"assertion failed: \[(.*?)\]", message)
    if found:
        return found.group(1)
    skip = ("[[", "File ", "Detected at node", "Graph execution error")
    lines = [line.strip() for line in message.splitlines()
             if line.strip() and not line.strip().startswith(skip)]
    return lines[-1] if lines else " ".join(message.split())


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``python -m jsr_tf.export.rest``: a REST body file scored through a SavedModel; a bad body,
    file or request exits 1 with one line on stderr."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saved_model", required=True, help="<export_base>/<name>/<version>")
    parser.add_argument("--request", required=True, help="JSON file: a REST predict body")
    parser.add_argument("--summary", action="store_true",
                        help="Print a short summary instead of the whole response body.")
    parser.add_argument("--verbosity", "-v", type=int, default=0,
                        help="1 or more: show TensorFlow's log lines and tracebacks.")
    args = parser.parse_args(argv)
    # Before TensorFlow loads (in predict): its C++ log lines only when asked for.
    if args.verbosity >= 1:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with open(args.request, encoding="utf-8") as f:
            try:
                body = json.load(f)
            except json.JSONDecodeError as error:
                raise RequestError(f"{args.request} is not valid JSON: {error}") from None
        response = predict(args.saved_model, body)
    except (OSError, ValueError) as error:  # RequestError is a ValueError
        if args.verbosity >= 1:
            raise
        parser.exit(1, f"jsr_tf.export.rest: error: {' '.join(str(error).split())}\n")
    if not args.summary:
        print(json.dumps(response))
        return
    print(f"signature {body.get('signature_name', DEFAULT_SIGNATURE)!r}:")
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
