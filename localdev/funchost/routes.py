"""ASP.NET route templates as the host matches them: parameters, constraints, precedence."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

T = TypeVar("T")

Check = Callable[[str], bool]

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_INTEGER = re.compile(r"^[+-]?\d+$")
_ALPHA = re.compile(r"^[A-Za-z]+$")
_HEX32 = re.compile(r"^[0-9A-Fa-f]{32}$")
_GUID_D = re.compile(
    r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
)

# Lower sorts first: ASP.NET's inbound precedence per segment.
_LITERAL, _COMPLEX, _CONSTRAINED, _PARAMETER, _CATCH_ALL = 1, 2, 3, 4, 5


class RouteTemplateError(ValueError):
    """A route template the host would refuse to index."""


def _integer_in(bounds: tuple[int, int]) -> Check:
    def check(value: str) -> bool:
        return bool(_INTEGER.match(value)) and bounds[0] <= int(value) <= bounds[1]

    return check


def _is_guid(value: str) -> bool:
    # Guid.TryParse accepts the D, N, B ({...}) and P ((...)) formats.
    if len(value) == 38 and (value[0], value[-1]) in (("{", "}"), ("(", ")")):
        return bool(_GUID_D.match(value[1:-1]))
    return bool(_GUID_D.match(value) or _HEX32.match(value))


def _is_bool(value: str) -> bool:
    return value.strip().lower() in ("true", "false")


def _is_number(value: str) -> bool:
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _ints(args: Sequence[str], count: int, name: str) -> list[int]:
    if len(args) != count or not all(_INTEGER.match(a.strip()) for a in args):
        raise RouteTemplateError(f"constraint {name} expects {count} integer argument(s)")
    return [int(a) for a in args]


def _constraint(name: str, args: Sequence[str]) -> Check:
    """Build the check for one inline constraint such as int, guid, minlength(3) or regex(...)."""
    key = name.lower()
    simple: dict[str, Check] = {
        "int": _integer_in(_INT32),
        "long": _integer_in(_INT64),
        "bool": _is_bool,
        "guid": _is_guid,
        "alpha": lambda v: bool(_ALPHA.match(v)),
        "double": _is_number,
        "float": _is_number,
        "decimal": _is_number,
        "datetime": _is_datetime,
    }
    if key in simple:
        if args:
            raise RouteTemplateError(f"constraint {name} takes no arguments")
        return simple[key]
    if key == "minlength":
        (low,) = _ints(args, 1, name)
        return lambda v: len(v) >= low
    if key == "maxlength":
        (high,) = _ints(args, 1, name)
        return lambda v: len(v) <= high
    if key == "length":
        if len(args) == 1:
            (exact,) = _ints(args, 1, name)
            return lambda v: len(v) == exact
        low, high = _ints(args, 2, name)
        return lambda v: low <= len(v) <= high
    if key in ("min", "max", "range"):
        bounds = _ints(args, 2 if key == "range" else 1, name)
        low = bounds[0] if key != "max" else _INT64[0]
        high = bounds[-1] if key != "min" else _INT64[1]
        return _integer_in((low, high))
    if key == "regex":
        pattern = re.compile(",".join(args), re.IGNORECASE)
        return lambda v: pattern.search(v) is not None
    raise RouteTemplateError(f"unknown route constraint {name!r}")


def _split_top_level(text: str, separator: str) -> list[str]:
    """Split on a separator outside parentheses (regex(...) arguments may contain it)."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == separator and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


@dataclass(frozen=True)
class Parameter:
    """One {name:constraint?=default} in a template."""

    name: str
    checks: tuple[Check, ...] = ()
    optional: bool = False
    catch_all: bool = False
    default: str | None = None

    @classmethod
    def parse(cls, text: str) -> Parameter:
        """Parse the inside of the braces."""
        catch_all = text.startswith("*")
        body = text.lstrip("*")
        default = None
        parts = _split_top_level(body, "=")
        if len(parts) > 1:
            body, default = parts[0], "=".join(parts[1:])
        optional = body.endswith("?")
        body = body.rstrip("?")
        name, *constraints = _split_top_level(body, ":")
        if not re.match(r"^[A-Za-z_][\w.-]*$", name):
            raise RouteTemplateError(f"bad route parameter name {name!r}")
        checks = []
        for constraint in constraints:
            match = re.match(r"^(\w+)(?:\((.*)\))?$", constraint, re.DOTALL)
            if not match:
                raise RouteTemplateError(f"bad constraint {constraint!r}")
            arg_text = match.group(2)
            args = _split_top_level(arg_text, ",") if arg_text else []
            if match.group(1).lower() == "regex":
                args = [arg_text or ""]
            checks.append(_constraint(match.group(1), args))
        return cls(name, tuple(checks), optional or default is not None, catch_all, default)


@dataclass(frozen=True)
class Route(Generic[T]):
    """A compiled template bound to a target (the function) and its allowed methods."""

    template: str
    target: T
    methods: frozenset[str] | None
    pattern: re.Pattern[str]
    groups: tuple[tuple[str, Parameter], ...]
    precedence: tuple[int, ...]

    def match(self, path: str) -> dict[str, str] | None:
        """Route values when the path fits the template and every constraint, else None."""
        found = self.pattern.match(path)
        if found is None:
            return None
        values: dict[str, str] = {}
        for group, parameter in self.groups:
            value = found.group(group)
            if value is None or value == "":
                if parameter.default is not None:
                    values[parameter.name] = parameter.default
                elif not (parameter.optional or parameter.catch_all):
                    return None
                continue
            if not all(check(value) for check in parameter.checks):
                return None
            values[parameter.name] = value
        return values


def _split_segment(segment: str, template: str) -> list[tuple[bool, str]]:
    """Split a segment into (is_parameter, text) parts; "{{" and "}}" are literal braces."""
    parts: list[tuple[bool, str]] = []
    literal: list[str] = []
    i = 0
    while i < len(segment):
        char = segment[i]
        if segment.startswith("{{", i) or segment.startswith("}}", i):
            literal.append(char)
            i += 2
            continue
        if char == "}":
            raise RouteTemplateError(f"route {template!r}: unbalanced braces")
        if char != "{":
            literal.append(char)
            i += 1
            continue
        if literal:
            parts.append((False, "".join(literal)))
            literal = []
        inner: list[str] = []
        i += 1
        while True:
            if i >= len(segment):
                raise RouteTemplateError(f"route {template!r}: unbalanced braces")
            if segment.startswith("{{", i) or segment.startswith("}}", i):
                inner.append(segment[i])
                i += 2
            elif segment[i] == "}":
                i += 1
                break
            elif segment[i] == "{":
                raise RouteTemplateError(f"route {template!r}: unbalanced braces")
            else:
                inner.append(segment[i])
                i += 1
        parts.append((True, "".join(inner)))
    if literal:
        parts.append((False, "".join(literal)))
    return parts


def compile_route(
    template: str, target: T, methods: Iterable[str] | None = None, prefix: str = ""
) -> Route[T]:
    """Compile a route template (with the host's route prefix) into a matcher."""
    full = "/".join(p for p in (prefix.strip("/"), template.strip().strip("/")) if p)
    segments = full.split("/") if full else []
    regex = ["^"]
    groups: list[tuple[str, Parameter]] = []
    precedence: list[int] = []
    for index, segment in enumerate(segments):
        if not segment:
            raise RouteTemplateError(f"route {template!r} has an empty segment")
        parts = _split_segment(segment, template)
        if all(not is_parameter for is_parameter, _ in parts):
            regex.append("/" + re.escape("".join(text for _, text in parts)))
            precedence.append(_LITERAL)
            continue
        if len(parts) == 1:
            parameter = Parameter.parse(parts[0][1])
            group = f"g{len(groups)}"
            groups.append((group, parameter))
            if parameter.catch_all:
                if index != len(segments) - 1:
                    raise RouteTemplateError(f"route {template!r}: catch-all must be last")
                regex.append(f"(?:/(?P<{group}>.*))?")
                precedence.append(_CATCH_ALL)
            elif parameter.optional:
                regex.append(f"(?:/(?P<{group}>[^/]+))?")
                precedence.append(_CONSTRAINED if parameter.checks else _PARAMETER)
            else:
                regex.append(f"/(?P<{group}>[^/]+)")
                precedence.append(_CONSTRAINED if parameter.checks else _PARAMETER)
            continue
        # A complex segment such as "{name}.{ext}": greedy groups give ASP.NET's right-to-left
        # reading ("a.b.pdf" -> name "a.b", ext "pdf").
        piece = ["/"]
        for is_parameter, text in parts:
            if not is_parameter:
                piece.append(re.escape(text))
                continue
            parameter = Parameter.parse(text)
            if parameter.catch_all:
                raise RouteTemplateError(f"route {template!r}: catch-all inside a segment")
            group = f"g{len(groups)}"
            groups.append((group, parameter))
            piece.append(f"(?P<{group}>[^/]+)")
        regex.append("".join(piece))
        precedence.append(_COMPLEX)
    regex.append("/?$")
    names = [p.name.lower() for _, p in groups]
    if len(names) != len(set(names)):
        raise RouteTemplateError(f"route {template!r} repeats a parameter name")
    return Route(
        template=template,
        target=target,
        methods=frozenset(m.upper() for m in methods) if methods else None,
        pattern=re.compile("".join(regex), re.IGNORECASE),
        groups=tuple(groups),
        precedence=tuple(precedence),
    )


@dataclass(frozen=True)
class RouteMatch(Generic[T]):
    """The outcome of matching: the route and its values, or a status (404/405)."""

    route: Route[T] | None
    values: dict[str, str] = field(default_factory=dict)
    status: int = 200
    allowed: frozenset[str] = frozenset()


class RouteTable(Generic[T]):
    """All HTTP routes in match order, built once when the host starts."""

    def __init__(self, routes: Iterable[Route[T]]) -> None:
        # Stable sort: equal precedence keeps registration order, like the host's endpoint order.
        self._routes = sorted(routes, key=lambda r: r.precedence)

    @property
    def routes(self) -> Sequence[Route[T]]:
        """Routes in the order they are tried."""
        return self._routes

    def match(self, method: str, path: str) -> RouteMatch[T]:
        """The route for a method and a decoded path; else 404, or 405 if only the method is off."""
        allowed: set[str] = set()
        path_matched = False
        method = method.upper()
        for route in self._routes:
            values = route.match(path)
            if values is None:
                continue
            if route.methods is None or method in route.methods:
                return RouteMatch(route, values)
            path_matched = True
            allowed |= route.methods
        if path_matched:
            return RouteMatch(None, status=405, allowed=frozenset(allowed))
        return RouteMatch(None, status=404)
