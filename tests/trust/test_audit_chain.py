"""The hash chain, pure: any single edit, deletion or swap is detected."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from station.store.audit import GENESIS, AuditEntry, canonical_json, row_hash, verify_entries

START = datetime(2026, 11, 22, tzinfo=UTC)
texts = st.text(min_size=1, max_size=12)
rows = st.lists(st.tuples(texts, texts, st.dictionaries(texts, texts, max_size=3)), min_size=2)


def chain(spec: list[tuple[str, str, dict[str, str]]]) -> list[AuditEntry]:
    entries, prev = [], GENESIS
    for seq, (actor, action, data) in enumerate(spec, start=1):
        at, payload = START + timedelta(seconds=seq), canonical_json(data)
        digest = row_hash(seq, at, actor, action, None, payload, prev)
        entries.append(AuditEntry(seq, at, actor, action, None, payload, prev, digest))
        prev = digest
    return entries


@given(rows)
def test_an_untouched_chain_verifies(spec: list[tuple[str, str, dict[str, str]]]) -> None:
    assert verify_entries(chain(spec)).ok


@given(rows, st.data())
def test_editing_any_row_is_detected(
    spec: list[tuple[str, str, dict[str, str]]], data: st.DataObject
) -> None:
    entries = chain(spec)
    i = data.draw(st.integers(0, len(entries) - 1))
    field = data.draw(st.sampled_from(["actor", "action", "data", "at"]))
    old = entries[i]
    new_value = {
        "actor": old.actor + "x",
        "action": old.action + "x",
        "data": canonical_json({"forged": True}),
        "at": old.at + timedelta(microseconds=1),
    }[field]
    entries[i] = replace(old, **{field: new_value})

    result = verify_entries(entries)

    assert not result.ok
    assert result.broken_seq == old.seq


@given(rows, st.data())
def test_deleting_a_row_is_detected(
    spec: list[tuple[str, str, dict[str, str]]], data: st.DataObject
) -> None:
    entries = chain(spec)
    i = data.draw(st.integers(0, len(entries) - 2))  # the last one needs a known head

    del entries[i]

    assert not verify_entries(entries).ok


@given(rows, st.data())
def test_swapping_two_rows_is_detected(
    spec: list[tuple[str, str, dict[str, str]]], data: st.DataObject
) -> None:
    entries = chain(spec)
    i = data.draw(st.integers(0, len(entries) - 2))
    j = data.draw(st.integers(i + 1, len(entries) - 1))

    entries[i], entries[j] = entries[j], entries[i]

    assert not verify_entries(entries).ok


@given(rows)
def test_cutting_the_tail_is_detected_against_the_head(
    spec: list[tuple[str, str, dict[str, str]]],
) -> None:
    entries = chain(spec)
    head = entries[-1].hash

    assert not verify_entries(entries[:-1], expected_head=head).ok
