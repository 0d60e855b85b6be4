"""A PPK2's samples into spans (hil/hw/physical/ppk2.py: Spans): what the metering integrates."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.hw.physical.ppk2 import EDGE_SPAN, SPAN_SAMPLES, Spans


@st.composite
def streams(draw):
    """Sample indices with some lost, a power per sample, edges among the samples, and how they arrive."""
    count = draw(st.integers(2, 600))
    steps = draw(st.lists(st.sampled_from([1] * 30 + [2, 5]), min_size=count, max_size=count))
    indices = np.cumsum(steps).astype(np.int64) + draw(st.integers(0, 250))
    watts = np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=count, max_size=count)))
    edges = sorted(set(draw(st.lists(st.sampled_from(indices.tolist()), max_size=12))))
    cuts = sorted(set(draw(st.lists(st.integers(1, count - 1), max_size=8))))
    return indices, watts, edges, [0] + cuts + [count]


def spans_of(indices, watts, edges, chunks):
    spans, maker = [], Spans()
    for lo, hi in zip(chunks, chunks[1:]):
        chunk = indices[lo:hi]
        spans += maker.add(chunk, watts[lo:hi], [e for e in edges if chunk[0] <= e <= chunk[-1]])
    return spans


@settings(max_examples=200, deadline=None)
@given(streams())
def test_spans_keep_every_sample_once_and_cut_where_the_metering_needs(stream):
    indices, watts, edges, chunks = stream
    spans = spans_of(indices, watts, edges, chunks)
    assert spans == spans_of(indices, watts, edges, [0, len(indices)])  # however the samples arrive
    present = indices.tolist()
    after_gap = {b for a, b in zip(present, present[1:]) if b != a + 1}
    covered = [i for span in spans for i in range(span.start, span.end)]
    # The spans tile a prefix of the samples, none across a lost one, and keep their energy.
    assert covered == present[:len(covered)] and len(covered) < len(present)
    assert np.isclose(sum(s.power_w * (s.end - s.start) for s in spans), watts[:len(covered)].sum(), atol=1e-9)
    starts = {span.start for span in spans[1:]}
    for e in edges:
        # Nothing cuts an edge's span (the sample before it to EDGE_SPAN - 2 after it) but a lost sample.
        assert not {s for s in starts if e <= s <= e + EDGE_SPAN - 2} - after_gap, (e, spans)
    for span in spans:
        if not any(span.start < e + EDGE_SPAN - 1 and e - 1 < span.end for e in edges):
            # A quiet stretch: spans of at most SPAN_SAMPLES, on its boundaries.
            assert span.end - span.start <= SPAN_SAMPLES
            assert (span.end - 1) // SPAN_SAMPLES == span.start // SPAN_SAMPLES


def test_a_quiet_stream_is_spans_of_span_samples_and_an_edge_gets_its_own_span():
    indices = np.arange(0, 1000, dtype=np.int64)
    watts = np.where((indices >= 250) & (indices < 600), 2.0, 1.0)
    spans = Spans().add(indices, watts, [250, 600])
    bounds = [(s.start, s.end) for s in spans]
    assert bounds == [(0, 100), (100, 200), (200, 249), (249, 254), (254, 300), (300, 400), (400, 500),
                      (500, 599), (599, 604), (604, 700), (700, 800), (800, 900)]
    assert [s.power_w for s in spans][3:5] == [(1.0 + 4 * 2.0) / 5, 2.0] and spans[8].power_w == (2.0 + 4) / 5
