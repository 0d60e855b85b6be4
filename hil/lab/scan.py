"""`hil lab scan`: what is plugged into this host, and the `boards:` block of labs.yaml for it.

In the manner of twister's --generate-hardware-map:
- probes come from pyOCD's own discovery (ConnectHelper: every USB probe it has a driver for), plus
  any `remote:HOST:PORT` probe server named on the command line (pyOCD cannot discover those);
- serial ports from pyserial's list_ports, with USB vid:pid and serial number;
- a probe and a port are one board when their USB serial numbers agree: an ST-LINK/V2-1 or V3 and a
  DAPLink expose the virtual COM port on the probe's own USB device, so the VCP carries the probe's id;
- the board kind is guessed from the target pyOCD names for the probe (its board ID), else from the
  chip's DBGMCU_IDCODE (RM0394 46.6.1, RM0410 40.6.1) read through the probe; unknown otherwise.
The block is printed with `model: MODEL` for the user to fill in; the lab loader refuses it until then.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import yaml
from serial.tools import list_ports
from serial.tools.list_ports_common import ListPortInfo

from hil.hw.kinds import BOARD_KINDS

log = logging.getLogger(__name__)
DBGMCU_IDCODE = 0xE004_2000  # the same address on the STM32L4 and the STM32F7
DEV_IDS = {0x435: "stm32l432kc", 0x451: "stm32f767zi"}  # DEV_ID[11:0] -> pyOCD target (RM0394, RM0410)
MODEL_PLACEHOLDER = "MODEL"


@dataclass(frozen=True)
class ProbeSeen:
    unique_id: str  # what labs.yaml's probe.unique_id takes: a USB probe's serial, or remote:HOST:PORT
    serial_number: str  # the probe's own USB serial number, which its virtual COM port shares
    description: str
    target: str | None  # a pyOCD target name, if pyOCD or the chip could tell


@dataclass(frozen=True)
class PortSeen:
    device: str
    vid_pid: str | None  # "0483:374b"; None for a port that is not USB
    serial_number: str | None
    description: str


@dataclass(frozen=True)
class BoardSeen:
    probe: ProbeSeen | None
    port: PortSeen | None

    @property
    def kind(self) -> str | None:
        """The board kind whose default pyOCD target is the probe's; None if none or several fit."""
        target = self.probe.target if self.probe else None
        kinds = [kind.name for kind in BOARD_KINDS.values() if target and kind.pyocd_target == target]
        return kinds[0] if len(kinds) == 1 else None


def inspect(probe) -> ProbeSeen:
    """What a pyOCD probe says of itself and of its chip. The target is pyOCD's for the board the
    probe sits on (its board ID), else the one the chip's IDCODE names, read in a generic Cortex-M
    session; None if neither can tell."""
    from pyocd.core.session import Session

    info = probe.associated_board_info
    target = info.target if info is not None and info.target else None
    serial_number, description = probe.unique_id, probe.description
    try:
        with Session(probe, target_override="cortex_m", connect_mode="attach") as session:
            if probe.unique_id.startswith("remote:"):
                # A probe server's client names itself by address; the served probe's own id (the one its
                # VCP shares) is its `unique_id` property in pyOCD's remote-probe protocol.
                serial_number = probe._read_property("unique_id", probe.unique_id)
                description = f"{probe.vendor_name} {probe.product_name} via {probe.unique_id}"
            if target is None:
                target = DEV_IDS.get(session.target.read32(DBGMCU_IDCODE) & 0xFFF)
    except Exception as error:  # noqa: BLE001 - a probe or chip that cannot say leaves the kind unknown
        log.info("%s: could not read DBGMCU_IDCODE (%s)", probe.unique_id, error)
    return ProbeSeen(probe.unique_id, serial_number, description, target)


def find_probes(remote: list[str]) -> list[ProbeSeen]:
    """Every probe pyOCD finds on USB, and the `remote:HOST:PORT` servers given."""
    from pyocd.core.helpers import ConnectHelper

    probes = list(ConnectHelper.get_all_connected_probes(blocking=False, print_wait_message=False))
    for address in remote:
        probes += ConnectHelper.get_all_connected_probes(blocking=False, unique_id=address,
                                                         print_wait_message=False)
    return [inspect(probe) for probe in probes]


def find_ports(ports: list[ListPortInfo] | None = None) -> list[PortSeen]:
    """`ports` as pyserial lists them (default: list_ports.comports(), the host's ttys from sysfs)."""
    listed = list_ports.comports() if ports is None else ports
    return [PortSeen(p.device, f"{p.vid:04x}:{p.pid:04x}" if p.vid is not None else None, p.serial_number,
                     p.description) for p in sorted(listed, key=lambda p: p.device)]


def pair(probes: list[ProbeSeen], ports: list[PortSeen]) -> list[BoardSeen]:
    """One board per probe, with the port that has its serial number; then the ports no probe has."""
    by_serial = {port.serial_number: port for port in ports if port.serial_number}
    boards = [BoardSeen(probe, by_serial.get(probe.serial_number)) for probe in probes]
    paired = {board.port.device for board in boards if board.port}
    return boards + [BoardSeen(None, port) for port in ports if port.device not in paired]


def boards_block(boards: list[BoardSeen]) -> str:
    """The `boards:` block of labs.yaml for the boards with a probe (a port alone is not a board hil can flash)."""
    entries = []
    for number, board in enumerate((b for b in boards if b.probe is not None), start=1):
        entry = {"slot": f"board-{number}", "kind": board.kind or "KIND", "model": MODEL_PLACEHOLDER,
                 "probe": {"unique_id": board.probe.unique_id, "target": board.probe.target or "TARGET"}}
        if board.port is not None:  # by serial number where there is one: it survives a replug, a path may not
            entry["serial"] = ({"usb_serial": board.port.serial_number} if board.port.serial_number
                               else {"port": board.port.device})
        else:
            entry["serial"] = {"port": "PORT"}
        entries.append(entry)
    return yaml.safe_dump({"boards": entries}, sort_keys=False)


def report(boards: list[BoardSeen]) -> str:
    """What was found, one line per board or lone port, then the block to paste."""
    lines = []
    for board in boards:
        probe = (f"probe {board.probe.unique_id} ({board.probe.description}), target "
                 f"{board.probe.target or 'unknown'}" if board.probe else "no probe")
        port = (f"port {board.port.device} [{board.port.vid_pid or 'not USB'}, serial "
                f"{board.port.serial_number or 'none'}]" if board.port else "no serial port")
        kind = f"kind {board.kind}" if board.kind else "kind unknown: set it"
        lines.append(f"# {probe}; {port}; {kind}")
    if not boards:
        lines.append("# no probes and no serial ports found")
    return "\n".join(lines) + "\n" + boards_block(boards)
