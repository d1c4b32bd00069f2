"""The streams of the drift-policy benchmark: real CSVs and generated streams with known drifts.

Every stream is replayed exactly as a user would configure it: a
:class:`StreamSpec` becomes ``IAC_REPLAY_*`` settings (:func:`settings_for`) and the
batches are read by ``ia_continu.data.sources.build_source`` (:func:`load_stream`), one pass.

Real streams (see ``../shared/datasets/README.md`` for columns and attribution): Elec2
(packaged), NOAA weather, Outdoor objects (40 classes), Souza 2CDT / 2CHT (incremental).

Generated streams are drawn with river 0.26.1 (``river.datasets.synth``) from fixed
seeds and written once as CSV under ``generated_dir`` (default ``.iac/bench-streams/``;
the file name carries a hash of the recipe, so a changed recipe writes a new file).
An abrupt drift is a new concept from the first row of a batch: each concept segment is
drawn from its own generator and the segments are concatenated, which is
``ConceptDriftStream`` in its zero-width limit with the change point on a batch
boundary (river's sigmoid at ``width=1`` would still mix a row or two). Label noise is
added by flipping labels with ``numpy.random.default_rng(seed)``, so its rate is exact
(river's Hyperplane flips with probability ``noise_percentage - 0.01``).

Usage: ``python -m bench.stream_suite`` prints the suite and writes the generated CSVs.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ia_continu.data.sources import ReplaySource, Schema, build_source
from ia_continu.settings import PACKAGED_ELEC2, Settings
from ia_continu.training.trainer import accuracy, train

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASETS_DIR = REPO_ROOT.parent / "shared" / "datasets"
DEFAULT_GENERATED_DIR = REPO_ROOT / ".iac" / "bench-streams"

StreamKind = Literal["real", "abrupt", "gradual", "incremental", "recurring", "stable"]
GeneratorName = Literal["agrawal", "stagger", "hyperplane", "sea"]

LOSING = "V. Losing, B. Hammer, H. Wersing, driftDatasets (github.com/vlosing/driftDatasets); "
RIVER = "river 0.26.1, river.datasets.synth (Montiel et al. 2021, JMLR 22(110)); "


@dataclass(frozen=True)
class StreamSpec:
    """One stream of the suite and the replay settings that read it.

    Attributes:
        name: short name (``elec2``, ``agrawal_abrupt``).
        path: the CSV; relative paths are resolved against ``datasets_dir`` (real
            streams) or ``generated_dir`` (generated ones) by :func:`resolve`.
        target: label column (``IAC_REPLAY_TARGET``).
        time_column: sort column (``IAC_REPLAY_TIME_COLUMN``); None: row order is time.
        categorical: ``IAC_REPLAY_CATEGORICAL_COLUMNS``.
        batch_size: rows per batch (``IAC_BATCH_SIZE``).
        drift_batches: batch positions where a known abrupt drift starts (first batch of
            the new concept); empty for real, gradual and stable streams.
        kind: ``real``, ``abrupt``, ``gradual``, ``incremental``, ``recurring``, ``stable``.
        description: one line for the report.
        citation: where the data or the generator comes from.
        generated: drawn by :func:`generate` rather than read from ``datasets_dir``.
    """

    name: str
    path: Path
    target: str
    time_column: str | None
    categorical: tuple[str, ...]
    batch_size: int
    drift_batches: tuple[int, ...]
    kind: StreamKind
    description: str
    citation: str
    generated: bool = False


@dataclass(frozen=True)
class Stream:
    """A stream in memory: one frame per batch with a ``batch_id`` column = position.

    ``name`` is the source's identity (``replay:<file>:n=<batch_size>``, as ingestion
    records it); ``spec.name`` is the suite's short name.
    """

    name: str
    schema: Schema
    batches: list[pd.DataFrame]
    spec: StreamSpec


# --------------------------------------------------------------------------------------
# Generated streams
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """How a generated stream is drawn.

    Attributes:
        generator: river generator (``agrawal``, ``stagger``, ``hyperplane``, ``sea``).
        segments: ``(concept, n_batches)`` in order; ``concept`` is the river
            ``classification_function`` (SEA: ``variant``; ignored by Hyperplane). A drift starts at the
            first batch of every segment but the first.
        batch_size: rows per batch.
        label_noise: share of labels flipped (0..0.5).
        seed: seeds the river generators (segment ``i`` uses ``seed + i``) and the flips.
        params: extra river generator parameters (e.g. Hyperplane's ``mag_change``).
    """

    generator: GeneratorName
    segments: tuple[tuple[int, int], ...]
    batch_size: int
    label_noise: float
    seed: int
    params: tuple[tuple[str, float | int], ...] = field(default=())

    @property
    def n_batches(self) -> int:
        """Batches in the stream."""
        return sum(n for _, n in self.segments)

    @property
    def drift_batches(self) -> tuple[int, ...]:
        """First batch of every segment after the first."""
        starts = np.cumsum([n for _, n in self.segments])[:-1]
        return tuple(int(s) for s in starts)

    @property
    def fingerprint(self) -> str:
        """8 hex digits identifying the recipe (and the river version that draws it)."""
        payload = json.dumps({**asdict(self), "river": river_version()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:8]


def river_version() -> str:
    """The installed river version, or ``absent``."""
    # Read from the package metadata: importing river costs a second at every import.
    try:
        return importlib.metadata.version("river")
    except importlib.metadata.PackageNotFoundError:
        return "absent"


# STAGGER codes -> the names of Schlimmer & Granger (1986), as river labels them.
_STAGGER_NAMES = {
    "size": ("small", "medium", "large"),
    "color": ("red", "blue", "green"),
    "shape": ("circle", "square", "triangle"),
}


def _rows(
    generator: GeneratorName, concept: int, seed: int, params: dict[str, Any]
) -> Iterator[tuple[dict[str, Any], int]]:
    from river.datasets import synth

    if generator == "agrawal":
        return iter(synth.Agrawal(classification_function=concept, seed=seed, **params))
    if generator == "stagger":
        return iter(synth.STAGGER(classification_function=concept, seed=seed, **params))
    if generator == "sea":
        return iter(synth.SEA(variant=concept, seed=seed, **params))
    # noise_percentage=0: the flips are ours (exact rate); river's would be rate - 0.01.
    return iter(synth.Hyperplane(seed=seed, noise_percentage=0.0, **params))


def generate(recipe: Recipe) -> pd.DataFrame:
    """Draw the stream of ``recipe``: features then a ``label`` column (0/1), in time order.

    Agrawal keeps river's feature names; STAGGER's codes become names (``small``,
    ``red``, ``circle``...); Hyperplane's and SEA's features are ``x0..x{n-1}``.
    """
    frames = []
    for i, (concept, n_batches) in enumerate(recipe.segments):
        rows = _rows(recipe.generator, concept, recipe.seed + i, dict(recipe.params))
        xs, ys = [], []
        for _ in range(n_batches * recipe.batch_size):
            x, y = next(rows)
            xs.append(x)
            ys.append(int(y))
        frame = pd.DataFrame(xs)
        frame["label"] = ys
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    if recipe.generator == "stagger":
        for column, names in _STAGGER_NAMES.items():
            out[column] = [names[v] for v in out[column]]
    if recipe.generator in ("hyperplane", "sea"):
        out = out.rename(columns={c: f"x{c}" for c in out.columns if c != "label"})
    flip = np.random.default_rng(recipe.seed).random(len(out)) < recipe.label_noise
    out["label"] = np.where(flip, 1 - out["label"], out["label"])
    return out


def write_generated(recipe: Recipe, path: Path) -> Path:
    """Write ``generate(recipe)`` to ``path`` as CSV (6 decimals), atomically; returns ``path``.

    The same recipe always writes the same bytes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    generate(recipe).to_csv(tmp, index=False, float_format="%.6f", lineterminator="\n")
    tmp.replace(path)
    return path


AGRAWAL_ABRUPT = Recipe(
    generator="agrawal",
    # Agrawal functions 0 -> 2 -> 5 -> 6 (age bands; age x education; age x total salary;
    # disposable income). Each switch costs a model of the previous concept >= 6 points
    # (logistic regression 6, 12, 14; random forest 44, 38, 21: ``drift_cost``), and the
    # accuracy a linear model can reach never falls from one concept to the next (about
    # 59, 60, 70, 87 %), so getting back to the pre-drift level is possible for it. (From
    # 6 to 2, say, a linear model could not: it tops out near 62 % on function 2.)
    segments=((0, 20), (2, 20), (5, 20), (6, 20)),
    batch_size=250,
    label_noise=0.10,
    seed=1201,
)
STAGGER_RECURRING = Recipe(
    generator="stagger",
    # Concepts A B A B C A (river functions 0 1 0 1 2 0), 14 batches each.
    segments=((0, 14), (1, 14), (0, 14), (1, 14), (2, 14), (0, 14)),
    batch_size=200,
    label_noise=0.05,
    seed=1202,
)
SEA_ABRUPT = Recipe(
    generator="sea",
    # SEA thresholds on x0 + x1 (Street & Kim 2001) in the order 8 -> 9.5 -> 7 -> 9 (river
    # variants 0 3 2 1): every gap is >= 1.5, so each switch moves >= 13 % of the rows
    # across the boundary; every concept is linear, so the pre-drift level (~87 %, bound
    # by the noise) is reachable again after each switch.
    segments=((0, 20), (3, 20), (2, 20), (1, 20)),
    batch_size=250,
    label_noise=0.10,
    seed=1205,
)
HYPERPLANE_GRADUAL = Recipe(
    generator="hyperplane",
    segments=((0, 80),),
    batch_size=250,
    label_noise=0.05,
    seed=1203,
    # Half the weights drift (river's default, 2 of 10, moved this seed's boundary so
    # little that a never-retrained model lost under 1 point); sigma 0.1 (river default).
    # A model trained on batch 0 loses ~5 points over the stream (85 vs 90 % for one
    # retrained on every previous batch).
    params=(("mag_change", 0.001), ("n_features", 10), ("n_drift_features", 5)),
)
STABLE_NOISE = Recipe(
    generator="hyperplane",
    segments=((0, 160),),
    batch_size=200,
    label_noise=0.10,
    seed=1204,
    params=(("mag_change", 0.0), ("n_features", 10)),
)

RECIPES: dict[str, Recipe] = {
    "agrawal_abrupt": AGRAWAL_ABRUPT,
    "sea_abrupt": SEA_ABRUPT,
    "stagger_recurring": STAGGER_RECURRING,
    "hyperplane_gradual": HYPERPLANE_GRADUAL,
    "stable_noise": STABLE_NOISE,
}


def _generated_spec(
    name: str,
    kind: StreamKind,
    categorical: tuple[str, ...],
    description: str,
    citation: str,
) -> StreamSpec:
    recipe = RECIPES[name]
    return StreamSpec(
        name=name,
        path=Path(f"{name}-{recipe.fingerprint}.csv"),
        target="label",
        time_column=None,
        categorical=categorical,
        batch_size=recipe.batch_size,
        drift_batches=recipe.drift_batches if kind in ("abrupt", "recurring") else (),
        kind=kind,
        description=description,
        citation=citation,
        generated=True,
    )


SUITE: dict[str, StreamSpec] = {
    "elec2": StreamSpec(
        name="elec2",
        path=PACKAGED_ELEC2,
        target="class",
        time_column="date",
        categorical=("day",),
        batch_size=336,
        drift_batches=(),
        kind="real",
        description="NSW electricity price up/down, 45,312 half-hours (1996-1998)",
        citation="M. Harries, Splice-2 comparative evaluation: Electricity pricing, UNSW "
        "1999; normalised by A. Bifet (OpenML 151)",
    ),
    "weather": StreamSpec(
        name="weather",
        path=Path("weather.csv"),
        target="rain",
        time_column=None,
        categorical=(),
        batch_size=336,
        drift_batches=(),
        kind="real",
        description="NOAA daily weather, Bellevue NE 1949-1999, rain or not (69 % no rain)",
        citation=LOSING + "R. Elwell, R. Polikar, IEEE Trans. Neural Networks 22(10), 2011",
    ),
    "outdoor": StreamSpec(
        name="outdoor",
        path=Path("outdoor.csv"),
        target="object",
        time_column=None,
        categorical=(),
        batch_size=100,
        drift_batches=(),
        kind="real",
        description="Outdoor objects, 40 classes, rg-chromaticity histograms, changing light",
        citation=LOSING + "V. Losing, B. Hammer, H. Wersing, IJCNN 2015",
    ),
    "souza_2cdt": StreamSpec(
        name="souza_2cdt",
        path=Path("souza_2cdt.csv"),
        target="label",
        time_column=None,
        categorical=(),
        batch_size=336,
        drift_batches=(),
        kind="incremental",
        description="Two Gaussian classes translating diagonally, never stopping",
        citation=LOSING + "V. M. A. Souza et al., SIAM SDM 2015",
    ),
    "souza_2cht": StreamSpec(
        name="souza_2cht",
        path=Path("souza_2cht.csv"),
        target="label",
        time_column=None,
        categorical=(),
        batch_size=336,
        drift_batches=(),
        kind="incremental",
        description="Two Gaussian classes translating horizontally, never stopping",
        citation=LOSING + "V. M. A. Souza et al., SIAM SDM 2015",
    ),
    "agrawal_abrupt": _generated_spec(
        "agrawal_abrupt",
        "abrupt",
        # Education level, car make and zip code are codes, not quantities.
        ("elevel", "car", "zipcode"),
        "Agrawal functions 0 -> 2 -> 5 -> 6, abrupt at batches 20, 40, 60; 10 % label noise",
        RIVER + "R. Agrawal, T. Imielinski, A. Swami, IEEE TKDE 5(6), 1993",
    ),
    "sea_abrupt": _generated_spec(
        "sea_abrupt",
        "abrupt",
        (),
        "SEA thresholds 8 -> 9.5 -> 7 -> 9, abrupt at batches 20, 40, 60; 10 % label noise",
        RIVER + "W. N. Street, Y. Kim, KDD 2001",
    ),
    "stagger_recurring": _generated_spec(
        "stagger_recurring",
        "recurring",
        ("size", "color", "shape"),
        "STAGGER concepts A B A B C A, abrupt every 14 batches; 5 % label noise",
        RIVER + "J. C. Schlimmer, R. H. Granger, Machine Learning 1(3), 1986",
    ),
    "hyperplane_gradual": _generated_spec(
        "hyperplane_gradual",
        "gradual",
        (),
        "Rotating hyperplane, 10 features, 5 drifting by 0.001 per row; 5 % label noise",
        RIVER + "G. Hulten, L. Spencer, P. Domingos, KDD 2001",
    ),
    "stable_noise": _generated_spec(
        "stable_noise",
        "stable",
        (),
        "Fixed hyperplane, 10 features, 160 batches, no drift; 10 % label noise",
        RIVER + "G. Hulten, L. Spencer, P. Domingos, KDD 2001",
    ),
}

QUICK = "sea_abrupt"
QUICK_MAX_BATCHES = 30  # the first drift (batch 20) and ten batches after it


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def resolve(
    spec: StreamSpec,
    datasets_dir: Path | None = None,
    generated_dir: Path | None = None,
) -> StreamSpec:
    """``spec`` with an absolute path to an existing CSV; a generated one is written if missing
    (and the files of older recipes of that stream are removed).

    Raises:
        FileNotFoundError: a real stream's CSV is not in ``datasets_dir`` (the message
            names the file and ``--datasets-dir``).
    """
    if spec.generated:
        path = (generated_dir or DEFAULT_GENERATED_DIR) / spec.path
        if not path.is_file():
            write_generated(RECIPES[spec.name], path)
            # Files of an older recipe of this stream are stale: nothing reads them again.
            for stale in path.parent.glob(f"{spec.name}-????????.csv"):
                if stale.name != path.name:
                    stale.unlink(missing_ok=True)
        return replace(spec, path=path.resolve())
    base = datasets_dir or DEFAULT_DATASETS_DIR
    path = base / spec.path  # an absolute spec.path (packaged Elec2) stays as it is
    if not path.is_file():
        raise FileNotFoundError(
            f"stream {spec.name!r}: {path} not found; pass --datasets-dir DIR, the "
            f"directory holding {spec.path.name} (default {DEFAULT_DATASETS_DIR})"
        )
    return replace(spec, path=path.resolve())


def settings_for(spec: StreamSpec, **overrides: Any) -> Settings:
    """The ``Settings`` a user would set to replay ``spec``: ``IAC_DATA_SOURCE=replay`` etc.

    ``spec.path`` is used as given (see :func:`resolve`); ``overrides`` are any other
    ``Settings`` fields (``estimator=...``) and win over the spec's.

    Raises:
        pydantic.ValidationError: an override is invalid.
    """
    fields: dict[str, Any] = {
        "data_source": "replay",
        "replay_path": spec.path,
        "replay_target": spec.target,
        "replay_time_column": spec.time_column,
        "replay_categorical_columns": list(spec.categorical),
        "batch_size": spec.batch_size,
        "replay_loop": False,
    }
    return Settings(**{**fields, **overrides})


def load_stream(
    spec: StreamSpec,
    datasets_dir: Path | None = None,
    generated_dir: Path | None = None,
    max_batches: int | None = None,
) -> Stream:
    """One pass over ``spec`` as ``build_source(settings_for(spec))`` yields it, in memory.

    ``max_batches`` keeps the first batches only (drift points beyond are dropped from
    the returned ``stream.spec``).

    Raises:
        FileNotFoundError: a real stream's CSV is missing (see :func:`resolve`).
        ia_continu.data.sources.SourceConfigError: the CSV does not fit the spec's columns.
    """
    spec = resolve(spec, datasets_dir, generated_dir)
    source = build_source(settings_for(spec))
    assert isinstance(source, ReplaySource)
    n = source.n_batches if max_batches is None else min(max_batches, source.n_batches)
    batches = [source.batch(p).assign(batch_id=p) for p in range(n)]
    spec = replace(spec, drift_batches=tuple(d for d in spec.drift_batches if d < n))
    return Stream(source.name, source.schema, batches, spec)


def load_quick(datasets_dir: Path | None = None, generated_dir: Path | None = None) -> Stream:
    """The smoke-test variant: :data:`QUICK` cut to :data:`QUICK_MAX_BATCHES` batches."""
    return load_stream(SUITE[QUICK], datasets_dir, generated_dir, QUICK_MAX_BATCHES)


def frame_of(batches: Sequence[pd.DataFrame], positions: Sequence[int]) -> pd.DataFrame:
    """The batches at ``positions`` (each frame carries its ``batch_id``), concatenated in
    order."""
    return pd.concat([batches[p] for p in positions], ignore_index=True)


def drift_cost(
    stream: Stream,
    drift_batch: int,
    settings: Settings | None = None,
    window: int = 5,
) -> dict[str, float]:
    """What a known drift costs a model trained on the concept before it.

    The project's estimator (``settings.estimator``, default logistic regression) is
    trained on the even rows of batches ``d - window .. d - 1``; ``pre`` is its accuracy
    on the odd rows of those batches (same concept, unseen rows), ``post`` on all rows
    of ``d .. d + window - 1``; ``drop = pre - post`` (0..1).

    Raises:
        ValueError: fewer than ``window`` batches before ``d`` or none after it.
    """
    if drift_batch < window or drift_batch >= len(stream.batches):
        raise ValueError(f"drift batch {drift_batch} needs {window} batches before, 1 after")
    settings = settings or Settings()
    before = frame_of(stream.batches, range(drift_batch - window, drift_batch))
    after = frame_of(
        stream.batches, range(drift_batch, min(drift_batch + window, len(stream.batches)))
    )
    model = train(before.iloc[::2], stream.schema, settings.estimator, settings.estimator_params)
    pre = accuracy(model, before.iloc[1::2], stream.schema)
    post = accuracy(model, after, stream.schema)
    return {"pre": pre, "post": post, "drop": pre - post}


def main(argv: Sequence[str] | None = None) -> int:
    """Print the suite (batches, rows, drifts) and write the generated CSVs if missing."""
    parser = argparse.ArgumentParser(prog="python -m bench.stream_suite", description=__doc__)
    parser.add_argument("--datasets-dir", type=Path, default=DEFAULT_DATASETS_DIR)
    parser.add_argument("--generated-dir", type=Path, default=DEFAULT_GENERATED_DIR)
    args = parser.parse_args(argv)
    for spec in SUITE.values():
        try:
            stream = load_stream(spec, args.datasets_dir, args.generated_dir)
        except FileNotFoundError as exc:
            print(f"{spec.name:20} missing: {exc}")
            continue
        rows = sum(len(b) for b in stream.batches)
        classes = len(pd.concat([b[spec.target] for b in stream.batches]).unique())
        drifts = ", ".join(map(str, stream.spec.drift_batches)) or "-"
        print(
            f"{spec.name:20} {spec.kind:11} {len(stream.batches):4} batches x {spec.batch_size:3}"
            f" = {rows:6} rows, {classes:2} classes, drifts at {drifts}  ({stream.spec.path})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
