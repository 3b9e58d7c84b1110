"""Jinja expressions (`expr:`) and templates (`template:`) in platform mapping files.

Platform files and ``hubspot.yaml`` share one language: Jinja, evaluated in a sandbox
(as ``worker/crm/hubspot_config.py`` renders the CRM templates). A mapping file is edited
by the operator, so the sandbox keeps its expressions from reaching Python; the payload
is sent by anyone who knows the URL, so nothing in it may make a correct expression loop,
build a huge string or raise anything but a reason (``ExpressionError``).

What an expression sees: every top-level key of the object the rule reads (its `root`, or
the `foreach` item) as a variable, ``this`` for that object itself (for keys that are not
names: ``this['Bridge-ID']``) and ``delivery`` for the whole body (as ``$.`` in a path).
A key that is missing is *undefined*, never an error: ``a.b.c`` of a missing ``a`` is
undefined too, and an undefined (or null, or empty) result is an absent value.

Expressions and templates are compiled once, when the file is loaded (`expression` and
`template` cache by source text): a webhook only runs compiled code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import ChainableUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.exceptions import SecurityError
from jinja2.meta import find_undeclared_variables
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import consume

# The longest text (or list) an expression or template may make, and any one operation
# inside it: canonical fields hold at most 200 characters, so this is generous, and it
# keeps `'x' * n`, `join` and `replace` from building megabytes out of a payload value.
MAX_TEXT = 10_000
# `range()` is all an expression could iterate over that the payload did not bring.
MAX_RANGE = 1_000
# `a ** b` on integers: at most this many bits (a 1,234-digit number), never 10 ** 10 ** 10.
MAX_POWER_BITS = 4_096
# The names the engine gives beside the payload's keys (they win over a key of that name).
THIS = "this"
DELIVERY = "delivery"

# Methods of text that turn a short value into a long one (padding, repetition).
_AMPLIFYING_METHODS = frozenset(
    {"center", "ljust", "rjust", "zfill", "expandtabs", "format", "format_map", "replace", "join"}
)
# Jinja's filters that only read what they are given: none pads, repeats or loops on a
# number the expression chose (center, indent, wordwrap, batch, slice, format are out, as
# are random, which would make golden files differ from run to run, and HTML helpers).
_FILTERS = frozenset(
    {
        "abs",
        "attr",
        "capitalize",
        "count",
        "d",
        "default",
        "dictsort",
        "first",
        "float",
        "groupby",
        "int",
        "items",
        "last",
        "length",
        "list",
        "lower",
        "map",
        "max",
        "min",
        "reject",
        "rejectattr",
        "reverse",
        "round",
        "select",
        "selectattr",
        "sort",
        "string",
        "sum",
        "title",
        "tojson",
        "trim",
        "truncate",
        "unique",
        "upper",
        "urlencode",
        "wordcount",
    }
)
# Template statements a mapping has no use for: loops (the only way to run long), macros,
# and anything that loads another template.
_FORBIDDEN_STATEMENTS: dict[type[nodes.Node], str] = {
    nodes.For: "for",
    nodes.Macro: "macro",
    nodes.CallBlock: "call",
    nodes.FilterBlock: "filter",
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from",
    nodes.Extends: "extends",
    nodes.Block: "block",
}


class ExpressionError(ValueError):
    """An expression or template failed on this payload; the message says which and why."""


class _Absent(Exception):
    """A template printed an absent value: the whole template is absent."""


def _finalize(value: Any) -> Any:
    # `{{ x }}` of a missing, null or empty value makes the template absent (as the old
    # `{x}` form did): a dedupe key "None:ringing" would merge unrelated deliveries.
    if value is None or isinstance(value, Undefined) or (isinstance(value, str) and not value):
        raise _Absent
    return value


def _too_long(size: int) -> None:
    if size > MAX_TEXT:
        raise SecurityError(f"the result would be {size} long, over the limit of {MAX_TEXT}")


def _multiply(left: Any, right: Any) -> Any:
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(count, int):
            _too_long(len(seq) * count)
    return left * right


def _power(base: Any, exponent: Any) -> Any:
    big = isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1
    if big and base.bit_length() * exponent > MAX_POWER_BITS:
        raise SecurityError(f"{base} ** {exponent} is too large a number")
    return base**exponent


def _modulo(left: Any, right: Any) -> Any:
    if isinstance(left, str | bytes):
        # "%09999999d" % 1 is a 10 MB string; `~` and the filters join text instead.
        raise SecurityError("'%' formatting of text is not available; join text with ~")
    return left % right


class MappingEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox for mapping files: Jinja's immutable sandbox, bounded.

    Payload objects are read as dicts are in paths: ``a.items`` is the key "items" when
    the payload has one (Jinja would give the dict's method), so a payload key never
    turns into Python.
    """

    intercepted_binops = frozenset({"*", "**", "%"})
    _binops: dict[str, Callable[[Any, Any], Any]] = {
        "*": _multiply,
        "**": _power,
        "%": _modulo,
    }

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        """`*`, `**` and `%` with the bounds above; the others are Jinja's own."""
        return self._binops[operator](left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        """A dict's key before its method of the same name (`a.values`, `a.items`)."""
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        """The sandbox's rule, less the methods that make text long (`'x'.ljust(10**9)`)."""
        if isinstance(obj, str | bytes) and attr in _AMPLIFYING_METHODS:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> None:
        """No `str.format`: its widths are unbounded ("{:>999999999}"); `~` joins text."""
        return None


def _range(*args: int) -> range:
    found = range(*args)
    if len(found) > MAX_RANGE:
        raise SecurityError(f"range() of {len(found)} items, over the limit of {MAX_RANGE}")
    return found


def _join(value: Iterable[Any], separator: str = "") -> str:
    items = [str(item) for item in value]
    _too_long(sum(len(item) for item in items) + len(separator) * max(len(items) - 1, 0))
    return separator.join(items)


def _replace(value: Any, old: str, new: str, count: int | None = None) -> str:
    text, old, new = str(value), str(old), str(new)
    found = text.count(old) if old else len(text) + 1
    if count is not None:
        found = min(found, max(count, 0))
    _too_long(len(text) + found * (len(new) - len(old)))
    return text.replace(old, new, -1 if count is None else count)


def _digits(value: Any) -> str:
    """ "+33 (0)6 12-34" → "330612 34" without the rest: only the digits of a value."""
    if value is None or isinstance(value, Undefined):
        return ""
    return "".join(char for char in str(value) if char.isdigit())


@lru_cache(maxsize=256)
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _search(value: Any, pattern: str) -> bool:
    """`x is search('^\\+?\\d{7,}@')`: the pattern is found in the value's text."""
    if value is None or isinstance(value, Undefined | dict | list):
        return False
    return _pattern(pattern).search(_text(value)) is not None


def _match(value: Any, pattern: str) -> bool:
    """`x is match('\\d+')`: the whole of the value's text matches the pattern."""
    if value is None or isinstance(value, Undefined | dict | list):
        return False
    return _pattern(pattern).fullmatch(_text(value)) is not None


def _numeric(value: Any) -> bool:
    """A finite number, or text that reads as one ("42", "4.5"); never true/false."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return False
    try:
        return math.isfinite(float(value))
    except (ValueError, OverflowError):
        return False


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _environment() -> MappingEnvironment:
    env = MappingEnvironment(undefined=ChainableUndefined, finalize=_finalize, autoescape=False)
    env.filters = {name: env.filters[name] for name in _FILTERS}
    env.filters.update(join=_join, replace=_replace, digits=_digits)
    env.tests.update(search=_search, match=_match, numeric=_numeric)
    env.globals = {"range": _range, "dict": dict}
    return env


ENVIRONMENT = _environment()


def scope(root: Any, top: Any) -> dict[str, Any]:
    """The variables of one payload item: built once, shared by its expressions.

    Expressions and templates run on it directly (a shared Jinja context), so evaluating
    one does not copy the payload's keys or the globals every time.
    """
    found = dict(ENVIRONMENT.globals)
    if isinstance(root, dict):
        found.update(root)
    found[THIS] = root
    found[DELIVERY] = top
    return found


def _is_this(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Name) and node.name == THIS


def _names(tree: nodes.Template) -> frozenset[str]:
    """The payload keys an expression reads: its free names and `this.x` / `this['x']`."""
    names = set(find_undeclared_variables(tree)) - {THIS, DELIVERY}
    for node in tree.find_all(nodes.Getattr):
        if isinstance(node, nodes.Getattr) and _is_this(node.node):
            names.add(node.attr)
    for item in tree.find_all(nodes.Getitem):
        if not (isinstance(item, nodes.Getitem) and _is_this(item.node)):
            continue
        if isinstance(item.arg, nodes.Const) and isinstance(item.arg.value, str):
            names.add(item.arg.value)
    return frozenset(names)


def _syntax(exc: TemplateSyntaxError, kind: str) -> ValueError:
    message = str(exc.message).replace("unexpected 'end of template'", f"{kind} ends too soon")
    message = message.replace("chunk after expression", "text after the end of the expression")
    return ValueError(f"{kind} error: {message}")


def _result(value: Any, source: str) -> Any:
    """An expression's value, with its undefined parts absent and its size bounded."""
    if isinstance(value, Undefined):
        return None
    if isinstance(value, str | list | tuple | dict) and len(value) > MAX_TEXT:
        raise ExpressionError(f"{source!r} made a value {len(value)} long (at most {MAX_TEXT})")
    if isinstance(value, list | tuple):
        return [None if isinstance(item, Undefined) else item for item in value]
    return value


@dataclass(frozen=True)
class Expression:
    """One compiled `expr:`; `names` are the payload keys it reads (for `variables: rest`)."""

    source: str
    names: frozenset[str]
    _compiled: Any  # a jinja2 Template assigning the expression to `result`

    def evaluate(self, variables: dict[str, Any]) -> Any:
        """The value on this payload (None when undefined); ExpressionError if it fails.

        `variables` comes from `scope` (globals included).
        """
        try:
            context = self._compiled.new_context(variables, shared=True)
            consume(self._compiled.root_render_func(context))
            value = context.vars["result"]
        except Exception as exc:
            # Whatever the payload makes it raise (TypeError, ZeroDivisionError, the
            # sandbox's SecurityError…) is this delivery's mapping failure, never a 500.
            raise ExpressionError(f"{self.source!r} failed: {_reason(exc)}") from None
        return _result(value, self.source)


@dataclass(frozen=True)
class Template:
    """One compiled `template:`; absent (None) when it prints a missing, null or empty value."""

    source: str
    names: frozenset[str]
    _compiled: Any

    def render(self, variables: dict[str, Any]) -> str | None:
        """The text on this payload (`variables` from `scope`); None when absent."""
        try:
            context = self._compiled.new_context(variables, shared=True)
            text = "".join(self._compiled.root_render_func(context))
        except _Absent:
            return None
        except Exception as exc:  # as in Expression.evaluate: the delivery's failure
            raise ExpressionError(f"{self.source!r} failed: {_reason(exc)}") from None
        if len(text) > MAX_TEXT:
            raise ExpressionError(
                f"{self.source!r} made {len(text)} characters (at most {MAX_TEXT})"
            )
        return text


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if not isinstance(exc, SecurityError) else str(exc)


# Bounded although a process loads few files: one entry per distinct source text.
@lru_cache(maxsize=4096)
def expression(source: str) -> Expression:
    """Compile `source` (cached: a file's expressions compile once); ValueError if invalid."""
    # As Environment.compile_expression, keeping the template to run it on a shared context.
    try:
        parser = Parser(ENVIRONMENT, source, state="variable")
        expr = parser.parse_expression()
        if not parser.stream.eos:
            raise TemplateSyntaxError("chunk after expression", parser.stream.current.lineno)
        tree = nodes.Template([nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)])
        tree.set_environment(ENVIRONMENT)
        compiled = ENVIRONMENT.from_string(tree)
    except TemplateSyntaxError as exc:
        raise _syntax(exc, "expression") from None
    return Expression(source, _names(tree), compiled)


@lru_cache(maxsize=4096)
def template(source: str) -> Template:
    """Compile a template (cached); ValueError naming the syntax error or a refused statement."""
    try:
        tree = ENVIRONMENT.parse(source)
        compiled = ENVIRONMENT.from_string(tree)
    except TemplateSyntaxError as exc:
        raise _syntax(exc, "template") from None
    for kind, word in _FORBIDDEN_STATEMENTS.items():
        if next(tree.find_all(kind), None) is not None:
            raise ValueError(f"template error: {{% {word} %}} is not available in mapping files")
    return Template(source, _names(tree), compiled)


# --- The `{a.b}` templates of files written before Jinja --------------------------------

_LEGACY_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RESERVED = {"and", "or", "not", "in", "is", "if", "else", "true", "false", "none"}
_RESERVED |= {"True", "False", "None", THIS, DELIVERY}


def is_legacy_template(text: str) -> bool:
    """`"{callUuid}:{state}"`: placeholders in single braces, no Jinja tag anywhere."""
    if any(tag in text for tag in ("{{", "{%", "{#")):
        return False
    return _LEGACY_PLACEHOLDER.search(text) is not None


def from_legacy(text: str) -> str:
    """`{a.b}` → `{{ a.b }}`, `{$.x}` → `{{ delivery.x }}`: old files keep working as written."""
    return _LEGACY_PLACEHOLDER.sub(lambda m: "{{ " + path_expression(m.group(1)) + " }}", text)


def path_expression(path: str) -> str:
    """A mapping path (`a.b`, `calls.0.id`, `$.x`, `vars.Bridge-ID`) as a Jinja expression."""
    path = path.strip()
    out, rest = (DELIVERY, path[2:]) if path.startswith("$.") else (None, path)
    for part in rest.split("."):
        named = _IDENTIFIER.fullmatch(part) is not None
        if out is None:
            out = part if named and part not in _RESERVED else f"{THIS}[{part!r}]"
        elif named:
            out += f".{part}"
        elif part.lstrip("-").isdigit():
            out += f"[{int(part)}]"
        else:
            out += f"[{part!r}]"
    assert out is not None
    return out


__all__ = [
    "DELIVERY",
    "ENVIRONMENT",
    "MAX_TEXT",
    "THIS",
    "Expression",
    "ExpressionError",
    "Template",
    "expression",
    "from_legacy",
    "is_legacy_template",
    "path_expression",
    "scope",
    "template",
]
