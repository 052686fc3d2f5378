"""Compiled gradients on a Dask cluster (optional extra: `pip install "jitad[dask]"`).

    map_grad(fun, params_list, *args)   gradients of `fun` at many parameter sets (ensembles,
                                        sweeps, restarts of an optimiser, per-subject fits)
    grad_sum(fun, params, data)         the gradient of a loss that is a sum (or mean) over the
                                        chunks of a Dask array or a list of arrays

Both run on `client` (any `distributed.Client`) or, when it is None, on distributed's current
client, else on a `LocalCluster` this module starts on first use and reuses for the life of
the process (one worker process per core, one thread each; `local_client()` returns it).

A function travels to the workers pickled (by reference when its module is importable there,
by value otherwise, as cloudpickle does) together with the transform's options; each worker
unpickles it once per distinct function and keeps the transform, so its traces, compiled
kernels and fast paths serve every later task: the first task on a worker traces and loads
(or compiles) the kernel, later ones call it. Workers read kernels from the disk cache
`JITAD_CACHE_DIR`: `setup(client)` (done once per client by every call here) points workers on
this machine at this process's cache folder and makes them compile before their first result
(`compile="eager"`, see `setup`), so a kernel compiled here or by one worker is loaded by the
rest. On a cluster, `setup(client, cache_dir="/shared/jitad-cache")` names a folder on a
shared file system; otherwise each host compiles a kernel once (processes on one host share
their cache through a lock file per kernel).

A worker that dies mid-task is replaced and its tasks run again elsewhere (Dask's retries), so
results do not change; a function that cannot be pickled is a `SendError` naming what could not
be sent. `import jitad` does not import Dask; this module imports it at its first call.
"""
import atexit
import collections
import hashlib
import logging
import math
import operator
import os
import socket
import threading

import numpy as np

from jitad.errors import JitadError
from jitad.pytrees import tree_leaves, tree_map

__all__ = ["map_grad", "grad_sum", "setup", "cache_info", "local_client", "SendError"]

# values shared by a call's tasks larger than this go to the workers once (a future), not in the graph:
# distributed's Client.map keys a keyword argument of more than 1e5 bytes by its name alone, so two
# calls in flight would share the key 'params' (the scheduler then fails an assertion and hangs)
_SCATTER_BYTES = 1 << 16


class SendError(JitadError, TypeError):
    """A function or argument jitad.dask could not pickle to send to the workers."""

    def __init__(self, what, cause):
        super().__init__(
            f"jitad.dask cannot send {what} to the Dask workers: {cause}. Workers receive a function "
            "pickled (by reference when its module is importable on them, else by value with what it "
            "uses): make the value a module-level name the workers can import, pass it as an argument, "
            "or create it inside the function.")


def _distributed():
    try:
        import distributed
    except ImportError as error:  # pragma: no cover - the test suite skips without dask
        raise ImportError('jitad.dask needs Dask: pip install "dask[distributed]" '
                          '(or pip install "jitad[dask]")') from error
    return distributed


# --- the client: the one given, distributed's current one, or a LocalCluster of our own --------------
_local = {"cluster": None, "client": None}
_local_lock = threading.Lock()


def local_client():
    """The client of the LocalCluster jitad.dask starts on first use (one worker process per core,
    one thread each) and reuses until the process exits."""
    distributed = _distributed()
    with _local_lock:
        client = _local["client"]
        if client is None or client.status not in ("running", "connecting", "newly-created"):
            # silence_logs: a worker that loaded Numba may take more than the nanny's 4 s to exit at
            # close (Numba's teardown); the nanny then kills it, which is no news to the user
            cluster = distributed.LocalCluster(processes=True, threads_per_worker=1, dashboard_address=None,
                                               silence_logs=logging.ERROR)
            _local["cluster"] = cluster
            # not the default client: dask.compute elsewhere in the process keeps its own scheduler
            _local["client"] = client = distributed.Client(cluster, set_as_default=False)
            if not _local.get("atexit"):
                atexit.register(_close_local)  # before distributed's own exit hooks: workers stop cleanly
                _local["atexit"] = True
    return client


def _close_local():
    with _local_lock:
        client, cluster = _local["client"], _local["cluster"]
        _local["client"] = _local["cluster"] = None
    if client is not None:
        client.close()
        cluster.close()


def _client(client):
    if client is None:
        distributed = _distributed()
        try:
            client = distributed.default_client()
        except ValueError:  # no client in this process: use (or start) our own LocalCluster
            client = local_client()
    if client.id not in _set_up:
        setup(client)
    return client


# --- worker set-up: the disk cache and the compile mode -----------------------------------------------
_set_up = set()  # ids of the clients whose workers are set up


def __getattr__(name):
    """`WorkerSetup` is made on first use: it subclasses distributed's WorkerPlugin, and importing
    this module must not import Dask. Workers unpickle it by this name."""
    if name == "WorkerSetup":
        return _worker_setup_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _worker_setup_class():
    made = globals().get("WorkerSetup")
    if made is None:
        distributed = _distributed()

        class WorkerSetup(distributed.WorkerPlugin):
            """Points a worker at a jitad disk cache and sets its compile mode (see `setup`)."""
            name = "jitad"

            def __init__(self, cache_dir, host, compile):
                self.cache_dir, self.host, self.compile = cache_dir, host, compile

            def setup(self, worker):
                import jitad
                if self.cache_dir and (self.host is None or socket.gethostname() == self.host):
                    os.environ["JITAD_CACHE_DIR"] = self.cache_dir
                if self.compile:
                    jitad.config.compile = self.compile

        WorkerSetup.__module__, WorkerSetup.__qualname__ = __name__, "WorkerSetup"
        made = globals()["WorkerSetup"] = WorkerSetup
    return made


def setup(client, cache_dir=None, compile="eager"):
    """Set up the workers of `client` (those running now and any that join or restart later).

    cache_dir: the jitad disk cache the workers use. None: workers on this host use this
        process's (`$JITAD_CACHE_DIR`, else the user cache folder), so kernels compiled here or by
        one worker are loaded by the others; workers on other hosts keep theirs. On a cluster,
        give a folder on a shared file system so that every kernel is compiled once in all.
    compile: the workers' `jitad.config.compile`. "eager" (the default) compiles before a worker's
        first result: a task is a batch of calls, and with "background" each worker would start
        a compile process of its own and answer whole tasks on the NumPy executor meanwhile
        (measured in asv_benchmarks/bench_dask.py). None leaves the workers' setting alone.

    map_grad and grad_sum call `setup(client)` once per client; call it yourself first to choose.
    """
    from jitad.backend.cache import cache_dir as own_cache_dir
    if compile not in (None, "background", "eager", "off"):
        raise ValueError(f"compile must be 'background', 'eager', 'off' or None, got {compile!r}")
    host = None if cache_dir is not None else socket.gethostname()
    plugin = _worker_setup_class()(cache_dir or own_cache_dir(), host, compile)
    client.register_plugin(plugin, name="jitad")
    _set_up.add(client.id)


def cache_info(client=None):
    """`jitad.cache_info()` of each worker of `client`: {worker address: counters}."""
    import jitad
    return _client(client).run(jitad.cache_info)


# --- functions travel pickled; each worker unpickles one once -----------------------------------------
_loaded = collections.OrderedDict()  # on a worker: token -> transformed function (most recent last)
_loaded_lock = threading.Lock()
_LOADED_MAX = 32


def _ship(kind, fun, **options):
    """(token, payload) of a transform of `fun`: the pickled (kind, fun, options) and its hash."""
    import cloudpickle
    try:
        payload = cloudpickle.dumps((kind, fun, options))
    except Exception as error:
        raise SendError(_unpicklable_part(fun, error), f"{type(error).__name__}: {error}") from error
    return hashlib.sha256(payload).hexdigest(), payload


def _unpicklable_part(fun, error):
    """A name for what in `fun` failed to pickle: a closure variable, a global or a default."""
    import cloudpickle
    name = getattr(fun, "__qualname__", None) or repr(fun)
    code = getattr(fun, "__code__", None)
    if code is None:
        return f"`{name}`"
    candidates = [(v, c.cell_contents) for v, c in zip(code.co_freevars, fun.__closure__ or ()) if _filled(c)]
    candidates += [(g, fun.__globals__[g]) for g in code.co_names if g in fun.__globals__]
    candidates += [(f"default {k}", v) for k, v in enumerate(fun.__defaults__ or ())]
    for what, value in candidates:
        try:
            cloudpickle.dumps(value)
        except Exception:  # noqa: BLE001 -- only names the part that fails to pickle, for SendError
            return f"`{name}`: `{what}` (a {type(value).__name__}) it uses"
    return f"`{name}`"


def _filled(cell):
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _load(token, payload):
    """The transformed function shipped as (token, payload), unpickled once per worker."""
    with _loaded_lock:
        found = _loaded.get(token)
        if found is not None:
            _loaded.move_to_end(token)
            return found
    import cloudpickle

    import jitad
    kind, fun, options = cloudpickle.loads(payload)
    made = getattr(jitad, kind)(fun, **options)
    with _loaded_lock:
        found = _loaded.setdefault(token, made)
        while len(_loaded) > _LOADED_MAX:
            _loaded.popitem(last=False)
    return found


def _send(client, value):
    """`value` itself, or a future of it on every worker when it is large (sent once, not per task;
    every worker holds a copy, so one that dies loses nothing)."""
    from dask.sizeof import sizeof
    if sizeof(value) <= _SCATTER_BYTES:
        return value
    return client.scatter([value], broadcast=True, hash=False)[0]


# --- map_grad -----------------------------------------------------------------------------------------
def _grad_batch(batch, token, payload, args):
    transformed = _load(token, payload)
    return [transformed(params, *args) for params in batch]


def map_grad(fun, params_list, *args, client=None, value=False, batch_size=None, futures=False, **options):
    """Gradients of scalar `fun(params, *args)` at each of `params_list`, computed on Dask workers.

    Returns a list in the order of `params_list` of `jitad.grad(fun, **options)(params, *args)`
    (with `value=True`, of `jitad.value_and_grad(fun, **options)`'s `(value, grad)`); `options` are
    those of `jitad.grad` (argnums, has_aux, memory, ...). The parameter sets go in
    tasks of `batch_size` (default: about two tasks per worker thread); `args` are shared by all
    (large ones are sent to each worker once). `futures=True` returns one `distributed.Future`
    per parameter set instead, at once.

    >>> import numpy as np, jitad.dask                                 # doctest: +SKIP
    >>> loss = lambda w, X, y: np.mean((X @ w - y) ** 2)
    >>> grads = jitad.dask.map_grad(loss, [np.zeros(3), np.ones(3)], X, y)
    """
    client = _client(client)
    params_list = list(params_list)
    kind = "value_and_grad" if value else "grad"
    token, payload = _ship(kind, fun, **options)
    if batch_size is None:
        threads = max(1, sum(client.nthreads().values()))
        batch_size = max(1, math.ceil(len(params_list) / (2 * threads)))
    shared, payload = _send(client, tuple(args)), _send(client, payload)
    # one message to the scheduler for all the tasks
    batches = client.map(_grad_batch, [params_list[i:i + batch_size] for i in range(0, len(params_list), batch_size)],
                         token=token, payload=payload, args=shared, pure=False)
    if futures:
        return [client.submit(operator.getitem, batch, k, pure=False)
                for batch, i in zip(batches, range(0, len(params_list), batch_size))
                for k in range(min(batch_size, len(params_list) - i))]
    return [result for part in client.gather(batches) for result in part]


# --- grad_sum -----------------------------------------------------------------------------------------
def _rows(chunk):
    leaves = tree_leaves(chunk)
    if not leaves or np.ndim(leaves[0]) == 0:
        raise ValueError("grad_sum(reduce='mean') weighs each chunk by its rows: the chunk's first array "
                         "needs an axis 0")
    return np.shape(leaves[0])[0]


def _chunk_part(chunk, token, payload, mean, params):
    """(rows, value, gradient) of one chunk; with `mean`, value and gradient times the rows."""
    value_and_grad = _load(token, payload)
    value, grad = value_and_grad(params, *(chunk if isinstance(chunk, tuple) else (chunk,)))
    rows = _rows(chunk) if mean else 1
    if mean:
        value, grad = value * rows, tree_map(lambda g: g * rows, grad)
    return rows, value, grad


def _add_parts(parts):
    rows, value, grad = parts[0]
    for r, v, g in parts[1:]:
        rows, value, grad = rows + r, value + v, tree_map(operator.add, grad, g)
    return rows, value, grad


def _chunks(client, data):
    """The chunks of `data` as a list: values, or futures of a Dask array's blocks along axis 0 (a
    tuple of Dask arrays with the same chunks along axis 0 gives tuples of their blocks)."""
    try:
        import dask.array as da
    except ImportError:  # pragma: no cover
        da = None
    if da is not None and isinstance(data, da.Array):
        return _blocks(client, [data], tuple_chunks=False)
    if da is not None and isinstance(data, tuple) and data and all(isinstance(d, da.Array) for d in data):
        return _blocks(client, list(data), tuple_chunks=True)
    return list(data)


def _blocks(client, arrays, tuple_chunks):
    first = arrays[0].chunks[0]
    for a in arrays:
        if a.ndim == 0:
            raise ValueError("grad_sum: a Dask array of data needs an axis 0 to split along")
        if a.chunks[0] != first:
            raise ValueError(f"grad_sum: the Dask arrays are chunked differently along axis 0 ({first} "
                             f"and {a.chunks[0]}): rechunk them alike, e.g. y.rechunk({{0: X.chunks[0]}})")
    blocks = []
    for a in arrays:
        whole = a.rechunk({axis: -1 for axis in range(1, a.ndim)})  # blocks split along axis 0 only
        blocks.append(client.compute(list(whole.to_delayed().ravel())))
    return [tuple(parts) for parts in zip(*blocks)] if tuple_chunks else blocks[0]


def grad_sum(fun, params, data, client=None, reduce="sum", value=False, fan_in=8, **options):
    """The gradient of `sum over chunks of fun(params, chunk)`, one task per chunk on Dask workers,
    added up by a tree reduction.

    `data` is a list of chunks (arrays, or tuples of arrays: a tuple is spread over `fun`'s
    arguments after `params`, `fun(params, X_k, y_k)`; futures of them are fine), a Dask array
    (its blocks along axis 0) or a tuple of Dask arrays chunked alike along axis 0. With
    `reduce="mean"`, `fun` returns the mean over its chunk's rows (axis 0 of the chunk's first
    array) and the result is the mean over all rows (chunks weighted by their rows). Either way
    the result equals `jitad.grad(fun)(params, all of data)` to rounding. `value=True` returns
    `(value, grad)` (what `scipy.optimize.minimize(..., jac=True)` takes). `options` go to
    `jitad.value_and_grad` (memory, ...; the gradient is taken in `params`, without aux).

    Each call sends `params` with each task; a list of NumPy chunks is sent each call too, so for
    repeated calls (an optimiser) send it once with `client.scatter(chunks)` (or persist the Dask
    array) and pass that.

    >>> loss = lambda w, X, y: np.mean((X @ w - y) ** 2)                # doctest: +SKIP
    >>> v, g = jitad.dask.grad_sum(loss, w, [(X1, y1), (X2, y2)], reduce="mean", value=True)
    """
    if reduce not in ("sum", "mean"):
        raise ValueError(f"grad_sum: reduce must be 'sum' or 'mean', got {reduce!r}")
    if options.get("argnums", 0) != 0 or options.get("has_aux"):
        raise ValueError("grad_sum differentiates in `params` (argnums=0) and adds values: no argnums or has_aux")
    client = _client(client)
    token, payload = _ship("value_and_grad", fun, **options)
    chunks = _chunks(client, data)
    if not chunks:
        raise ValueError("grad_sum: no chunks of data")
    mean = reduce == "mean"
    sent, payload = _send(client, params), _send(client, payload)
    parts = client.map(_chunk_part, chunks, token=token, payload=payload, mean=mean, params=sent, pure=False)
    while len(parts) > 1:
        parts = client.map(_add_parts, [parts[i:i + fan_in] for i in range(0, len(parts), fan_in)], pure=False)
    rows, total, grad = parts[0].result()
    if mean:
        total, grad = total / rows, tree_map(lambda g: g / rows, grad)
    return (total, grad) if value else grad
