"""Conditions (selectors, not/and/or, parentheses), detection shapes and keyword detections."""

from __future__ import annotations

ROWS = [
    {"Image": r"C:\w\powershell.exe", "CommandLine": "powershell -nop -w hidden", "ParentImage": r"C:\w\winword.exe"},
    {"Image": r"C:\w\powershell.exe", "CommandLine": "powershell -nop", "ParentImage": r"C:\w\explorer.exe"},
    {"Image": r"C:\w\cmd.exe", "CommandLine": "cmd /c whoami", "ParentImage": r"C:\w\winword.exe"},
    {"Image": r"C:\w\cmd.exe", "CommandLine": "cmd /c dir", "ParentImage": r"C:\w\explorer.exe"},
]

SELS = r"""
sel_ps:
  Image|endswith: '\powershell.exe'
sel_office:
  ParentImage|endswith: '\winword.exe'
filter_hidden:
  CommandLine|contains: 'hidden'
other:
  CommandLine|contains: 'whoami'
"""


def test_one_of_and_all_of_patterns(sigma_rows):
    assert sigma_rows(SELS + "condition: 1 of sel_*", ROWS) == [0, 1, 2]
    assert sigma_rows(SELS + "condition: all of sel_*", ROWS) == [0]
    assert sigma_rows(SELS + "condition: any of sel_*", ROWS) == [0, 1, 2]


def test_them(sigma_rows):
    assert sigma_rows(SELS + "condition: 1 of them", ROWS) == [0, 1, 2]
    assert sigma_rows(SELS + "condition: all of them", ROWS) == []
    assert sigma_rows(
        """
        a:
          Image|endswith: '.exe'
        b:
          CommandLine|contains: 'powershell'
        condition: all of them
        """,
        ROWS,
    ) == [0, 1]


def test_nested_parentheses_with_not(sigma_rows):
    assert sigma_rows(SELS + "condition: (sel_ps or other) and not (sel_office and filter_hidden)", ROWS) == [1, 2]
    assert sigma_rows(SELS + "condition: not (sel_ps or sel_office)", ROWS) == [3]
    assert sigma_rows(SELS + "condition: sel_ps and not 1 of filter_*", ROWS) == [1]
    assert sigma_rows(SELS + "condition: not sel_ps and not other", ROWS) == [3]


def test_and_binds_tighter_than_or(sigma_rows):
    assert sigma_rows(SELS + "condition: other or sel_ps and filter_hidden", ROWS) == [0, 2]


def test_several_conditions_are_or(sigma_rows):
    assert sigma_rows(SELS + "condition:\n  - other\n  - filter_hidden", ROWS) == [0, 2]


def test_mapping_is_and_list_of_mappings_is_or(sigma_rows):
    assert sigma_rows(
        r"""
        sel:
          Image|endswith: '\cmd.exe'
          ParentImage|endswith: '\explorer.exe'
        condition: sel
        """,
        ROWS,
    ) == [3]
    assert sigma_rows(
        r"""
        sel:
          - Image|endswith: '\cmd.exe'
            ParentImage|endswith: '\explorer.exe'
          - CommandLine|contains: 'hidden'
        condition: sel
        """,
        ROWS,
    ) == [0, 3]


def test_same_field_twice_in_one_selection_via_all(sigma_rows):
    assert sigma_rows(
        """
        sel:
          CommandLine|contains|all: ['powershell', '-nop']
          CommandLine|endswith: 'hidden'
        condition: sel
        """,
        ROWS,
    ) == [0]


def test_keywords_search_text_columns_not_the_envelope(sigma_rows):
    rows = [
        {"CommandLine": "sekurlsa::logonpasswords", "Computer": "host1"},
        {"CommandLine": "dir", "Details": "found SEKURLSA here", "Computer": "host2"},
        {"CommandLine": "dir", "Computer": "sekurlsa-host"},
        {"CommandLine": "dir", "Computer": "host3"},
    ]
    assert sigma_rows(
        """
        keywords:
          - 'sekurlsa'
          - 'nothing-like-this'
        condition: keywords
        """,
        rows,
    ) == [0, 1]


def test_keywords_combined_with_fields_and_wildcards(sigma_rows):
    rows = [
        {"CommandLine": "mimikatz privilege::debug", "Image": r"C:\t\m.exe"},
        {"CommandLine": "mimikatz", "Image": r"C:\t\m.exe"},
        {"CommandLine": "privilege::debug", "Image": r"C:\t\x.exe"},
    ]
    assert sigma_rows(
        r"""
        keywords:
          - 'privilege::*'
        sel:
          Image|endswith: '\m.exe'
        condition: keywords and sel
        """,
        rows,
    ) == [0]
    assert sigma_rows(
        """
        keywords:
          '|all':
            - 'mimikatz'
            - 'debug'
        condition: keywords
        """,
        rows,
    ) == [0]
    assert sigma_rows(
        """
        keywords:
          '|re': 'privilege::[a-z]+$'
        condition: keywords
        """,
        rows,
    ) == [0, 2]


def test_keywords_match_classic_data_column(sigma_rows):
    rows = [
        {"Channel": "Windows PowerShell", "EventID": 400, "Data": "NewEngineState=Available HostName=ConsoleHost"},
        {"Channel": "Windows PowerShell", "EventID": 400, "Data": "HostName=ServerRemoteHost"},
        {"Channel": "Windows PowerShell", "EventID": 600, "Data": "HostName=ConsoleHost"},
    ]
    assert sigma_rows(
        """
        keywords:
          - 'HostName=ConsoleHost'
        condition: keywords
        """,
        rows,
        logsource="product: windows\n  category: ps_classic_start",
    ) == [0]
