"""What this installation knows: analyzers (with plugins), artifact families and recognised formats."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from triage.errors import ExitCode


@dataclass
class Catalog:
    """The ``triage list`` summary."""

    formats: list[dict[str, Any]] = field(default_factory=list)
    analyzers: list[dict[str, Any]] = field(default_factory=list)
    import_failures: dict[str, str] = field(default_factory=dict)  # module -> last line of its error
    families: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` summary."""
        return {
            "formats": self.formats,
            "analyzers": self.analyzers,
            "import_failures": self.import_failures,
            "families": self.families,
        }


def catalog(plugins: tuple[str, ...] = ()) -> Catalog:
    """Discover the analyzers (importing ``plugins`` too) and list them with the families and formats."""
    from collectors.families import load_families
    from triage.formats.recognize import table as format_table
    from triage.registry import discover, import_failures

    reg = discover(plugins)
    return Catalog(
        formats=format_table(),
        analyzers=[c.describe() for _, c in sorted(reg.items())],
        import_failures={k: v.strip().splitlines()[-1] for k, v in import_failures().items()},
        families=[{"name": f.name, "kind": f.kind, "step": f.step, "paths": list(f.paths)} for f in load_families()],
    )
