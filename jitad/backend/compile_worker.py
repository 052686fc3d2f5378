"""The compile worker process: reads compile requests on stdin, compiles each kernel into the
disk cache with Numba, and answers on stdout (`jitad.backend.worker` starts it and talks to it).

    python -m jitad.backend.compile_worker <parent pid>
"""
import json
import os
import sys
import threading
import time
import traceback

from jitad.backend.worker import write_all

# --- the worker process ---------------------------------------------------------------------------
def _log(message):
    path = os.environ.get("JITAD_WORKER_LOG")
    if path:
        line = f"{time.strftime('%H:%M:%S')} worker {os.getpid()}: {message}\n".encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)  # one write with O_APPEND: lines of several workers never interleave
        finally:
            os.close(fd)


def _compile(request, modules):
    from jitad.backend import cache
    folder, digest, description = request["folder"], request["digest"], request["signature"]
    sighash = cache.signature_hash(description)
    with cache.kernel_lock(folder, digest):
        if cache.marker_valid(folder, digest, sighash):
            return "cached"  # another process compiled it while this one waited for the lock
        if cache.source_hash(request["source"]) != digest:
            raise ValueError(f"kernel jitad_{digest}: the source does not match its hash")
        path = cache.write_source(folder, digest, request["source"])
        dispatcher = modules.get(digest)
        if dispatcher is None:
            dispatcher = modules[digest] = cache.import_kernel(path, digest)
        hits = sum(dispatcher.stats.cache_hits.values())
        dispatcher.compile(tuple(cache.numba_type(d) for d in description))
        status = "loaded" if sum(dispatcher.stats.cache_hits.values()) > hits else "compiled"
        cache.write_marker(folder, digest, sighash)
    return status


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parent = int(argv[0]) if argv else os.getppid()
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the user's process; we follow it out
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # prints (Numba's, anyone's) go to stderr, never into the reply channel
    sys.stdout = sys.stderr

    def reply(message):
        write_all(replies, (json.dumps(message) + "\n").encode())

    import queue
    requests = queue.Queue()

    def read_requests():
        for line in sys.stdin.buffer:
            requests.put(line)
        os._exit(0)  # the parent closed the pipe or died: stop now, even mid-compile

    def watch_parent():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:  # reparented: the parent died (and the pipe is held elsewhere)
                os._exit(0)

    threading.Thread(target=read_requests, daemon=True).start()
    threading.Thread(target=watch_parent, daemon=True).start()
    try:
        import numba
        from jitad.backend import cache  # noqa: F401  (fails here, not mid-request, if it cannot)
    except BaseException:  # noqa: BLE001
        reply({"hello": None, "error": traceback.format_exc()})
        os._exit(1)
    reply({"hello": os.getpid(), "numba": numba.__version__})
    _log(f"started for process {parent}")
    idle = float(os.environ.get("JITAD_WORKER_IDLE", "300"))
    modules = {}
    while True:
        try:
            line = requests.get(timeout=idle)
        except queue.Empty:
            _log("idle, exiting")
            os._exit(0)  # not a normal exit: the reader thread holds stdin's lock
        request = json.loads(line)
        start = time.perf_counter()
        try:
            status, error = _compile(request, modules), ""
        except Exception:  # noqa: BLE001 -- the caller stays on the NumPy tier and says why
            status, error = "error", traceback.format_exc()
        seconds = time.perf_counter() - start
        _log(f"{status} jitad_{request['digest']} for {request['signature']!r} in {seconds:.2f} s"
             + (f"\n{error}" if error else ""))
        reply({"status": status, "seconds": seconds,
               "error": error.strip().splitlines()[-1] if error else ""})


if __name__ == "__main__":  # `python -m jitad.backend.compile_worker <parent pid>` works too
    sys.exit(main())
