"""The conformance suite reaches every rounding and saturation branch of every kernel that a vector can reach, on
the host's portable kernels and on the Cortex-M4's DSP kernels the boards run (tests/support/kernel_coverage.py;
the table is docs/conformance.md's, printed by bench/conformance_coverage.py). A branch no vector takes fails here
unless kernel_coverage.UNREACHABLE says why none can: a new branch in kernels.c needs a vector or a reason."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace

import numpy as np
import pytest

from hil.firmware import conformance_gen
from hil.firmware.conformance import Kernel, read_suite
from hil.model.reference import Reference
from tests.support.kernel_coverage import Build, measure

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None and not os.environ.get("CI"),
                                reason="arm-none-eabi-gcc not installed (CI installs it)")
CASES = [(build, Reference.LITERT, tuple(Kernel)) for build in Build] + [
    (build, Reference.TFLM, (Kernel.FULLY_CONNECTED,)) for build in Build]  # TFLM's rounding changes the FC only


@pytest.mark.parametrize("build, rounding, kernels", CASES, ids=lambda v: getattr(v, "name", None))
def test_every_branch_a_vector_can_reach_is_reached(tmp_path, build, rounding, kernels):
    results = measure(build, rounding, tmp_path, kernels=kernels)
    assert [c.kernel for c in results] == list(kernels)
    for coverage in results:
        assert coverage.branches.exist > 0 and coverage.vectors > 0
        assert not coverage.unexplained, (coverage.kernel.name, coverage.unexplained)
        # Every outcome left is on a line listed as missed (and so explained).
        assert (coverage.branches.taken < coverage.branches.exist) == bool(coverage.missed), coverage


def test_the_dsp_kernels_functions_come_from_gccs_call_graph_and_their_ssat_is_watched(tmp_path):
    by_kernel = {c.kernel: c for c in measure(Build.CORTEX_M4, Reference.LITERT, tmp_path)}
    conv, depthwise, pool = by_kernel[Kernel.CONV_2D], by_kernel[Kernel.DEPTHWISE_CONV_2D], by_kernel[Kernel.AVERAGE_POOL_2D]
    assert {"dsp_conv2d", "im2col", "conv_rescale", "conv_outputs", "dot_2x2", "dot_1x1"} <= set(conv.functions)
    assert "portable_conv2d" not in conv.functions  # the fallback no vector can take (FALLBACKS)
    # Depthwise falls back for depth multipliers, dilation and channels not a multiple of 4, all of which vectors reach.
    assert {"dsp_depthwise_conv2d", "depthwise_pixel", "portable_depthwise_conv2d"} <= set(depthwise.functions)
    assert {"dsp_avg_pool2d", "pool_output", "taps_inside"} <= set(pool.functions)
    # The one SSAT (conv_outputs, shared by both convolutions) saturates below and above and passes values inside.
    assert (conv.saturations.exist, conv.saturations.taken) == (3, 3)
    assert (depthwise.saturations.exist, depthwise.saturations.taken) == (3, 3)
    assert pool.saturations.exist == 0


def test_the_suite_without_its_dsp_path_vectors_leaves_the_dsp_kernels_unreached(tmp_path):
    """The measurement can fail: the suite as it was before the DSP path's vectors (which it found missing) leaves
    the DSP depthwise, the 4-lane pool and im2col's whole groups unreached, and the depthwise SSAT unwatched."""
    added = {case.name for case in conformance_gen.dsp_path_cases(np.random.default_rng(0))}
    suite = read_suite()
    reduced = replace(suite, vectors=tuple(v for v in suite.vectors if v.name not in added))
    assert len(reduced.vectors) == len(suite.vectors) - len(added) > 0
    by_kernel = {c.kernel: c for c in measure(Build.CORTEX_M4, Reference.LITERT, tmp_path, reduced)}
    unreached = {kernel: {m.function for m in c.unexplained} for kernel, c in by_kernel.items()}
    assert {"dsp_depthwise_conv2d", "depthwise_pixel", "conv_outputs"} <= unreached[Kernel.DEPTHWISE_CONV_2D]
    assert "dsp_avg_pool2d" in unreached[Kernel.AVERAGE_POOL_2D]
    assert "im2col" in unreached[Kernel.CONV_2D]
    assert by_kernel[Kernel.DEPTHWISE_CONV_2D].saturations.taken == 0
    # The host's portable kernels never see the difference: those vectors are for the DSP path.
    host = measure(Build.HOST, Reference.LITERT, tmp_path / "host", reduced)
    assert all(not c.unexplained for c in host)
