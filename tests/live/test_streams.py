"""The live stream hub: who is told what, when, at what render cost, within which bounds."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from figserve.config import Settings
from figserve.figures import FIGURES
from figserve.live.streams import SWEEP_SECONDS as SWEEP
from figserve.live.streams import Refused, StreamHub, Viewed, live_key
from figserve.render import ImageOptions
from tests.support.versions import FakeVersions
from tests.support.waiting import until

WAVES = FIGURES.get("waves")


def waves(frequency: float = 1.0, w: int = 400, dpr: float | None = None) -> Viewed:
    params = WAVES.params(frequency=frequency)
    opts = {"w": w, "h": 300} if dpr is None else {"w": w, "h": 300, "dpr": dpr}
    return Viewed.of(WAVES, params, ImageOptions.model_validate(opts))


class Renders:
    """Counts renders by job key; ``hold`` keeps them waiting until released."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, job: Any) -> None:
        self.keys.append(job.key)
        await self.gate.wait()


def make_hub(versions: FakeVersions, renders: Renders, **overrides: Any) -> StreamHub:
    settings = Settings.from_env({"render_processes": 2, **overrides})
    return StreamHub(settings, FIGURES, versions, renders)


@pytest.fixture
async def setup():
    versions, renders = FakeVersions(), Renders()
    hub = make_hub(versions, renders)
    await hub.start()
    yield hub, versions, renders
    await hub.close()


async def test_a_change_renders_each_shown_image_once_then_tells_every_viewer(setup):
    hub, versions, renders = setup
    one, other = waves(1.0), waves(1.0, w=600)
    versions.set(WAVES, one.params, "d1")
    streams = []
    for i in range(50):
        stream, first = await hub.open(f"c{i}", [one, other] if i % 2 else [one])
        assert [(n.key, n.pin) for n in first] == [(one.key, "p-d1")]
        streams.append(stream)
    assert list(versions.watching.values()) == [1]  # one pair, checked once for all
    renders.gate.clear()
    versions.set(WAVES, one.params, "d2")
    await until(lambda: len(renders.keys) == 2, "two renders ahead (two sizes shown)")
    # Nobody is told before the new image is in the cache.
    assert all(not s._pending for s in streams)
    renders.gate.set()
    for stream in streams:
        notices = await asyncio.wait_for(stream.next(5), 5)
        assert [(n.key, n.pin, n.stale) for n in notices] == [(one.key, "p-d2", False)]
    assert len(renders.keys) == 2  # whatever the number of viewers
    assert hub.seq == 2  # one pair followed, one change announced


async def test_a_slow_viewer_gets_the_latest_pin_only_and_holds_nobody(setup):
    hub, versions, _renders = setup
    v = waves(2.0)
    versions.set(WAVES, v.params, "d0")
    slow, _ = await hub.open("slow", [v])
    quick, _ = await hub.open("quick", [v])
    for i in range(1, 200):
        versions.set(WAVES, v.params, f"d{i}")
        await until(lambda i=i: hub.pairs[v.key].pin == f"p-d{i}", f"version {i} announced")
        notices = await asyncio.wait_for(quick.next(5), 5)
        assert notices[0].pin == f"p-d{i}"
        assert len(slow._pending) == 1  # never a backlog
    notices = await slow.next(0.1)
    assert [n.pin for n in notices] == ["p-d199"]


async def test_changes_that_come_faster_than_renders_render_the_newest_only(setup):
    hub, versions, renders = setup
    v = waves(3.0)
    versions.set(WAVES, v.params, "a")
    stream, _ = await hub.open("c", [v])
    renders.gate.clear()
    versions.set(WAVES, v.params, "b")
    await until(lambda: len(renders.keys) == 1, "the render of b")
    for data in "cdefg":
        versions.set(WAVES, v.params, data)
    await until(lambda: hub.pairs[v.key].latest == "p-g", "the newest version seen")
    renders.gate.set()
    await until(lambda: hub.pairs[v.key].pin == "p-g", "g announced")
    assert len(renders.keys) == 2  # b (under way when the rest came), then g
    assert [n.pin for n in await stream.next(1)] == ["p-g"]


async def test_limits_per_worker_and_per_client():
    versions, renders = FakeVersions(), Renders()
    hub = make_hub(versions, renders, live_max_streams=5, live_max_client_streams=2)
    await hub.start()
    try:
        v = waves()
        opened = [await hub.open("a", [v]), await hub.open("a", [v])]
        with pytest.raises(Refused) as exc:
            await hub.open("a", [v])
        assert exc.value.reason == "client"
        opened += [await hub.open(f"b{i}", [v]) for i in range(3)]
        with pytest.raises(Refused) as exc:
            await hub.open("c", [v])
        assert exc.value.reason == "busy"
        hub.release(opened[0][0])
        await hub.open("c", [v])  # a slot is free again
        hub.shutdown()
        with pytest.raises(Refused) as exc:
            await hub.open("d", [v])
        assert exc.value.reason == "stopping"
    finally:
        await hub.close()


async def test_reconnecting_with_the_last_id_gets_only_what_changed(setup):
    hub, versions, _renders = setup
    a, b = waves(4.0), waves(5.0)
    versions.set(WAVES, a.params, "a1")
    versions.set(WAVES, b.params, "b1")
    stream, first = await hub.open("c", [a, b])
    assert {n.pin for n in first} == {"p-a1", "p-b1"}
    last = hub.message_id()
    hub.release(stream)
    # While it is away, b changes (another viewer keeps b followed, so the hub sees it).
    await hub.open("k", [b])
    versions.set(WAVES, b.params, "b2")
    await until(lambda: hub.pairs[b.key].pin == "p-b2", "b2 announced")
    _, again = await hub.open("c", [a, b], last_event_id=last)
    assert [(n.key, n.pin) for n in again] == [(b.key, "p-b2")]
    # Nothing changed since its newest id: nothing to catch up.
    _, nothing = await hub.open("c", [a, b], last_event_id=hub.message_id())
    assert nothing == []
    # An id of another server (or of an earlier start) says nothing: every pin.
    for other in ("beef0000.1", "garbage", f"{hub.epoch}.99999", ""):
        _, full = await hub.open("c2", [a, b], last_event_id=other)
        assert {n.pin for n in full} == {"p-a1", "p-b2"}
        hub.release(_)


async def test_a_figure_followed_only_after_the_last_id_is_caught_up_in_full(setup):
    hub, versions, _renders = setup
    a, b = waves(6.0), waves(7.0)
    versions.set(WAVES, a.params, "a1")
    versions.set(WAVES, b.params, "b1")
    stream, _ = await hub.open("c", [a])
    versions.set(WAVES, a.params, "a2")
    await until(lambda: hub.pairs[a.key].pin == "p-a2", "a2 announced")
    last = hub.message_id()
    hub.release(stream)
    # b was followed by nobody when the id was given: its pin is sent whatever the id says.
    _, caught = await hub.open("c", [a, b], last_event_id=last)
    assert [(n.key, n.pin) for n in caught] == [(b.key, "p-b1")]


async def test_the_last_viewer_leaving_stops_the_checks(setup):
    hub, versions, _renders = setup
    v = waves(8.0)
    streams = [(await hub.open(f"c{i}", [v]))[0] for i in range(3)]
    assert sum(versions.watching.values()) == 1
    for stream in streams:
        hub.release(stream)
        hub.release(stream)  # idempotent
    assert not hub.streams and not hub.clients
    await hub.sweep()
    assert sum(versions.watching.values()) == 1  # kept a while for viewers coming back
    hub.linger = 0
    await hub.sweep()
    await until(lambda: not versions.watching, "unwatched")
    assert not hub.pairs


async def test_a_version_first_learnt_or_a_stale_one_is_found_by_the_sweep(setup):
    hub, versions, _renders = setup
    v = waves(9.0)
    stream, first = await hub.open("c", [v])
    assert first == []  # not known yet
    versions.set(WAVES, v.params, "x", tell=False)
    await hub.sweep()
    await until(lambda: stream._pending, "the first pin told")
    assert [(n.pin, n.stale) for n in await stream.next(1)] == [("p-x", False)]
    versions.fail(WAVES, v.params)
    await hub.sweep()
    assert [(n.pin, n.stale) for n in await stream.next(1)] == [("p-x", True)]
    await hub.sweep()
    assert await stream.next(0.05) == []  # told once
    versions.set(WAVES, v.params, "x", tell=False)  # readable again, same data
    await hub.sweep()
    assert [(n.pin, n.stale) for n in await stream.next(1)] == [("p-x", False)]


async def test_a_stop_closes_every_stream_at_once(setup):
    hub, _versions, _renders = setup
    streams = [(await hub.open(f"c{i}", [waves()]))[0] for i in range(20)]
    waiting = [asyncio.ensure_future(s.next(60)) for s in streams]
    await asyncio.sleep(0)
    hub.shutdown()
    done = await asyncio.wait_for(asyncio.gather(*waiting), 2)
    assert done == [None] * 20
    assert {s.reason for s in streams} == {"stop"}


async def test_a_stream_whose_client_takes_nothing_is_ended(setup):
    hub, _versions, _renders = setup
    hub.settings = hub.settings.updated({"live_send_timeout": 0.1})
    stream, _ = await hub.open("c", [waves()])
    blocked = asyncio.ensure_future(asyncio.Event().wait())  # a send that never completes
    stream.task = blocked
    hub.sending(stream, True)
    await asyncio.sleep(0.15)
    await hub.sweep()
    await until(blocked.cancelled, "the stalled send cancelled")
    assert stream.closed and stream.reason == "stalled"


# -- with the real data versions service --------------------------------------------------

COUNTER = {"value": 0}


def counter_version(params: Any) -> str:
    return str(COUNTER["value"])


async def slow_probe(task: Any, deadline: float) -> Any:
    await asyncio.sleep(0.02)  # a check takes a moment, as in a render process
    return task.run(0)


async def test_versions_due_at_every_sweep_are_still_learnt():
    """A pair is due for a check each ``refresh`` seconds; when that is also the sweep's
    period, a look that does not wait (``peek``) falls inside the check every time. The first
    version, and every later one, must reach viewers all the same."""
    from figserve.figures import FigureParams, FigureSpec, Registry
    from figserve.live.versions import Versions

    spec = FigureSpec(
        "tick", "Tick", "A counter.", FigureParams, lambda fig, p: None, "a counter",
        version=counter_version, refresh=SWEEP,
    )  # fmt: skip
    settings = Settings.from_env({"render_processes": 1})
    versions = Versions(settings, slow_probe)
    await versions.start()
    renders = Renders()
    hub = StreamHub(settings, Registry([spec]), versions, renders)
    await hub.start()
    try:
        viewed = Viewed.of(spec, FigureParams(), ImageOptions())
        stream, first = await hub.open("c", [viewed])
        told: list[str] = [n.pin for n in first]
        deadline = asyncio.get_running_loop().time() + 8 * SWEEP
        while len(set(told)) < 3:
            assert asyncio.get_running_loop().time() < deadline, told
            notices = await stream.next(SWEEP)
            told += [n.pin for n in notices or []]
            if len(set(told)) == len(told) and told:
                COUNTER["value"] += 1  # new data once the last version was told
    finally:
        await hub.close()
        await versions.close()


def test_pair_keys_name_the_figure_and_its_parameters():
    p = WAVES.params(frequency=2.0)
    assert live_key("waves", p) == live_key("waves", WAVES.params.model_validate(p.model_dump()))
    assert live_key("waves", p) != live_key("waves", WAVES.params(frequency=2.5))
    assert live_key("waves", p) != live_key("normal", p)


# -- the hub against a model, over generated sequences of viewers and changes ---------------

FREQUENCIES = [1.0, 2.0, 3.0]
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("open"),
            st.lists(st.sampled_from(FREQUENCIES), min_size=1, max_size=3),
            st.sampled_from([400, 600]),
        ),
        st.tuples(st.just("close"), st.integers(0, 20)),
        st.tuples(st.just("change"), st.sampled_from(FREQUENCIES)),
        st.tuples(st.just("take"), st.integers(0, 20)),
    ),
    max_size=40,
)


@pytest.mark.property
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_every_viewer_ends_up_with_the_newest_pin_of_what_it_follows(ops):
    asyncio.run(_run_model(ops))


async def _run_model(ops: list[tuple]) -> None:
    versions, renders = FakeVersions(), Renders()
    hub = make_hub(versions, renders)
    await hub.start()
    counter = 0
    shown: dict[int, dict[str, str | None]] = {}  # stream -> key -> pin it was told
    streams: dict[int, Any] = {}
    try:
        for op in ops:
            if op[0] == "open":
                viewed = [waves(f, w=op[2]) for f in op[1]]
                stream, first = await hub.open("c", viewed)
                counter += 1
                streams[counter] = stream
                shown[counter] = {v.key: None for v in viewed}
                for n in first:
                    shown[counter][n.key] = n.pin
            elif op[0] == "close" and streams:
                sid = sorted(streams)[op[1] % len(streams)]
                hub.release(streams.pop(sid))
            elif op[0] == "change":
                params = WAVES.params(frequency=op[1])
                versions.set(WAVES, params, f"{op[1]}-{len(renders.keys)}-{counter}-{id(op)}")
            elif op[0] == "take" and streams:
                sid = sorted(streams)[op[1] % len(streams)]
                for n in await streams[sid].next(0):
                    shown[sid][n.key] = n.pin
            for stream in streams.values():
                assert len(stream._pending) <= len({v.key for v in stream.viewed})
        # Let every announcement finish, then each open stream takes what it was not told.
        await until(
            lambda: hub._queue.empty() and not any(p.busy for p in hub.pairs.values()),
            "every change taken and announced",
        )
        for sid, stream in streams.items():
            for n in await stream.next(0):
                shown[sid][n.key] = n.pin
            for key, pin in shown[sid].items():
                assert (
                    pin
                    == hub.pairs[key].pin
                    == versions.pin(hub.pairs[key].spec, hub.pairs[key].params)
                )
        # Renders ahead: at most the distinct images shown, per announced change.
        assert len(renders.keys) <= 2 * hub.seq  # (seq counts changes and new pairs)
        followed = {v.key for s in streams.values() for v in s.viewed}
        hub.linger = 0
        await hub.sweep()
        await until(lambda: sum(versions.watching.values()) == len(followed), "unwatched")
        assert set(hub.pairs) == followed
    finally:
        await hub.close()
    assert not versions.queues
