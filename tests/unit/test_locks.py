"""Lock files and the rack's all-or-nothing reservation: real files, real flocks, real processes.

We run as root here, so a folder "of another user" is one chowned to an unused uid.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hil.hw import locks
from hil.hw.board import BoardError
from hil.hw.factory import lock_name
from hil.hw.children import child_env
from hil.lab.load import load_lab
from hil.hw.locks import Lock, LockError
from hil.hw.flasher import probe_lock
from hil.run.rack import reserve

from tests.support.labs import write_lab

OTHER_UID = 54321
PROBE = "remote:127.0.0.1:4444"
RACK = {f"slot-{i}": ("mps2-an386" if i % 2 else "mps2-an500", "qute-digits" if i % 2 else "qute-mnist1d")
        for i in range(6)}


@pytest.fixture
def folder(tmp_path, monkeypatch):
    path = tmp_path / "locks"
    monkeypatch.setenv("HIL_LOCK_DIR", str(path))
    return path


@pytest.fixture
def lab(tmp_path):
    return load_lab(write_lab(tmp_path, boards=RACK, samples=2))


@pytest.fixture
def bench_labs(tmp_path):
    """Two lab files sharing one bench of physical boards (probes, ptys as serial ports), listed in
    opposite orders: the locks are the probes', the same for both labs."""
    terminals = [os.openpty() for _ in RACK]
    data = yaml.safe_load(write_lab(tmp_path, boards=RACK, samples=2).read_text())
    for i, (board, (_controller, device)) in enumerate(zip(data["boards"], terminals)):
        del board["emulated"]
        board.update(probe={"unique_id": f"PROBE-{i}", "target": "cortex_m"}, serial={"port": os.ttyname(device)})
    paths = []
    for name, order in (("lab-a", 1), ("lab-b", -1)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**data, "lab": name, "boards": data["boards"][::order]}, sort_keys=False))
        paths.append(path)
    yield paths
    for fds in terminals:
        for fd in fds:
            os.close(fd)


def one_line(error: Exception) -> str:
    text = str(error)
    assert "\n" not in text and text
    return text


def take(name: str, holder: str = "test") -> Lock:
    lock = Lock(name)
    assert lock.try_acquire(holder) is None
    return lock


# --- planted files ---

def plant_symlink(folder: Path, name: str, victim: Path) -> Path:
    folder.mkdir(mode=0o700, exist_ok=True)
    link = Lock(name, folder).path
    link.symlink_to(victim)
    return link


@pytest.mark.parametrize("via", ["board", "flash"])
def test_a_planted_symlink_is_refused_and_its_target_is_untouched(folder, lab, tmp_path, via):
    victim = tmp_path / "root-owned-file"
    victim.write_text("precious\n")
    before = victim.stat()
    if via == "board":
        link = plant_symlink(folder, lock_name(lab.boards[0], lab.file), victim)
        with pytest.raises(LockError) as caught, reserve(lab, [b.slot for b in lab.boards]):
            pass
    else:
        link = plant_symlink(folder, "flash-" + PROBE, victim)
        with pytest.raises(LockError) as caught, probe_lock(PROBE, time.monotonic() + 1):
            pass
    assert one_line(caught.value).startswith(f"{link}: the lock file is a symbolic link; nothing was written")
    after = victim.stat()
    assert victim.read_text() == "precious\n"
    assert (after.st_mtime_ns, after.st_size, after.st_mode) == (before.st_mtime_ns, before.st_size, before.st_mode)
    assert link.is_symlink()  # left for whoever investigates
    assert sorted(p.name for p in folder.iterdir()) == [link.name], "a lock file was left behind"


@pytest.mark.parametrize("plant", ["hard link", "fifo", "folder"])
def test_a_lock_path_that_is_not_a_plain_file_of_its_own_is_refused(folder, tmp_path, plant):
    folder.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    path = Lock("probe-X", folder).path
    {"hard link": lambda: os.link(victim, path), "fifo": lambda: os.mkfifo(path),
     "folder": lambda: path.mkdir()}[plant]()
    with pytest.raises(LockError) as caught:
        Lock("probe-X").try_acquire("test")
    what = "has another hard link" if plant == "hard link" else "is not a regular file"
    assert one_line(caught.value).startswith(f"{path}: the lock file {what}; nothing was written")
    assert victim.read_text() == "precious\n"


# --- the folder ---

UNSAFE_FOLDERS = {  # how it was made: what the refusal says
    "another user's": (lambda p: (p.mkdir(mode=0o700), os.chown(p, OTHER_UID, OTHER_UID)),
                       f"belongs to uid {OTHER_UID}, not to you (uid 0); remove it"),
    "world-writable": (lambda p: (p.mkdir(), os.chmod(p, 0o777)), "is writable by every user; chmod 700 it"),
    "sticky world-writable": (lambda p: (p.mkdir(), os.chmod(p, 0o1777)), "is writable by every user"),
    "group-writable": (lambda p: (p.mkdir(), os.chmod(p, 0o770)), "is writable by its group; chmod 700 it"),
    "a symlink": (lambda p: (p.with_name("elsewhere").mkdir(mode=0o700), p.symlink_to(p.with_name("elsewhere"))),
                  "is a symbolic link; remove it"),
    "a file": (lambda p: p.write_text(""), "is not a folder; remove it"),
}


@pytest.mark.parametrize("kind", UNSAFE_FOLDERS)
def test_a_lock_folder_others_can_write_to_is_refused(folder, lab, kind):
    make, says = UNSAFE_FOLDERS[kind]
    make(folder)
    with pytest.raises(LockError) as caught, reserve(lab, [b.slot for b in lab.boards]):
        pass
    assert one_line(caught.value).startswith(f"{folder}: the lock folder {says}")
    assert not folder.is_dir() or not any(folder.iterdir()), "a lock file was made in an unsafe folder"


def test_the_default_lock_folder_is_private_to_the_user(tmp_path, monkeypatch):
    monkeypatch.delenv("HIL_LOCK_DIR", raising=False)
    monkeypatch.setattr(locks, "DEFAULT_PARENT", tmp_path)
    assert locks.lock_dir() == tmp_path / f"hil-locks-{os.geteuid()}"
    lock = take("probe-X")
    folder, file = lock.path.parent.stat(), lock.path.stat()
    assert (folder.st_uid, folder.st_mode & 0o7777) == (os.geteuid(), 0o700)
    assert file.st_mode & 0o777 == 0o600
    lock.release()
    # A setgid group folder is for HIL_LOCK_DIR only, never the per-user default.
    os.chmod(lock.path.parent, 0o2770)
    with pytest.raises(LockError, match="is writable by its group"):
        Lock("probe-X").try_acquire("test")


def test_a_group_folder_in_hil_lock_dir_is_shared_with_the_group(folder):
    folder.mkdir()
    os.chmod(folder, 0o2770)  # what docs/labs.md says to do: setgid, so every lock file is the folder's group's
    lock = take("probe-X")
    assert lock.path.stat().st_mode & 0o777 == 0o660  # the group's other users can take it after us
    lock.release()
    os.chmod(folder, 0o2777)  # the group's, not everyone's
    with pytest.raises(LockError, match="is writable by every user"):
        Lock("probe-X").try_acquire("test")


# --- stale files and races ---

HOLD_AND_WAIT = """
import sys, time
from hil.hw.locks import Lock
assert Lock(sys.argv[1]).try_acquire("pid 999999 (a run that was killed long ago)") is None
print("held", flush=True)
time.sleep(60)
"""


def test_a_stale_lock_file_is_taken_over_and_cleaned_up(folder):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_AND_WAIT, "probe-X"], stdout=subprocess.PIPE, text=True,
                              env=child_env())
    assert holder.stdout.readline() == "held\n"
    assert Lock("probe-X").try_acquire("test") == "pid 999999 (a run that was killed long ago)"
    holder.kill()  # SIGKILL: its lock file stays behind, unlocked
    holder.wait()
    path = Lock("probe-X").path
    assert path.read_text().startswith("pid 999999")
    lock = take("probe-X", "pid 1 (me)")
    assert path.read_text() == "pid 1 (me)"  # the stale holder is gone, not merely overwritten in part
    lock.release()
    assert not path.exists()


CONTEND = """
import os, sys
from hil.hw.locks import Lock
marker = sys.argv[1]
overlaps = 0
for _ in range(int(sys.argv[2])):
    lock = Lock("probe-X")
    while lock.try_acquire(f"pid {os.getpid()}") is not None:
        pass  # spin: as many takes as possible fall into another's release
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))  # one holder at a time, or this fails
        os.unlink(marker)
    except FileExistsError:
        overlaps += 1
    lock.release()
print(overlaps)
"""


def test_lock_files_come_and_go_without_two_holders_at_once(folder, tmp_path):
    # Every release unlinks its file while holding it; a taker that opened the file just before must notice
    # that it locked an unlinked file and take the new one, or two processes would hold "the" lock at once.
    takers = [subprocess.Popen([sys.executable, "-c", CONTEND, str(tmp_path / "inside"), "400"],
                               stdout=subprocess.PIPE, text=True, env=child_env()) for _ in range(3)]
    overlaps = [int(taker.communicate(timeout=120)[0]) for taker in takers]
    assert [taker.returncode for taker in takers] == [0, 0, 0]
    assert overlaps == [0, 0, 0], "two processes held one lock at once"
    assert not any(folder.iterdir()), "a lock file was left behind"


# --- the rack: all or nothing ---

def test_a_refused_rack_holds_nothing(folder, lab):
    names = sorted(lock_name(board, lab.file) for board in lab.boards)
    last = next(b.slot for b in lab.boards if lock_name(b, lab.file) == names[-1])
    other = take(names[-1], "pid 4242 (another run)")  # the board locked last, so all the others were taken first
    with pytest.raises(BoardError) as caught, reserve(lab, [b.slot for b in lab.boards]):
        pytest.fail("the rack was reserved with one of its boards in use")
    assert one_line(caught.value) == (f"{last}: board is in use by pid 4242 (another run) (lock {other.path}); "
                                      "wait for that run to end")
    assert sorted(p.name for p in folder.iterdir()) == [other.path.name], "the refused run kept some locks"
    for name in names[:-1]:
        take(name).release()
    other.release()


RACER = """
import os, sys
from hil.hw.board import BoardError
from hil.lab.load import load_lab
from hil.run.rack import reserve

lab = load_lab(sys.argv[1])
for command in sys.stdin:
    try:
        with reserve(lab, [b.slot for b in lab.boards]):
            print("won", flush=True)
            sys.stdin.readline()  # hold the rack until told
        print("released", flush=True)
    except BoardError as error:
        print(f"refused {error}", flush=True)
"""


def test_two_runs_racing_for_one_rack_one_gets_all_of_it(folder, bench_labs):
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(lab)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, env=child_env()) for lab in bench_labs]
    try:
        outcomes = []
        # At least 40 rounds, and on until each racer has won once (who wins a true race is up to the
        # scheduler: on a busy machine one side can win a long streak).
        for round_ in range(400):
            if round_ >= 40 and {tuple(a == "won" for a in answers) for answers in outcomes} == {(True, False),
                                                                                              (False, True)}:
                break
            starters = racers if round_ % 2 else racers[::-1]  # who is told first takes turns
            for racer in starters:  # both go at once
                racer.stdin.write("go\n")
            for racer in starters:
                racer.stdin.flush()
            answers = [racer.stdout.readline().strip() for racer in racers]
            outcomes.append(answers)
            winners = [racer for racer, answer in zip(racers, answers) if answer == "won"]
            assert len(winners) == 1, f"round {round_}: {answers}"
            (loser,) = [answer for answer in answers if answer != "won"]
            assert loser.startswith("refused slot-") and f"in use by pid {winners[0].pid} (slot-" in loser, loser
            winners[0].stdin.write("release\n")
            winners[0].stdin.flush()
            assert winners[0].stdout.readline() == "released\n"
    finally:
        for racer in racers:
            racer.stdin.close()
            racer.wait(timeout=30)
    assert not any(folder.iterdir()), "a lock file was left behind"
    assert {tuple(a == "won" for a in answers) for answers in outcomes} == {(True, False), (False, True)}, \
        "one racer always won: the race was not a race"



# --- locks that wait (hil run --wait) ---

HOLD_UNTIL_TOLD = """
import sys
from hil.hw.locks import Lock
lock = Lock(sys.argv[1])
assert lock.try_acquire(f"pid {__import__('os').getpid()} (the other run)") is None
print("held", flush=True)
sys.stdin.readline()
lock.release()
print("released", flush=True)
"""


@pytest.fixture
def other_run(folder, lab):
    """Another process holding the lock of the lab's last board, until its stdin gets a line."""
    name = sorted(lock_name(board, lab.file) for board in lab.boards)[-1]
    holder = subprocess.Popen([sys.executable, "-c", HOLD_UNTIL_TOLD, name], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=child_env())
    assert holder.stdout.readline() == "held\n"
    yield holder
    holder.kill()
    holder.wait()


def test_a_run_that_waits_says_once_who_holds_the_board_and_gets_the_rack_when_it_is_free(folder, lab, other_run):
    said = []

    def on_wait(message: str) -> None:  # told it waits: only now does the other run let go
        said.append(message)
        if len(said) == 1:
            other_run.stdin.write("go\n")
            other_run.stdin.flush()

    with reserve(lab, [b.slot for b in lab.boards], wait_s=30, on_wait=on_wait):
        assert other_run.stdout.readline() == "released\n"
        for board in lab.boards:  # every lock is ours now
            assert Lock(lock_name(board, lab.file)).try_acquire("test") == f"pid {os.getpid()} ({board.slot})"
    assert len(said) == 1, said
    assert f"board is in use by pid {other_run.pid} (the other run)" in said[0]
    assert "waiting for it, up to 30s more" in said[0]
    assert list(folder.iterdir()) == []


def test_a_run_that_waits_in_vain_is_refused_as_clearly_and_holds_nothing(folder, lab, other_run):
    said = []
    started = time.monotonic()
    with pytest.raises(BoardError) as caught, reserve(lab, [b.slot for b in lab.boards], wait_s=1,
                                                       on_wait=said.append):
        pytest.fail("the rack was reserved with one of its boards in use")
    assert time.monotonic() - started >= 1
    assert len(said) == 1
    message = one_line(caught.value)
    assert f"board is in use by pid {other_run.pid} (the other run) (lock {folder}/" in message
    assert message.endswith(") after waiting 1s; wait for that run to end or give a longer --wait")
    assert len(list(folder.iterdir())) == 1, "the refused run kept some locks"


def test_without_wait_a_busy_board_is_refused_at_once(folder, lab, other_run):
    started = time.monotonic()
    slots = [b.slot for b in lab.boards]
    with pytest.raises(BoardError, match=r"in use by .*; wait for that run to end$"), reserve(lab, slots):
        pytest.fail("reserved")
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("10m", 600), ("2h", 7200)])
def test_wait_durations(text, seconds):
    from hil.run.rack import format_duration, parse_duration

    assert parse_duration(text) == seconds
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["30", "m", "1.5h", "-1m", "10 m", "2d"])
def test_a_wait_that_is_not_a_duration_is_refused(text):
    from hil.run.rack import parse_duration

    with pytest.raises(ValueError, match="is not a duration; give a whole number and s, m or h"):
        parse_duration(text)
