"""A student's answers, carried out of the kernel as data: the grader judges them in its own process.

The grader (``workbench.course.grading``) puts an export cell after every check cell of a submission::

    from workbench.course import answers as _answers; _answers.export('06.4', globals(), '/scratch/06.4.json')

which writes the exercise's answers (the names its check passes, read from the notebook's namespace) as JSON. The
grader reads the file back with ``read`` and checks the answers itself (``workbench.course.hidden``): nothing a
student's code does in the kernel (replacing ``exercises.verdict``, printing PASS) reaches that process. A student
who rewrites the export writes other answers, which is what an answer cell does anyway: the checks judge whatever
arrives.

Reading is safe by construction: plain JSON, never pickle (unpickling a student's file would run the student's
code with the grader's rights), decoded into the kinds of values the exercises ask for and nothing else:

- None, bool, int, float (NaN and infinities included), str, ``...`` (an unanswered exercise);
- list, tuple, set, dict (keys of any of these kinds);
- ``torch.Tensor`` and ``numpy.ndarray`` (dtype, shape, raw bytes), numpy scalars (as Python numbers);
- ``pandas.DataFrame`` and ``pandas.Series`` (columns, index, values);
- ``workbench.results.Result`` and ``workbench.threat.Threat`` (their fields).

Any other value is written as a marker naming its type, which every check fails with "could not check". A file
larger than ``MAX_BYTES`` is refused.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from workbench import paths
from workbench.course.checking import get
from workbench.results import Result
from workbench.threat import Threat

MAX_BYTES = 256 * 2**20  # an answers file beyond this is refused unread
_RECORDS = {"Result": Result, "Threat": Threat}  # the dataclasses an answer may be, by name


class Unsupported:
    """An answer of a kind the file cannot carry (its type's name): every check of it fails."""

    def __init__(self, kind: str):
        self.kind = kind

    def __repr__(self) -> str:
        return f"<an answer of type {self.kind} that the grader cannot read>"


def export(key: str, namespace: Mapping[str, Any], path: str | Path) -> None:
    """Write the answers of exercise ``key`` (its asked names, looked up in ``namespace``; a missing name is
    written as unanswered) to ``path`` as JSON, atomically."""
    answers = {name: namespace.get(name, ...) for name in get(key).asks}
    text = json.dumps({"exercise": key, "answers": encode(answers)})
    paths.atomic_write(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read(key: str, path: str | Path) -> dict[str, Any]:
    """The answers to exercise ``key`` written by ``export`` at ``path``; a ValueError for a file that is missing,
    too large, not JSON, or for another exercise."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no answers were exported for {key} (a cell above stopped the run?)")
    if path.stat().st_size > MAX_BYTES:
        raise ValueError(f"the answers to {key} take {path.stat().st_size} bytes, more than {MAX_BYTES}")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"the answers to {key} are not readable ({error})") from None
    if not isinstance(content, dict) or content.get("exercise") != key:
        raise ValueError(f"the answers file of {key} holds another exercise's answers")
    answers = decode(content.get("answers"))
    if not isinstance(answers, dict):
        raise ValueError(f"the answers file of {key} holds no answers")
    return answers


# ------------------------------------------------------------------------------------------------ encoding
def encode(value: Any) -> Any:
    """``value`` as JSON data that ``decode`` turns back into an equal value (see the module docstring)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if value is Ellipsis:
        return {"kind": "ellipsis"}
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else {"kind": "float", "text": repr(float(value))}
    if isinstance(value, (list, tuple, set, frozenset)):
        kind = "tuple" if isinstance(value, tuple) else "set" if isinstance(value, (set, frozenset)) else "list"
        return {"kind": kind, "items": [encode(v) for v in value]}
    if isinstance(value, Mapping):
        return {"kind": "dict", "items": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, torch.Tensor):
        return {"kind": "tensor", **_array(value.detach().cpu().numpy())}
    if isinstance(value, np.ndarray):
        return {"kind": "ndarray", **_array(value)}
    if isinstance(value, pd.DataFrame):
        return {"kind": "dataframe", "columns": encode(list(value.columns)), "index": encode(list(value.index)),
                "columns_data": [encode(value[c].tolist()) for c in value.columns]}
    if isinstance(value, pd.Series):
        return {"kind": "series", "name": encode(value.name), "index": encode(list(value.index)),
                "values": encode(value.tolist())}
    if type(value) in _RECORDS.values():  # exactly these classes, not a subclass
        return {"kind": "record", "type": type(value).__name__,
                "fields": {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    return {"kind": "unsupported", "type": type(value).__name__}


def _array(array: np.ndarray) -> dict[str, Any]:
    if array.dtype.kind not in "biuf":
        raise TypeError(f"an array of dtype {array.dtype} cannot be an answer")
    contiguous = np.ascontiguousarray(array)
    return {"dtype": contiguous.dtype.str, "shape": list(contiguous.shape),
            "data": base64.b64encode(contiguous.tobytes()).decode("ascii")}


def decode(data: Any) -> Any:
    """The value ``encode`` wrote (an ``Unsupported`` marker for anything else)."""
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list) or not isinstance(data, dict):
        return Unsupported(type(data).__name__)
    kind = data.get("kind")
    if kind == "ellipsis":
        return ...
    if kind == "float":
        return float(data["text"]) if data.get("text") in ("nan", "inf", "-inf") else Unsupported("float")
    if kind in ("list", "tuple", "set"):
        items = [decode(v) for v in data.get("items", [])]
        try:
            return {"list": list, "tuple": tuple, "set": set}[kind](items)
        except TypeError:  # an unhashable member of a set
            return Unsupported(kind)
    if kind == "dict":
        try:
            return {_hashable(decode(k)): decode(v) for k, v in data.get("items", [])}
        except (TypeError, ValueError):
            return Unsupported("dict")
    if kind in ("tensor", "ndarray"):
        array = _from_array(data)
        return Unsupported(kind) if array is None else torch.from_numpy(array) if kind == "tensor" else array
    if kind == "dataframe":
        columns, index = decode(data.get("columns")), decode(data.get("index"))
        values = [decode(c) for c in data.get("columns_data", [])]
        if not (isinstance(columns, list) and isinstance(index, list) and len(values) == len(columns)
                and all(isinstance(v, list) and len(v) == len(index) for v in values)):
            return Unsupported("DataFrame")
        frame = pd.DataFrame(dict(zip(range(len(columns)), values)), index=index)
        frame.columns = columns
        return frame.infer_objects()
    if kind == "series":
        index, values = decode(data.get("index")), decode(data.get("values"))
        if not (isinstance(index, list) and isinstance(values, list) and len(index) == len(values)):
            return Unsupported("Series")
        return pd.Series(values, index=index, name=decode(data.get("name"))).infer_objects()
    if kind == "record" and data.get("type") in _RECORDS:
        return _record(_RECORDS[data["type"]], data.get("fields"))
    return Unsupported(str(data.get("type", kind)))


def _hashable(key: Any) -> Any:
    if isinstance(key, list):
        raise TypeError("a list cannot be a key")
    return key


def _from_array(data: Mapping[str, Any]) -> np.ndarray | None:
    try:
        dtype = np.dtype(str(data["dtype"]))
        shape = [int(s) for s in data["shape"]]
        raw = base64.b64decode(str(data["data"]), validate=True)
    except (KeyError, TypeError, ValueError):
        return None
    if dtype.kind not in "biuf" or any(s < 0 for s in shape) or len(raw) != dtype.itemsize * math.prod(shape):
        return None
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _record(cls: type, fields: Any) -> Any:
    if not isinstance(fields, dict):
        return Unsupported(cls.__name__)
    names = {f.name for f in dataclasses.fields(cls)}
    values = {name: decode(v) for name, v in fields.items() if name in names}
    try:
        return cls(**values)
    except (TypeError, ValueError):
        return Unsupported(cls.__name__)
