"""docs/protocol.md is the contract in the repository: it agrees with PROTOCOL.md
(the source of truth for version 1) and describes every path the station serves."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from station.bootstrap import build
from station.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "protocol.md"
ENDPOINT = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE)\s+(/[A-Za-z0-9_/{}.\-]*)")


def _shared_protocol() -> Path | None:
    candidates = [os.environ.get("CHARGEPAY_PROTOCOL_MD"), ROOT.parent / "shared" / "PROTOCOL.md"]
    candidates.append("/work/shared/PROTOCOL.md")
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _version_1(text: str) -> str:
    return text.split("## What chargepay adds to version 1", 1)[0]


def _flat(text: str) -> str:
    return " ".join(text.split())


def _paths(text: str) -> set[str]:
    # `/v1/admin/agents/{id}` and `/v1/admin/agents/{agent_id}` are the same path.
    return {re.sub(r"\{[^}]*\}", "{}", path.rstrip("/.")) for _, path in ENDPOINT.findall(text)}


@pytest.fixture(scope="module")
def shared() -> str:
    path = _shared_protocol()
    if path is None:
        pytest.skip("PROTOCOL.md (the shared contract) is not beside this checkout")
    return path.read_text(encoding="utf-8")


def test_every_json_example_of_version_1_is_in_the_doc_as_it_is(shared: str) -> None:
    ours = _flat(_version_1(DOC.read_text(encoding="utf-8")))
    blocks = re.findall(r"```json\n(.*?)```", shared, re.S)

    assert blocks
    assert [b for b in blocks if _flat(b) not in ours] == []


def test_every_endpoint_field_and_error_code_of_version_1_is_in_the_doc(shared: str) -> None:
    ours = _version_1(DOC.read_text(encoding="utf-8"))
    codes = re.findall(r"`([a-z_]+)`", shared.split("## Error codes", 1)[1])
    named = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_.\-]*)`", shared))
    headers = {"WWW-Authenticate", "Cache-Control", "Content-Digest", "Payment-Receipt"}

    assert _paths(shared) - _paths(ours) == set()
    assert [c for c in codes if f"`{c}`" not in ours] == []
    assert [n for n in sorted(named) if n not in ours] == []
    assert [h for h in sorted(headers) if h in shared and h not in ours] == []


def test_every_path_the_station_serves_is_described(tmp_path: Path) -> None:
    station = build(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"))
    served = {re.sub(r"\{[^}]*\}", "{}", p) for p in station.api.openapi()["paths"]}

    assert served - _paths(DOC.read_text(encoding="utf-8")) - {"/healthz", "/metrics"} == set()


def test_the_readme_and_trust_md_link_the_doc_in_the_repository() -> None:
    for page in (ROOT / "README.md", ROOT / "docs" / "trust.md"):
        text = page.read_text(encoding="utf-8")
        assert "shared/PROTOCOL.md" not in text, page
        assert "protocol.md" in text, page
