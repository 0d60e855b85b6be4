"""The kernel conformance suite: its file is what its generator makes, every vector through the firmware's own
conformance.c and kernels.c (built for the host) gives LiteRT's output, bad vectors are refused, and a run whose
board differs on one vector fails (exit 1) naming the kernel, the vector and the element, while every test-set
answer agrees. The same on QEMU with mutated kernels: tests/emulated/test_conformance.py."""

import hashlib

import pytest

from hil.errors import BadInput
from hil.firmware import conformance, conformance_gen
from hil.firmware.conformance import Kernel, read_suite
from hil.report import junit
from hil.run.conformance import first_difference
from hil.run.runner import execute
from hil.store.files import BoardConformance, read_run
from hil.testing.fake_board import Faults
from tests.support.labs import BOARDS, REGRESSION, write_lab
from tests.support.native import FIRMWARE_SRC, build_shared_library, conformance_runner

BAD_LENGTH, BAD_VALUE = 3, 6


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    """The firmware's conformance request handler and kernels, compiled by the host gcc with its flags."""
    lib = build_shared_library([FIRMWARE_SRC / n for n in ("conformance.c", "kernels.c", "protocol.c")],
                               tmp_path_factory.mktemp("conformance"))
    return conformance_runner(lib)


def test_the_committed_suite_is_what_the_generator_makes():
    vectors = conformance_gen.generate()
    assert conformance.suite_bytes(vectors) == conformance.SUITE_FILE.read_bytes()
    digest = hashlib.sha256(conformance.SUITE_FILE.read_bytes()).hexdigest()
    assert conformance.DIGEST_FILE.read_text().split()[0] == digest == read_suite().sha256
    assert conformance.SUITE_FILE.stat().st_size < 100 * 1024


def test_the_suite_covers_every_kernel_the_models_use_and_fits_a_frame():
    suite = read_suite()
    assert set(suite.by_kernel()) == set(Kernel)
    assert len({v.name for v in suite.vectors}) == len(suite.vectors)
    assert all(len(v.payload) <= conformance.MAX_PAYLOAD and len(v.expected) <= conformance.MAX_OUTPUT
               for v in suite.vectors)


def test_every_vector_through_the_firmware_kernels_gives_the_host_reference(device):
    for vector in read_suite().vectors:
        code, reply = device(vector.payload)
        assert code == 0, f"{vector.name}: refused with {code}"
        assert reply[0] == vector.kernel and reply[1:] == vector.expected, (
            f"{vector.name}: first difference {first_difference(reply[1:], vector.expected)}")


def test_malformed_vectors_are_refused(device):
    by_name = {v.name: v for v in read_suite().vectors}
    conv, fc = by_name["conv/per-channel"].payload, by_name["fc/dense"].payload
    pool = by_name["pool/same-partial"].payload
    assert device(b"")[0] == BAD_LENGTH
    assert device(b"\x09\x00")[0] == BAD_VALUE  # no kernel 9
    for payload in (conv, fc, pool):
        assert device(payload[:-1])[0] == BAD_LENGTH and device(payload + b"\x00")[0] == BAD_LENGTH
        assert device(payload[:5])[0] == BAD_LENGTH
    assert device(conv[:6] + bytes([33]) + conv[7:])[0] == BAD_VALUE  # out_c beyond the static buffers
    assert device(bytes([Kernel.RESHAPE]) + bytes(256))[0] == BAD_VALUE  # an output that no reply holds
    shift_at = 23 + 4  # the first channel's shift, after the header and its multiplier
    for shift in (31, -32):
        assert device(conv[:shift_at] + bytes([shift & 0xFF]) + conv[shift_at + 1:])[0] == BAD_VALUE
    mantissa_at = 13 + 6  # the top bytes of the first FC scale's mantissa
    assert device(fc[:mantissa_at] + b"\x40" + fc[mantissa_at + 1:])[0] == BAD_VALUE  # not a 53-bit significand


def test_a_changed_suite_file_is_bad_input(tmp_path):
    path, digest = tmp_path / "suite.json", tmp_path / "suite.sha256"
    vectors = list(read_suite().vectors[:2])
    conformance.write_suite(vectors, path, digest)
    assert read_suite(path, digest).vectors == tuple(vectors)
    path.write_bytes(path.read_bytes().replace(b'"expected":"', b'"expected":"00', 1))
    with pytest.raises(BadInput, match=r"suite\.json: sha256 .* differs from suite\.sha256's"):
        read_suite(path, digest)


def test_first_difference_names_the_element():
    assert first_difference(b"\x01\x02", b"\x01\x02") is None
    assert first_difference(b"\x01\xff", b"\x01\x02") == (1, -1, 2)
    assert first_difference(b"\x01", b"\x01\x80") == (1, None, -128)


class Quiet:
    def start(self, totals):
        pass

    def advance(self, slot, samples):
        pass


def test_a_conformance_mismatch_fails_the_run_though_every_test_set_answer_agrees(fake_rack, tmp_path):
    slot = "an386-digits"
    fake_rack.faults[slot] = Faults(wrong_conformance=frozenset({"conv/ties-quarter"}))
    outcome = execute(write_lab(tmp_path, samples=2), None, Quiet())
    assert outcome.verdict.exit_code == REGRESSION, outcome.verdict.reasons
    assert all(s.mismatched == 0 for s in outcome.summaries)  # the test sets never see it
    (line,) = outcome.verdict.reasons
    assert line.startswith(f"{slot}: kernel CONV_2D differs from the host reference (litert) on conformance vector "
                           "conv/ties-quarter") and "element 0 is -5 on the device, -6 expected" in line
    run = read_run(outcome.run_dir)
    suite = read_suite()
    assert run.conformance.suite_sha256 == suite.sha256 and run.conformance.vectors == len(suite.vectors)
    assert run.conformance.boards[slot] == BoardConformance(False, line)
    conforms = f"conforms on all {len(suite.vectors)} kernel conformance vectors"
    assert all(run.conformance.boards[other].conforms and run.conformance.boards[other].line.endswith(conforms)
               for other in BOARDS if other != slot)
    assert [f.stage for f in run.failures] == ["conformance"]
    # junit.xml: a failure, as a regression is, not an error of the board
    cases = junit.cases(run, outcome.summaries, outcome.failures, outcome.rules)
    assert [(c.outcome, c.message) for c in cases if c.name == "conformance"] == [("failure", line)]


def test_against_a_baseline_a_conformance_mismatch_fails_the_boards_numerics_rule(fake_rack, tmp_path):
    lab = write_lab(tmp_path, samples=2)
    first = execute(lab, None, Quiet())
    assert first.verdict.exit_code == 0, first.verdict.reasons
    slot = "an500-mnist1d"
    fake_rack.faults[slot] = Faults(wrong_conformance=frozenset({"fc/ties-half"}))
    outcome = execute(lab, None, Quiet(), baseline=str(first.run_dir))
    assert outcome.verdict.exit_code == REGRESSION
    numerics = {(o.slot, o.result.status) for o in outcome.rules if o.result.rule == "numerics"}
    assert numerics == {(s.slot, "fail" if s.slot == slot else "pass") for s in outcome.summaries}
    failed = [o.result.message for o in outcome.rules if o.result.rule == "numerics" and o.slot == slot]
    assert all("kernel FULLY_CONNECTED differs from the host reference (litert) on conformance vector fc/ties-half"
               in message and message.startswith("numerics: 0 of 2 device answers differ") for message in failed)
