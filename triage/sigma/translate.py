"""From pySigma's parsed rules to the matcher trees of :mod:`triage.sigma.compiler`.

Only compiling a rule set needs this module (and pySigma's condition parser, which takes a good part of a
second to import); a set loaded from the compiled cache does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sigma.conditions import (
    ConditionAND,
    ConditionIdentifier,
    ConditionItem,
    ConditionNOT,
    ConditionOR,
    ConditionSelector,
    unwrap_parse_result_operand,
)
from sigma.modifiers import (
    SigmaBase64Modifier,
    SigmaBase64OffsetModifier,
    SigmaCaseSensitiveModifier,
    SigmaExpandModifier,
    SigmaTimestampModifier,
    reverse_modifier_mapping,
)
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import (
    Placeholder,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SigmaTimestampPart,
    SigmaType,
    SpecialChars,
)

from triage.sigma.compiler import (
    BoolLeaf,
    CidrLeaf,
    ExistsLeaf,
    FieldRefLeaf,
    KeywordLeaf,
    Node,
    Not,
    NullLeaf,
    NumLeaf,
    StringTest,
    StrLeaf,
    UnsupportedRule,
    _all_of,
    _any_of,
    regex_escape,
)


def classify(value: SigmaString, cased: bool) -> tuple[str, str]:
    """Reduce a Sigma string to ``(kind, text)``: eq/contains/startswith/endswith/any, or an anchored regex.

    Literal text is lower-cased unless ``cased`` (the data side is folded once per column).
    """
    fold = (lambda s: s) if cased else str.lower
    parts = list(value.s)
    for part in parts:
        if isinstance(part, Placeholder):
            raise UnsupportedRule(
                f"placeholder %{part.name}% needs a processing pipeline to expand", needle=f"%{part.name}%"
            )
    if not any(isinstance(p, SpecialChars) for p in parts):
        return "eq", fold("".join(parts))  # type: ignore[arg-type]
    multi = SpecialChars.WILDCARD_MULTI
    if all(p is multi for p in parts):
        return "any", ""
    if len(parts) == 3 and parts[0] is multi and parts[2] is multi and isinstance(parts[1], str):
        return "contains", fold(parts[1])
    if len(parts) == 2 and isinstance(parts[0], str) and parts[1] is multi:
        return "startswith", fold(parts[0])
    if len(parts) == 2 and parts[0] is multi and isinstance(parts[1], str):
        return "endswith", fold(parts[1])
    body = "".join(
        regex_escape(fold(p)) if isinstance(p, str) else (".*" if p is multi else ".")
        for p in parts
    )
    return "wildcard", f"^{body}$"



# --------------------------------------------------------------------------------------------- compilation
_UNSUPPORTED_MODIFIERS: dict[type, str] = {
    SigmaExpandModifier: "placeholder expansion (|expand) needs a processing pipeline",
}


def _item_key(item: SigmaDetectionItem) -> str:
    mods = [reverse_modifier_mapping.get(m.__name__, m.__name__) for m in item.modifiers]
    return "|".join([item.field or "", *mods]) if mods else (item.field or "")


def _flatten(values: Sequence[SigmaType]) -> list[SigmaType]:
    out: list[SigmaType] = []
    for v in values:
        out.extend(_flatten(v.values) if isinstance(v, SigmaExpansion) else [v])
    return out


def _regex_flags(value: SigmaRegularExpression) -> str:
    return "".join(sorted(SigmaRegularExpression.sigma_to_re_flag[f] for f in value.flags))


def _field_any(field: str, values: Sequence[SigmaType], force_cased: bool, key: str) -> Node:
    """OR over values (expansions flattened): strings grouped into one test per case mode."""
    strings: dict[bool, list[tuple[str, str]]] = {}
    numbers: list[float] = []
    networks: list[Any] = []
    nodes: list[Node] = []
    for v in _flatten(values):
        if isinstance(v, SigmaString):
            cased = force_cased or isinstance(v, SigmaCasedString)
            strings.setdefault(cased, []).append(classify(v, cased))
        elif isinstance(v, SigmaBool):
            nodes.append(BoolLeaf(field, v.boolean))
        elif isinstance(v, SigmaTimestampPart):
            raise UnsupportedRule(f"timestamp part value on '{key}' is not supported", needle=key)
        elif isinstance(v, SigmaNumber):
            numbers.append(float(v.number))
        elif isinstance(v, SigmaNull):
            nodes.append(NullLeaf(field))
        elif isinstance(v, SigmaRegularExpression):
            nodes.append(StrLeaf(field, StringTest(regex=str(v.regexp), regex_flags=_regex_flags(v))))
        elif isinstance(v, SigmaCIDRExpression):
            networks.append(v.network)
        elif isinstance(v, SigmaCompareExpression):
            nodes.append(NumLeaf(field, v.op.name.lower(), [float(v.number.number)]))
        elif isinstance(v, SigmaFieldReference):
            nodes.append(FieldRefLeaf(field, v.field, v.starts_with, v.ends_with))
        elif isinstance(v, SigmaExists):
            nodes.append(ExistsLeaf(field, v.exists))
        else:
            raise UnsupportedRule(f"value type {type(v).__name__} on '{key}' is not supported", needle=key)
    for cased, patterns in sorted(strings.items()):
        nodes.append(StrLeaf(field, StringTest(patterns, cased=cased)))
    if numbers:
        nodes.append(NumLeaf(field, "eq", numbers))
    if networks:
        nodes.append(CidrLeaf(field, networks))
    return _any_of(nodes)


def _keyword_any(values: Sequence[SigmaType], force_cased: bool, key: str) -> Node:
    """OR over field-less values; plain keywords match anywhere in a text column (implicit contains)."""
    strings: dict[bool, list[tuple[str, str]]] = {}
    nodes: list[Node] = []
    multi = SpecialChars.WILDCARD_MULTI
    for v in _flatten(values):
        if isinstance(v, SigmaNumber) and not isinstance(v, SigmaTimestampPart):
            v = SigmaString(str(v.number))
        if isinstance(v, SigmaString):
            cased = force_cased or isinstance(v, SigmaCasedString)
            if not v.startswith(multi):
                v = multi + v
            if not v.endswith(multi):
                v = v + multi
            strings.setdefault(cased, []).append(classify(v, cased))
        elif isinstance(v, SigmaRegularExpression):
            nodes.append(KeywordLeaf(StringTest(regex=str(v.regexp), regex_flags=_regex_flags(v))))
        else:
            raise UnsupportedRule(f"keyword value of type {type(v).__name__} is not supported", needle=key or None)
    for cased, patterns in sorted(strings.items()):
        nodes.append(KeywordLeaf(StringTest(patterns, cased=cased)))
    return _any_of(nodes)


def compile_item(item: SigmaDetectionItem) -> Node:
    """One ``field|modifiers: values`` entry (or a keyword list) as a matcher."""
    key = _item_key(item)
    for modifier in item.modifiers:
        if modifier in _UNSUPPORTED_MODIFIERS:
            raise UnsupportedRule(f"{_UNSUPPORTED_MODIFIERS[modifier]} (in '{key}')", needle=key)
        if issubclass(modifier, SigmaTimestampModifier):
            name = reverse_modifier_mapping.get(modifier.__name__, modifier.__name__)
            raise UnsupportedRule(f"timestamp part modifier |{name} is not supported (in '{key}')", needle=key)
    # |cased marks the strings it produces, but expansions (|windash) rebuild plain strings: go by the modifier.
    force_cased = any(
        m in (SigmaBase64Modifier, SigmaBase64OffsetModifier, SigmaCaseSensitiveModifier) for m in item.modifiers
    )
    values = list(item.value)
    field = item.field
    node: Node
    if not values:
        if field is None:
            raise UnsupportedRule("empty keyword detection")
        node = NullLeaf(field)
    elif field is None:
        if item.value_linking is ConditionAND:
            node = _all_of([_keyword_any([v], force_cased, key) for v in values])
        else:
            node = _keyword_any(values, force_cased, key)
    elif item.value_linking is ConditionAND:
        node = _all_of([_field_any(field, [v], force_cased, key) for v in values])
    else:
        node = _field_any(field, values, force_cased, key)
    return Not(node) if item.negated else node


def compile_detection(detection: SigmaDetection) -> Node:
    """A named detection: its items AND-linked (mapping) or OR-linked (list of mappings/values)."""
    children = [
        compile_item(i) if isinstance(i, SigmaDetectionItem) else compile_detection(i)
        for i in detection.detection_items
    ]
    return _all_of(children) if detection.item_linking is ConditionAND else _any_of(children)


def compile_rule(rule: SigmaRule) -> Node:
    """The rule's condition(s) (several are OR-linked) as one matcher tree.

    Raises:
        UnsupportedRule: a feature outside what the engine evaluates.
        sigma.exceptions.SigmaError: the condition does not parse or names unknown detections.
    """
    detections = rule.detection
    memo: dict[str, Node] = {}

    def named(name: str) -> Node:
        if name not in memo:
            if name not in detections.detections:
                raise UnsupportedRule(f"condition refers to undefined detection '{name}'")
            memo[name] = compile_detection(detections.detections[name])
        return memo[name]

    def convert(cond: Any) -> Node:
        cond = unwrap_parse_result_operand(cond)
        if isinstance(cond, ConditionIdentifier):
            return named(cond.identifier)
        if isinstance(cond, ConditionSelector):
            ids = cond.resolve_referenced_detections(detections)
            if not ids:
                raise UnsupportedRule(f"'{cond.args[0]} of {cond.pattern}' matches no detection")
            nodes = [named(i.identifier) for i in ids]
            return _all_of(nodes) if cond.cond_class is ConditionAND else _any_of(nodes)
        if isinstance(cond, ConditionNOT):
            return Not(convert(cond.args[0]))
        if isinstance(cond, ConditionAND):
            return _all_of([convert(a) for a in cond.args])
        if isinstance(cond, ConditionOR):
            return _any_of([convert(a) for a in cond.args])
        kind = type(cond).__name__ if isinstance(cond, ConditionItem) else repr(cond)
        raise UnsupportedRule(f"unsupported condition element {kind}")

    trees = []
    for condition in detections.parsed_condition:
        condition.parse(postprocess=True)  # pySigma's own validation (raises SigmaConditionError)
        trees.append(convert(condition.parse(postprocess=False)))
    if not trees:
        raise UnsupportedRule("rule has no condition")
    return _any_of(trees)
