"""Shared test setup: one temporary jitad disk cache for the whole session, so compiled
kernels are shared across tests (and across the subprocesses some tests start), and the
session's tests spread over two processes (see "Two test processes" below).
"""
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

_CACHE = tempfile.mkdtemp(prefix="jitad-test-cache-")
os.environ.setdefault("JITAD_CACHE_DIR", _CACHE)
# the tests compare compiled kernels with the reference: compile before the first result
# (tests/test_tiers.py opts into "background" where it tests the tiers)
os.environ.setdefault("JITAD_COMPILE", "eager")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import jitad  # noqa: E402


@pytest.fixture
def reference_backend():
    """Run a test on the NumPy reference executor (no Numba compilation)."""
    saved = jitad.config.backend
    jitad.config.backend = "reference"
    yield
    jitad.config.backend = saved


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# -- Two test processes -------------------------------------------------------------------------
# Most of the suite's time is Numba compiling kernels on one core. A session of more than one test
# file on a machine of two or more cores runs in two pytest processes: this one, and one started
# for the same items (`JITAD_TEST_SHARD=second`). Both go through the same list of files, heaviest
# first, and each runs the files it claims first (an O_EXCL file per test file in a folder of the
# session; test by test in the files of BY_TEST); they share the disk cache of kernels. When this
# process is done it waits for the second, whose reports (written as it goes) it replays through
# pytest's own hooks: the summary, the exit status, `--durations` and `--junitxml` cover every
# test. A second process that dies is a failure of the session, with the end of its log.
# `JITAD_TEST_SHARD=0` runs everything in this process.

# Seconds per file in a run on two processes (the order of the list only: heaviest first)
HEAVY = {"tests/test_compiled.py": 150, "tests/fuzz/test_fuzz.py": 110, "tests/test_numpy_extra.py": 60,
         "tests/test_loops.py": 60, "tests/test_linalg.py": 50, "tests/test_inplace.py": 40,
         "tests/test_memory.py": 35, "tests/test_cuda.py": 35, "tests/test_dask.py": 35,
         "tests/test_tiers.py": 30, "tests/test_float32.py": 30, "tests/test_regressions.py": 30}
_SHARD = {"role": os.environ.get("JITAD_TEST_SHARD"), "claims": None, "mine": {}, "proc": None, "log": None,
          "report": None}
if _SHARD["role"] == "second":
    if os.environ.get("JITAD_TEST_PARENT") == str(os.getppid()):
        _SHARD["claims"] = os.environ["JITAD_TEST_CLAIMS"]
    else:  # a pytest that a test of the second process started (test_cuda's): a session of its own
        _SHARD["role"] = None


def _file_of(item):
    return item.nodeid.split("::", 1)[0]


def _two_processes(config, items):
    role = _SHARD["role"]
    if role in ("0", "second") or config.option.collectonly or (os.cpu_count() or 1) < 2:
        return False
    return len({_file_of(item) for item in items}) > 1


def pytest_collection_modifyitems(session, config, items):
    """Both processes order the items the same way: the files by weight, heaviest first."""
    if _SHARD["role"] == "second":
        wanted = open(os.environ["JITAD_TEST_ITEMS"], encoding="utf-8").read().split("\n")
        by_id = {item.nodeid: item for item in items}
        missing = [nodeid for nodeid in wanted if nodeid not in by_id]
        if missing:
            raise pytest.UsageError("second test process: not collected here: %s" % missing[:5])
        items[:] = [by_id[nodeid] for nodeid in wanted]
        return
    if not _two_processes(config, items):
        return
    order = {}
    for item in items:
        order.setdefault(_file_of(item), len(order))
    items.sort(key=lambda item: (-HEAVY.get(_file_of(item), 0), order[_file_of(item)]))


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session):
    """Start the second process before the tests run; take in its reports after they ran."""
    if _SHARD["role"] is None and not session.config.option.collectonly and _two_processes(session.config, session.items):
        _start_second(session)
    try:
        result = yield
    except BaseException:
        if _SHARD["proc"] is not None:  # interrupted: never an orphan
            _SHARD["proc"].kill()
            _SHARD["proc"].wait()
        raise
    if _SHARD["proc"] is not None:
        _finish_second(session)
    return result


def _start_second(session):
    folder = tempfile.mkdtemp(prefix="jitad-test-shard-")
    items_file = os.path.join(folder, "items")
    with open(items_file, "w", encoding="utf-8") as f:
        f.write("\n".join(item.nodeid for item in session.items))
    _SHARD.update(claims=folder, log=os.path.join(folder, "log"), report=os.path.join(folder, "reports"))
    env = dict(os.environ, JITAD_TEST_SHARD="second", JITAD_TEST_CLAIMS=folder, JITAD_TEST_ITEMS=items_file,
               JITAD_TEST_REPORT=_SHARD["report"], JITAD_TEST_PARENT=str(os.getpid()))
    args = [a for a in session.config.invocation_params.args]
    with open(_SHARD["log"], "wb") as log:
        _SHARD["proc"] = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                                          env=env, cwd=str(session.config.invocation_params.dir),
                                          stdout=log, stderr=subprocess.STDOUT)


# files of independent tests (one compiled group each), claimed test by test: the two processes
# share them instead of one process taking a file as long as the rest of the suite's half
BY_TEST = ("tests/test_compiled.py", "tests/fuzz/test_fuzz.py")


def _claimed_here(item):
    """Whether this process runs `item`: it is the first of the two to reach its file (its test,
    in a file of BY_TEST)."""
    if _SHARD["claims"] is None:
        return True
    name = _file_of(item)
    if name in BY_TEST:  # groups split into kernels (linalg1, linalg2, ...) go to one process: they compile
        name = re.sub(r"\d+\]$", "]", item.nodeid)  # the same helpers and Numba overloads (~20 s for linalg)
    mine = _SHARD["mine"].get(name)
    if mine is None:
        marker = os.path.join(_SHARD["claims"], hashlib.sha1(name.encode()).hexdigest())
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            mine = True
        except FileExistsError:
            mine = False
        _SHARD["mine"][name] = mine
    return mine


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    """An item whose file the other process claimed is not run here (True: nothing else runs it).
    One this process runs is run as pytest's own protocol does, but with the next item this process
    runs (claimed now) as `nextitem`, so that fixtures and modules are torn down before it."""
    if _SHARD["claims"] is None:
        return None
    if not _claimed_here(item):
        return True
    from _pytest.runner import runtestprotocol
    items = item.session.items
    if "index" not in _SHARD:
        _SHARD["index"] = {id(it): k for k, it in enumerate(items)}
    following = None
    for later in items[_SHARD["index"][id(item)] + 1:]:
        if _claimed_here(later):
            following = later
            break
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    runtestprotocol(item, nextitem=following)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


def pytest_runtest_logreport(report):
    """In the second process: each report goes to the first, as pytest serialises it for xdist."""
    if _SHARD["role"] == "second":
        import json
        data = _CONFIG[0].hook.pytest_report_to_serializable(config=_CONFIG[0], report=report)
        with open(os.environ["JITAD_TEST_REPORT"], "a", encoding="utf-8") as f:
            f.write(json.dumps(data) + "\n")


_CONFIG = []


def pytest_configure(config):
    _CONFIG.append(config)
    if _SHARD["role"] == "second":
        _exit_with_parent(int(os.environ["JITAD_TEST_PARENT"]))


def _exit_with_parent(parent):
    """In the second process: leave when the session that started it is gone (killed, interrupted)."""
    import threading
    import time

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)
    threading.Thread(target=watch, daemon=True).start()


def _finish_second(session):
    """Wait for the second process and replay its reports here; a second process that ended
    without reporting a failure yet not cleanly fails the session, with the end of its log."""
    import json
    proc, config = _SHARD["proc"], session.config
    stopped = bool(session.shouldstop or session.shouldfail)
    if stopped:  # -x / --maxfail ended this process's run: the other's does not matter any more
        proc.kill()
    code = proc.wait()
    failed = replayed = 0
    if os.path.exists(_SHARD["report"]):
        with open(_SHARD["report"], encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    report = config.hook.pytest_report_from_serializable(config=config, data=json.loads(line))
                    if isinstance(report.longrepr, list):  # a skip's (path, line, reason): JSON made it a list
                        report.longrepr = tuple(report.longrepr)
                    config.hook.pytest_runtest_logreport(report=report)
                    replayed += 1
                    failed += report.failed
    if not stopped and (code not in (0, 1) or (code == 1 and not failed)):
        with open(_SHARD["log"], encoding="utf-8", errors="replace") as f:
            tail = f.read()[-4000:]
        session.testsfailed += 1
        config.get_terminal_writer().line(
            "\nthe second test process ended with status %s after %d reports (JITAD_TEST_SHARD=0 runs "
            "every test in this one); the end of its log:\n%s" % (code, replayed, tail), red=True)
    shutil.rmtree(_SHARD["claims"], ignore_errors=True)


def pytest_addoption(parser):
    """Options of the differential fuzzer in tests/fuzz (the default run is its fast profile)."""
    group = parser.getgroup("fuzz", "jitad differential fuzzer (tests/fuzz)")
    group.addoption("--fuzz-long", action="store_true", default=False,
                    help="run the long fuzz profile (thousands of programs)")
    group.addoption("--fuzz-count", type=int, default=None, help="number of programs for the reference fuzz test")
    group.addoption("--fuzz-seed", type=int, default=None, help="run seed of the fuzz tests (default: fixed)")
