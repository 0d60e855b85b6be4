"""Boots a flashed STM32 image (Nucleo-F767ZI or -L432KC) on the emulated probe's Cortex-M core (unicorn,
hil.hw.emulated.cortex_m) with register models of the chip (tests/support/stm32_models.py, stm32f7_models.py,
stm32l4_models.py), and connects the board's link USART (USART3 on the F7, USART2 on the L4: the ST-LINK
virtual COM port) to a real pty, so that hil's own DeviceLink talks to the firmware.
Test support, not product: no QEMU has an STM32F7.

    with EmulatedProbe("F7", "stm32f767zi") as probe:
        flash_image(probe.address, "stm32f767zi", manifest.bin, manifest.image_sha256, base_address=0x0800_0000)
        with Stm32Harness.from_probe(probe, "nucleo-f767zi") as harness:
            link = DeviceLink(open_port(harness.link_path))

The core runs in a thread. WFI returns when an enabled interrupt is pending (PRIMASK or not, as ARMv7-M
B1.5.19 says); until then the thread sleeps until a byte arrives on the pty, and a WFI that no enabled
interrupt could end is a RuleViolation (the chip would sleep forever). Interrupts are taken between basic
blocks when PRIMASK is clear (the core's take_exception): SysTick, and the USARTs' RXNE (the L4 firmware
receives by interrupt, the F7's masks it and polls), one at a time, lowest number first (no priorities).
A RuleViolation raised by a model, or a fault of the core, stops the core; `failure` says which, and
`check()` raises it. Findings (writes the silicon ignores) are in `findings`.

Time: the models' clock is the number of instructions run (a block hook counts them; an access mid-block sees
the whole block counted). DWT CYCCNT and SysTick count instructions: no pipeline, cache or wait-state model,
so cycle counts here are not the board's.
"""

from __future__ import annotations

import os
import select
import threading
import tty
from collections import deque
from typing import Self

from unicorn import UC_HOOK_BLOCK

from hil.hw import protocol
from hil.hw.emulated.cortex_m import CortexM, StopReason
from hil.hw.emulated.probe import CHIPS, EmulatedProbe
from hil.hw.kinds import BOARD_KINDS
from tests.support.stm32_models import Board, Mapping, RuleViolation, Window
from tests.support.stm32f7_models import NucleoF767ZI
from tests.support.stm32l4_models import NucleoL432KC

BOARDS: dict[str, type[Board]] = {"nucleo-f767zi": NucleoF767ZI, "nucleo-l432kc": NucleoL432KC}
WFI = 0xBF30  # the 16-bit Thumb encoding
SYSTICK_EXCEPTION = 15
NEVER = 1 << 62
RUN_CHUNK = 5_000_000  # instructions per core.run call: the thread looks at `stop` at least this often


def thumb_instructions(code: bytes) -> int:
    """Instructions in a run of Thumb code: a halfword whose top five bits are 0b11101, 0b11110 or 0b11111
    starts a 32-bit instruction (ARMv7-M ARM A5.1)."""
    count = index = 0
    while index + 1 < len(code):
        index += 4 if code[index + 1] >> 3 in (0b11101, 0b11110, 0b11111) else 2
        count += 1
    return count


class _Guarded:
    """A model on the core's bus whose RuleViolation stops the core (a Python exception must not cross
    unicorn's callbacks); the first mapping of each model owns its reset."""

    def __init__(self, harness: Stm32Harness, mapping: Mapping, owns_reset: bool):
        self.harness = harness
        self.target = Window(mapping.model, mapping.shift) if mapping.shift else mapping.model
        self.model, self.owns_reset = mapping.model, owns_reset

    def read(self, offset: int, size: int) -> int:
        try:
            return self.target.read(offset, size)
        except RuleViolation as violation:
            self.harness.violated(violation)
            return 0

    def write(self, offset: int, size: int, value: int) -> None:
        try:
            self.target.write(offset, size, value)
        except RuleViolation as violation:
            self.harness.violated(violation)

    def reset(self) -> None:
        if self.owns_reset:
            self.model.reset()


class Stm32Harness:
    """One board: the core, the chip's models, the link on a pty; a context manager."""

    def __init__(self, kind: str, flash: bytes):
        if kind not in BOARDS:
            raise ValueError(f"board kind {kind!r}: the STM32 harness models {', '.join(BOARDS)}")
        self.kind = BOARD_KINDS[kind]
        chip = CHIPS[self.kind.pyocd_target]
        self.core = CortexM(chip.core, list(chip.memories), chip.boot_address)
        self.core.load(self.kind.flash.origin, flash)
        self.board = BOARDS[kind](lambda: bool(self.core.debug.demcr & 1 << 24))  # DEMCR.TRCENA
        seen: set[int] = set()
        for mapping in self.board.mappings():
            self.core.attach(mapping.base, mapping.size, _Guarded(self, mapping, id(mapping.model) not in seen))
            seen.add(id(mapping.model))
        self.board.active_exception = lambda: self.core.active_exceptions[-1] if self.core.active_exceptions else 0
        self._state = self.board.state
        self._time = self.board.state.time
        self.exceptions_taken: dict[int, int] = {}  # exception number -> times taken
        self._blocks: dict[int, int] = {}  # instructions per translated block, by address << 12 | size
        self._block_end = 0
        self.core.uc.hook_add(UC_HOOK_BLOCK, self._on_block)
        self.failure: Exception | None = None
        self.sleeps = 0  # WFIs that waited for the host
        self._stop = threading.Event()
        self._rx: deque[int] = deque()
        self._rx_ready = threading.Event()
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no line discipline: bytes pass as they are
        self.link_path = os.ttyname(self._slave)
        self.board.link.incoming = lambda: self._rx.popleft() if self._rx else None
        self.board.link.on_send = lambda byte: os.write(self.master, bytes((byte,)))
        self._threads: list[threading.Thread] = []

    @classmethod
    def from_probe(cls, probe: EmulatedProbe, kind: str) -> Self:
        """The board booting what pyOCD flashed through `probe`: its whole flash, as the probe's core holds it."""
        flash = BOARD_KINDS[kind].flash
        return cls(kind, probe.memory(flash.origin, flash.size))

    # --- the core ---
    def _on_block(self, uc, address: int, size: int, _: object) -> None:
        # The hottest Python here (once per basic block): one dict lookup, two stores.
        key = address << 12 | size
        count = self._blocks.get(key)
        if count is None:
            count = self._blocks[key] = thumb_instructions(bytes(uc.mem_read(address, size)))
        self._time.cycles += count
        self._block_end = address + size
        if self._time.cycles >= self._state.interrupt_check_at:
            self._interrupt(address)

    def _interrupt(self, address: int) -> None:
        """Takes the pending exception, if there is one and the core may take it, before the block at `address`.
        One at a time (no preemption): a pending one waits for the handler to return."""
        state, board, core = self._state, self.board, self.core
        systick = board.systick.pending()
        irq = board.nvic.next_pending()
        if not systick and irq is None:
            wrap = board.systick.next_wrap_at()
            state.interrupt_check_at = wrap if wrap is not None else NEVER
            return
        state.interrupt_check_at = 0  # look again at the next block (masked, in a handler, or another pending)
        if core.active_exceptions or core.interrupts_masked:
            return
        if systick:
            board.systick.clear_pending()
            number = SYSTICK_EXCEPTION
        else:
            board.nvic.taken(irq)
            number = 16 + irq
        self.exceptions_taken[number] = self.exceptions_taken.get(number, 0) + 1
        core.take_exception(number, address)

    def violated(self, violation: RuleViolation) -> None:
        if self.failure is None:
            self.failure = RuleViolation(f"{self.kind.name}: {violation}")
        self.core.request_stop()

    def _at_wfi(self) -> bool:
        pc = self.core.read_register(15)
        return pc == self._block_end and int.from_bytes(self.core.memory(pc - 2, 2), "little") == WFI

    def _pause(self) -> bool:
        return self.failure is not None or self._stop.is_set() or self._at_wfi()

    def run_until_wfi(self, max_instructions: int = 50_000_000) -> None:
        """Runs from where the core is to its next WFI (the firmware waiting for the host), in this thread."""
        while True:
            reason = self.core.run(max_instructions, until=self._pause, chunk=RUN_CHUNK)
            if reason is StopReason.FAULT and self.failure is None:
                self.failure = RuntimeError(f"{self.kind.name}: the core faulted ({self.core.fault}); "
                                            "the harness takes no exceptions, so this is where the firmware went wrong")
            if reason is StopReason.BUDGET and self.failure is None:
                self.failure = TimeoutError(f"{self.kind.name}: no WFI within {max_instructions} instructions "
                                            f"(pc {self.core.read_register(15):#010x}): a poll that never ends?")
            if self.failure is not None or self._stop.is_set() or self._at_wfi():
                self.check()
                return

    def check_wakeable(self) -> None:
        """At a WFI: some enabled interrupt must be able to end it."""
        systick = self.board.systick
        if not self.board.nvic.can_wake() and systick.next_wrap_at() is None and not systick.pending():
            raise RuleViolation(f"{self.kind.name}: WFI at pc {self.core.read_register(15) - 2:#010x} with no enabled "
                                "interrupt that could end it: the core would sleep forever (ARMv7-M ARM B1.5.19, "
                                "NVIC ISER); enable the link's interrupt in the USART and the NVIC first")

    def _sleep(self) -> None:
        """At a WFI: return at once if an enabled interrupt is pending, else wait for a byte from the host."""
        self.check_wakeable()
        nvic = self.board.nvic
        while not nvic.wakeable() and not self.board.systick.pending() and not self._stop.is_set():
            self.sleeps += 1
            self._rx_ready.wait(0.05)
            self._rx_ready.clear()
        self._state.interrupt_may_change()

    def _run(self) -> None:
        try:
            self.core.reset()
            while not self._stop.is_set():
                self.run_until_wfi(max_instructions=1 << 40)
                self._sleep()
        except Exception as error:  # noqa: BLE001 - reported by check(), from the test's thread
            if self.failure is None:
                self.failure = error

    def _pump(self) -> None:
        """Bytes from the host into the link's receive queue."""
        while not self._stop.is_set():
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:  # the host closed its end for a moment
                continue
            self._rx.extend(data)
            self._rx_ready.set()

    # --- lifecycle ---
    def boot(self) -> Self:
        """Reset the core and run it to its first WFI here (for clock-setup checks), without the threads."""
        self.core.reset()
        self.run_until_wfi()
        self.check_wakeable()
        return self

    def start(self) -> Self:
        self._threads = [threading.Thread(target=target, daemon=True, name=f"{self.kind.name} {name}")
                         for name, target in (("core", self._run), ("pty", self._pump))]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._rx_ready.set()
        self.core.request_stop()
        for thread in self._threads:
            thread.join(timeout=10)
        os.close(self.master)
        os.close(self._slave)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what the tests look at ---
    @property
    def findings(self) -> list:
        return self.board.state.findings

    def wire_edges(self) -> list[protocol.Edge]:
        """The EDGE frames the firmware sent on its wire USART so far (USART6 on the F7, USART1 on the L4)."""
        frames = protocol.FrameDecoder().feed(bytes(self.board.wire.sent))
        return [protocol.Edge.from_payload(frame.payload) for frame in frames
                if isinstance(frame, protocol.Frame) and frame.type == protocol.MessageType.EDGE]

    def check(self) -> None:
        """Raises what stopped the core, if anything did."""
        if self.failure is not None:
            raise self.failure
