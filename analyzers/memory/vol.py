"""The one adapter around Volatility 3, used as a library: plugin name and image in, typed rows out.

Volatility's own setup (cache folder made at import, symbol search path, offline flag, plugin import,
automagic, TreeGrid visiting, absent-value sentinels) stays in this module. Callers see::

    for row in run_vol3("host.raw", "windows.pslist.PsList", symbols=["/cases/symbols"]):
        row["PID"], row["ImageFileName"], row["CreateTime"], row["TreeDepth"]

Always offline: ``constants.OFFLINE`` is set before anything runs, the symbol search path holds only the
folders the user named plus Volatility's bundled structure files, and a private scratch folder comes first so
that Volatility's "download the PDB" fallback can only ever create an empty folder there (it would otherwise
pick the first writable symbol folder, site-packages included). A missing kernel symbol table raises
:class:`MissingSymbols` naming the kernel's PDB file, GUID and age, found without symbols by
``PDBUtility.pdbname_scan`` over the image file.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import io
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzers.memory import settings

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
KERNEL_PDB_NAMES = ("ntkrnlmp.pdb", "ntoskrnl.pdb", "ntkrnlpa.pdb", "ntkrpamp.pdb")

# the column kinds of a table (from the TreeGrid's declared column types)
KIND_INT, KIND_HEX, KIND_STR, KIND_BOOL, KIND_FLOAT, KIND_TIME, KIND_BYTES = (
    "int",
    "hex",
    "str",
    "bool",
    "float",
    "datetime",
    "bytes",
)
DEPTH_COLUMN = "TreeDepth"  # as Volatility's CSV renderer names it; 0 for top-level rows


# -- errors ------------------------------------------------------------------------------------------
class VolatilityError(Exception):
    """Volatility could not run a plugin; ``str(exc)`` is meant for the analyst."""

    kind = "error"
    layer_cache: dict[str, Any] | None = None  # what the layer cache did before the error (LayerCache)

    def as_dict(self) -> dict[str, Any]:
        """A picklable description (the plugin runs in a child process)."""
        return {"kind": self.kind, "message": str(self)}


class VolatilityUnavailable(VolatilityError):
    """volatility3 is not installed or failed to import."""

    kind = "unavailable"


class UnknownPlugin(VolatilityError):
    """No plugin by that name."""

    kind = "unknown_plugin"


class Unsatisfied(VolatilityError):
    """The plugin's requirements could not be met (layers, symbols, options)."""

    kind = "unsatisfied"

    def __init__(self, message: str, requirements: Sequence[str] = (), errors: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.requirements = list(requirements)
        self.errors = list(errors)

    def as_dict(self) -> dict[str, Any]:
        return super().as_dict() | {"requirements": self.requirements, "errors": self.errors}


@dataclass(frozen=True)
class KernelPdb:
    """The identity of a Windows kernel as its debug directory names it."""

    pdb_name: str
    guid: str
    age: int
    offset: int | None = None  # where the RSDS record is in the image file

    @property
    def isf_relpath(self) -> str:
        """Where Volatility expects the symbol table below a symbol folder."""
        return f"windows/{self.pdb_name}/{self.guid}-{self.age}.json.xz"

    @property
    def download_url(self) -> str:
        """The Microsoft symbol server URL of the PDB (to fetch on a connected machine)."""
        stem = self.pdb_name
        return f"https://msdl.microsoft.com/download/symbols/{stem}/{self.guid}{self.age}/{stem}"


class MissingSymbols(Unsatisfied):
    """A Windows kernel was found but no symbol table for it is in the named symbol folders."""

    kind = "missing_symbols"

    def __init__(self, pdb: KernelPdb, searched: Sequence[Path | str], errors: Sequence[str] = ()) -> None:
        self.pdb = pdb
        self.searched = [str(p) for p in searched]
        super().__init__(missing_symbols_message(pdb, self.searched), ["kernel.symbol_table_name"], errors)

    def as_dict(self) -> dict[str, Any]:
        return super().as_dict() | {
            "pdb_name": self.pdb.pdb_name,
            "guid": self.pdb.guid,
            "age": self.pdb.age,
            "searched": self.searched,
        }


class NoWindowsKernel(Unsatisfied):
    """No Windows kernel PDB signature in the image: not a Windows memory image, or not in a form Volatility reads."""

    kind = "no_kernel"


def missing_symbols_message(pdb: KernelPdb, searched: Sequence[str]) -> str:
    """The analyst-facing explanation of a missing kernel symbol table and how to supply it offline."""
    where = ", ".join(searched) if searched else "none given"
    return (
        f"no Volatility symbol table for this Windows kernel: {pdb.pdb_name} GUID {pdb.guid} age {pdb.age}. "
        f"Supply it offline as {pdb.isf_relpath} (or Volatility's windows.zip symbol pack, or a "
        f"JPCERTCC/Windows-Symbol-Tables checkout) in a folder named by --symbols DIR, the TRIAGE_SYMBOLS "
        f"environment variable or 'symbols' in {settings.config_file()}. To make the file on a connected machine: "
        f"python volatility3/framework/symbols/windows/pdbconv.py -p {pdb.pdb_name} -g {pdb.guid}{pdb.age} "
        f"(PDB at {pdb.download_url}). Symbol folders searched: {where}."
    )


def error_from_dict(d: dict[str, Any]) -> VolatilityError:
    """Rebuild an error sent from a child process by :meth:`VolatilityError.as_dict`."""
    kind = d.get("kind")
    if kind == "missing_symbols":
        pdb = KernelPdb(d["pdb_name"], d["guid"], int(d["age"]))
        return MissingSymbols(pdb, d.get("searched", []), d.get("errors", []))
    if kind in ("unsatisfied", "no_kernel"):
        cls = NoWindowsKernel if kind == "no_kernel" else Unsatisfied
        return cls(d.get("message", ""), d.get("requirements", []), d.get("errors", []))
    cls2 = {"unavailable": VolatilityUnavailable, "unknown_plugin": UnknownPlugin}.get(str(kind), VolatilityError)
    return cls2(d.get("message", ""))


# -- process-wide setup --------------------------------------------------------------------------------
@dataclass
class _State:
    cache: Path | None = None
    symbol_dirs: tuple[Path, ...] = ()
    search_path: list[str] = field(default_factory=list)
    import_failures: list[str] = field(default_factory=list)
    plugins_imported: bool = False
    indexed: tuple[str, ...] = ()  # the symbol search path update_symbol_cache indexed (children inherit it)


_STATE = _State()


def _import_volatility(vol_cache: Path) -> None:
    """Import volatility3 with its import-time cache folder pointed at ours (it calls makedirs on it)."""
    if "volatility3.framework.constants" not in sys.modules:
        old = os.environ.get("XDG_CACHE_HOME")
        os.environ["XDG_CACHE_HOME"] = str(vol_cache.parent)  # constants: CACHE_PATH = $XDG_CACHE_HOME/volatility3
        try:
            import volatility3.framework  # noqa: F401  (the import itself is the point)
        except ImportError as exc:
            raise VolatilityUnavailable(f"volatility3 is not installed or failed to import: {exc}") from exc
        finally:
            if old is None:
                os.environ.pop("XDG_CACHE_HOME", None)
            else:
                os.environ["XDG_CACHE_HOME"] = old


def _link_file(path: Path, links: Path) -> Path:
    """A folder holding only a link to ``path``: a zip pack or ISF file named directly becomes a search folder."""
    d = links / hashlib.sha256(str(path).encode()).hexdigest()[:16]
    d.mkdir(parents=True, exist_ok=True)
    target = d / path.name
    if not (target.is_symlink() and os.readlink(target) == str(path)):
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        target.symlink_to(path)
    return d


def configure(symbol_dirs: Sequence[Path | str] = (), cache_dir: Path | str | None = None) -> None:
    """Import and configure volatility3 for offline use in this process (idempotent; cheap to repeat).

    ``cache_dir`` is our private cache folder; Volatility's identifier cache goes in ``<cache_dir>/volatility3``.
    """
    cache = Path(cache_dir).resolve() if cache_dir else settings.cache_dir()
    vol_cache = cache / "volatility3"
    scratch = vol_cache / "scratch-symbols"
    links = vol_cache / "symbol-files"
    for d in (vol_cache, scratch, links):
        d.mkdir(parents=True, exist_ok=True)
    _import_volatility(vol_cache)
    import volatility3
    import volatility3.symbols
    from volatility3 import framework
    from volatility3.framework import constants

    constants.OFFLINE = True
    if hasattr(constants, "REMOTE_ISF_URL"):
        constants.REMOTE_ISF_URL = None
    constants.CACHE_PATH = str(vol_cache)
    logging.getLogger("volatility3").setLevel(logging.WARNING)  # its INFO/DEBUG would drown our log

    search: list[str] = []
    for raw in symbol_dirs:
        p = Path(raw).expanduser().resolve()
        if p.is_dir():
            search.append(str(p))
        elif p.is_file():
            search.append(str(_link_file(p, links)))
        else:
            log.warning("symbol location %s does not exist", p)
    bundled = [
        str(Path(volatility3.__file__).parent / "symbols"),
        str(Path(framework.__file__).parent / "symbols"),
    ]
    # the scratch folder first: the PDB-download fallback writes into the first writable folder
    volatility3.symbols.__path__ = [str(scratch), *search, *bundled]
    _STATE.cache, _STATE.symbol_dirs, _STATE.search_path = vol_cache, tuple(Path(s) for s in symbol_dirs), search
    if not _STATE.plugins_imported:
        import volatility3.plugins

        framework.require_interface_version(2, 0, 0)
        # modules that need optional packages (pycryptodome for hashdump/lsadump/cachedump) fail here: recorded
        failures = framework.import_files(volatility3.plugins, True)
        _STATE.import_failures = sorted(failures)
        _STATE.plugins_imported = True


def import_failures() -> list[str]:
    """Volatility plugin modules that failed to import (after :func:`configure`)."""
    return list(_STATE.import_failures)


def update_symbol_cache(progress: Progress | None = None) -> None:
    """Index the symbol folders into the identifier cache once, under a lock shared by all our processes.

    The first index of a large ``windows.zip`` pack takes minutes; doing it here, serialised, keeps parallel
    workers from racing on the same sqlite file (each plugin's automagic then finds it up to date).
    """
    from volatility3.framework import constants
    from volatility3.framework.automagic import symbol_cache

    path = os.path.join(constants.CACHE_PATH, constants.IDENTIFIERS_FILENAME)
    with open(os.path.join(constants.CACHE_PATH, ".triage-cache.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            symbol_cache.SqliteCache(path).update(progress_callback=progress)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _STATE.indexed = _search_path()


def _search_path() -> tuple[str, ...]:
    import volatility3.symbols

    return tuple(volatility3.symbols.__path__)


def resolve_plugin(name: str) -> Any:
    """The plugin class for a full name (``windows.pslist.PsList``) or an unambiguous module (``windows.pslist``)."""
    from volatility3 import framework

    plugins = framework.list_plugins()
    if name in plugins:
        return plugins[name]
    matches = [k for k in plugins if k.rsplit(".", 1)[0] == name or k.lower() == name.lower()]
    if len(matches) == 1:
        return plugins[matches[0]]
    failed = [m for m in _STATE.import_failures if name.split(".")[-1].lower() in m.lower()]
    hint = f" (plugin modules that failed to import: {', '.join(failed)})" if failed else ""
    raise UnknownPlugin(f"no Volatility plugin named {name!r}{hint}")


# -- values -------------------------------------------------------------------------------------------
def column_kind(typ: Any) -> str:
    """Our column kind for a TreeGrid column type."""
    from volatility3.framework import interfaces
    from volatility3.framework.renderers import format_hints

    if isinstance(typ, type):
        if issubclass(typ, format_hints.Hex):
            return KIND_HEX
        if issubclass(typ, bool):
            return KIND_BOOL
        if issubclass(typ, int):
            return KIND_INT
        if issubclass(typ, float):
            return KIND_FLOAT
        if issubclass(typ, _dt.datetime):
            return KIND_TIME
        if issubclass(typ, format_hints.MultiTypeData):
            return KIND_STR
        if issubclass(typ, bytes | interfaces.renderers.BasicType):
            return KIND_BYTES
    return KIND_STR


def convert_value(value: Any) -> Any:
    """A TreeGrid cell as a plain Python value: absent values (unreadable, N/A ...) become None."""
    from volatility3.framework import interfaces, renderers
    from volatility3.framework.renderers import format_hints

    if value is None or isinstance(value, interfaces.renderers.BaseAbsentValue):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)  # Hex and Bin are int subclasses
    if isinstance(value, float | str):
        return value
    if isinstance(value, _dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=_dt.UTC)
    if isinstance(value, format_hints.MultiTypeData):
        text = bytes(value).decode(value.encoding or "utf-16-le", "replace")
        return text.split("\x00")[0] if getattr(value, "split_nulls", False) else text.rstrip("\x00")
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, renderers.LayerData):
        try:
            return bytes(value.context.layers[value.layer_name].read(value.offset, value.length, pad=True))
        except Exception:  # unreadable page: the row stays, the cell is absent
            return None
    if isinstance(value, renderers.Disassembly):
        return bytes(value.data)
    return str(value)


# -- running ------------------------------------------------------------------------------------------
@dataclass
class Column:
    """One column of a plugin's table."""

    name: str
    kind: str


@dataclass
class PluginTable:
    """What a plugin produced: its columns (TreeDepth first) and rows of plain values."""

    plugin: str
    columns: list[Column]
    rows: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    layer_cache: dict[str, Any] = field(default_factory=dict)  # what the layer cache did (LayerCache.apply/store)


class _DiscardFile(io.BytesIO):
    """Where plugins that offer to dump files write: nowhere (we never ask them to dump)."""

    def __init__(self, filename: str) -> None:
        super().__init__()
        self.preferred_filename = filename


def _file_handler() -> type:
    from volatility3.framework import interfaces

    class DiscardFileHandler(_DiscardFile, interfaces.plugins.FileHandlerInterface):
        def __init__(self, filename: str) -> None:
            _DiscardFile.__init__(self, filename)

    return DiscardFileHandler


def _option_value(value: Any) -> Any:
    if isinstance(value, Path):
        return value.resolve().as_uri()  # URIRequirement options (yara_compiled_file ...)
    if isinstance(value, tuple):
        return list(value)
    return value


def _error_lines(errors: Sequence[Any]) -> list[str]:
    out = []
    for err in errors:
        try:
            out.append("".join(err.format_exception_only()).strip().splitlines()[-1])
        except Exception:
            out.append(str(err))
    return out


def run_plugin(
    image: Path | str,
    plugin: str,
    *,
    symbols: Sequence[Path | str] = (),
    cache_dir: Path | str | None = None,
    progress: Progress | None = None,
    layer_key: LayerKey | None = None,
    sidecar: Path | str | None = None,
    **options: Any,
) -> PluginTable:
    """Run one Volatility plugin on ``image`` and return its whole table.

    ``options`` are the plugin's own options (``pid=[4]``, ``yara_compiled_file=Path(...)``). ``layer_key``
    (image hash and symbol set) turns on the layer cache: the kernel's stacked layers and symbol table found by
    the first plugin are reused by the next (:class:`LayerCache`; the table's ``layer_cache`` says hit or miss).
    ``sidecar`` is a VMware ``.vmss``/``.vmsn`` to read a ``.vmem`` with. Raises :class:`MissingSymbols`,
    :class:`NoWindowsKernel`, :class:`Unsatisfied`, :class:`UnknownPlugin` or :class:`VolatilityUnavailable`;
    anything the plugin itself raises propagates.
    """
    configure(symbols, cache_dir)
    from volatility3.framework import automagic, contexts

    image = Path(image).resolve()
    location = _vmware_view(image, Path(sidecar)) if sidecar else image
    cls = resolve_plugin(plugin)
    ctx = contexts.Context()
    ctx.config["automagic.LayerStacker.single_location"] = location.as_uri()
    ppath = f"plugins.{cls.__name__}"
    for key, value in options.items():
        ctx.config[f"{ppath}.{key}"] = _option_value(value)
    cache = LayerCache(_layer_cache_root(cache_dir), layer_key) if layer_key else None
    requirement = _module_requirement(cls)
    use: dict[str, Any] = {"status": "off"}
    if cache is not None and requirement:
        use = cache.apply(ctx, f"{ppath}.{requirement}", location.as_uri())
    magics = automagic.choose_automagic(automagic.available(ctx), cls)
    if _STATE.indexed and _STATE.indexed == _search_path():
        # indexed once by update_symbol_cache (in this process or the parent it was forked from): each plugin
        # child re-listing every symbol file (a windows.zip pack holds thousands) would only find it up to date
        magics = [m for m in magics if type(m).__name__ != "SymbolCacheMagic"]
        use = use | {"symbol_index": "reused"}
    if use.get("status") == "hit" and "layer_name.class" in use.get("reused", ()):
        # the stacker would scan for the DTB again while anything (the symbols) is still missing
        magics = [m for m in magics if type(m).__name__ != "LayerStacker"]
    # what volatility.framework.plugins.construct_plugin does, keeping the automagic errors for the diagnosis
    errors = automagic.run(magics, ctx, cls, "plugins", progress_callback=progress)
    if cache is not None and requirement:
        use = cache.store(ctx, f"{ppath}.{requirement}", location.as_uri(), use)
    unsatisfied = cls.unsatisfied(ctx, ppath)
    layer = ctx.config.get(f"{ppath}.{requirement}.layer_name") if requirement else None
    if unsatisfied and cache is not None and use.get("status") == "hit" and layer not in ctx.layers:
        # the cached layers no longer build (another Volatility's layout, a damaged entry): forget the entry and
        # let automagic find everything again, once
        with contextlib.suppress(OSError):
            cache.path.unlink()
        table = run_plugin(
            image, plugin, symbols=symbols, cache_dir=cache_dir, progress=progress, layer_key=layer_key,
            sidecar=sidecar, **options,
        )  # fmt: skip
        table.layer_cache = {**table.layer_cache, "stale_entry_dropped": use["key"]}
        return table
    if unsatisfied:
        err = _diagnose(image, cls.__name__, list(unsatisfied), _error_lines(errors), progress)
        err.layer_cache = use
        raise err
    instance = cls(ctx, ppath, progress_callback=progress)
    instance.set_open_method(_file_handler())
    grid = instance.run()
    columns = [Column(DEPTH_COLUMN, KIND_INT), *(Column(c.name, column_kind(c.type)) for c in grid.columns)]
    names = [c.name for c in columns[1:]]
    rows: list[dict[str, Any]] = []

    def visit(node: Any, acc: list[dict[str, Any]]) -> list[dict[str, Any]]:
        row: dict[str, Any] = {DEPTH_COLUMN: node.path_depth - 1}
        for name, value in zip(names, node.values, strict=False):
            row[name] = convert_value(value)
        acc.append(row)
        return acc

    grid.populate(visit, rows)
    return PluginTable(
        plugin=_plugin_name(cls), columns=columns, rows=rows, warnings=_error_lines(errors), layer_cache=use
    )


def run_vol3(image: Path | str, plugin: str, **options: Any) -> Iterator[dict[str, Any]]:
    """Rows of a Volatility plugin over ``image`` as dicts (absent values None, ``TreeDepth`` kept).

    Keyword options as for :func:`run_plugin` (``symbols``, ``cache_dir``, ``progress`` and plugin options).
    """
    yield from run_plugin(image, plugin, **options).rows


def _plugin_name(cls: Any) -> str:
    from volatility3 import framework

    for name, c in framework.list_plugins().items():
        if c is cls:
            return name
    return cls.__name__


def find_kernel_pdb(image: Path | str, progress: Progress | None = None) -> KernelPdb | None:
    """The first Windows kernel PDB signature in the image file (no symbols needed; stops at the first)."""
    from volatility3.framework import contexts
    from volatility3.framework.layers import physical
    from volatility3.framework.symbols.windows import pdbutil

    ctx = contexts.Context()
    ctx.config["pdbscan.FileLayer.location"] = Path(image).resolve().as_uri()
    ctx.add_layer(physical.FileLayer(ctx, "pdbscan.FileLayer", "FileLayer"))
    names = [n.encode() for n in KERNEL_PDB_NAMES]
    for hit in pdbutil.PDBUtility.pdbname_scan(ctx, "FileLayer", 0x1000, names, progress_callback=progress):
        return KernelPdb(str(hit["pdb_name"]), str(hit["GUID"]).upper(), int(hit["age"]), hit.get("signature_offset"))
    return None


def symbol_table_location(pdb: KernelPdb) -> str | None:
    """Where the identifier cache (or a search of the symbol folders) finds the kernel's ISF, if anywhere."""
    from volatility3.framework import constants
    from volatility3.framework.automagic import symbol_cache
    from volatility3.framework.symbols import intermed

    cache = symbol_cache.SqliteCache(os.path.join(constants.CACHE_PATH, constants.IDENTIFIERS_FILENAME))
    found = cache.find_location(symbol_cache.WindowsIdentifier.generate(pdb.pdb_name, pdb.guid, pdb.age), "windows")
    if found:
        return str(found)
    for url in intermed.IntermediateSymbolTable.file_symbol_url("windows", f"{pdb.pdb_name}/{pdb.guid}-{pdb.age}"):
        return str(url)
    return None


def _diagnose(
    image: Path, plugin: str, unsatisfied: list[str], errors: list[str], progress: Progress | None
) -> Unsatisfied:
    """Turn Volatility's unsatisfied requirement paths into a message an analyst can act on."""
    short = [u.split(f"plugins.{plugin}.", 1)[-1] for u in unsatisfied]
    if not any(s.startswith("kernel") or s.endswith(("symbol_table_name", "layer_name")) for s in short):
        return Unsatisfied(f"{plugin}: requirements not met: {', '.join(short)}", short, errors)
    pdb = find_kernel_pdb(image, progress)
    if pdb is None:
        return NoWindowsKernel(
            f"{plugin}: no Windows kernel found in {image.name} (no {'/'.join(KERNEL_PDB_NAMES)} debug signature): "
            "not a Windows memory image, or a compressed format (hibernation file, compressed crash dump) "
            "Volatility cannot layer; the symbol-free YARA scan still ran",
            short,
            errors,
        )
    location = symbol_table_location(pdb)
    if location is None:
        return MissingSymbols(pdb, [str(p) for p in _STATE.symbol_dirs], errors)
    detail = "; ".join(errors) or "no page tables (DTB) found for it"
    return Unsatisfied(
        f"{plugin}: the symbol table for {pdb.pdb_name} {pdb.guid}-{pdb.age} was found ({location}) but the kernel "
        f"could not be set up: {detail}",
        short,
        errors,
    )


# -- layers: physical formats, and the kernel's layers and symbols found once per image ------------------------
def format_stackers() -> list[str]:
    """The acquisition-format layers this Volatility can stack (LimeStacker, WindowsCrashDumpStacker ...)."""
    configure()
    from volatility3 import framework
    from volatility3.framework import interfaces

    framework.import_files(sys.modules["volatility3.framework.layers"])
    return [s.__name__ for s in _format_stacker_classes(framework, interfaces)]


def crash_dump_types() -> list[int]:
    """The crash dump DumpTypes Volatility's 64-bit crash layer reads."""
    configure()
    from volatility3.framework.layers import crash

    return sorted(int(t) for t in getattr(crash.WindowsCrashDump64Layer, "supported_dumptypes", ()))


def _format_stacker_classes(framework: Any, interfaces: Any) -> list[Any]:
    # the stackers in volatility3.framework.layers turn a file into physical memory; the OS ones (DTB scans)
    # live with the automagic
    return [
        s
        for s in sorted(
            framework.class_subclasses(interfaces.automagic.StackerLayerInterface), key=lambda x: x.stack_order
        )
        if s.__module__.startswith("volatility3.framework.layers")
    ]


@dataclass
class PhysicalView:
    """An image opened as physical memory through Volatility's format layers (no OS, no symbols)."""

    layers: list[str]  # layer classes, top first (``["LimeLayer", "FileLayer"]``)
    _layer: Any

    @property
    def layer_class(self) -> str:
        """The class of the top layer: the format Volatility read the file as."""
        return self.layers[0]

    @property
    def maximum_address(self) -> int:
        """The highest physical address the layer maps."""
        return int(self._layer.maximum_address)

    def read(self, offset: int, length: int) -> bytes:
        """Physical memory at ``offset``; absent pages read as zeros."""
        return bytes(self._layer.read(offset, length, pad=True))

    def is_valid(self, offset: int, length: int = 1) -> bool:
        """Whether the layer maps these physical addresses."""
        return bool(self._layer.is_valid(offset, length))


def open_physical(image: Path | str, sidecar: Path | str | None = None) -> PhysicalView:
    """Stack Volatility's acquisition-format layers on a file, as its LayerStacker does before the DTB scan."""
    configure()
    from volatility3 import framework
    from volatility3.framework import contexts, interfaces
    from volatility3.framework.automagic import stacker
    from volatility3.framework.layers import physical

    framework.import_files(sys.modules["volatility3.framework.layers"])
    image = Path(image).resolve()
    location = _vmware_view(image, Path(sidecar)) if sidecar else image
    ctx = contexts.Context()
    ctx.config["physical.FileLayer.location"] = location.as_uri()
    ctx.add_layer(physical.FileLayer(ctx, "physical.FileLayer", "FileLayer"))
    names = stacker.LayerStacker.stack_layer(ctx, "FileLayer", _format_stacker_classes(framework, interfaces))
    return PhysicalView([type(ctx.layers[n]).__name__ for n in names], ctx.layers[names[0]])


def _vmware_view(image: Path, sidecar: Path) -> Path:
    """A path Volatility's VMware stacker accepts: ``NAME.vmem`` with ``NAME.vmss``/``.vmsn`` beside it, made of
    links in our cache when the case names them otherwise (letter case, a state file kept elsewhere)."""
    suffix = sidecar.suffix.lower()
    if image.name.endswith(".vmem") and sidecar.resolve() == image.with_suffix(suffix).resolve():
        return image
    base = Path(_STATE.cache or settings.cache_dir() / "volatility3") / "vmware-views"
    d = base / hashlib.sha256(f"{image}\0{sidecar}".encode()).hexdigest()[:16]
    d.mkdir(parents=True, exist_ok=True)
    for target, name in ((image, "memory.vmem"), (sidecar.resolve(), "memory" + suffix)):
        link = d / name
        if not (link.is_symlink() and os.readlink(link) == str(target)):
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            link.symlink_to(target)
    return d / "memory.vmem"


def _module_requirement(cls: Any) -> str | None:
    """The name of the plugin's kernel requirement (``kernel`` in Volatility 2.x plugins), if it has one."""
    from volatility3.framework.configuration import requirements

    mods = [r.name for r in cls.get_requirements() if isinstance(r, requirements.ModuleRequirement)]
    return "kernel" if "kernel" in mods else (mods[0] if mods else None)


def _layer_cache_root(cache_dir: Path | str | None) -> Path:
    return (Path(cache_dir).resolve() if cache_dir else settings.cache_dir()) / "layers"


@dataclass(frozen=True)
class LayerKey:
    """What a cached layer configuration is valid for: the image's bytes and the symbol set searched."""

    image_sha256: str
    symbols: str  # settings.tree_signature of the symbol folders

    def digest(self) -> str:
        """The cache file's name."""
        from volatility3.framework import constants

        text = f"{self.image_sha256}\0{self.symbols}\0{constants.PACKAGE_VERSION}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]


class LayerCache:
    """The kernel requirement's configuration found by automagic (stacked layers with the DTB, kernel offset,
    symbol table), kept in ``<cache>/layers/<key>.json`` and merged into the next plugin's configuration before
    its automagic runs, so the DTB scan, the PDB scan and the symbol search happen once per image.

    Partial results are kept too (layers stacked but no symbols yet): automagic fills in what is missing. The
    image's path is stored and replaced by the current one on reuse (the key is the image's hash), and so is the
    folder of files read beside it (a ``.vmss``).
    """

    def __init__(self, root: Path, key: LayerKey) -> None:
        self.key = key
        self.path = root / f"{key.digest()}.json"

    def _load(self) -> dict[str, Any] | None:
        try:
            with open(self.path, encoding="utf-8") as fh:
                entry = json.load(fh)
        except (OSError, ValueError):
            return None
        ok = isinstance(entry, dict) and isinstance(entry.get("config"), dict)
        return entry if ok and entry.get("image_sha256") == self.key.image_sha256 else None

    def apply(self, ctx: Any, path: str, uri: str) -> dict[str, Any]:
        """Merge a cached configuration under ``path``; what happened, for the record."""
        entry = self._load()
        if entry is None:
            return {"status": "miss", "key": self.path.stem}
        old = str(entry.get("image_uri", ""))
        old_dir, new_dir = old.rsplit("/", 1)[0] + "/", uri.rsplit("/", 1)[0] + "/"
        for k, v in entry["config"].items():
            if f"{k}.class" in entry["config"]:
                # the name of a constructed layer or table: with the name set but no such layer in this new
                # context, Volatility calls the requirement unsatisfied without reading its class, so
                # ConstructionMagic would build the outer layer before its memory layer (unmet dependencies)
                continue
            if k.endswith(".location") and isinstance(v, str) and v.startswith(old_dir):  # the image, a .vmss
                v = uri if v == old else new_dir + v[len(old_dir) :]
            ctx.config[f"{path}.{k}"] = v
        return {"status": "hit", "key": self.path.stem, "reused": sorted(entry["config"]), **entry.get("summary", {})}

    def store(self, ctx: Any, path: str, uri: str, use: dict[str, Any]) -> dict[str, Any]:
        """Keep what automagic found under ``path`` when it is more than the cache held."""
        branch = ctx.config.branch(path)
        config = {k: branch[k] for k in branch.keys() if isinstance(branch[k], str | int | float | bool | list)}  # noqa: SIM118  (flattened keys)
        if "layer_name.class" not in config or len(config) <= len(use.get("reused", ())):
            return use
        summary = {
            "layers": [
                v.rsplit(".", 1)[-1]
                for k, v in sorted(config.items())
                if k.startswith("layer_name") and k[-6:] == ".class"
            ],
            "dtb": config.get("layer_name.page_map_offset"),
            "kernel_offset": config.get("offset", config.get("layer_name.kernel_virtual_offset")),
            "symbol_table": config.get("symbol_table_name.isf_url"),
        }
        entry = {
            "image_sha256": self.key.image_sha256,
            "symbols": self.key.symbols,
            "image_uri": uri,
            "config": config,
            "summary": summary,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(entry, fh, indent=1, sort_keys=True)
        os.replace(tmp, self.path)  # atomic: parallel children never see half a file
        return use | {"stored": sorted(config), **summary}
