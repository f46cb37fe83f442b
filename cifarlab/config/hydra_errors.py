"""Hydra's multi-line composition errors as one line: the override, what is wrong, the fix.

Three kinds get their own wording: a config group option that does not exist
(``model=cnn_bnn``), an override Hydra cannot parse (``'model.hidden_units=[32,64'``)
and a key the config does not have (``trainer.epoch=3``); the rest keep Hydra's
own text, joined into one line.
"""

from __future__ import annotations

import difflib
import re
import shlex

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import (
    ConfigCompositionException,
    HydraException,
    MissingConfigException,
    OverrideParseException,
)
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic"
SYNTAX_FIX = (
    "write lists as key=[a,b], text with spaces or symbols as key='a b', "
    f"and quote the whole override for the shell ({GRAMMAR})"
)
PAIRS = {"[": "]", "{": "}", "(": ")"}
QUOTES = "'\""


def describe_hydra_error(err: HydraException) -> str:
    """One line naming the key, the value and the fix, for any error Hydra raises while composing."""
    if isinstance(err, MissingConfigException) and err.options and err.missing_cfg_file:
        return _missing_option(err)
    if isinstance(err, OverrideParseException):
        return describe_override_syntax(err.override, err.message)
    if isinstance(err, ConfigCompositionException):
        unknown = _unknown_key(err)
        if unknown:
            return unknown
    return _joined(err)


def _missing_option(err: MissingConfigException) -> str:
    group, _, value = (err.missing_cfg_file or "").rpartition("/")
    options = list(err.options or [])
    close = difflib.get_close_matches(value, options, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (
        f"{group}={value!r} is not an option of config group '{group}'; "
        f"{hint}choose one of: {', '.join(sorted(options))}"
    )


def describe_override_syntax(override: str, message: str = "") -> str:
    """``override`` that Hydra's grammar rejects, with a corrected override when one is plain."""
    key, equals, value = override.partition("=")
    if not equals:
        return f"{override!r} is not an override; write key=value, e.g. {override}=3, or ~{override} to remove it"
    reason = _parser_reason(message)
    reason = f" ({reason})" if reason else ""
    fixed = _balanced(value)
    if fixed is not None and fixed != value and _parses(f"{key}={fixed}"):
        fix = f"close it: {_shell_quoted(f'{key}={fixed}')}"
    else:
        fix = SYNTAX_FIX
    return f"{key}={value!r} is not valid override syntax{reason}; {fix}"


def _parser_reason(message: str) -> str:
    """The part of Hydra's parser message worth reading: no caret lines, token lists or links."""
    for line in message.splitlines():
        line = line.strip()
        if not line or line.startswith(
            ("Error parsing override", "See https", "LexerNoViableAltException", "^")
        ):
            continue
        return line.split(" expecting ", 1)[0]
    return ""


def _balanced(value: str) -> str | None:
    """``value`` with its open brackets and quote closed, or None when a closer has no opener."""
    stack: list[str] = []
    quote = ""
    for char in value:
        if quote:
            quote = "" if char == quote else quote
        elif char in QUOTES:
            quote = char
        elif char in PAIRS:
            stack.append(PAIRS[char])
        elif char in PAIRS.values() and (not stack or stack.pop() != char):
            return None
    return value + quote + "".join(reversed(stack))


def _shell_quoted(text: str) -> str:
    """``text`` as one shell word, in double quotes when it holds a single quote and nothing they expand."""
    if "'" in text and not any(c in text for c in '"$`\\!'):
        return f'"{text}"'
    return shlex.quote(text)


def _parses(override: str) -> bool:
    try:
        OverridesParser.create().parse_overrides([override])
    except HydraException:
        return False
    return True


def _unknown_key(err: ConfigCompositionException) -> str | None:
    """``trainer.epoch=3``: the section has no such key; suggest the closest one."""
    cause = err.__cause__
    if not isinstance(cause, (ConfigAttributeError, ConfigKeyError)) or not cause.full_key:
        return None
    parent = cause.parent_node
    if not isinstance(parent, DictConfig):
        return None
    match = re.search(r"use \+(\S+)", str(err))
    override = match.group(1) if match else str(cause.full_key)
    key, _, value = override.partition("=")
    section = str(cause.full_key).rpartition(".")[0]
    known = [str(k) for k in parent if not (k == "hydra" and not section)]
    close = difflib.get_close_matches(str(cause.key), known, n=1)
    if close:
        depth = section.count(".") + 1 if section else 0
        parts = key.split(".")
        parts[depth] = close[0]
        fix = f"did you mean {'.'.join(parts)}={value}?"
    else:
        fix = f"{section or 'the config'} has: {', '.join(known)}"
    if OmegaConf.get_type(parent) is dict:  # an open node such as model takes new keys with +
        fix += f" (or +{override} to add a new key)"
    return f"{key}={value!r} is not a key of {section or 'the config'}; {fix}"


def _joined(err: HydraException) -> str:
    lines = [str(err)]
    if err.__cause__ is not None:
        lines.append(str(err.__cause__))
    keep = []
    for line in "\n".join(lines).splitlines():
        line = line.strip()
        if line and not line.startswith(("reference_type", "object_type", "Config search path", "provider=")):
            keep.append(line.rstrip("."))
    return "; ".join(keep)
