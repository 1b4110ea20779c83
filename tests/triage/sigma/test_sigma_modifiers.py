"""Value modifiers and value types: which rows each one matches (and which it must not)."""

from __future__ import annotations

import base64

import pytest
from sigma_support import sel


@pytest.mark.parametrize("object_dtype", [False, True], ids=["arrow-str", "object"])
def test_plain_value_is_case_insensitive_equality(sigma_rows, object_dtype):
    rows = [
        {"Image": r"c:\windows\system32\CMD.EXE"},
        {"Image": r"C:\Windows\System32\cmd.exe.bak"},
        {"Image": r"X C:\Windows\System32\cmd.exe"},
        {"Image": None},
    ]
    assert sigma_rows(sel("Image", r"'C:\Windows\System32\cmd.exe'"), rows, object_dtype=object_dtype) == [0]


def test_value_list_is_or(sigma_rows):
    rows = [{"Image": r"C:\a.exe"}, {"Image": r"C:\b.exe"}, {"Image": r"C:\c.exe"}]
    assert sigma_rows(
        r"""
        sel:
          Image:
            - 'C:\a.exe'
            - 'C:\c.exe'
        condition: sel
    """,
        rows,
    ) == [0, 2]


def test_contains_startswith_endswith(sigma_rows):
    rows = [
        {"CommandLine": "cmd /c WHOAMI /all", "Image": r"C:\Windows\cmd.exe"},
        {"CommandLine": "whoami", "Image": r"D:\Windows\cmd.exe"},
        {"CommandLine": "cmd /c who ami", "Image": r"C:\Windows\cmd.exe"},
        {"CommandLine": "net user /whoami", "Image": r"C:\Windows\cmd.exe.bak"},
    ]
    assert sigma_rows(
        r"""
        sel:
          CommandLine|contains: 'whoami'
          Image|startswith: 'c:\windows\'
          Image|endswith: '\CMD.exe'
        condition: sel
    """,
        rows,
    ) == [0]
    assert sigma_rows(sel("CommandLine|startswith", "'WHOAMI'"), rows) == [1]


def test_contains_list_or_and_all(sigma_rows):
    rows = [
        {"CommandLine": "7z.exe a -pSecret out.7z"},
        {"CommandLine": "7z.exe a out.7z"},
        {"CommandLine": "7z.exe x -pSecret in.7z"},
        {"CommandLine": "tar -czf"},
    ]
    assert sigma_rows(
        """
        sel:
          CommandLine|contains|all:
            - ' -p'
            - ' a '
        condition: sel
    """,
        rows,
    ) == [0]
    assert sigma_rows(
        """
        sel:
          CommandLine|contains:
            - ' -p'
            - ' a '
        condition: sel
    """,
        rows,
    ) == [0, 1, 2]


def test_wildcards_and_escapes(sigma_rows):
    rows = [
        {"CommandLine": "run a*b now"},  # literal star
        {"CommandLine": "run aXb now"},
        {"CommandLine": r"C:\Temp\x.exe"},  # backslash then anything
        {"CommandLine": "file1.txt"},
        {"CommandLine": "file12.txt"},
        {"CommandLine": "what?"},
        {"CommandLine": "whatX"},
    ]
    assert sigma_rows(sel("CommandLine", r"'*a\*b*'"), rows) == [0]
    assert sigma_rows(sel("CommandLine", "'*a*b*'"), rows) == [0, 1]
    assert sigma_rows(sel("CommandLine", r"'c:\temp\\*'"), rows) == [2]
    assert sigma_rows(sel("CommandLine", "'FILE?.txt'"), rows) == [3]
    assert sigma_rows(sel("CommandLine", r"'what\?'"), rows) == [5]


def test_wildcard_matches_across_newlines(sigma_rows):
    rows = [{"CommandLine": "powershell\n-nop\n-w hidden"}, {"CommandLine": "powershell -nop"}]
    assert sigma_rows(sel("CommandLine", "'powershell*hidden'"), rows) == [0]


def test_cased(sigma_rows):
    rows = [
        {"CommandLine": "Invoke-Mimikatz"},
        {"CommandLine": "invoke-mimikatz"},
        {"CommandLine": "x Invoke-Mimikatz y"},
    ]
    assert sigma_rows(sel("CommandLine|cased", "'Invoke-Mimikatz'"), rows) == [0]
    assert sigma_rows(sel("CommandLine|contains|cased", "'Invoke-Mimikatz'"), rows) == [0, 2]
    assert sigma_rows(sel("CommandLine|contains", "'Invoke-Mimikatz'"), rows) == [0, 1, 2]


def test_re_is_case_sensitive_search_with_flags(sigma_rows):
    rows = [
        {"CommandLine": "x Invoke-Expression y"},
        {"CommandLine": "x invoke-expression y"},
        {"CommandLine": "line1\nline2 evil"},
        {"CommandLine": "a\nb"},
    ]
    assert sigma_rows(sel("CommandLine|re", r"'Invoke-[A-Z]\w+'"), rows) == [0]
    assert sigma_rows(sel("CommandLine|re|i", r"'Invoke-[A-Z]\w+'"), rows) == [0, 1]
    assert sigma_rows(sel("CommandLine|re", "'^line2'"), rows) == []
    assert sigma_rows(sel("CommandLine|re|m", "'^line2'"), rows) == [2]
    assert sigma_rows(sel("CommandLine|re", "'^a.b$'"), rows) == []
    assert sigma_rows(sel("CommandLine|re|s", "'^a.b$'"), rows) == [3]


def test_re_beyond_re2_falls_back_to_python(sigma_rows):
    rows = [{"CommandLine": "foo bar"}, {"CommandLine": "foobar"}, {"CommandLine": "foo"}]
    assert sigma_rows(sel("CommandLine|re", "'foo(?!bar)'"), rows) == [0, 2]


def test_base64_is_case_sensitive(sigma_rows):
    enc = base64.b64encode(b"whoami").decode()  # d2hvYW1p
    rows = [{"CommandLine": f"x {enc} y"}, {"CommandLine": f"x {enc.upper()} y"}, {"CommandLine": enc}]
    assert sigma_rows(sel("CommandLine|base64|contains", "'whoami'"), rows) == [0, 2]
    assert sigma_rows(sel("CommandLine|base64", "'whoami'"), rows) == [2]


def test_base64offset_finds_text_inside_a_longer_encoded_string(sigma_rows):
    rows = [
        {"CommandLine": "powershell -enc " + base64.b64encode(f"{prefix}Invoke-Mimikatz -dump".encode()).decode()}
        for prefix in ("", "x", "xy", "xyz", "$a=1;")
    ]
    rows.append({"CommandLine": "powershell -enc " + base64.b64encode(b"Get-Process | Out-Null").decode()})
    assert sigma_rows(sel("CommandLine|base64offset|contains", "'Invoke-Mimikatz'"), rows) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("modifier", "encoding"),
    [("wide", "utf-16-le"), ("utf16le", "utf-16-le"), ("utf16be", "utf-16-be"), ("utf16", "utf-16")],
)
def test_utf16_variants_with_base64offset(sigma_rows, modifier, encoding):
    def enc(text: str, enc_name: str) -> str:
        return base64.b64encode(text.encode(enc_name)).decode()

    rows = [
        {"CommandLine": "-e " + enc("IEX (New-Object Net.WebClient)", encoding)},
        {"CommandLine": "-e " + enc("IEX (New-Object Net.WebClient)", "utf-8")},
        {"CommandLine": "-e " + enc("Get-Date", encoding)},
    ]
    if encoding != "utf-16":  # with a BOM the text can only start the encoded string
        rows.append({"CommandLine": "-e " + enc("$x; IEX (New-Object Net.WebClient)", encoding)})
    expected = [0, 3] if encoding != "utf-16" else [0]
    assert sigma_rows(sel(f"CommandLine|{modifier}|base64offset|contains", "'IEX (New-Object'"), rows) == expected


def test_windash(sigma_rows):
    rows = [
        {"CommandLine": "powershell -enc AAA"},
        {"CommandLine": "powershell /enc AAA"},
        {"CommandLine": "powershell \u2013enc AAA"},  # en dash
        {"CommandLine": "powershell \u2014enc AAA"},  # em dash
        {"CommandLine": "powershell enc AAA"},
        {"CommandLine": "powershell -ENC AAA"},
    ]
    assert sigma_rows(sel("CommandLine|windash|contains", "' -enc '"), rows) == [0, 1, 2, 3, 5]


def test_windash_with_all(sigma_rows):
    rows = [
        {"CommandLine": "tool /a /b"},
        {"CommandLine": "tool -a /b"},
        {"CommandLine": "tool -a"},
    ]
    assert sigma_rows(
        """
        sel:
          CommandLine|windash|contains|all:
            - ' -a'
            - ' -b'
        condition: sel
    """,
        rows,
    ) == [0, 1]


def test_cidr_ipv4_and_ipv6(sigma_rows):
    rows = [
        {"DestinationIp": "10.1.2.3"},
        {"DestinationIp": "192.168.1.77"},
        {"DestinationIp": "192.168.2.1"},
        {"DestinationIp": "8.8.8.8"},
        {"DestinationIp": "fe80::1%12"},
        {"DestinationIp": "2001:db8:0:1::5"},
        {"DestinationIp": "2001:db9::5"},
        {"DestinationIp": "::ffff:10.9.9.9"},
        {"DestinationIp": "not-an-ip"},
        {"DestinationIp": None},
    ]
    ls = "product: windows\n  category: network_connection"
    rows = [{**r, "EventID": 3} for r in rows]
    assert sigma_rows(
        """
        sel:
          DestinationIp|cidr:
            - '10.0.0.0/8'
            - '192.168.1.0/24'
            - 'fe80::/10'
            - '2001:db8::/32'
        condition: sel
    """,
        rows,
        logsource=ls,
    ) == [0, 1, 4, 5, 7]
    assert sigma_rows(
        """
        sel:
          Image|endswith: '.exe'
        filter:
          DestinationIp|cidr: '0.0.0.0/0'
        condition: not filter
    """,
        rows,
        logsource=ls,
    ) == [4, 5, 6, 8, 9]


def test_exists(sigma_rows):
    rows = [{"CommandLine": "a"}, {"CommandLine": None}, {"CommandLine": ""}]
    assert sigma_rows(sel("CommandLine|exists", "true"), rows) == [0, 2]
    assert sigma_rows(sel("CommandLine|exists", "false"), rows) == [1]
    assert sigma_rows(sel("NoSuchField|exists", "false"), rows) == [0, 1, 2]
    assert sigma_rows(sel("NoSuchField|exists", "true"), rows) == []


def test_numeric_compare_on_string_numbers(sigma_rows):
    rows = [{"DestinationPort": v} for v in ("80", "1024", "8080", None, "abc", "65535")]
    assert sigma_rows(sel("DestinationPort|gt", "1024"), rows) == [2, 5]
    assert sigma_rows(sel("DestinationPort|gte", "1024"), rows) == [1, 2, 5]
    assert sigma_rows(sel("DestinationPort|lt", "1024"), rows) == [0]
    assert sigma_rows(sel("DestinationPort|lte", "1024"), rows) == [0, 1]


def test_numbers_match_numeric_strings_and_back(sigma_rows):
    rows = [
        {"EventID": 1, "LogonType": "3"},
        {"EventID": 1, "LogonType": "10"},
        {"EventID": 1, "LogonType": "03"},
        {"EventID": 1, "LogonType": None},
    ]
    assert sigma_rows(sel("LogonType", "3"), rows) == [0, 2]
    assert sigma_rows(
        """
        sel:
          EventID: '1'
          LogonType: [10, 11]
        condition: sel
    """,
        rows,
    ) == [1]


def test_hex_number_matches_hex_string(sigma_rows):
    rows = [{"Status": "0xc0000064"}, {"Status": "0xC000006A"}, {"Status": "3221225572"}, {"Status": "0x0"}]
    assert sigma_rows(sel("Status", "0xC0000064"), rows) == [0, 2]
    assert sigma_rows(sel("Status", "'0xC0000064'"), rows) == [0]


def test_boolean_values(sigma_rows):
    rows = [{"Initiated": "true"}, {"Initiated": "False"}, {"Initiated": None}, {"Initiated": "1"}]
    assert sigma_rows(sel("Initiated", "true"), rows) == [0, 3]
    assert sigma_rows(sel("Initiated", "false"), rows) == [1]
    assert sigma_rows(sel("Initiated", "'true'"), rows) == [0]


def test_fieldref(sigma_rows):
    rows = [
        {"Image": r"C:\x\a.exe", "ParentImage": r"c:\X\A.EXE", "CommandLine": r"C:\x\a.exe -run"},
        {"Image": r"C:\x\a.exe", "ParentImage": r"C:\x\b.exe", "CommandLine": r"cmd /c C:\x\a.exe"},
        {"Image": r"C:\x\a.exe", "ParentImage": None, "CommandLine": None},
    ]
    assert sigma_rows(sel("ParentImage|fieldref", "Image"), rows) == [0]
    assert sigma_rows(sel("CommandLine|fieldref|startswith", "Image"), rows) == [0]
    assert sigma_rows(sel("CommandLine|fieldref|contains", "Image"), rows) == [0, 1]
    assert sigma_rows(sel("CommandLine|fieldref|endswith", "Image"), rows) == [1]
    assert sigma_rows(sel("CommandLine|fieldref", "NoSuchField"), rows) == []


def test_null_means_missing_or_empty(sigma_rows):
    rows = [{"CommandLine": None, "Image": "a"}, {"CommandLine": "", "Image": "b"}, {"CommandLine": "x", "Image": "c"}]
    assert sigma_rows(sel("CommandLine", "null"), rows) == [0, 1]
    assert sigma_rows(sel("NoSuchField", "null"), rows) == [0, 1, 2]
    assert sigma_rows(sel("CommandLine", "''"), rows) == [1]


def test_absent_field_never_matches(sigma_rows):
    rows = [{"Image": "a"}, {"Image": "b"}]
    assert sigma_rows(sel("NoSuchField|contains", "'a'"), rows) == []
    assert sigma_rows(
        """
        sel:
          Image: 'a'
        filter:
          NoSuchField: 'x'
        condition: sel and not filter
    """,
        rows,
    ) == [0]


def test_cased_survives_windash_expansion(sigma_rows):
    rows = [{"CommandLine": "tool /Run"}, {"CommandLine": "tool -run"}, {"CommandLine": "tool -Run"}]
    assert sigma_rows(sel("CommandLine|windash|contains|cased", "' -Run'"), rows) == [0, 2]
