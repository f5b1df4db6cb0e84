"""Remote intents without a network: the body check, the receiver's handler against a fake
runtime, the forwarder against a fake mesh, and how ``MeshService.locate`` picks a member."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from edgeagent.config.model import ClusterConfig, MeshConfig
from edgeagent.errors import CapabilityDenied, EdgeAgentError, IntentError, PayloadError
from edgeagent.mesh.discovery import DiscoveryContext
from edgeagent.mesh.membership import MemberView
from edgeagent.mesh.messages import MemberState
from edgeagent.mesh.service import (
    MeshService,
    PeerGoneError,
    RemoteError,
    RequestContext,
    RequestTimeout,
    RequestTooLarge,
)
from edgeagent.reactors.dispatch import Delivery, Receipt
from edgeagent.reactors.model import Forward
from edgeagent.reactors.remote import (
    PEER_METHOD,
    ForwardEffects,
    IntentForwarder,
    RemoteIntent,
    scoped_key,
    serve_remote,
)
from edgeagent.reactors.runlog import RunLog

FROM_A = RequestContext(sender="aaaa", cluster="greenhouse", address=("10.0.0.1", 4370))


class FakeRuntime:
    def __init__(self, error: IntentError | None = None) -> None:
        self.error = error
        self.calls: list[dict[str, Any]] = []

    async def submit(
        self,
        name: str,
        payload: Mapping[str, Any] | None = None,
        *,
        principal: str,
        source: str,
        trace_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Receipt:
        self.calls.append(
            {
                "name": name,
                "payload": payload,
                "principal": principal,
                "source": source,
                "trace_id": trace_id,
                "idempotency_key": idempotency_key,
            }
        )
        if self.error is not None:
            raise self.error
        return Receipt(name, trace_id or "0" * 16, (Delivery("counter", 7),))


class FakeMesh:
    def __init__(self, answer: Any = None, error: EdgeAgentError | None = None) -> None:
        self.answer = answer
        self.error = error
        self.requests: list[tuple[str, str, Any, str | None, float]] = []

    def locate(self, member: str, cluster: str | None = None) -> tuple[str, str]:
        if member == "nobody":
            raise PeerGoneError("nobody is not a member of any cluster (configured: greenhouse)")
        return cluster or "greenhouse", "dev-" + member

    async def request(
        self,
        device_id: str,
        method: str,
        body: Any,
        *,
        cluster: str | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> Any:
        self.requests.append((device_id, method, body, cluster, timeout))
        if self.error is not None:
            raise self.error
        if self.answer is not None:
            return self.answer
        return {
            "accepted": True,
            "intent": body["name"],
            "trace_id": body["trace_id"],
            "deliveries": [{"reactor": "counter", "seq": 1, "duplicate": False}],
        }


# -- the body -------------------------------------------------------------------------------


def test_a_remote_intent_body_round_trips() -> None:
    intent = RemoteIntent("counter.increment", {"by": 2}, "abcd", "k1")
    assert RemoteIntent.from_body(intent.body()) == intent
    assert RemoteIntent.from_body({"name": "counter.reset"}) == RemoteIntent("counter.reset", {})


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ([], "a remote intent is a JSON object"),
        ({"payload": {}}, "needs 'name'"),
        ({"name": "c.i", "payload": [1]}, "payload: must be a JSON object"),
        ({"name": "c.i", "trace_id": "has space"}, "trace_id"),
        ({"name": "c.i", "trace_id": "x" * 65}, "trace_id"),
        ({"name": "c.i", "idempotency_key": 5}, "idempotency_key"),
        ({"name": "c.i", "idempotency_key": "k" * 201}, "idempotency_key"),
    ],
)
def test_a_bad_remote_intent_body_says_what_is_wrong(body: Any, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        RemoteIntent.from_body(body)


# -- the receiving side ---------------------------------------------------------------------


async def test_the_receiver_submits_as_the_cluster_from_the_sender() -> None:
    runtime = FakeRuntime()
    body = {"name": "counter.increment", "payload": {"by": 2}, "trace_id": "t1"}
    answer = await serve_remote(runtime, FROM_A, {**body, "idempotency_key": "k"})
    assert runtime.calls == [
        {
            "name": "counter.increment",
            "payload": {"by": 2},
            "principal": "peer:greenhouse",
            "source": "peer:aaaa",
            "trace_id": "t1",
            "idempotency_key": "peer:aaaa:k",
        }
    ]
    assert answer["accepted"] is True
    assert answer["trace_id"] == "t1"
    assert answer["deliveries"] == [{"reactor": "counter", "seq": 7, "duplicate": False}]


async def test_the_receiver_answers_refusals_like_the_local_control_method() -> None:
    denied = FakeRuntime(CapabilityDenied("principal 'peer:greenhouse' lacks counter:write"))
    answer = await serve_remote(denied, FROM_A, {"name": "counter.increment", "trace_id": "t2"})
    assert answer == {
        "accepted": False,
        "intent": "counter.increment",
        "code": "denied",
        "error": "principal 'peer:greenhouse' lacks counter:write",
        "trace_id": "t2",
    }
    invalid = FakeRuntime(PayloadError("by", 'expected int, got str "x"'))
    answer = await serve_remote(invalid, FROM_A, {"name": "counter.increment"})
    assert (answer["code"], answer["field"]) == ("invalid", "by")
    assert "trace_id" not in answer  # none given: the runtime made one only for its audit


async def test_a_malformed_body_is_refused_without_submitting() -> None:
    runtime = FakeRuntime()
    answer = await serve_remote(runtime, FROM_A, {"name": "counter.increment", "payload": 3})
    assert (answer["accepted"], answer["code"]) == (False, "invalid")
    assert answer["intent"] == "counter.increment"
    assert runtime.calls == []


def test_keys_are_scoped_to_their_sender() -> None:
    assert scoped_key("aaaa", "k") != scoped_key("bbbb", "k")
    assert scoped_key("aaaa", None) is None


# -- the sending side -----------------------------------------------------------------------


async def test_a_forward_sends_one_request_and_passes_the_answer_on(tmp_path: Path) -> None:
    mesh = FakeMesh()
    run_log = RunLog(tmp_path)
    forwarder = IntentForwarder(mesh, run_log=run_log)
    answer = await forwarder.forward(
        "b", RemoteIntent("counter.increment", {"by": 1}, None, "k"), timeout=2.5
    )
    run_log.close()
    ((device, method, body, cluster, timeout),) = mesh.requests
    assert (device, method, cluster, timeout) == ("dev-b", PEER_METHOD, "greenhouse", 2.5)
    assert len(body["trace_id"]) == 16  # chosen by the sender, so both sides log the same
    assert body["idempotency_key"] == "k"
    assert answer["accepted"] is True
    assert (answer["to"], answer["cluster"], answer["trace_id"]) == (
        "dev-b",
        "greenhouse",
        body["trace_id"],
    )
    (event,) = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert event["kind"] == "forwarded"
    assert (event["trace_id"], event["to"], event["accepted"]) == (body["trace_id"], "dev-b", True)


@pytest.mark.parametrize(
    ("error", "code", "says"),
    [
        (RequestTimeout("dev-b did not answer 'intent.send' within 5s"), "timeout", "may or may"),
        (PeerGoneError("dev-b in cluster 'greenhouse' is dead"), "unreachable", "is dead"),
        (RemoteError("dev-b: busy: try again"), "remote", "busy"),
        (EdgeAgentError("too many requests in flight"), "unreachable", "too many"),
        (RequestTooLarge("request of 9000 bytes does not fit"), "invalid", "does not fit"),
    ],
)
async def test_a_forward_without_an_answer_is_a_refusal_that_says_why(
    error: EdgeAgentError, code: str, says: str
) -> None:
    forwarder = IntentForwarder(FakeMesh(error=error))
    answer = await forwarder.forward("b", RemoteIntent("counter.increment", {}, "t3"))
    assert (answer["accepted"], answer["code"], answer["to"]) == (False, code, "dev-b")
    assert says in answer["error"]
    assert answer["trace_id"] == "t3"


async def test_a_forward_to_an_unknown_member_or_without_a_mesh_is_unreachable() -> None:
    intent = RemoteIntent("counter.increment", {})
    answer = await IntentForwarder(FakeMesh()).forward("nobody", intent, cluster="greenhouse")
    assert (answer["code"], answer["to"], answer["cluster"]) == (
        "unreachable",
        "nobody",
        "greenhouse",
    )
    answer = await IntentForwarder(None).forward("b", intent)
    assert answer["code"] == "unreachable"
    assert "mesh is not running" in answer["error"]


async def test_an_answer_of_the_wrong_shape_is_reported() -> None:
    forwarder = IntentForwarder(FakeMesh(answer=[1, 2]))
    answer = await forwarder.forward("b", RemoteIntent("counter.increment", {}))
    assert (answer["accepted"], answer["code"]) == (False, "remote")


# -- finding the member ---------------------------------------------------------------------


def _view(device_id: str, hostname: str, state: MemberState) -> MemberView:
    return MemberView(device_id, hostname, state, 1, ("10.0.0.9",), 4370, None, None, {}, 0, 0.0)


def _mesh(monkeypatch: pytest.MonkeyPatch, members: dict[str, list[MemberView]]) -> MeshService:
    clusters = tuple(
        ClusterConfig(name=name, port=4370 + i, key=b"k" * 32) for i, name in enumerate(members)
    )
    mesh = MeshService(
        MeshConfig(clusters=clusters),
        self_id="me",
        hostname="me",
        epoch=1,
        meta={},
        context=DiscoveryContext(self_id="me"),
    )
    for link in mesh.links:
        monkeypatch.setattr(link, "members", lambda views=members[link.cluster.name]: views)
    return mesh


def test_locate_finds_a_member_by_id_or_hostname_in_its_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mesh = _mesh(
        monkeypatch,
        {
            "greenhouse": [_view("b1", "pump", MemberState.ALIVE)],
            "lab": [
                _view("c1", "bench", MemberState.ALIVE),
                _view("b1", "pump", MemberState.DEAD),
            ],
        },
    )
    assert mesh.locate("c1") == ("lab", "c1")
    assert mesh.locate("bench") == ("lab", "c1")
    assert mesh.locate("b1") == ("greenhouse", "b1")  # alive there, dead in lab
    assert mesh.locate("b1", "lab") == ("lab", "b1")  # its request then says it is dead
    with pytest.raises(PeerGoneError, match="not a member of any cluster"):
        mesh.locate("zz")
    with pytest.raises(EdgeAgentError, match="no cluster 'attic'"):
        mesh.locate("b1", "attic")


def test_locate_refuses_to_guess_between_clusters(monkeypatch: pytest.MonkeyPatch) -> None:
    both = [_view("b1", "pump", MemberState.ALIVE)]
    mesh = _mesh(monkeypatch, {"greenhouse": both, "lab": both})
    with pytest.raises(EdgeAgentError, match=r"several clusters \(greenhouse, lab\)"):
        mesh.locate("b1")
    assert mesh.locate("b1", "lab") == ("lab", "b1")


async def test_a_request_too_large_for_a_datagram_is_refused_before_sending(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mesh = _mesh(monkeypatch, {"greenhouse": [_view("b1", "pump", MemberState.ALIVE)]})
    with pytest.raises(RequestTooLarge, match="does not fit one datagram"):
        await mesh.request("b1", PEER_METHOD, {"payload": {"blob": "x" * 9000}})
    assert mesh.links[0].stats.requests_sent == 0


# -- ForwardEffects: a reactor's Forward effect, retried while the peer is away ------------------


class ScriptedForwarder:
    """Answers each forward with the next code of a script ("ok": accepted)."""

    def __init__(self, *codes: str) -> None:
        self.codes = list(codes)
        self.sent: list[tuple[str, RemoteIntent, str | None]] = []

    async def forward(
        self,
        to: str,
        intent: RemoteIntent,
        *,
        cluster: str | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        self.sent.append((to, intent, cluster))
        code = self.codes.pop(0)
        if code == "ok":
            return {"accepted": True, "intent": intent.name, "trace_id": intent.trace_id}
        return {"accepted": False, "intent": intent.name, "code": code, "error": f"said {code}"}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def forward_effects(forwarder: ScriptedForwarder, clock: Clock, retry_for: float = 60.0) -> Any:
    return ForwardEffects(forwarder, retry_for=retry_for, clock=clock.time, sleep=clock.sleep)


async def test_a_forward_effect_carries_its_key_and_trace_and_retries_while_unreachable() -> None:
    forwarder, clock = ScriptedForwarder("unreachable", "timeout", "full", "ok"), Clock()
    effect = Forward("rb", "counter.increment", {"by": 2}, "greenhouse")
    await forward_effects(forwarder, clock).send("up", "up:7:0", "feedc0de", effect)
    assert clock.slept == [0.5, 1.0, 2.0]  # backoff between tries
    sent = {(to, cluster, i.name, json.dumps(i.payload), i.trace_id, i.idempotency_key)
            for to, i, cluster in forwarder.sent}  # fmt: skip
    # every try is the same request: the peer applies it once, by its key
    assert sent == {("rb", "greenhouse", "counter.increment", '{"by": 2}', "feedc0de", "up:7:0")}


async def test_a_forward_effect_gives_up_at_once_on_the_peers_decision() -> None:
    forwarder, clock = ScriptedForwarder("denied"), Clock()
    with pytest.raises(IntentError, match=r"refused \(denied, after 1 try\): said denied") as err:
        await forward_effects(forwarder, clock).send("up", "up:1:0", "t", Forward("rb", "a.b"))
    assert err.value.code == "denied"
    assert clock.slept == []


async def test_a_forward_effect_gives_up_when_the_peer_stays_away() -> None:
    forwarder, clock = ScriptedForwarder(*["unreachable"] * 20), Clock()
    with pytest.raises(IntentError, match=r"unreachable, after 5 tries"):
        await forward_effects(forwarder, clock, retry_for=10).send(
            "up", "up:1:0", "t", Forward("rb", "a.b")
        )
    assert clock.slept == [0.5, 1.0, 2.0, 4.0]  # the next wait would pass the 10 s
