"""Run a prebuilt firmware image on an emulated board against the host reference
(`hil firmware verify`): every output byte, every decision at every threshold, and the
cycle counts per exit path."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hil.model import decisions
from hil.hw.emulated.qemu import QemuBoard
from hil.hw.kinds import BOARD_KINDS
from hil.firmware.build import FirmwareManifest
from hil.hw.link import DeviceLink
from hil.model.card import load_model
from hil.model.reference import run_reference
from hil.model.testsets import TestSet, load_model_testsets

THRESHOLDS = ("0.5", "0.55", "0.6", "0.65", "0.7", "0.75", "0.8", "0.85", "0.9", "0.95", "1.0")


@dataclass
class SetVerification:
    testset: str
    samples: int
    differing_bytes: int = 0  # device int8 outputs that differ from the reference (full path)
    decision_mismatches: dict[str, int] = field(default_factory=dict)  # threshold -> samples
    exit_cycles: list[int] = field(default_factory=list)  # samples that exited, over all thresholds
    full_cycles: list[int] = field(default_factory=list)  # samples that ran both stages, at tau = 1


@dataclass
class ImageVerification:
    board: str
    model: str
    identity_ok: bool
    sets: list[SetVerification]

    @property
    def passed(self) -> bool:
        return self.identity_ok and all(
            s.differing_bytes == 0 and not any(s.decision_mismatches.values()) for s in self.sets)


def _verify_set(link: DeviceLink, card, testset: TestSet, limit: int | None, thresholds) -> SetVerification:
    inputs = testset.inputs[:limit]
    reference = run_reference(card, inputs)
    ensemble = decisions.ensemble(list(reference.heads), card.head_luts)
    expected_bytes = np.concatenate([reference.exit, *reference.heads], axis=1)
    result = SetVerification(testset.name, len(inputs))
    for threshold in thresholds:
        tau = decisions.threshold_q15(threshold)
        link.set_threshold(tau)
        spec = decisions.cascade(reference.exit, card.exit_lut, ensemble, tau)
        mismatches = 0
        for i, sample in enumerate(inputs):
            answer = link.infer(sample.tobytes())
            got = (answer.exited, answer.predicted, answer.confidence_q15)
            mismatches += got != (bool(spec.exited[i]), int(spec.predicted[i]), int(spec.confidence_q15[i]))
            if answer.exited:
                result.exit_cycles.append(answer.cycles)
                result.differing_bytes += int(np.sum(np.array(answer.logits[0]) != reference.exit[i]))
            elif tau >= decisions.Q15_ONE:
                result.full_cycles.append(answer.cycles)
                result.differing_bytes += int(np.sum(np.array(answer.logits).ravel() != expected_bytes[i]))
        result.decision_mismatches[threshold] = mismatches
    return result


def verify_image(manifest: FirmwareManifest, limit: int | None = None, thresholds=THRESHOLDS) -> ImageVerification:
    card = load_model(manifest.model)
    with QemuBoard(BOARD_KINDS[manifest.board], manifest.elf) as board:
        link = DeviceLink(board.link, name=f"{manifest.board}/{manifest.model}")
        info = link.hello()
        identity_ok = (info.firmware_sha256.hex(), info.model_sha256.hex()) == (manifest.image_sha256,
                                                                                manifest.model_sha256)
        sets = [_verify_set(link, card, t, limit, thresholds) for t in load_model_testsets(card)]
    return ImageVerification(manifest.board, manifest.model, identity_ok, sets)
