"""profile.json (`hil run --profile`) and the profile tables, from a profile made by hand: no board."""

import pytest

from hil.errors import EXIT_BAD_INPUT, HilError
from hil.hw import protocol
from hil.hw.link import mismatch
from hil.report.profile import profile_table, stage_split_table
from hil.run.profile import PROFILE_JSON, DeviceProfile, LayerProfile, ProfileFile
from hil.run.rack import BoardFailure, FailureStage


def a_profile(slot="an386-digits", cycles=(100.0, 300.0, 600.0)) -> DeviceProfile:
    layers = (LayerProfile(0, "stage1", "CONV_2D", (1, 8, 8, 16), 50, cycles[0]),
              LayerProfile(1, "stage1", "RESHAPE", (1, 1024), 0, cycles[1]),
              LayerProfile(2, "stage2", "FULLY_CONNECTED", (1, 10), 200, cycles[2]))
    return DeviceProfile(slot, "mps2-an386", "qute-digits", "ab" * 32, "cd" * 32, "clean", "ef" * 32, 0, "01" * 32,
                         3, 25_000_000, layers)


def test_a_profile_file_reads_back_as_written_and_a_resume_replaces_its_boards(tmp_path):
    first = ProfileFile([a_profile("a"), a_profile("b")], [BoardFailure("c", FailureStage.STREAM, "c: gone")])
    first.write(tmp_path)
    assert ProfileFile.read(tmp_path) == first
    again = ProfileFile([a_profile("c", (1.0, 2.0, 3.0))], [BoardFailure("a", FailureStage.STREAM, "a: refused")])
    merged = first.merged(again)
    assert [p.slot for p in merged.profiles] == ["b", "c"] and [f.slot for f in merged.failures] == ["a"]


def test_a_broken_profile_file_is_bad_input_naming_it(tmp_path):
    assert ProfileFile.read(tmp_path) is None
    (tmp_path / PROFILE_JSON).write_text('{"profiles": [{"slot": "a"}], "failures": []}')
    with pytest.raises(HilError) as raised:
        ProfileFile.read(tmp_path)
    assert raised.value.exit_code == EXIT_BAD_INPUT and str(raised.value).startswith(str(tmp_path / PROFILE_JSON))


def test_the_table_has_a_row_per_layer_then_the_stage_totals():
    profile = a_profile()
    table = profile_table(profile)
    rows = [[cell.text for cell in row] for row in table.rows]
    assert rows[0] == ["0", "stage1", "CONV_2D", "1×8×8×16", "50", "100", "4.0", "2.00", "10.0 %"]
    assert rows[1][7] == "–"  # a reshape has no MACs
    assert rows[3][1:] == ["stage1", "total", "", "50", "400", "16.0", "8.00", "40.0 %"]
    assert rows[5][1:] == ["both", "total", "", "250", "1,000", "40.0", "4.00", "100.0 %"]
    assert "the mean of 3 runs of clean[0]" in table.caption
    split = stage_split_table(ProfileFile([profile], [BoardFailure("x", FailureStage.STREAM, "x: refused")]))
    assert [cell.text for cell in split.rows[0]] == ["an386-digits", "qute-digits", "400", "16.0", "600", "24.0",
                                                     "60.0 %"]
    assert split.rows[1][0].text == "x"


def test_a_profile_result_of_another_count_is_no_answer():
    request = protocol.Profile(5, bytes(64))
    assert mismatch(request, protocol.ProfileResult(5, (1, 2)), None) is None
    code, reason = mismatch(request, protocol.ProfileResult(4, (1, 2)), None)
    assert code == protocol.ErrorCode.BAD_VALUE and reason == "PROFILE_RESULT of 4 runs for 5"
