"""Array-level helpers (K.dot, KL.inv, ...) called from a kernel by address, not linked into it.

A kernel that calls a Numba function links that function's code into its own LLVM module and
generates its machine code again: every kernel calling `K.dot` pays again for np.dot's BLAS call
(about 0.4 s a layout), every kernel calling `KL.svd` for the whole SVD helper (1.7 s), although
the helper is compiled, and cached on disk, once. Called by address instead, the helper's code is
compiled once per process (or loaded from Numba's cache) and each kernel holds a call.

How: a compiled kernel module binds `K`/`KL` to `namespace(alias, __file__)`, the kernels module
whose array-level helpers (`BY_ADDRESS`) are intrinsics. Typing a call compiles (or loads) the
helper for the argument types, puts its address in the table `jitad_helper_table` (a symbol every
process registers when it imports this module) under a 64-bit key of (helper, argument types),
and appends the pair to the kernel's `.symbols` file beside its source in the disk cache. The
call looks its key up in the table (a few loads; a library call does O(n^2) work or more) and
calls the address with Numba's own calling convention (exceptions propagate as from a linked
call). A kernel loaded from Numba's disk cache is not typed again: importing its module registers
what its `.symbols` file lists. A key missing from the table (a `.symbols` file lost) is a
`RuntimeError` from the kernel, never a call to a wrong address.

Split-form drivers (plain Python) and tests call the kernels modules themselves (`kernels.dot`).
"""
import contextlib
import ctypes
import hashlib
import json
import os
import re
import threading
import types as pytypes

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.numpy_support import from_dtype

from jitad.backend import kernels, kernels_linalg

MODULES = {"K": kernels, "KL": kernels_linalg}


def _array_helpers(module):
    """The helpers a kernels module defines itself (not those it re-exports) and does not force
    inline: its array-level ones (K.dot, KL.inv, ...: called once per kernel call, not per element)."""
    from numba.core.registry import CPUDispatcher
    return tuple(name for name, value in vars(module).items()
                 if isinstance(value, CPUDispatcher) and not name.startswith("_")
                 and value.py_func.__module__ == module.__name__ and not value.targetoptions.get("forceinline"))


BY_ADDRESS = {alias: _array_helpers(module) for alias, module in MODULES.items()}

_SLOTS = 1 << 14        # table entries (key, address); a key lives in one of _PROBES slots from key % _SLOTS
_PROBES = 8
_TABLE = (ctypes.c_uint64 * (2 * _SLOTS))()
_TABLE_SYMBOL = "jitad_helper_table"
llvm.add_symbol(_TABLE_SYMBOL, ctypes.addressof(_TABLE))
_lock = threading.Lock()
_registered = {}        # key -> address
_namespaces = {}        # (alias, kernel file) -> module


# --- argument types as text and back (the .symbols file holds no pickles) -----------------------
_DTYPES = ("float64", "float32", "int64", "int32", "int16", "int8", "uint64", "uint32", "uint16", "uint8", "bool",
           "complex128", "complex64")


def describe(argtys):
    """A JSON-able description of Numba argument types, or None for a type it does not cover."""
    out = []
    for t in argtys:
        if isinstance(t, types.Array):
            out.append(["array", str(np.dtype(t.dtype.name if t.dtype != types.boolean else "bool")),
                        t.ndim, t.layout, bool(t.mutable)])
        elif isinstance(t, (types.Integer, types.Float, types.Boolean)):
            out.append(["scalar", str(t)])
        else:
            return None
    return out


def rebuild(description):
    """The Numba types `describe` described (ValueError for anything else)."""
    out = []
    for item in description:
        if item[0] == "array" and len(item) == 5:
            _, dtype, ndim, layout, mutable = item
            if dtype not in _DTYPES or layout not in ("C", "F", "A") or not isinstance(ndim, int) or not 0 <= ndim <= 32:
                raise ValueError(item)
            out.append(types.Array(from_dtype(np.dtype(dtype)), ndim, layout, readonly=not mutable))
        elif item[0] == "scalar" and len(item) == 2 and isinstance(getattr(types, item[1], None),
                                                                      (types.Integer, types.Float, types.Boolean)):
            out.append(getattr(types, item[1]))
        else:
            raise ValueError(item)
    return tuple(out)


def _key(alias, name, description):
    text = json.dumps([alias, name, description])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") | 1


# --- the table -------------------------------------------------------------------------------
def _register(alias, name, argtys, description):
    """Compile (or load) helper `alias.name` for `argtys` and put its address in the table.
    Returns its key, or None when the table has no free slot near it (the call is linked)."""
    key = _key(alias, name, description)
    if key in _registered:
        return key
    dispatcher = getattr(MODULES[alias], name)
    dispatcher.compile(argtys)
    result = dispatcher.overloads[argtys]
    address = result.library.get_pointer_to_function(result.fndesc.llvm_func_name)
    with _lock:
        for probe in range(_PROBES):
            slot = (key + probe) % _SLOTS
            if _TABLE[2 * slot] in (0, key):
                _TABLE[2 * slot + 1] = address  # the address before the key: a reader never sees a key without it
                _TABLE[2 * slot] = key
                _registered[key] = address
                return key
    return None


def _record(symbols_path, alias, name, description):
    """Append one line to a kernel's .symbols file (one write of a short line: atomic with O_APPEND)."""
    line = json.dumps([alias, name, description]) + "\n"
    fd = os.open(symbols_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def register_listed(symbols_path):
    """Register every helper a kernel's .symbols file lists (lines that do not parse are skipped:
    a kernel missing one raises RuntimeError at its call, it never calls a wrong address)."""
    try:
        with open(symbols_path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return
    for line in dict.fromkeys(lines):
        try:
            alias, name, description = json.loads(line)
            if name not in BY_ADDRESS.get(alias, ()):
                continue
            argtys = rebuild(description)
        except (ValueError, TypeError):
            continue
        _register(alias, name, argtys, description)


def _forget_machine_code(kernel_file):
    """Remove Numba's disk-cache index of the kernel at `kernel_file`, so Numba compiles it again
    (typing records its calls) instead of loading machine code whose calls no record lists. Where
    Numba's cache locators do not find it, the kernel raises its RuntimeError at its call."""
    from numba.core import caching
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)  # renamed in Numba 0.61
    stem = os.path.splitext(os.path.basename(kernel_file))[0]
    for locator_class in getattr(impl, "_locator_classes", ()):
        with contextlib.suppress(Exception):
            locator = locator_class.from_function(_forget_machine_code, kernel_file)
            if locator is None:
                continue
            folder = locator.get_cache_path()
            for name in os.listdir(folder):
                if name.startswith(stem + ".") and name.endswith(".nbi"):
                    os.unlink(os.path.join(folder, name))
            return


def _calls_by_address(kernel_file, alias):
    """Whether the kernel source at `kernel_file` calls a helper of `alias` by address."""
    try:
        with open(kernel_file, encoding="utf-8") as f:
            source = f.read()
    except OSError:
        return False
    return re.search(rf"\b{alias}\.({'|'.join(BY_ADDRESS[alias])})\(", source) is not None


# --- the intrinsics ----------------------------------------------------------------------------
def _lookup(builder, key):
    """The address the table holds for `key` (0 when none), probing its _PROBES slots."""
    i64 = ir.IntType(64)
    table_type = ir.ArrayType(i64, 2 * _SLOTS)
    module = builder.module
    table = module.globals.get(_TABLE_SYMBOL)
    if table is None:
        table = ir.GlobalVariable(module, table_type, _TABLE_SYMBOL)
        table.linkage = "external"
    address = ir.Constant(i64, 0)
    for probe in range(_PROBES):
        slot = (key + probe) % _SLOTS
        zero = ir.Constant(ir.IntType(32), 0)
        at_key = builder.gep(table, [zero, ir.Constant(ir.IntType(32), 2 * slot)])
        at_address = builder.gep(table, [zero, ir.Constant(ir.IntType(32), 2 * slot + 1)])
        found = builder.icmp_unsigned("==", builder.load_atomic(at_key, "acquire", 8), ir.Constant(i64, key))
        address = builder.select(found, builder.load(at_address), address)
    return address


def _intrinsic(alias, name, symbols_path):
    dispatcher = getattr(MODULES[alias], name)
    arity = dispatcher.py_func.__code__.co_argcount

    def typer(typingctx, *argtys):
        argtys = tuple(types.unliteral(t) for t in argtys)
        description = describe(argtys)
        key = None if description is None else _register(alias, name, argtys, description)
        if key is None:  # a type .symbols cannot describe, or no free slot: linked as any Numba call
            dispatcher.compile(argtys)
            return dispatcher.overloads[argtys].signature.return_type(*argtys), \
                _linked(dispatcher, argtys)
        if symbols_path is not None:
            _record(symbols_path, alias, name, description)
        restype = dispatcher.overloads[argtys].signature.return_type
        return restype(*argtys), _by_address(key, f"{alias}.{name}")

    params = ", ".join(f"a{k}" for k in range(arity))
    scope = {"typer": typer}
    exec(f"def {name}(typingctx, {params}):\n    return typer(typingctx, {params})\n", scope)
    return intrinsic(scope[name])


def _by_address(key, label):
    def codegen(context, builder, sig, args):
        address = _lookup(builder, key)
        with builder.if_then(cgutils.is_null(builder, address), likely=False):
            context.call_conv.return_user_exc(builder, RuntimeError, (
                f"jitad: helper {label} is not registered in this process (the kernel's .symbols file in jitad's "
                "disk cache is missing or damaged): delete the jitad cache folder (JITAD_CACHE_DIR) to rebuild it",))
        pointer = builder.inttoptr(address, context.call_conv.get_function_type(sig.return_type, sig.args).as_pointer())
        status, result = context.call_conv.call_function(builder, pointer, sig.return_type, sig.args, args)
        with cgutils.if_unlikely(builder, status.is_error):
            context.call_conv.return_status_propagate(builder, status)
        return result
    return codegen


def _linked(dispatcher, argtys):
    def codegen(context, builder, sig, args):
        result = dispatcher.overloads[argtys]
        context.add_linking_libs([result.library])
        return context.call_internal(builder, result.fndesc, sig, args)
    return codegen


def namespace(alias, kernel_file=None):
    """The kernels module `alias` ("K", "KL") as a compiled kernel sees it: its BY_ADDRESS helpers
    are called by address and recorded in `kernel_file`'s .symbols file, whose listed helpers
    this registers first (a kernel loaded from Numba's disk cache is not typed again)."""
    symbols_path = None if kernel_file is None else os.path.splitext(kernel_file)[0] + ".symbols"
    with _lock:
        module = _namespaces.get((alias, symbols_path))
        if module is not None:
            return module
    if symbols_path is not None:
        if os.path.exists(symbols_path):
            register_listed(symbols_path)
        elif _calls_by_address(kernel_file, alias):
            _forget_machine_code(kernel_file)
    source = MODULES[alias]
    module = pytypes.ModuleType(f"{source.__name__}.by_address")
    module.__dict__.update({k: v for k, v in vars(source).items() if not k.startswith("__")})
    for name in BY_ADDRESS[alias]:
        setattr(module, name, _intrinsic(alias, name, symbols_path))
    with _lock:
        return _namespaces.setdefault((alias, symbols_path), module)
