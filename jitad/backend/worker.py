"""The background compile worker: kernels compile in another process while the caller
answers on the NumPy executor (`jitad.config.compile = "background"`).

The user's process (the *client* half of this module) starts one worker lazily, at its
first compile request, as a `python -c` that runs `main` with pipes (`subprocess.Popen`, not
`multiprocessing`: a spawned multiprocessing child re-imports the user's `__main__`,
which breaks scripts without a main guard and some notebook setups, and a daemonic
multiprocessing worker may not have children at all; a plain subprocess works from a
script, Jupyter, a spawn or fork child and a process that is itself a worker). A
thread of the client writes one JSON request per kernel (the source, the cache folder,
the argument types as `jitad.backend.cache.describe_args` data) and reads the reply; the caller's
thread only ever looks at `Job.done`.

The worker (`main`) rebuilds the Numba signature, takes the kernel's lock file, and
unless another process already did, calls `dispatcher.compile(signature)`, which writes
Numba's cache files beside the entry, then writes the ready marker. Its stdout is the
reply channel only (prints go to stderr). It exits when its stdin closes (the parent
exited or died), when its parent changes, or after `JITAD_WORKER_IDLE` seconds (300) of
idleness; every cache write is atomic, so it may die at any point. With
`JITAD_WORKER_LOG=<file>` it appends one line per job (and its stderr) to that file.

If the worker dies, the client restarts it (at most `MAX_RESTARTS` times per process) and
retries the kernel once; a kernel that cannot be compiled stays on the NumPy executor,
and the caller warns once.
"""
import atexit
import json
import os
import subprocess
import sys
import threading
import time

from jitad.backend.stats import STATS
import traceback

MAX_RESTARTS = 3   # worker deaths a process tolerates before it stops asking
MAX_ATTEMPTS = 2   # a kernel whose compile kills the worker twice stays on the NumPy tier


class Job:
    """One kernel to compile. `done` is set last, by the client's thread; the caller polls it."""
    __slots__ = ("request", "done", "status", "message", "attempts", "calls")

    def __init__(self, request):
        self.request = request
        self.done = False
        self.status = None
        self.message = ""
        self.attempts = 0
        self.calls = 0

    def finish(self, status, message=""):
        self.status, self.message = status, message
        self.done = True


NEVER = Job(None)  # the job of a tier that stays on the NumPy executor: never done


class Client:
    """The user-process side: a queue of jobs, one worker process, one thread talking to it."""

    def __init__(self):
        self.pid = os.getpid()
        self.cond = threading.Condition()
        self.pending = []
        self.current = None
        self.proc = None
        self.thread = None
        self.failures = 0
        self.unavailable = None  # why no worker can run, once that is known
        self.closing = False
        self.notes = []          # for the caller's thread to warn about

    def submit(self, request):
        job = Job(request)
        with self.cond:
            if self.unavailable:
                job.finish("unavailable", self.unavailable)
                return job
            self.pending.append(job)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="jitad-compile-client", daemon=True)
                self.thread.start()
            self.cond.notify()
        return job

    def warm(self):
        """Start the worker now, before any job (it imports Numba meanwhile): called when a first
        call starts tracing, so the worker is ready when the kernel is."""
        with self.cond:
            if self.unavailable or self.thread is not None:
                return
            self.thread = threading.Thread(target=self._run, name="jitad-compile-client", daemon=True)
            self.thread.start()

    # --- the client's thread ----------------------------------------------------------------
    def _next(self):
        with self.cond:
            while not self.pending and not self.closing:
                self.cond.wait()
            if self.closing:
                return None
            job = max(self.pending, key=lambda j: j.calls)  # the most called kernel first, then the oldest
            self.pending.remove(job)
            self.current = job
            return job

    def _run(self):
        try:
            self._ensure_worker()  # at once: the worker's imports overlap the caller's first call
        except Exception:  # noqa: BLE001 -- _serve starts it again and reports why it cannot
            pass
        while True:
            job = self._next()
            if job is None:
                return
            try:
                self._serve(job)
            except BaseException as exc:  # noqa: BLE001 -- a job never stays pending
                job.finish("failed", f"the compile worker client failed: {type(exc).__name__}: {exc}")
            finally:
                self.current = None

    def _serve(self, job):
        line = (json.dumps(job.request) + "\n").encode()
        idle_retry = True
        while True:
            proc = self._ensure_worker()
            if proc is None:
                job.finish("unavailable", self.unavailable)
                self._fail_pending()
                return
            job.attempts += 1
            reply = b""
            try:
                write_all(proc.stdin, line)
                reply = proc.stdout.readline()
            except (OSError, ValueError):
                pass
            if self.closing:
                return
            if reply:
                message = json.loads(reply)
                status = message.get("status", "failed")
                if status == "compiled":
                    STATS["background_compiles"] += 1
                elif status in ("cached", "loaded"):
                    STATS["background_cached"] += 1
                job.finish(status, message.get("error", ""))
                return
            code = _reap(proc)
            self.proc = None
            if code == 0 and idle_retry:  # it exited idle just as this request came: not a failure
                idle_retry = False
                job.attempts -= 1
                continue
            self.failures += 1
            note = (f"the background compile worker (pid {proc.pid}) exited with code {code} while compiling "
                    f"kernel jitad_{job.request['digest']}")
            if job.attempts >= MAX_ATTEMPTS:
                job.finish("failed", note + " (twice)")
                return
            self.notes.append(note + "; restarted it")

    def _ensure_worker(self):
        if self.proc is not None and self.proc.poll() is None:
            return self.proc
        if self.proc is not None:  # it exited while idle
            _reap(self.proc)
            self.proc = None
        while self.unavailable is None:
            if self.failures > MAX_RESTARTS:
                self.unavailable = f"the background compile worker died {self.failures} times"
                break
            try:
                proc = _start_worker()
            except Exception as exc:  # noqa: BLE001 -- no executable, no fork, no pipes ...
                self.unavailable = f"the background compile worker could not start ({type(exc).__name__}: {exc})"
                break
            hello = b""
            try:
                hello = proc.stdout.readline()
                greeting = json.loads(hello) if hello else {}
            except (OSError, ValueError):
                greeting = {}
            if greeting.get("hello"):
                self.proc = proc
                return proc
            _reap(proc)
            self.failures += 1
            reason = greeting.get("error", "").strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
            if self.failures >= 2:
                self.unavailable = f"the background compile worker could not start ({reason[0]})"
        return None

    def _fail_pending(self):
        with self.cond:
            jobs, self.pending = self.pending, []
        for job in jobs:
            job.finish("unavailable", self.unavailable)

    # --- shutdown and fork -------------------------------------------------------------------
    def shutdown(self):
        """At exit: close the worker's stdin (it exits at once, even mid-compile), then reap it."""
        if os.getpid() != self.pid:
            return
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        proc = self.proc
        if proc is None:
            return
        try:
            proc.stdin.close()
        except (OSError, ValueError):
            pass
        _reap(proc)

    def forget_in_child(self):
        """In a forked child: drop our copies of the parent's worker pipes (the parent's
        worker must still see EOF when the parent dies); jobs in flight are resubmitted."""
        proc = self.proc
        if proc is not None:
            for pipe in (proc.stdin, proc.stdout):
                try:
                    pipe.close()  # unbuffered: closes this process's descriptor, writes nothing
                except (OSError, ValueError):
                    pass
            proc.returncode = 0  # not our child: never wait for it
        for job in list(self.pending) + [self.current]:
            if job is not None and not job.done:
                job.finish("retry", "the compile worker belongs to the parent process")


def write_all(pipe, data):
    view = memoryview(data)
    while view:
        n = pipe.write(view)
        view = view[n:]


def _reap(proc):
    """Wait for a worker that exited (or kill it) and close our ends of its pipes."""
    try:
        code = proc.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        try:
            pipe.close()
        except (OSError, ValueError):
            pass
    return code


# `python -c` with the folder holding this jitad on the path: at the front when it is a
# checkout (so the worker imports this jitad, not an installed one), at the end when it is a
# site-packages folder (which must not shadow the standard library); the user's working
# directory is dropped from the path, so a local file cannot shadow a module either.
_BOOT = ("import sys; sys.path[:1] = [p for p in sys.path[:1] if p]; root, first = sys.argv[1], sys.argv[2] == '1'; "
         "sys.path.insert(0, root) if first else sys.path.append(root); "
         "from jitad.backend.compile_worker import main; sys.exit(main(sys.argv[3:]))")


def package_root():
    """The folder holding the `jitad` package this process imported (jitad/backend/worker.py is
    two levels below it)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _start_worker():
    if not sys.executable:
        raise RuntimeError("sys.executable is not set")
    import site
    root = package_root()
    sites = [*getattr(site, "getsitepackages", list)(), site.getusersitepackages()]
    first = os.path.realpath(root) not in {os.path.realpath(p) for p in sites}
    log = os.environ.get("JITAD_WORKER_LOG")
    stderr = open(log, "ab") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen([sys.executable, "-c", _BOOT, root, "1" if first else "0", str(os.getpid())],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, bufsize=0,
                                close_fds=True)
    finally:
        if log:
            stderr.close()


_client = None
_client_lock = threading.Lock()


def _the_client():
    global _client
    with _client_lock:
        if _client is None or _client.pid != os.getpid():
            _client = Client()
            atexit.register(_client.shutdown)
        return _client


def submit(request):
    """Queue a kernel for the background worker; returns its `Job`."""
    return _the_client().submit(request)


def warm():
    """Start this process's worker if it is not running (it starts lazily otherwise)."""
    _the_client().warm()


def wait_idle(timeout=None):
    """Wait until this process's worker has no job queued or running; True if it is idle
    (for tests: a job queued by one test must not finish during the next one)."""
    client = _client
    deadline = None if timeout is None else time.monotonic() + timeout
    while client is not None and (client.pending or client.current is not None):
        if deadline is not None and time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def take_notes():
    """Messages about worker deaths since the last call (for the caller to warn about)."""
    client = _client
    if client is None or not client.notes:
        return []
    notes, client.notes = client.notes, []
    return notes


def worker_pid():
    """The pid of this process's running worker, or None (for tests and diagnostics)."""
    client = _client
    proc = client.proc if client is not None else None
    return proc.pid if proc is not None and proc.poll() is None else None


def _after_fork_in_child():
    global _client, _client_lock
    _client_lock = threading.Lock()
    client, _client = _client, None
    if client is not None:
        client.forget_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
