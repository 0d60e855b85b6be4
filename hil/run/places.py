"""Boards on labgrid places: reserved, waited for, acquired, resolved into physical boards, always released.

labgrid is the scheduler across lab hosts (docs/distributed.md): its coordinator holds the places, exporters on
the lab hosts publish their resources, a reservation queues for a place and an acquired place is the lock every
other client respects. hil asks it through labgrid's own client session (`labgrid.remote.client.start_session`,
the API labgrid's RemotePlace and pytest plugin use) and the coordinator's gRPC requests, not by parsing the
output of `labgrid-client`, which is written for people and changes with labgrid's versions.

A place has a board's resources under fixed names (docs/distributed.md, labs/labgrid/exporter.yaml):
- `console`: the board's serial port, a NetworkSerialPort (ser2net on the exporter, RFC2217);
- `probe`: its debug probe's server, a NetworkService at `address`:`port` (`pyocd server`, or hil's emulated
  probe of a served board), flashed through as `remote:HOST:PORT`;
- `monitor` (optional): the measurement unit's serial port, a NetworkSerialPort as `console`.
Once acquired, a place's board is a physical board whose ports are URLs and whose probe is remote: the run's one
code path does not know it came from a place.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from hil.hw.board import BoardError
from hil.lab.load import BoardSpec, Lab, MonitorSpec, PhysicalSpec, PlaceSpec, SerialSpec
from hil.hw.kinds import BOARD_KINDS

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often a waiting run polls its reservations (each poll also keeps them from expiring)
CONNECT_TIMEOUT_S = 30.0  # the session's start: connected, subscribed, the places and resources it sent applied
REQUEST_TIMEOUT_S = 15.0  # one request to the coordinator
PORTS_TIMEOUT_S = 15.0  # how long an exporter may take to start ser2net for a place just acquired
CONSOLE, PROBE, MONITOR = "console", "probe", "monitor"  # a place's resource names (module docstring)
NETWORK_SERIAL, NETWORK_SERVICE = "NetworkSerialPort", "NetworkService"
# pyserial's RFC2217 client waits for the server to confirm each modem-control change; ser2net cannot set them
# on a pty (an emulated board's VCP), and hil never needs them, so it does not wait (pyserial's URL option).
RFC2217_OPTIONS = "?ign_set_control"


class CoordinatorRefused(BoardError):
    """The coordinator refused a request, or did not answer it: the run cannot have its places (exit 2)."""


@dataclass(frozen=True)
class PlaceResources:
    """What an acquired place's board is reached by."""

    console: str  # rfc2217://HOST:PORT?...
    baudrate: int
    probe: str  # remote:HOST:PORT
    monitor: str | None


class Coordinator:
    """A client session with a labgrid coordinator, on its own thread and event loop, so that its stream stays
    served however long a run holds the places; every method is called from the run's thread and waits."""

    def __init__(self, address: str):
        self.address = address
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True, name=f"labgrid {address}")
        self.session = None

    def __enter__(self) -> Coordinator:
        self._thread.start()
        if not self._ready.wait(CONNECT_TIMEOUT_S):  # a host that drops packets: the daemon thread is left
            raise BoardError(f"labgrid coordinator {self.address}: no answer within {CONNECT_TIMEOUT_S:g} s; is "
                             "it up and reachable from here? (docs/distributed.md)")
        if self._failed is not None:
            self._thread.join()
            raise BoardError(f"labgrid coordinator {self.address}: cannot connect ({_one_line(self._failed)}); "
                             "is labgrid-coordinator running there? (docs/distributed.md)") from None
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._call(self.session.stop())
            self._call(self.session.close())
        except Exception as error:  # noqa: BLE001 - closing; the places are already released
            log.debug("labgrid session close: %s", error)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        # gRPC's fork handlers, which run in every child hil starts (the flasher, units) while this session's
        # threads run, crash some of those children (grpc/grpc#13998, #29044); hil forks only to exec, which
        # needs none of them. Read once, when grpc starts.
        os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
        from labgrid.remote.client import start_session

        asyncio.set_event_loop(self._loop)
        try:
            self.session = start_session(self.address, loop=self._loop)
        except BaseException as error:  # noqa: BLE001 - said by __enter__
            self._failed = error
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    def _call(self, coroutine, timeout: float = REQUEST_TIMEOUT_S):
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise CoordinatorRefused(f"labgrid coordinator {self.address}: no answer within {timeout:g} s; is it "
                                     "up and reachable?") from None

    def _request(self, method: str, request):
        """One gRPC request; a refusal is CoordinatorRefused with the coordinator's one-line reason."""
        import grpc

        async def send():
            try:
                return await getattr(self.session.stub, method)(request)
            except grpc.aio.AioRpcError as error:
                raise CoordinatorRefused(error.details()) from None

        return self._call(send())

    def sync(self) -> None:
        """Wait until every update the coordinator sent before now has been applied to `places`/`resources`."""
        self._call(self.session.sync_with_coordinator())

    @property
    def places(self) -> dict:
        """A copy of the coordinator's places by name, taken on the session's loop (which updates them)."""
        async def snapshot():
            return dict(self.session.places)

        return self._call(snapshot())

    def reserve(self, place: PlaceSpec):
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        wanted = {"name": place.name} if place.name is not None else dict(place.tags)
        request = pb.CreateReservationRequest(filters={"main": pb.Reservation.Filter(filter=wanted)}, prio=0.0)
        return self._reservation(self._request("CreateReservation", request).reservation)

    def poll(self, token: str):
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        return self._reservation(self._request("PollReservation", pb.PollReservationRequest(token=token)).reservation)

    def cancel(self, token: str) -> None:
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        self._request("CancelReservation", pb.CancelReservationRequest(token=token))

    def reservations(self) -> list:
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        response = self._request("GetReservations", pb.GetReservationsRequest())
        return [self._reservation(r) for r in response.reservations]

    def acquire(self, name: str) -> None:
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        self._request("AcquirePlace", pb.AcquirePlaceRequest(placename=name))
        self.sync()

    def release(self, name: str) -> None:
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        self._request("ReleasePlace", pb.ReleasePlaceRequest(placename=name))

    def user(self) -> str:
        """Who this session acquires as: labgrid's `host/user` (LG_HOSTNAME, LG_USERNAME override them)."""
        return f"{self.session.gethostname()}/{self.session.getuser()}"

    def resources(self, name: str) -> dict[str, object]:
        """The acquired place's resources by their name in the place (a match's rename, else the exporter's)."""
        async def lookup():
            place = self.session.places[name]
            found = {}
            for path in place.acquired_resources:
                exporter, group, _, resource = path
                match = place.getmatch(path)
                entry = self.session.resources.get(exporter, {}).get(group, {}).get(resource)
                if entry is not None:
                    found[match.rename or resource] = entry
            return found

        return self._call(lookup())

    @staticmethod
    def _reservation(message):
        from labgrid.remote.common import Reservation

        return Reservation.from_pb2(message)


@contextmanager
def held(lab: Lab, slots: list[str], wait_s: float = 0.0,
         on_wait: Callable[[str], None] = log.warning) -> Iterator[Lab]:
    """The lab with its boards on labgrid places (of these slots) resolved into physical boards, each place
    reserved, acquired and held while the caller runs, then released on every way out (an error, Ctrl-C).
    A place someone else holds refuses the run at once (BoardError naming the place and its holder), or with
    `wait_s` its reservation queues until then. A lab without places is given back as it is."""
    placed = [spec for spec in lab.boards if spec.slot in slots and spec.place is not None]
    if not placed:
        yield lab
        return
    with Coordinator(lab.labgrid.coordinator) as coordinator:
        tokens: list[str] = []
        acquired: list[str] = []
        try:
            names = _reserve(coordinator, placed, wait_s, on_wait, tokens)
            resolved = {}
            for spec, name in zip(placed, names):
                try:
                    coordinator.acquire(name)
                except CoordinatorRefused as error:
                    raise BoardError(f"{spec.slot}: place {name}: {error}; "
                                     f"{_holder_hint(coordinator, name)}") from None
                acquired.append(name)
            for spec, name in zip(placed, names):
                resolved[spec.slot] = _resolved(spec, name, _wait_for_resources(coordinator, spec, name))
            log.info("places acquired: %s", ", ".join(f"{slot} on {s.physical.place}" for slot, s in resolved.items()))
            yield dataclasses.replace(lab, boards=tuple(resolved.get(spec.slot, spec) for spec in lab.boards))
        finally:
            _give_back(coordinator, acquired, tokens)


def _reserve(coordinator: Coordinator, placed: list[BoardSpec], wait_s: float, on_wait: Callable[[str], None],
             tokens: list[str]) -> list[str]:
    """One reservation per board, polled until each is allocated a place; the places' names, in `placed`'s order.
    `tokens` gets every reservation made, for the caller to cancel."""
    coordinator.sync()
    for spec in placed:
        _check_exists(coordinator, spec)
        tokens.append(coordinator.reserve(spec.place).token)
    deadline = time.monotonic() + wait_s
    said: set[str] = set()
    while True:
        states = [coordinator.poll(token) for token in tokens]
        waiting = [(spec, state) for spec, state in zip(placed, states) if not state.allocations.get("main")]
        if not waiting:
            return [state.allocations["main"][0] for state in states]
        spec = waiting[0][0]
        busy = _who_holds(coordinator, spec.place)
        if time.monotonic() >= deadline:
            waited = f" after waiting {wait_s:.0f} s" if wait_s else ""
            raise BoardError(f"{spec.slot}: {spec.place.wanted} is in use ({busy}){waited}; wait for it to be "
                             "released" + (" or give a longer --wait" if wait_s else " or queue with --wait"))
        if busy not in said:
            said.add(busy)
            on_wait(f"{spec.slot}: {spec.place.wanted} is in use ({busy}); waiting for it, up to "
                    f"{max(0.0, deadline - time.monotonic()):.0f} s more")
        time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))


def _check_exists(coordinator: Coordinator, spec: BoardSpec) -> None:
    """A reservation for a place that does not exist would wait for ever: say so now."""
    if not _candidates(coordinator, spec.place):
        known = ", ".join(sorted(coordinator.places)) or "none"
        raise BoardError(f"{spec.slot}: no {spec.place.wanted.removeprefix('a ')} on labgrid coordinator "
                         f"{coordinator.address} (places: {known}); create it (`labgrid-client -p NAME create`) or "
                         "fix the lab's place")


def _candidates(coordinator: Coordinator, place: PlaceSpec) -> list:
    if place.name is not None:
        return [p for name, p in coordinator.places.items() if name == place.name]
    return [p for p in coordinator.places.values() if set(place.tags) <= set(p.tags.items())]


def _who_holds(coordinator: Coordinator, place: PlaceSpec) -> str:
    """Who has the places a board waits for: `place rack-a-1 acquired by host/user`, `... reserved by ...`."""
    owners = {r.token: r.owner for r in coordinator.reservations()}
    said = []
    for candidate in sorted(_candidates(coordinator, place), key=lambda p: p.name):
        if candidate.acquired:
            said.append(f"place {candidate.name} acquired by {candidate.acquired}")
        elif candidate.reservation:
            owner = owners.get(candidate.reservation, "another reservation")
            said.append(f"place {candidate.name} reserved by {owner}")
    return "; ".join(said) or "reserved for another board of this run"


def _holder_hint(coordinator: Coordinator, name: str) -> str:
    place = coordinator.places.get(name)
    holder = place.acquired if place is not None and place.acquired else None
    return f"it is held by {holder}" if holder else "try again"


def _wait_for_resources(coordinator: Coordinator, spec: BoardSpec, name: str) -> PlaceResources:
    """The acquired place's resources, once its exporter has started their ser2net (it does on acquire)."""
    deadline = time.monotonic() + PORTS_TIMEOUT_S
    while True:
        coordinator.sync()
        found = coordinator.resources(name)
        problem = _missing(found)
        if problem is None:
            return _urls(found)
        if time.monotonic() >= deadline:
            raise BoardError(f"{spec.slot}: place {name}: {problem}; is its exporter up, and does its group have "
                             "console, probe (and monitor) as docs/distributed.md lays out?")
        time.sleep(0.1)


def _missing(found: dict) -> str | None:
    for name, cls, required in ((CONSOLE, NETWORK_SERIAL, True), (PROBE, NETWORK_SERVICE, True),
                                (MONITOR, NETWORK_SERIAL, False)):
        entry = found.get(name)
        if entry is None:
            if required:
                return f"no {name} resource ({cls}) acquired"
            continue
        if entry.cls != cls:
            return f"its {name} is a {entry.cls}, not a {cls}"
        if not entry.avail:
            return f"its {name} is not available on its exporter"
        if cls == NETWORK_SERIAL and not entry.params.get("port"):
            return f"its {name}'s ser2net has not started"
    return None


def _urls(found: dict) -> PlaceResources:
    def rfc2217(entry) -> str:
        return f"rfc2217://{entry.params['host']}:{entry.params['port']}{RFC2217_OPTIONS}"

    console, probe = found[CONSOLE], found[PROBE]
    monitor = found.get(MONITOR)
    return PlaceResources(rfc2217(console), int(console.params.get("speed", 115200)),
                          f"remote:{probe.params['address']}:{probe.params['port']}",
                          rfc2217(monitor) if monitor is not None else None)


def _resolved(spec: BoardSpec, name: str, found: PlaceResources) -> BoardSpec:
    """The place's board as a physical board: its ports are URLs, its probe remote."""
    monitor = None
    if found.monitor is not None:
        if spec.place.calibration is None:
            raise BoardError(f"{spec.slot}: place {name} has a monitor, but the lab gives no calibration for it; "
                             "add monitor: {shunt_ohms: ..., max_current_a: ...} to the board")
        shunt_ohms, max_current_a = spec.place.calibration
        monitor = MonitorSpec(SerialSpec(found.monitor, None, 115200, found.monitor), shunt_ohms, max_current_a)
    serial = SerialSpec(found.console, None, found.baudrate, found.console)
    physical = PhysicalSpec(found.probe, BOARD_KINDS[spec.kind].pyocd_target, serial, monitor, place=name)
    return dataclasses.replace(spec, physical=physical)


def _give_back(coordinator: Coordinator, acquired: list[str], tokens: list[str]) -> None:
    """Release the places and cancel the reservations; one that fails does not keep the others."""
    for name in acquired:
        try:
            coordinator.release(name)
        except Exception as error:  # noqa: BLE001 - said, and the next is released
            log.error("place %s: not released (%s); `labgrid-client -p %s release`", name, _one_line(error), name)
    for token in tokens:
        try:
            coordinator.cancel(token)
        except Exception as error:  # noqa: BLE001 - an expired one is gone already
            log.debug("reservation %s: %s", token, _one_line(error))


def _one_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
