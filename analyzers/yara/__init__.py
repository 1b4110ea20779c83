"""YARA over collected files, and web shell triage beyond YARA.

``yara`` (:mod:`.content`) runs the project's rules in ``signatures/yara`` and any ``--yara`` rule sets over web,
staging and loose files and Exchange/IIS logs, through the engine adapter in :mod:`.engine` (yara-x first,
yara-python as the fallback per rule file, compiled sets cached on disk). ``webshell_heuristics``
(:mod:`.heuristics`, :mod:`.behaviour`) follows request input into dangerous calls, reads ``web.config`` remaps and
compilation records, and flags obfuscated code and pages written in the directive window.

The package imports none of its modules: the registry imports the one module an analyzer lives in (the index
names it; ``discover`` walks every module), so a ``yara`` run does not load the heuristics' behaviour rules, and
the memory analyzer's use of :mod:`.engine` does not import either analyzer.
"""
