"""python: sources: `pkg.module:function` imported with the scenario's folder first on sys.path."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.models.python_source import import_target, load_target, parse_target


@pytest.fixture
def scenario_dir(tmp_path: Path) -> Path:
    """A scenario folder holding a package `userpkg` with a module `factories`."""
    package = tmp_path / "userpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "factories.py").write_text(
        textwrap.dedent(
            """
            from userpkg import helpers

            VALUE = 3

            def make():
                return {"answer": helpers.answer()}

            def needs(a, b=1):
                return a

            def boom():
                raise RuntimeError("no GPU here\\nsecond line")

            class Maker:
                @staticmethod
                def build():
                    return "built"
            """
        )
    )
    (package / "helpers.py").write_text("def answer():\n    return 42\n")
    yield tmp_path
    for name in [n for n in sys.modules if n == "userpkg" or n.startswith("userpkg.")]:
        del sys.modules[name]


def test_factory_is_imported_from_the_scenario_folder_and_called(scenario_dir: Path) -> None:
    before = list(sys.path)
    assert load_target("userpkg.factories:make", scenario_dir, "model.source") == {"answer": 42}
    assert sys.path == before  # the scenario's folder was on sys.path only while importing
    assert load_target("userpkg.factories:Maker.build", scenario_dir, "model.source") == "built"


def test_a_module_of_the_same_name_from_another_scenario_is_not_reused(
    scenario_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    assert load_target("userpkg.factories:make", scenario_dir, "model.source") == {"answer": 42}
    other = tmp_path_factory.mktemp("other-scenario")
    (other / "userpkg").mkdir()
    (other / "userpkg" / "__init__.py").write_text("")
    (other / "userpkg" / "factories.py").write_text("def make():\n    return 'other'\n")
    assert load_target("userpkg.factories:make", other, "model.source") == "other"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("userpkg.factories", r"model\.source: 'userpkg\.factories' is not 'pkg\.module:function'"),
        ("userpkg/factories.py:make", r"is not 'pkg\.module:function'"),
        ("nowhere.mod:make", r"model\.source: no module named 'nowhere' in .* \(the scenario's folder\)"),
        ("userpkg.missing:make", r"no module named 'userpkg\.missing'"),
        (
            "userpkg.factories:absent",
            r"module 'userpkg\.factories' \(.*factories\.py\) has no attribute 'absent'",
        ),
        ("userpkg.factories:VALUE", r"userpkg\.factories:VALUE is a int, not a function to call"),
    ],
)
def test_bad_targets_are_one_line_user_errors(scenario_dir: Path, target: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as caught:
        import_target(target, scenario_dir, "model.source")
    assert "\n" not in str(caught.value)


def test_a_factory_that_needs_arguments_or_raises_is_a_user_error(scenario_dir: Path) -> None:
    with pytest.raises(UserError, match=r"userpkg\.factories:needs takes required arguments \(a\)"):
        load_target("userpkg.factories:needs", scenario_dir, "model.source")
    with pytest.raises(
        UserError, match=r"^model\.source: userpkg\.factories:boom raised RuntimeError: no GPU here$"
    ):
        load_target("userpkg.factories:boom", scenario_dir, "model.source")


def test_import_errors_inside_the_users_module_are_reported_as_such(tmp_path: Path) -> None:
    (tmp_path / "broken_dep.py").write_text("import not_installed_anywhere\n")
    (tmp_path / "broken_syntax.py").write_text("def f(:\n")
    (tmp_path / "broken_code.py").write_text("raise ValueError('bad config')\n")
    try:
        with pytest.raises(UserError, match=r"importing 'broken_dep' failed: .*not_installed_anywhere"):
            import_target("broken_dep:f", tmp_path, "model.source")
        with pytest.raises(UserError, match=r"syntax error in .*broken_syntax\.py:1"):
            import_target("broken_syntax:f", tmp_path, "model.source")
        with pytest.raises(UserError, match=r"importing 'broken_code' raised ValueError: bad config"):
            import_target("broken_code:f", tmp_path, "data.function")
    finally:
        for name in ("broken_dep", "broken_syntax", "broken_code"):
            sys.modules.pop(name, None)


def test_parse_target_splits_module_and_attribute() -> None:
    assert parse_target("a.b.c:make_model", "model.source") == ("a.b.c", "make_model")
    with pytest.raises(UserError):
        parse_target("a.b.c:", "model.source")
