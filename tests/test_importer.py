"""Import strings: what resolves, and the precise error for what does not."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chanlite._importer import import_from_string, import_module
from chanlite.exceptions import ConfigurationError, ImportStringError

MakeModule = Callable[[str, str], Path]


@pytest.fixture
def make_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeModule]:
    """Write modules into a temporary directory on sys.path; forget them afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)

    def make(name: str, source: str) -> Path:
        path = tmp_path.joinpath(*name.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(tmp_path).parents:
            init = tmp_path / parent / "__init__.py"
            if parent != Path(".") and not init.exists():
                init.write_text("")
        path.write_text(textwrap.dedent(source))
        return path

    yield make
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_import_string_error_is_a_configuration_and_value_error() -> None:
    assert issubclass(ImportStringError, ConfigurationError)
    assert issubclass(ImportStringError, ValueError)


def test_module_colon_attribute(make_module: MakeModule) -> None:
    make_module("imp_basic", "VALUE = object()\n")
    import imp_basic  # type: ignore[import-not-found]

    assert import_from_string("imp_basic:VALUE") is imp_basic.VALUE


def test_dotted_module_and_dotted_attribute(make_module: MakeModule) -> None:
    make_module(
        "imp_pkg.inner",
        """
        class Holder:
            class Nested:
                value = "deep"
        """,
    )
    assert import_from_string("imp_pkg.inner:Holder.Nested.value") == "deep"


def test_stdlib_dotted_attribute() -> None:
    import os.path

    assert import_from_string("os:path.join") is os.path.join


def test_file_path_colon_attribute(tmp_path: Path) -> None:
    path = tmp_path / "imp_file_target.py"
    path.write_text("ANSWER = 42\n")
    try:
        assert import_from_string(f"{path}:ANSWER") == 42
    finally:
        sys.modules.pop("imp_file_target", None)
        sys.path.remove(str(tmp_path.resolve()))


def test_relative_file_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "imp_rel_target.py").write_text("NAME = 'rel'\n")
    monkeypatch.chdir(tmp_path)
    try:
        assert import_from_string("sub/imp_rel_target.py:NAME") == "rel"
    finally:
        sys.modules.pop("imp_rel_target", None)
        sys.path.remove(str((tmp_path / "sub").resolve()))


@pytest.mark.parametrize(
    "target",
    ["no_colon_here", "a:b:c", ":attr", "module:", ":", "", "path/x.py"],
    ids=["no-colon", "two-colons", "no-module", "no-attr", "bare-colon", "empty", "file-no-attr"],
)
def test_bad_formats(target: str) -> None:
    with pytest.raises(ImportStringError) as info:
        import_from_string(target)
    assert str(info.value) == f"import string {target!r} must be of the form 'module:attribute'"


def test_non_str_target() -> None:
    with pytest.raises(ImportStringError, match="must be of the form 'module:attribute'"):
        import_from_string(42)  # type: ignore[arg-type]


def test_missing_module() -> None:
    with pytest.raises(ImportStringError) as info:
        import_from_string("chanlite_no_such_module:app")
    assert str(info.value) == "could not import module 'chanlite_no_such_module'"


def test_missing_submodule() -> None:
    with pytest.raises(ImportStringError, match=r"could not import module 'chanlite\.nope'"):
        import_from_string("chanlite.nope:app")


def test_missing_parent_package() -> None:
    with pytest.raises(ImportStringError, match=r"could not import module 'no_pkg_here\.sub'"):
        import_from_string("no_pkg_here.sub:app")


def test_relative_module_name() -> None:
    with pytest.raises(ImportStringError, match=r"module '\.rel' is relative"):
        import_from_string(".rel:app")


def test_missing_attribute(make_module: MakeModule) -> None:
    make_module("imp_attr", "present = 1\n")
    with pytest.raises(ImportStringError) as info:
        import_from_string("imp_attr:absent")
    assert str(info.value) == "attribute 'absent' not found in module 'imp_attr' (imp_attr:absent)"


def test_missing_dotted_attribute_names_the_missing_part(make_module: MakeModule) -> None:
    make_module("imp_dotted", "class A:\n    b = None\n")
    with pytest.raises(ImportStringError) as info:
        import_from_string("imp_dotted:A.c.d")
    assert str(info.value) == (
        "attribute 'A.c' not found in module 'imp_dotted' (imp_dotted:A.c.d)"
    )


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.py"
    with pytest.raises(ImportStringError) as info:
        import_from_string(f"{missing}:app")
    assert str(info.value) == f"file {str(missing)!r} does not exist"


def test_file_name_that_is_not_an_identifier(tmp_path: Path) -> None:
    path = tmp_path / "my-app.py"
    path.write_text("app = 1\n")
    with pytest.raises(ImportStringError, match=r"'my-app\.py' is not a valid module name"):
        import_from_string(f"{path}:app")


def test_import_error_inside_user_module_surfaces_unchanged(make_module: MakeModule) -> None:
    make_module("imp_broken", "import chanlite_missing_dependency_xyz\napp = 1\n")
    with pytest.raises(ModuleNotFoundError) as info:
        import_from_string("imp_broken:app")
    assert not isinstance(info.value, ImportStringError)
    assert info.value.name == "chanlite_missing_dependency_xyz"


def test_plain_import_error_inside_user_module_surfaces_unchanged(
    make_module: MakeModule,
) -> None:
    make_module("imp_broken_from", "from os import no_such_name_xyz\n")
    with pytest.raises(ImportError, match="no_such_name_xyz") as info:
        import_from_string("imp_broken_from:app")
    assert not isinstance(info.value, ImportStringError)


def test_other_errors_inside_user_module_surface_unchanged(make_module: MakeModule) -> None:
    make_module("imp_raises", "raise RuntimeError('boom at import')\n")
    with pytest.raises(RuntimeError, match="boom at import"):
        import_from_string("imp_raises:app")


def test_import_error_inside_user_file_surfaces_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "imp_broken_file.py"
    path.write_text("import chanlite_missing_dependency_xyz\n")
    try:
        with pytest.raises(ModuleNotFoundError) as info:
            import_from_string(f"{path}:app")
        assert info.value.name == "chanlite_missing_dependency_xyz"
        assert "imp_broken_file" not in sys.modules  # not left half-initialised
    finally:
        sys.path.remove(str(tmp_path.resolve()))


def test_import_module_by_name() -> None:
    assert import_module("json") is sys.modules["json"]


def test_import_module_by_file(tmp_path: Path) -> None:
    path = tmp_path / "imp_mod_file.py"
    path.write_text("X = 'file'\n")
    try:
        assert import_module(str(path)).X == "file"
    finally:
        sys.modules.pop("imp_mod_file", None)
        sys.path.remove(str(tmp_path.resolve()))


def test_backend_with_a_missing_package_gives_an_install_hint() -> None:
    from chanlite._importer import import_backend
    from chanlite.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"redis2:// layer needs the package 'nopkg_x'"):
        import_backend("nopkg_x.sub:Layer", "redis2", "layer")
    with pytest.raises(ConfigurationError, match="session store is not available"):
        import_backend("chanlite.no_such_module:Store", "x", "session store")
    assert import_backend("chanlite.stores.memory:MemorySessionStore", "memory", "store")
