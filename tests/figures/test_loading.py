"""FIGSERVE_FIGURES: the user's own figure modules, and every way one can be wrong."""

from __future__ import annotations

import re

import pytest

from figserve.app import create_app
from figserve.figures import FIGURES
from figserve.figures.loading import FigureModuleError, load_figure_modules, module_names
from tests.support.usercode import UserFolder, spiral_module


def test_a_user_module_registers_its_figures(user_folder: UserFolder) -> None:
    user_folder.write("myspiral.py", spiral_module())
    (spec,) = load_figure_modules("myspiral")
    assert spec.name == "myspiral" and FIGURES.get("myspiral") is spec
    assert spec.draw.__module__ == "myspiral"
    # A second app in the same process finds the same figures (the module is imported once).
    assert load_figure_modules(" myspiral , ") == [spec]


def test_modules_inside_packages_load_too(user_folder: UserFolder) -> None:
    user_folder.write("mypkg/__init__.py", "")
    user_folder.write("mypkg/figs.py", spiral_module("pkgspiral"))
    (spec,) = load_figure_modules("mypkg.figs")
    assert spec.name == "pkgspiral"


def test_a_syntax_error_names_the_module_and_the_line(user_folder: UserFolder) -> None:
    path = user_folder.write("broken.py", "import numpy\n\ndef oops(:\n    pass\n")
    with pytest.raises(FigureModuleError) as caught:
        load_figure_modules("broken")
    message = str(caught.value)
    assert message.startswith("FIGSERVE_FIGURES: module 'broken' has a syntax error")
    assert f"{path}, line 3" in message


def test_an_error_at_import_names_the_module_and_the_line(user_folder: UserFolder) -> None:
    path = user_folder.write(
        "raising.py",
        """
        from figserve.figures import FIGURES

        SCALE = {"a": 1}
        FACTOR = SCALE["b"]
        """,
    )
    with pytest.raises(FigureModuleError) as caught:
        load_figure_modules("raising")
    message = str(caught.value)
    assert "module 'raising' failed while importing" in message
    assert f'at {path}, line 4 (FACTOR = SCALE["b"])' in message
    assert message.endswith("KeyError: 'b'")


def test_an_error_deep_in_a_library_still_names_the_users_line(user_folder: UserFolder) -> None:
    path = user_folder.write("deep.py", "import numpy as np\n\nnp.linspace(0, 1, -5)\n")
    with pytest.raises(FigureModuleError, match=re.escape(f"at {path}, line 3 (np.linspace")):
        load_figure_modules("deep")


def test_a_missing_module_says_where_it_was_looked_for(user_folder: UserFolder) -> None:
    with pytest.raises(FigureModuleError) as caught:
        load_figure_modules("nosuchmodule")
    message = str(caught.value)
    assert "no module 'nosuchmodule' in the current directory" in message
    assert "PYTHONPATH" in message


def test_a_missing_import_inside_the_module_is_that_modules_error(
    user_folder: UserFolder,
) -> None:
    path = user_folder.write("needs.py", "import notinstalledanywhere\n")
    with pytest.raises(FigureModuleError) as caught:
        load_figure_modules("needs")
    assert f"module 'needs' failed while importing, at {path}, line 1" in str(caught.value)
    assert "No module named 'notinstalledanywhere'" in str(caught.value)


def test_a_clash_with_a_shipped_figure_names_both(user_folder: UserFolder) -> None:
    path = user_folder.write("clash.py", spiral_module("histogram"))
    with pytest.raises(FigureModuleError) as caught:
        load_figure_modules("clash")
    message = str(caught.value)
    assert "figure 'histogram' of module clash clashes with the figure 'histogram' of " in (message)
    assert "figserve.figures.samples (shipped with figserve)" in message
    assert f"at {path}, line " in message
    assert FIGURES.get("histogram").draw.__module__ == "figserve.figures.samples"


def test_a_failed_module_leaves_no_figure_behind(user_folder: UserFolder) -> None:
    user_folder.write("half.py", spiral_module("halfway") + "\nraise RuntimeError('late')\n")
    with pytest.raises(FigureModuleError, match="RuntimeError: late"):
        load_figure_modules("half")
    assert "halfway" not in FIGURES


def test_a_module_without_figures_is_an_error(user_folder: UserFolder) -> None:
    user_folder.write("empty.py", "X = 1\n")
    with pytest.raises(FigureModuleError, match="module 'empty' registers no figure"):
        load_figure_modules("empty")


@pytest.mark.parametrize("setting", ["my-figures", "a..b", "1abc", "a b", "./mod", "mod.py"])
def test_malformed_module_names_are_refused(setting: str) -> None:
    with pytest.raises(FigureModuleError, match="is not a module name"):
        module_names(setting)


async def test_user_figures_get_everything_a_shipped_one_gets(user_folder: UserFolder) -> None:
    user_folder.write("myspiral.py", spiral_module())
    app = create_app({"warm_up": False, "figures": "myspiral"})
    async with app.test_app():
        client = app.test_client()
        image = await client.get("/figures/myspiral.png?turns=4&seed=2")
        assert image.status_code == 200 and image.headers["ETag"]
        assert (await image.get_data())[:8] == b"\x89PNG\r\n\x1a\n"  # drawn in a render process
        bad = await client.get("/figures/myspiral.png?turns=99")
        assert bad.status_code == 400 and (await bad.get_json())["param"] == "turns"
        catalog = await (await client.get("/api/figures")).get_json()
        assert "myspiral" in [f["name"] for f in catalog["figures"]]
        document = await (await client.get("/openapi.json")).get_json()
        assert "/figures/myspiral.{fmt}" in document["paths"]
        gallery = await (await client.get("/")).get_data(as_text=True)
        assert 'id="myspiral"' in gallery and "/gallery/myspiral" in gallery
        page = await client.get("/gallery/myspiral?turns=2&seed=1")
        assert page.status_code == 200
        job = await client.post("/jobs", json={"items": [{"figure": "myspiral"}], "output": "zip"})
        assert job.status_code == 202


def test_create_app_fails_on_a_broken_module(user_folder: UserFolder) -> None:
    user_folder.write("broken.py", "def oops(:\n")
    with pytest.raises(FigureModuleError, match="module 'broken' has a syntax error"):
        create_app({"warm_up": False, "figures": "broken"})
