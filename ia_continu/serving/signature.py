"""Request validation that follows the registered model's MLflow signature.

The API accepts exactly the model's input columns (names, types, required or not):
missing, extra or mistyped columns are rejected with the column at fault, so a new
champion with a new schema changes the API contract without a code change.

One key besides the columns is accepted in every row: the optional, reserved
``prediction_id`` (:data:`ID_KEY`), the client's id for that prediction (a business
key), so ground truth sent later can be joined to it. A model with an input column of
that name cannot be served (:class:`UnsupportedSignature` at load time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, NamedTuple, NotRequired

import numpy as np
import orjson
import pandas as pd
from mlflow.models.signature import ModelSignature
from mlflow.types import DataType
from pydantic import (
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

# pydantic needs typing_extensions.TypedDict on Python < 3.12.
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict

ID_KEY = "prediction_id"
"""Reserved row key: the client's id of that row's prediction."""
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"
"""What a client ``prediction_id`` must match: 1..128 characters, starting with a letter
or digit (URL- and file-safe, fits ``served_predictions.prediction_id``)."""
_ID_BYTES = ID_KEY.encode()

PredictionId = Annotated[
    StrictStr,
    StringConstraints(min_length=1, max_length=128, pattern=ID_PATTERN),
    Field(
        description="Optional id of this row's prediction (e.g. a business key), unique "
        "within the request; send the ground truth later under this id. Default: the "
        "request id (POST /predict) or <request id>/<row index> (POST /predict/batch)."
    ),
]

# Finite numbers only: NaN/Infinity are valid JSON extensions but poison a model.
_Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]

_PYTHON_TYPES: dict[DataType, Any] = {
    DataType.double: _Number,
    DataType.float: _Number,
    DataType.long: StrictInt,
    DataType.integer: StrictInt,
    DataType.string: StrictStr,
    DataType.boolean: StrictBool,
}
_DTYPES: dict[DataType, str] = {
    DataType.double: "float64",
    DataType.float: "float32",
    DataType.long: "int64",
    DataType.integer: "int32",
    DataType.string: "object",
    DataType.boolean: "bool",
}


class UnsupportedSignature(ValueError):
    """The model's signature cannot be served (no column names, an unsupported type, or a
    column named like the reserved ``prediction_id`` key)."""


class Parsed(NamedTuple):
    """A validated request body, ready to predict.

    Attributes:
        rows: the input rows, model columns only (``prediction_id`` removed).
        arrays: one 1-D array per model column (:meth:`SignatureValidator.arrays`).
        ids: one prediction id per row, in order.
    """

    rows: list[dict[str, Any]]
    arrays: dict[str, np.ndarray]
    ids: list[str]


@dataclass(frozen=True)
class Column:
    """One input column of a model signature."""

    name: str
    type: DataType
    required: bool


class SignatureValidator:
    """Validates JSON request bodies against a model signature and builds model input.

    Args:
        signature: the registered version's MLflow signature (column-based inputs).
        max_batch_rows: largest accepted batch.

    Raises:
        UnsupportedSignature: tensor-based or unnamed inputs, a column type other
            than double, float, long, integer, string or boolean, or a column named
            ``prediction_id`` (reserved for the prediction's id: rename the feature).
    """

    def __init__(self, signature: ModelSignature | None, max_batch_rows: int):
        if signature is None or signature.inputs is None or not signature.inputs.has_input_names():
            raise UnsupportedSignature("the model has no column-based input signature")
        columns = []
        for spec in signature.inputs.inputs:
            kind = getattr(spec, "type", None)
            if kind not in _PYTHON_TYPES:
                raise UnsupportedSignature(f"column {spec.name!r}: unsupported type {kind}")
            if spec.name == ID_KEY:
                raise UnsupportedSignature(
                    f"column {ID_KEY!r} is reserved for the id of each prediction: "
                    "rename this input column and retrain"
                )
            columns.append(Column(str(spec.name), kind, bool(spec.required)))
        self.columns: tuple[Column, ...] = tuple(columns)
        self.max_batch_rows = max_batch_rows
        fields = {
            c.name: _PYTHON_TYPES[c.type] if c.required else NotRequired[_PYTHON_TYPES[c.type]]
            for c in self.columns
        }
        fields[ID_KEY] = NotRequired[PredictionId]
        # Column names are only known at run time (and need not be identifiers), so the
        # TypedDicts are built with the functional form.
        typed_dict: Any = TypedDict
        row = typed_dict("Row", fields)
        row.__pydantic_config__ = ConfigDict(extra="forbid")
        size = Field(min_length=1, max_length=max_batch_rows)
        batch = typed_dict("Batch", {"rows": Annotated[list[row], size]})  # type: ignore[valid-type]
        batch.__pydantic_config__ = ConfigDict(extra="forbid")
        self._row: TypeAdapter[dict[str, Any]] = TypeAdapter(row)
        self._rows: TypeAdapter[list[dict[str, Any]]] = TypeAdapter(list[row])  # type: ignore[valid-type]
        self._batch: TypeAdapter[dict[str, Any]] = TypeAdapter(batch)

    def row_json_schema(self) -> dict[str, Any]:
        """JSON Schema of one input row (for the OpenAPI document)."""
        return self._row.json_schema()

    def batch_json_schema(self, ref_template: str = "#/$defs/{model}") -> dict[str, Any]:
        """JSON Schema of a batch body ``{"rows": [row, ...]}``."""
        return self._batch.json_schema(ref_template=ref_template)

    def validate_row(self, body: bytes) -> list[dict[str, Any]]:
        """Parse one row (a JSON object); returns it as a one-row list.

        Raises:
            pydantic.ValidationError: not JSON, not an object, or a column at fault;
                ``loc`` names the column.
        """
        return [self._row.validate_json(body)]

    def validate_batch(self, body: bytes) -> list[dict[str, Any]]:
        """Parse ``{"rows": [...]}`` with 1..``max_batch_rows`` rows.

        Raises:
            pydantic.ValidationError: ``loc`` is ``("rows", index, column)`` for a bad
                cell, ``("rows",)`` for an empty or over-size batch.
        """
        rows: list[dict[str, Any]] = self._batch.validate_json(body)["rows"]
        return rows

    def parse_batch(
        self, body: bytes, chunk_rows: int = 1_000
    ) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
        """:meth:`validate_batch`, then :meth:`arrays`: the rows and their column arrays.

        Same answers and errors as :meth:`validate_batch`, but a batch of more than
        ``chunk_rows`` rows is split with orjson and validated ``chunk_rows`` rows at a
        time: pydantic holds the GIL for a whole ``validate_json`` call (about 15 ms for
        10,000 rows), so run in a worker thread this lets the event loop's thread run
        between chunks instead of stalling every other request. A body orjson refuses
        (``NaN``, not JSON) or that is not a well-sized ``{"rows": [...]}`` goes through
        :meth:`validate_batch` for its exact errors.

        Raises:
            pydantic.ValidationError: as :meth:`validate_batch`.
        """
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            document = None
        rows = document.get("rows") if isinstance(document, dict) and len(document) == 1 else None
        if (
            not isinstance(rows, list)
            or not chunk_rows < len(rows) <= self.max_batch_rows
            or not 1 <= chunk_rows
        ):
            rows = self.validate_batch(body)
            return rows, self.arrays(rows)
        validated: list[dict[str, Any]] = []
        errors: list[Any] = []
        for start in range(0, len(rows), chunk_rows):
            try:
                # Back to JSON per chunk: JSON-mode validation, so messages and types are
                # exactly validate_batch's (orjson round-trips what it parsed).
                chunk = orjson.dumps(rows[start : start + chunk_rows])
                validated.extend(self._rows.validate_json(chunk))
            except ValidationError as exc:
                errors.extend(
                    {**e, "loc": ("rows", start + int(e["loc"][0]), *e["loc"][1:])}
                    for e in exc.errors(include_url=False)
                )
        if errors:
            raise ValidationError.from_exception_data("Batch", errors, input_type="json")
        return validated, self.arrays(validated)

    def parse_one(self, body: bytes, request_id: str) -> Parsed:
        """Validate a one-row body; its id is the client's ``prediction_id`` or ``request_id``.

        Raises:
            pydantic.ValidationError: as :meth:`validate_row` (a malformed
                ``prediction_id`` has ``loc`` ``("prediction_id",)``).
        """
        rows = self.validate_row(body)
        client = _client_ids(rows, body)
        ids = [client[0] if client is not None and client[0] is not None else request_id]
        return Parsed(rows, self.arrays(rows), ids)

    def parse_many(self, body: bytes, request_id: str, chunk_rows: int = 1_000) -> Parsed:
        """Validate a batch body (:meth:`parse_batch`); row ``i``'s id is the client's
        ``prediction_id`` or ``<request_id>/<i>``.

        Raises:
            pydantic.ValidationError: as :meth:`parse_batch`; also ``loc``
                ``("rows", i, "prediction_id")`` with type ``duplicate_prediction_id``
                when row ``i`` repeats the id of an earlier row.
        """
        rows, arrays = self.parse_batch(body, chunk_rows)
        client = _client_ids(rows, body)
        if client is None:  # the common case: no per-row work beyond formatting the ids
            return Parsed(rows, arrays, [f"{request_id}/{i}" for i in range(len(rows))])
        ids = [f"{request_id}/{i}" if c is None else c for i, c in enumerate(client)]
        if len(set(ids)) != len(ids):
            _raise_duplicates(ids)
        return Parsed(rows, arrays, ids)

    def arrays(self, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        """Validated rows as one 1-D array per column, in signature order and dtypes.

        An optional column with missing values becomes an object array holding None.
        """
        data: dict[str, np.ndarray] = {}
        for c in self.columns:
            values = [row.get(c.name) for row in rows]
            if c.required or all(v is not None for v in values):
                data[c.name] = np.asarray(values, dtype=_DTYPES[c.type])
            else:
                data[c.name] = np.asarray(values, dtype=object)
        return data

    def frame(self, arrays: dict[str, np.ndarray]) -> pd.DataFrame:
        """Column arrays (from :meth:`arrays`) as a DataFrame, without copying."""
        return pd.DataFrame(arrays, copy=False)

    def as_dict(self) -> list[dict[str, Any]]:
        """The input columns as JSON (name, MLflow type, required)."""
        return [{"name": c.name, "type": c.type.name, "required": c.required} for c in self.columns]


def _client_ids(rows: list[dict[str, Any]], body: bytes) -> list[str | None] | None:
    r"""Remove the ``prediction_id`` key from validated ``rows``; the client's ids, None
    per row without one, or None when no row has one.

    The key cannot be in ``rows`` unless its name is in the body, literally or with
    ``\u`` escapes: a substring search (memchr speed) spares the per-row work.
    """
    if _ID_BYTES not in body and b"\\u" not in body:
        return None
    ids = [row.pop(ID_KEY, None) for row in rows]
    return ids if any(i is not None for i in ids) else None


def _raise_duplicates(ids: list[str]) -> None:
    """Raise the pydantic error naming every row whose id an earlier row already has."""
    first: dict[str, int] = {}
    errors: list[Any] = []
    for i, value in enumerate(ids):
        seen = first.setdefault(value, i)
        if seen != i:
            errors.append(
                {
                    "type": PydanticCustomError(
                        "duplicate_prediction_id",
                        "prediction_id '{prediction_id}' is already the id of row {row} of "
                        "this batch: ids must be unique within a request",
                        {"prediction_id": value, "row": seen},
                    ),
                    "loc": ("rows", i, ID_KEY),
                    "input": value,
                }
            )
    raise ValidationError.from_exception_data("Batch", errors, input_type="json")
