"""requirements.txt must not drift from pyproject.toml."""

from localdev.requirements import ROOT, render


def test_requirements_txt_matches_pyproject():
    assert (ROOT / "requirements.txt").read_text() == render(), (
        "requirements.txt is stale: run `python -m localdev.requirements`"
    )
