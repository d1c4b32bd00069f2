"""``build_embed`` and ``embed_length``: colours, Discord's limits, timestamps, and a fuzz loop."""

from __future__ import annotations

import random
import string
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from ia_continu.notify.discord import ELLIPSIS, build_embed, embed_length
from tests.utils.fake_discord import FakeDiscord, validate_message

EXPECTED_COLOURS = {
    "success": 0x2ECC71,
    "failure": 0xE74C3C,
    "warning": 0xF39C12,
    "drift": 0x9B59B6,
    "info": 0x3498DB,
}


def _accepted(*embeds: dict[str, Any]) -> bool:
    return validate_message({"embeds": list(embeds)}) is None


# --------------------------------------------------------------------------------------
# Colours, status, defaults
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "colour"), sorted(EXPECTED_COLOURS.items()))
def test_colour_per_status(status: str, colour: int) -> None:
    embed = build_embed(status, "title")  # type: ignore[arg-type]
    assert embed["color"] == colour
    assert _accepted(embed)


def test_colours_are_distinct() -> None:
    colours = [build_embed(s, "t")["color"] for s in EXPECTED_COLOURS]  # type: ignore[arg-type]
    assert len(set(colours)) == len(colours)


@pytest.mark.parametrize("status", ["error", "SUCCESS", "", "ok"])
def test_unknown_status_raises(status: str) -> None:
    with pytest.raises(ValueError, match="unknown status"):
        build_embed(status, "title")  # type: ignore[arg-type]


def test_empty_title_falls_back_to_status() -> None:
    assert build_embed("drift", "")["title"] == "Drift"


def test_minimal_embed_shape() -> None:
    embed = build_embed("info", "Hello")
    assert embed["title"] == "Hello"
    assert embed["footer"] == {"text": "IA Continu"}
    assert "description" not in embed  # empty description omitted
    assert "fields" not in embed  # no fields key without fields
    assert _accepted(embed)


def test_custom_footer() -> None:
    assert build_embed("info", "t", footer="cycle 7")["footer"] == {"text": "cycle 7"}


def test_fields_inline_and_stringified_in_order() -> None:
    embed = build_embed("success", "t", fields={"accuracy": 0.875, "n": 0, "model": "v3"})
    assert embed["fields"] == [
        {"name": "accuracy", "value": "0.875", "inline": True},
        {"name": "n", "value": "0", "inline": True},
        {"name": "model", "value": "v3", "inline": True},
    ]
    assert _accepted(embed)


def test_empty_field_name_and_value_become_dash() -> None:
    embed = build_embed("info", "t", fields={"": "x", "empty": ""})
    assert embed["fields"][0]["name"] == "-"
    assert embed["fields"][1]["value"] == "-"
    assert _accepted(embed)  # Discord rejects empty names/values


def test_whitespace_only_field_name_and_value_are_replaced() -> None:
    embed = build_embed("info", "t", fields={" ": "x", "v": "  \n"})
    assert _accepted(embed)


# --------------------------------------------------------------------------------------
# Timestamp
# --------------------------------------------------------------------------------------


def test_timestamp_given_is_iso8601() -> None:
    when = datetime(2024, 3, 1, 12, 30, 5, tzinfo=UTC)
    embed = build_embed("info", "t", timestamp=when)
    assert embed["timestamp"] == "2024-03-01T12:30:05+00:00"
    assert datetime.fromisoformat(embed["timestamp"]) == when


def test_timestamp_keeps_offset() -> None:
    when = datetime(2024, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    stamp = build_embed("info", "t", timestamp=when)["timestamp"]
    assert stamp == "2024-03-01T14:00:00+02:00"
    assert datetime.fromisoformat(stamp) == datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def test_timestamp_defaults_to_now_utc() -> None:
    before = datetime.now(UTC)
    stamp = build_embed("info", "t")["timestamp"]
    after = datetime.now(UTC)
    parsed = datetime.fromisoformat(stamp)
    assert parsed.utcoffset() == timedelta(0)
    assert before <= parsed <= after


# --------------------------------------------------------------------------------------
# Truncation at each documented limit
# --------------------------------------------------------------------------------------

LIMITS = {"title": 256, "description": 4096, "footer": 2048, "field name": 256, "field value": 1024}


def _build_with(part: str, text: str) -> tuple[dict[str, Any], str]:
    """An embed with ``text`` placed in ``part``, and the text as it came out."""
    if part == "title":
        embed = build_embed("info", text)
        return embed, embed["title"]
    if part == "description":
        embed = build_embed("info", "t", text)
        return embed, embed["description"]
    if part == "footer":
        embed = build_embed("info", "t", footer=text)
        return embed, embed["footer"]["text"]
    if part == "field name":
        embed = build_embed("info", "t", fields={text: "v"})
        return embed, embed["fields"][0]["name"]
    embed = build_embed("info", "t", fields={"k": text})
    return embed, embed["fields"][0]["value"]


@pytest.mark.parametrize("part", sorted(LIMITS))
def test_text_at_limit_is_kept(part: str) -> None:
    text = "a" * LIMITS[part]
    embed, out = _build_with(part, text)
    assert out == text
    assert _accepted(embed)


@pytest.mark.parametrize("part", sorted(LIMITS))
@pytest.mark.parametrize("over", [1, 2, 5000])
def test_text_over_limit_is_cut_with_ellipsis(part: str, over: int) -> None:
    limit = LIMITS[part]
    text = "".join(random.Random(over).choices(string.ascii_letters, k=limit + over))
    embed, out = _build_with(part, text)
    assert len(out) == limit
    assert out.endswith(ELLIPSIS)
    assert out[:-1] == text[: limit - 1]
    assert _accepted(embed)


def test_field_count_capped_at_25_keeping_the_first() -> None:
    fields = {f"f{i:02d}": i for i in range(30)}
    embed = build_embed("info", "t", fields=fields)
    assert [f["name"] for f in embed["fields"]] == [f"f{i:02d}" for i in range(25)]
    assert _accepted(embed)


def test_exactly_25_fields_kept() -> None:
    embed = build_embed("info", "t", fields={f"f{i}": i for i in range(25)})
    assert len(embed["fields"]) == 25


# --------------------------------------------------------------------------------------
# 6000-character total
# --------------------------------------------------------------------------------------


def test_total_drops_fields_from_the_end_first() -> None:
    # 4096 description + 256 title + 10 footer = 4362; each field is 256 + 1024 = 1280,
    # so exactly one field fits (5642) and a second would not (6922).
    fields = {f"{i:02d}" + "n" * 254: "v" * 1024 for i in range(25)}
    description = "d" * 4096
    embed = build_embed("info", "t" * 256, description, fields)
    assert embed["description"] == description  # untouched: fields go first
    assert len(embed["fields"]) == 1
    assert embed["fields"][0]["name"].startswith("00")
    assert embed_length(embed) == 4362 + 1280
    assert _accepted(embed)


def test_total_cuts_description_once_fields_are_gone() -> None:
    embed = build_embed("info", "t" * 300, "d" * 5000, {"k": "v" * 2000}, footer="f" * 3000)
    assert "fields" not in embed or embed["fields"] == []
    assert len(embed["title"]) == 256 and len(embed["footer"]["text"]) == 2048
    assert len(embed["description"]) == 6000 - 256 - 2048
    assert embed["description"].endswith(ELLIPSIS)
    assert embed_length(embed) == 6000
    assert _accepted(embed)


def test_total_exactly_6000_is_left_alone() -> None:
    # title 256 + footer 1648 + description 4096 = 6000
    embed = build_embed("info", "t" * 256, "d" * 4096, footer="f" * 1648)
    assert embed_length(embed) == 6000
    assert not embed["description"].endswith(ELLIPSIS)


# --------------------------------------------------------------------------------------
# embed_length
# --------------------------------------------------------------------------------------


def test_embed_length_counts_discord_text_parts() -> None:
    embed = {
        "title": "abc",  # 3
        "description": "de",  # 2
        "footer": {"text": "ffff"},  # 4
        "author": {"name": "aaaaa"},  # 5
        "fields": [{"name": "n", "value": "vv"}, {"name": "nnn", "value": "v"}],  # 3 + 4
        "color": 123456,  # not counted
        "timestamp": "2024-01-01T00:00:00+00:00",  # not counted
        "url": "https://example.invalid/x",  # not counted
    }
    assert embed_length(embed) == 3 + 2 + 4 + 5 + 3 + 4


def test_embed_length_of_empty_embed_is_zero() -> None:
    assert embed_length({}) == 0


def test_embed_length_matches_built_embed() -> None:
    embed = build_embed("warning", "Title", "Body", {"a": "1", "bb": "22"}, footer="foot")
    assert embed_length(embed) == len("Title") + len("Body") + len("foot") + 1 + 1 + 2 + 2


# --------------------------------------------------------------------------------------
# Property-style: random long inputs always satisfy Discord's validator
# --------------------------------------------------------------------------------------

_ALPHABET = string.ascii_letters + string.digits + string.punctuation + " \n\téàüß€→✓中文"


def _random_text(rng: random.Random, max_len: int) -> str:
    length = rng.choice([0, 1, rng.randint(0, 300), rng.randint(0, max_len)])
    if length == 0:
        return ""
    # first character is never whitespace: whitespace-only text is the xfail case above
    head = rng.choice(string.ascii_letters + "é中✓")
    return head + "".join(rng.choices(_ALPHABET, k=length - 1))


def _random_embed(rng: random.Random) -> dict[str, Any]:
    fields = {
        f"{i}:{_random_text(rng, 400)}": _random_text(rng, 1500)
        for i in range(rng.choice([0, 1, 5, 25, 40]))
    }
    return build_embed(
        rng.choice(list(EXPECTED_COLOURS)),  # type: ignore[arg-type]
        _random_text(rng, 400),
        _random_text(rng, 7000),
        fields,
        footer=_random_text(rng, 3000) or "IA Continu",
    )


def test_random_embeds_always_pass_discord_validation() -> None:
    rng = random.Random(20240301)
    for _ in range(250):
        embed = _random_embed(rng)
        assert embed_length(embed) <= 6000
        assert len(embed.get("fields", [])) <= 25
        error = validate_message({"embeds": [embed]})
        assert error is None, error


def test_random_embeds_accepted_by_fake_server(fake_discord: FakeDiscord) -> None:
    rng = random.Random(7)
    embeds = [_random_embed(rng) for _ in range(25)]
    with httpx.Client(timeout=5) as client:
        statuses = [client.post(fake_discord.url, json={"embeds": [e]}).status_code for e in embeds]
    assert statuses == [204] * len(embeds)
    assert fake_discord.received == [{"embeds": [e]} for e in embeds]


def test_validator_rejects_what_build_embed_prevents() -> None:
    """Sanity check that the validator is not vacuous."""
    assert not _accepted({"title": "x" * 257})
    assert not _accepted({"description": "x" * 4097})
    assert not _accepted({"fields": [{"name": "n", "value": "v"}] * 26})
    assert not _accepted({"fields": [{"name": "n" * 257, "value": "v"}]})
    assert not _accepted({"fields": [{"name": "n", "value": "v" * 1025}]})
    assert not _accepted({"fields": [{"name": "", "value": "v"}]})
    assert not _accepted({"footer": {"text": "f" * 2049}})
    assert not _accepted({"description": "d" * 4096}, {"description": "d" * 2000})  # 6096 total
    assert not _accepted(*([{"title": "t"}] * 11))
    assert not _accepted({"color": 0x1000000})
    assert not _accepted({"timestamp": "yesterday"})
    assert validate_message({}) == {"message": "Cannot send an empty message", "code": 50006}
