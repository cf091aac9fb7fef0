"""Route templates and constraints as the Functions host matches them."""

from __future__ import annotations

import pytest

from localdev.funchost.routes import RouteTable, RouteTemplateError, compile_route

GUID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def table(*templates: str | tuple[str, list[str]], prefix: str = "api") -> RouteTable[str]:
    routes = []
    for item in templates:
        template, methods = (item, None) if isinstance(item, str) else item
        routes.append(compile_route(template, template, methods, prefix))
    return RouteTable(routes)


def target(t: RouteTable[str], path: str, method: str = "GET") -> str | None:
    match = t.match(method, path)
    return match.route.target if match.route else None


def test_parameter_values_come_from_the_path() -> None:
    match = table("resellers/{r}/customers/{c}").match("GET", "/api/resellers/acme/customers/42")
    assert match.values == {"r": "acme", "c": "42"}


def test_route_prefix_is_required_and_configurable() -> None:
    assert target(table("health"), "/health") is None
    assert target(table("health", prefix=""), "/health") == "health"
    assert target(table("health", prefix="v1/x"), "/v1/x/health") == "health"


def test_guid_constraint_accepts_guid_formats_and_rejects_others() -> None:
    t = table("items/{id:guid}")
    for good in (GUID, GUID.upper(), GUID.replace("-", ""), "{" + GUID + "}", "(" + GUID + ")"):
        assert target(t, f"/api/items/{good}") == "items/{id:guid}", good
    for bad in ("123", GUID[:-1], GUID + "0", "{" + GUID + ")"):
        assert target(t, f"/api/items/{bad}") is None, bad


@pytest.mark.parametrize(
    ("template", "good", "bad"),
    [
        ("n/{n:int}", ["0", "-5", "2147483647"], ["x", "1.5", "2147483648"]),
        ("n/{n:long}", ["9223372036854775807"], ["9223372036854775808"]),
        ("b/{b:bool}", ["true", "FALSE"], ["yes", "1"]),
        ("a/{a:alpha}", ["abc", "ABC"], ["ab1", "á"]),
        ("d/{d:double}", ["1.5", "-2"], ["abc", "nan"]),
        ("m/{m:min(3)}", ["3", "10"], ["2", "x"]),
        ("r/{r:range(1,5)}", ["1", "5"], ["0", "6"]),
        ("l/{l:length(2)}", ["ab"], ["a", "abc"]),
        ("l/{l:minlength(2):maxlength(3)}", ["ab", "abc"], ["a", "abcd"]),
        ("x/{x:regex(^[a-z]{{2}}\\d$)}", ["ab1"], ["abc", "a1"]),
        ("t/{t:datetime}", ["2024-01-31"], ["yesterday"]),
    ],
)
def test_constraints(template: str, good: list[str], bad: list[str]) -> None:
    t = table(template)
    head = template.split("/")[0]
    for value in good:
        assert target(t, f"/api/{head}/{value}") is not None, value
    for value in bad:
        assert target(t, f"/api/{head}/{value}") is None, value


def test_literal_segment_wins_over_parameter_whatever_the_order() -> None:
    t = table("items/{id}", "items/new", "items/{id:int}")
    assert target(t, "/api/items/new") == "items/new"
    assert target(t, "/api/items/5") == "items/{id:int}"
    assert target(t, "/api/items/abc") == "items/{id}"


def test_literals_match_case_insensitively_and_values_keep_their_case() -> None:
    t = table("Items/{name}")
    match = t.match("GET", "/API/items/MixedCase")
    assert match.route is not None
    assert match.values == {"name": "MixedCase"}


def test_optional_and_default_parameters() -> None:
    t = table("counts/{n:int}/{flag:bool?}")
    assert t.match("GET", "/api/counts/1").values == {"n": "1"}
    assert t.match("GET", "/api/counts/1/true").values == {"n": "1", "flag": "true"}
    assert t.match("GET", "/api/counts/1/maybe").route is None
    d = table("page/{n=1}")
    assert d.match("GET", "/api/page").values == {"n": "1"}
    assert d.match("GET", "/api/page/3").values == {"n": "3"}


def test_catch_all_takes_the_rest_of_the_path() -> None:
    t = table("files/{*path}")
    assert t.match("GET", "/api/files/a/b/c.txt").values == {"path": "a/b/c.txt"}
    assert t.match("GET", "/api/files").values == {}
    assert target(table("files/{*path}", "files/readme"), "/api/files/readme") == "files/readme"


def test_complex_segment() -> None:
    t = table("docs/{name}.{ext}")
    assert t.match("GET", "/api/docs/report.final.pdf").values == {
        "name": "report.final",
        "ext": "pdf",
    }


def test_method_mismatch_is_405_with_allowed_methods_and_no_match_is_404() -> None:
    t = table(("orders/{id}", ["GET", "patch"]), ("orders/{id}", ["DELETE"]))
    assert target(t, "/api/orders/1", "PATCH") == "orders/{id}"
    match = t.match("POST", "/api/orders/1")
    assert match.status == 405
    assert match.allowed == {"GET", "PATCH", "DELETE"}
    assert t.match("GET", "/api/other").status == 404


def test_method_mismatch_falls_through_to_a_less_specific_route() -> None:
    t = table(("items/new", ["GET"]), ("items/{id}", ["POST"]))
    assert target(t, "/api/items/new", "POST") == "items/{id}"


def test_trailing_slash_is_tolerated() -> None:
    assert target(table("health"), "/api/health/") == "health"


def test_function_without_methods_accepts_any_method() -> None:
    assert target(table("any"), "/api/any", "PATCH") == "any"


@pytest.mark.parametrize(
    "template",
    ["a/{id:nosuch}", "a/{*rest}/b", "a//b", "a/{x}/{X}", "a/{x", "a/{bad name}", "a/{n:min(x)}"],
)
def test_bad_templates_are_refused(template: str) -> None:
    with pytest.raises(RouteTemplateError):
        compile_route(template, template)
