"""``KEY=VALUE`` plugin options and name suggestions."""

from __future__ import annotations

import pytest

from segal_core import SegalError
from segal_core.names import closest, normalize
from segal_core.options import coerce_options, parse_pairs


class Target:
    name = "target"

    def __init__(self, reduction: str = "mean", q: float = 0.1, n: int = 3, flag: bool = False,
                 limit: int | None = None) -> None:
        pass


def test_parse_pairs() -> None:
    assert parse_pairs(["a=1", "top-q = 0.2"], "--x") == {"a": "1", "top_q": "0.2"}
    with pytest.raises(SegalError, match=r"^--strategy-opt 'oops': expected KEY=VALUE$"):
        parse_pairs(["oops"], "--strategy-opt")


def test_coerce_to_type_hints() -> None:
    got = coerce_options(Target, {"q": "0.5", "n": "7", "flag": "yes", "limit": "none", "reduction": "max"}, "--o")
    assert got == {"q": 0.5, "n": 7, "flag": True, "limit": None, "reduction": "max"}
    assert coerce_options(Target, {"limit": "4"}, "--o") == {"limit": 4}


def test_unknown_option_lists_accepted_closest_first() -> None:
    with pytest.raises(SegalError) as err:
        coerce_options(Target, {"reductoin": "max"}, "--strategy-opt")
    message = str(err.value)
    assert message.startswith("--strategy-opt reductoin=max: 'target' takes no option 'reductoin' (it takes: reduction,")


def test_bad_number() -> None:
    with pytest.raises(SegalError, match=r"--o q='abc': expected a number \(float\)"):
        coerce_options(Target, {"q": "abc"}, "--o")


def test_names() -> None:
    assert normalize(" Least-Confidence ") == "least_confidence"
    assert closest("marg", ["entropy", "margin", "random"])[0] == "margin"
