"""Options that analyzers declare, and the command-line flags and config-file keys built from them.

An analyzer class lists its options (``options_declared: ClassVar[tuple[Option, ...]]``); ``triage analyze`` and
``triage run`` get one flag per declared option (:func:`add_analyzer_arguments`), and :func:`analyzer_options`
turns parsed flags, environment variables and the config file (``$XDG_CONFIG_HOME/triage/config.toml``) into
the per-analyzer option dicts the runner hands to the units. Several analyzers may declare the same option
(``--sigma`` feeds ``eventlog`` and ``weblog_sigma``): the first declaration (by analyzer name) defines the
flag, every declaring analyzer gets the value. Adding an analyzer with an option touches no core file.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from triage.errors import UsageError

if TYPE_CHECKING:
    from triage.case import Case
    from triage.registry import Analyzer, Option

__all__ = [
    "AnalyzerOptionsParser",
    "Option",
    "add_analyzer_arguments",
    "analyzer_options",
    "declared_options",
    "flag_dests",
    "preload_rules",
]

log = logging.getLogger(__name__)


def __getattr__(name: str) -> Any:
    # the registry (and pandas with it) loads on first use: the command line builds its parsers from this module
    if name == "Option":
        from triage.registry import Option

        return Option
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def declared_options() -> dict[str, tuple[Option, ...]]:
    """Every registered analyzer's declared options, by analyzer name (built-ins, entry points, TRIAGE_PLUGINS)."""
    from triage.registry import declarations

    # read from the analyzer index: building the command line imports no analyzer module
    return {name: d.options_declared for name, d in declarations().items() if d.options_declared}


def _flags(declared: Mapping[str, tuple[Option, ...]]) -> dict[str, Option]:
    """One option per flag: the first declaration of it."""
    out: dict[str, Option] = {}
    for opts in declared.values():
        for opt in opts:
            flag = opt.cli_flag
            if flag and flag not in out:
                out[flag] = opt
    return out


def flag_dests(declared: Mapping[str, tuple[Option, ...]] | None = None) -> list[str]:
    """The parsed-namespace attributes of the declared flags (what a request carries to :func:`analyzer_options`)."""
    declared = declared_options() if declared is None else declared
    return [opt.dest for opt in _flags(declared).values()]


def add_analyzer_arguments(
    parser: argparse.ArgumentParser, declared: Mapping[str, tuple[Option, ...]] | None = None
) -> list[str]:
    """Add a flag per declared analyzer option to ``parser``; return the flags added.

    A plugin option whose flag is taken by a core flag is left out with a warning (it stays settable through
    its config key), so a bad plugin cannot break the command line.
    """
    declared = declared_options() if declared is None else declared
    added: list[str] = []
    for flag, opt in _flags(declared).items():
        kw: dict[str, Any] = {"dest": opt.dest, "metavar": opt.metavar, "help": opt.help}
        if opt.type is bool:
            kw.pop("metavar")
            kw.update(action="store_true", default=None)
        elif opt.repeatable:
            kw.update(action="append", default=[], type=opt.type)
        else:
            kw.update(default=None, type=opt.type)
        try:
            parser.add_argument(flag, **kw)
        except argparse.ArgumentError as exc:
            log.warning("analyzer option %s not added to the command line: %s", flag, exc)
            continue
        added.append(flag)
    return added


class AnalyzerOptionsParser(argparse.ArgumentParser):
    """A subcommand parser that adds the analyzers' declared options the first time it parses (or prints its
    help) when ``takes_analyzer_options`` is set: finding them imports every analyzer, which only the commands
    that run analyzers should pay for."""

    takes_analyzer_options = False
    _analyzer_options_added = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self.takes_analyzer_options and not self._analyzer_options_added:
            self._analyzer_options_added = True
            add_analyzer_arguments(self)
        return super().parse_known_args(args, namespace)


def config_file() -> Path:
    """The user's config file, ``$XDG_CONFIG_HOME/triage/config.toml`` (it need not exist)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "triage" / "config.toml"


def load_config(path: Path | None = None) -> dict[str, Any]:
    """The parsed config file, or {} when there is none; a broken one is a usage error."""
    path = path or config_file()
    try:
        fh = open(path, "rb")  # noqa: SIM115  (closed below; no TOML parser is loaded when there is no file)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the config file: {exc}") from None
    import tomllib  # here, not at the top: the command line imports this module for every --help

    try:
        with fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the config file: {exc}") from None


def _given(source: argparse.Namespace | Mapping[str, Any], dest: str) -> Any:
    if isinstance(source, Mapping):
        return source.get(dest)
    return getattr(source, dest, None)


def _convert(opt: Option, value: Any, where: str) -> Any:
    """A value from the environment or the config file, typed like the flag's values."""
    if opt.repeatable:
        items = value.split(os.pathsep) if isinstance(value, str) and where == "env" else value
        items = [items] if isinstance(items, str | int | float) else list(items)
        return [opt.type(v) if isinstance(v, str) else v for v in items if str(v).strip()]
    if opt.type is bool and isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    try:
        return opt.type(value) if isinstance(value, str) or opt.type in (int, float) else value
    except (TypeError, ValueError):
        raise UsageError(f"{opt.label()}: {value!r} from the {where} is not valid") from None


def _value(
    opt: Option, source: argparse.Namespace | Mapping[str, Any], config: Mapping[str, Any]
) -> tuple[Any, str] | None:
    """The option's value and where it came from (``cli``, ``env``, ``config``, ``default``), or None."""
    given = _given(source, opt.dest) if opt.cli_flag else None
    if given not in (None, [], ()):
        return given, "cli"
    if opt.env and os.environ.get(opt.env, "").strip():
        return _convert(opt, os.environ[opt.env], "env"), "env"
    if opt.config_key and config.get(opt.config_key) is not None:
        return _convert(opt, config[opt.config_key], "config file"), "config"
    if opt.default is not None:
        return opt.default, "default"
    return None


def _paths(opt: Option, value: Any, origin: str, config_dir: Path) -> Any:
    """Paths made absolute; a path typed on the command line must exist (a usage error before any work).

    Entries of the config file are relative to the file; paths from the environment or the config file are
    not checked here: the analyzer reports what it cannot read, as it does without the option.
    """
    items = value if isinstance(value, list) else [value]
    base = config_dir if origin == "config" else Path.cwd()
    out = [os.path.abspath(os.path.join(base, os.path.expanduser(str(p)))) for p in items]
    if origin == "cli":
        missing = [str(orig) for orig, p in zip(items, out, strict=True) if not os.path.exists(p)]
        if missing:
            raise UsageError(f"{opt.label()}: no such file or folder: {', '.join(missing)}")
    return out if isinstance(value, list) else out[0]


def analyzer_options(
    source: argparse.Namespace | Mapping[str, Any],
    config: Mapping[str, Any] | None = None,
    declared: Mapping[str, tuple[Option, ...]] | None = None,
) -> dict[str, dict[str, Any]]:
    """The options of every analyzer that has one set: ``{analyzer: {option: value}}``.

    ``source``: the parsed command line, or a mapping of flag destinations (``{"sigma": [DIR]}``).
    ``config``: the config file's contents (default: read from :func:`config_file`). Paths that do not exist
    are a usage error naming the flag; options left unset are left out (the analyzer's own default applies).
    """
    base = config_file().parent
    if config is None:
        config = load_config()
    declared = declared_options() if declared is None else declared
    out: dict[str, dict[str, Any]] = {}
    for analyzer, opts in declared.items():
        for opt in opts:
            found = _value(opt, source, config)
            if found is None:
                continue
            value, origin = found
            if opt.path:
                value = _paths(opt, value, origin, base)
            out.setdefault(analyzer, {})[opt.name] = value
    return out


def preload_rules(
    case: Case, options: Mapping[str, Mapping[str, Any]], registry: Mapping[str, type[Analyzer]] | None = None
) -> dict[str, dict[str, Any]]:
    """Load the extra rule sets once, up front, for each analyzer whose ``rule_option`` is set.

    Each such analyzer's :meth:`~triage.registry.Analyzer.preload_rules` compiles (filling caches the units
    then read) and records in the case what loaded and what was skipped. Returns the summaries keyed by the
    rule option (``{"sigma": {...}, "yara": {...}}``); an option shared by several analyzers is reported once.
    """
    from triage.registry import declarations, load

    declared: Mapping[str, Any] = declarations() if registry is None else registry
    out: dict[str, dict[str, Any]] = {}
    for name, decl in sorted(declared.items()):
        key = decl.rule_option
        if not key or key in out or not options.get(name, {}).get(key):
            continue
        cls = load(name) if registry is None else decl  # only analyzers whose rule option is set are imported
        info = cls.preload_rules(case, dict(options[name]))
        if info is not None:
            out[key] = info
    return out
