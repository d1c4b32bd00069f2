"""Lineage tags of a registered version: one owner (registry.Lineage) for the names and
formats the cycle writes and the champion's reference, the console and the rollback read."""

from __future__ import annotations

from pathlib import Path

import pytest

from ia_continu.training import registry

# What record_challenger wrote before the tags had an owner: existing registries hold it.
STORED = {
    "validation_accuracy": "0.912346",
    "validation_rows": "336",
    "window": "last_8",
    "training_batch_ids": "3,4,5",
    "holdout_batch_id": "6",
    "source": "replay:elec2",
    "trigger": "drift",
    "drift_report_id": "",
}


def test_tags_keep_their_names_and_formats() -> None:
    lineage = registry.Lineage(
        validation_accuracy=0.9123456,
        validation_rows=336,
        window="last_8",
        training_batch_ids=(3, 4, 5),
        holdout_batch_id=6,
        source="replay:elec2",
        trigger="drift",
        drift_report_id=None,
    )
    assert lineage.to_tags() == STORED
    assert registry.Lineage.from_tags(STORED) == registry.Lineage(
        validation_accuracy=0.912346,
        validation_rows=336,
        window="last_8",
        training_batch_ids=(3, 4, 5),
        holdout_batch_id=6,
        source="replay:elec2",
        trigger="drift",
    )


def test_a_version_registered_before_a_tag_existed_still_reads() -> None:
    assert registry.Lineage.from_tags({"training_batch_ids": "1,2"}) == registry.Lineage(
        training_batch_ids=(1, 2)
    )
    assert registry.Lineage.from_tags(None) == registry.Lineage()
    assert registry.Lineage.from_tags(registry.Lineage().to_tags()) == registry.Lineage()


def test_a_non_numeric_tag_is_an_error() -> None:
    with pytest.raises(ValueError):
        registry.Lineage.from_tags({"validation_rows": "many"})


def test_the_champion_reference_reads_the_tags_written(tmp_path: Path) -> None:
    """Written on a real registry version, read back through get_alias (ModelRef)."""
    from tests.utils.models import register_version

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    version = register_version(uri, "lineage")
    client = registry.client(uri)
    for key, value in STORED.items():
        client.set_model_version_tag("lineage", str(version), key, value)
    ref = registry.get_alias(client, "lineage")
    assert ref is not None
    assert (ref.validation_accuracy, ref.validation_rows) == (0.912346, 336)
    assert (ref.training_batch_ids, ref.holdout_batch_id, ref.source) == (
        [3, 4, 5],
        6,
        "replay:elec2",
    )
