"""YARA over collected files, and web shell triage beyond YARA.

``yara`` (:mod:`.content`) runs the project's rules in ``signatures/yara`` and any ``--yara`` rule sets over web,
staging and loose files and Exchange/IIS logs, through the engine adapter in :mod:`.engine` (yara-x first,
yara-python as the fallback per rule file, compiled sets cached on disk). ``webshell_heuristics``
(:mod:`.heuristics`) flags server pages written in the directive window and obfuscated server-side code.
"""

from triage.analyzers.yara import content, heuristics  # noqa: F401  (importing registers the analyzers)
