"""The first diverging layer: where a device's answer to a sample starts to differ from LiteRT's.

For a sample whose device answer differs from the host reference, the board is asked (TRACE,
docs/protocol.md) for the CRC-32 of every layer's output on the full path, and those are held
against LiteRT's intermediate tensors of the same sample (reference kernels, every tensor kept);
the first layer whose digest differs is then fetched byte by byte, and its first differing element
named with both values. Stage 2 is fed stage 1's feature map, as the firmware feeds it; so each
layer is compared on the host's own inputs, and the first difference is where the device went wrong.
When every layer agrees, the difference is in the decisions or the ensemble (src/decisions.c).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hil.hw import protocol
from hil.hw.board import Board, BoardError
from hil.model.card import ModelCard
from hil.model.layers import STAGES, Layer, model_layers
from hil.model.litert import reference_interpreter
from hil.model.reference import ReferenceOutputs
from hil.run.rack import Rack, answered
from hil.run.reconcile import SampleCheck, check_samples
from hil.run.records import Record, read_records

TRACED_PER_BOARD = 3  # differing samples traced per board: the first few say where; more only cost time
FEATURE = "feature"  # stage 1's signature output that stage 2 takes (hil/model/reference.py)
# An image built before TRACE answers it with UNKNOWN_MESSAGE, which the retries do not mend.
FIX = "an image built before TRACE refuses it: reflash `hil firmware build`'s image"


@dataclass(frozen=True)
class Divergence:
    """The first element of the first layer where the device's output differs from LiteRT's."""

    layer: int  # as the firmware numbers it (hil/model/layers.py)
    stage: str
    op: str
    element: int  # flat index into the layer's int8 output
    coordinates: tuple[int, ...]  # the same element in the output's shape (NHWC for a feature map)
    device: int
    host: int

    def describe(self) -> str:
        where = ", ".join(map(str, self.coordinates))
        return (f"first diverging layer {self.layer} ({self.stage} {self.op}), element {self.element} [{where}]: "
                f"device {self.device}, host {self.host}")


@dataclass(frozen=True)
class TraceFinding:
    """What tracing one differing sample on its board found (run.json `layer_traces`)."""

    slot: str
    testset: str
    index: int
    layers: int  # layers compared
    divergence: Divergence | None  # None: every layer agrees (or the trace failed: `failure`)
    failure: str | None = None  # why the board could not be traced

    def line(self) -> str:
        """The verdict's line for it."""
        sample = f"{self.slot}/{self.testset}#{self.index}"
        if self.failure is not None:
            return f"{sample}: not traced: {self.failure}"
        if self.divergence is None:
            return (f"{sample}: every one of its {self.layers} layers agrees with LiteRT: the difference is in the "
                    "exit decision or the ensemble")
        return f"{sample}: {self.divergence.describe()}"


def host_layer_outputs(card: ModelCard, layers: list[Layer], sample: np.ndarray) -> list[np.ndarray]:
    """LiteRT's output of every layer for one sample, flat int8, in the firmware's order: each stage's
    .tflite run with reference kernels and every tensor kept, stage 2 fed stage 1's feature map."""
    outputs: list[np.ndarray] = []
    feed = np.asarray(sample, dtype=np.int8)
    for stage in STAGES:
        interpreter = reference_interpreter(card.stages[stage].path, preserve_all_tensors=True)
        runner = interpreter.get_signature_runner()
        name = card.stages[stage].inputs[0].name
        shape = runner.get_input_details()[name]["shape"]
        results = runner(**{name: np.ascontiguousarray(feed.reshape(shape), dtype=np.int8)})
        outputs += [interpreter.get_tensor(layer.output_tensor).astype(np.int8).reshape(-1)
                    for layer in layers if layer.stage == stage]
        if FEATURE in results:
            feed = results[FEATURE]
    return outputs


def digest(output: np.ndarray) -> int:
    """What the device sends for a layer: CRC-32/ISO-HDLC of its int8 bytes (zlib's, as the frames')."""
    return zlib.crc32(np.ascontiguousarray(output, dtype=np.int8).tobytes())


def first_differing_layer(host: list[np.ndarray], device_digests: tuple[int, ...]) -> int | None:
    """The first layer whose device digest is not the host output's, or None."""
    if len(device_digests) != len(host):
        raise ValueError(f"the device traced {len(device_digests)} layers, the model has {len(host)}")
    return next((i for i, (output, crc) in enumerate(zip(host, device_digests)) if digest(output) != crc), None)


def first_differing_element(layer: Layer, host: np.ndarray, device: np.ndarray) -> Divergence | None:
    """The first element of one layer's output where device and host differ, or None if none does."""
    host, device = np.asarray(host, dtype=np.int8).reshape(-1), np.asarray(device, dtype=np.int8).reshape(-1)
    if host.shape != device.shape:
        raise ValueError(f"layer {layer.index}: the device sent {device.size} bytes, the host has {host.size}")
    differing = np.flatnonzero(host != device)
    if differing.size == 0:
        return None
    element = int(differing[0])
    coordinates = tuple(int(c) for c in np.unravel_index(element, layer.output_shape))
    return Divergence(layer.index, layer.stage, layer.op, element, coordinates, int(device[element]),
                      int(host[element]))


def first_divergence(layers: list[Layer], host: list[np.ndarray], device: list[np.ndarray]) -> Divergence | None:
    """Every layer's output of both sides compared in order: the first difference, or None."""
    for layer, mine, theirs in zip(layers, host, device, strict=True):
        found = first_differing_element(layer, mine, theirs)
        if found is not None:
            return found
    return None


def device_layer_output(board: Board, sample: bytes, layer: Layer, retries: int) -> np.ndarray:
    """One layer's output as the device computes it, fetched TRACE_CHUNK bytes at a time (each request
    runs the sample again: the arena is reused, so the device keeps only the asked bytes)."""
    data = b""
    while len(data) < layer.output_bytes:
        reply, _ = answered(board, protocol.Trace(layer.index, len(data), sample), retries, fix=FIX)
        if reply.layer_bytes != layer.output_bytes:
            raise BoardError(f"{board.slot}: layer {layer.index}'s output is {reply.layer_bytes} bytes on the "
                             f"device, {layer.output_bytes} on the host: the firmware is not this model's")
        data += reply.data
    return np.frombuffer(data, dtype=np.int8)


def trace_sample(board: Board, card: ModelCard, layers: list[Layer], sample: np.ndarray, retries: int,
                 ) -> tuple[Divergence | None, int]:
    """The first divergence of one sample on one board (None: every layer agrees), and the layers compared."""
    host = host_layer_outputs(card, layers, sample)
    raw = np.asarray(sample, dtype=np.int8).tobytes()
    reply, _ = answered(board, protocol.Trace(protocol.TRACE_DIGESTS, 0, raw), retries, fix=FIX)
    try:
        differing = first_differing_layer(host, reply.digests)
    except ValueError as error:
        raise BoardError(f"{board.slot}: {error}: the firmware is not this model's") from None
    if differing is None:
        return None, len(layers)
    layer = layers[differing]
    found = first_differing_element(layer, host[differing], device_layer_output(board, raw, layer, retries))
    if found is None:  # a digest differs but not one byte: the device's CRC or transfer is broken
        raise BoardError(f"{board.slot}: layer {layer.index}'s digest differs but its bytes do not")
    return found, len(layers)


def trace_board(board: Board, card: ModelCard, mismatches: list[SampleCheck], inputs: dict[str, np.ndarray],
                retries: int, limit: int = TRACED_PER_BOARD) -> list[TraceFinding]:
    """The first `limit` of a board's differing samples traced; `inputs` are its test sets' by name. A board
    that cannot be traced gets a finding saying why, and no further attempt."""
    layers = model_layers(card)
    findings = []
    for check in mismatches[:limit]:
        record = check.record
        try:
            divergence, compared = trace_sample(board, card, layers, inputs[record.testset][record.index], retries)
        except BoardError as error:
            findings.append(TraceFinding(record.slot, record.testset, record.index, 0, None,
                                         str(error).removeprefix(f"{board.slot}: ")))
            break
        findings.append(TraceFinding(record.slot, record.testset, record.index, compared, divergence))
    return findings


def trace_rack(rack: Rack, run_dir: Path, references: dict[tuple[str, str], ReferenceOutputs],
               earlier: list[TraceFinding], limit: int = TRACED_PER_BOARD) -> list[TraceFinding]:
    """Every ready board's first differing samples, up to `limit` per board with those traced in an `earlier`
    session of the run, traced while the boards are still up; its journaled answers are what differ."""
    by_board: dict[str, list[Record]] = {}
    for record in read_records(run_dir):
        by_board.setdefault(record.slot, []).append(record)
    done = {(t.slot, t.testset, t.index) for t in earlier}
    findings: list[TraceFinding] = []
    for board in rack.ready:
        model = rack.lab.models[board.spec.model]
        mismatches: list[SampleCheck] = []
        for testset in model.testsets:
            mine = [r for r in by_board.get(board.slot, []) if r.testset == testset.name]
            mismatches += [c for c in check_samples(model.card, references[(board.spec.model, testset.name)], mine)
                           if not c.exact]
        left = limit - sum(slot == board.slot for slot, _, _ in done)
        todo = [c for c in mismatches if c.record.key not in done][:max(0, left)]
        if todo:
            findings += trace_board(board, model.card, todo, {t.name: t.inputs for t in model.testsets},
                                    rack.lab.run.retries, left)
    return findings
