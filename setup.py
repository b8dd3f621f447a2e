"""Build hook: ship the repository's ``themes/*.toml`` inside the package as ``snaptui/themes``.

The theme files stay in ``themes/`` at the top of the checkout (where people look for them and
where a checkout or editable install reads them); a built wheel carries a copy, which
``snaptui.ui.themes.shipped_theme_dir`` finds first. Everything else is in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

THEMES = Path(__file__).resolve().parent / "themes"


class BuildPyWithThemes(build_py):
    """build_py that also copies themes/*.toml into the built package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's themes/ directly
        target = Path(self.build_lib) / "snaptui" / "themes"
        self.mkpath(str(target))
        for path in sorted(THEMES.glob("*.toml")):
            self.copy_file(str(path), str(target / path.name))


setup(cmdclass={"build_py": BuildPyWithThemes})
