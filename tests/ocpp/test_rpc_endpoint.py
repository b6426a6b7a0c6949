"""One connection's RPC state without a socket (`rpc.Endpoint`), and the ocpp library's public API.

The endpoint owns the station's message ids, the one call in flight and its
deadline, the calls queued behind it and the version's error spellings; time
is whatever number the caller passes.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import ocpp

from station.domain.events import OcppVersion
from station.ocpp import rpc

V16, V201 = OcppVersion.V16, OcppVersion.V201
SOURCES = Path(__file__).resolve().parents[2] / "station" / "ocpp"


def answer(unique_id: str, payload: object = None) -> str:
    return json.dumps([3, unique_id, payload or {}])


def test_calls_get_fresh_ids_and_go_out_one_at_a_time() -> None:
    endpoint = rpc.Endpoint(V201, timeout_s=30)
    first = endpoint.call("RequestStopTransaction", {"transactionId": "t1"})
    second = endpoint.call("CostUpdated", {"totalCost": 1.5, "transactionId": "t1"})

    assert first.unique_id != second.unique_id
    assert json.loads(first.text) == [2, first.unique_id, "RequestStopTransaction",
                                      {"transactionId": "t1"}]  # fmt: skip
    assert endpoint.next_call(now=100.0) == first
    assert endpoint.deadline == 130.0
    assert endpoint.next_call(now=101.0) is None  # one in flight: the second waits

    reply = endpoint.receive(answer(first.unique_id, {"status": "Accepted"}))

    assert isinstance(reply, rpc.Reply) and reply.call == first
    assert reply.payload == {"status": "Accepted"} and reply.error is None
    assert endpoint.deadline is None
    assert endpoint.next_call(now=102.0) == second


def test_an_answer_to_no_call_in_flight_is_unsolicited_and_counted() -> None:
    endpoint = rpc.Endpoint(V201, timeout_s=30)
    call = endpoint.call("TriggerMessage", {"requestedMessage": "Heartbeat"})
    endpoint.next_call(now=0.0)

    assert isinstance(endpoint.receive(answer("not-ours")), rpc.Unsolicited)
    assert isinstance(endpoint.receive(answer(call.unique_id)), rpc.Reply)
    assert isinstance(endpoint.receive(answer(call.unique_id)), rpc.Unsolicited)  # a repeat
    assert endpoint.unsolicited == 2


def test_a_callerror_answer_is_the_reply_with_its_error() -> None:
    endpoint = rpc.Endpoint(V16, timeout_s=30)
    call = endpoint.call("RemoteStopTransaction", {"transactionId": 1})
    endpoint.next_call(now=0.0)

    reply = endpoint.receive(json.dumps([4, call.unique_id, "NotSupported", "no", {}]))

    assert isinstance(reply, rpc.Reply) and reply.error == ("NotSupported", "no", {})


def test_a_call_expires_at_its_deadline_and_its_late_answer_is_unsolicited() -> None:
    endpoint = rpc.Endpoint(V201, timeout_s=5)
    call = endpoint.call("GetTransactionStatus", {"transactionId": "t"})
    endpoint.next_call(now=10.0)

    assert endpoint.expire(now=14.9) is None
    assert endpoint.expire(now=15.0) == call
    assert endpoint.deadline is None
    assert isinstance(endpoint.receive(answer(call.unique_id)), rpc.Unsolicited)


def test_a_queued_call_can_be_withdrawn_and_close_hands_back_the_rest() -> None:
    endpoint = rpc.Endpoint(V201, timeout_s=5)
    first = endpoint.call("CostUpdated", {"totalCost": 1, "transactionId": "t"})
    second = endpoint.call("CostUpdated", {"totalCost": 2, "transactionId": "t"})
    third = endpoint.call("CostUpdated", {"totalCost": 3, "transactionId": "t"})
    endpoint.next_call(now=0.0)

    assert endpoint.withdraw(second.unique_id)
    assert not endpoint.withdraw(first.unique_id)  # in flight: it stays until answered
    assert endpoint.close() == [first, third]
    assert endpoint.close() == [] and endpoint.next_call(now=1.0) is None


def test_errors_are_spelt_for_the_version_and_cut_to_255_characters() -> None:
    body, text = rpc.Endpoint(V16, 5).error("m1", "OccurrenceConstraintViolation", "x" * 300)
    _, text_201 = rpc.Endpoint(V201, 5).error("m1", "OccurrenceConstraintViolation", "d")

    assert body == ["OccurenceConstraintViolation", "x" * 255, {}]
    assert json.loads(text) == [4, "m1", *body]
    assert json.loads(text_201)[2] == "OccurrenceConstraintViolation"
    assert json.loads(rpc.Endpoint(V201, 5).result("c1", {"a": 1})) == [3, "c1", {"a": 1}]


def test_other_frames_pass_through_as_classified() -> None:
    endpoint = rpc.Endpoint(V201, timeout_s=5)

    assert isinstance(endpoint.receive(json.dumps([2, "c", "Heartbeat", {}])), rpc.Call)
    assert isinstance(endpoint.receive("not json"), rpc.Refused)


# --- the ocpp library through its public API only --------------------------------------


def _library_privates() -> set[str]:
    """Every underscored attribute the library's ChargePoint and routing define or use."""
    root = Path(ocpp.__file__).parent
    text = "".join((root / name).read_text() for name in ("charge_point.py", "routing.py"))
    return set(re.findall(r"\b(_[a-z]\w*)", text))


def _own(trees: list[ast.Module]) -> set[str]:
    """The underscored names station/ocpp defines itself (methods, ``self._x = …``)."""
    names = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(node.name)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names |= {t.attr for t in targets if isinstance(t, ast.Attribute)}
    return names


def test_station_ocpp_uses_no_underscored_name_of_the_ocpp_library(
    sources: Path = SOURCES,
) -> None:
    paths = sorted(sources.glob("*.py"))
    trees = [ast.parse(path.read_text(), str(path)) for path in paths]
    privates = _library_privates()
    assert {"_response_queue", "_unique_id_generator", "_on_action", "_send"} <= privates
    privates -= _own(trees)
    problems: list[str] = []
    for path, tree in zip(paths, trees, strict=True):
        library: set[str] = set()  # names bound to the ocpp library's modules or objects
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                library |= {
                    (a.asname or a.name).split(".")[0] for a in node.names if a.name == "ocpp"
                    or a.name.startswith("ocpp.")
                }  # fmt: skip
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ocpp":
                for alias in node.names:
                    if alias.name.startswith("_"):
                        problems.append(f"{path.name}:{node.lineno} imports {alias.name}")
                    library.add(alias.asname or alias.name)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b).split(".")[0] for b in node.bases}
                if bases & library:
                    problems.append(f"{path.name}:{node.lineno} {node.name} subclasses the library")
            elif (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")  # __file__, __name__: public
            ):
                root = node.value
                while isinstance(root, ast.Attribute):
                    root = root.value
                if (isinstance(root, ast.Name) and root.id in library) or node.attr in privates:
                    problems.append(f"{path.name}:{node.lineno} .{node.attr}")
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value in privates
            ):
                problems.append(f"{path.name}:{node.lineno} {node.value!r}")

    assert problems == []
