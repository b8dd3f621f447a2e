"""Themes as data: TOML files turned into Textual ``Theme`` objects, validated on load.

Shipped themes live in the repository's ``themes/`` directory (copied into the wheel as
``snaptui/themes``); users add their own files under
``<config dir>/themes/``. A bad file or an unknown theme name is a one-line BadInput.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path

from rich.style import Style
from textual.app import App
from textual.color import Color, ColorParseError
from textual.theme import Theme

from snaptui.core.errors import BadInput

DEFAULT_THEME = "snaptui-dark"
COLOR_KEYS = ("primary", "secondary", "warning", "error", "success", "accent", "foreground",
              "background", "surface", "panel", "boost")
OTHER_KEYS = {"name": str, "dark": bool, "ansi": bool, "luminosity_spread": float,
              "text_alpha": float, "variables": dict}


def shipped_theme_dir() -> Path:
    """Where the shipped themes are: ``snaptui/themes`` in an installed wheel (setup.py copies
    them there), else the checkout's top-level ``themes/`` (a checkout or editable install)."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "themes"
    if any(installed.glob("*.toml")):
        return installed
    return package.parent / "themes"


def _color(path: Path, key: str, value: object) -> str:
    if not isinstance(value, str):
        raise BadInput(f"theme {path}: {key!r} must be a colour string")
    try:
        Color.parse(value)
    except ColorParseError:
        raise BadInput(f"theme {path}: {key!r} = {value!r} is not a colour") from None
    return value


def load_theme_file(path: Path) -> Theme:
    """Parse and validate one theme file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise BadInput(f"theme {path}: {err}") from None
    kwargs: dict[str, object] = {}
    for key, value in data.items():
        if key in COLOR_KEYS:
            kwargs[key] = _color(path, key, value)
        elif key in OTHER_KEYS:
            kind = OTHER_KEYS[key]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind):
                raise BadInput(f"theme {path}: {key!r} must be a {kind.__name__}")
            if key == "variables" and isinstance(value, dict):
                value = {str(k): _color(path, f"variables.{k}", v) for k, v in value.items()}
            kwargs[key] = value
        else:
            known = ", ".join((*COLOR_KEYS, *OTHER_KEYS))
            raise BadInput(f"theme {path}: unknown key {key!r} (known: {known})")
    for required in ("name", "primary"):
        if required not in kwargs:
            raise BadInput(f"theme {path}: missing {required!r}")
    return Theme(**kwargs)  # type: ignore[arg-type]


def load_themes(directories: Iterable[Path]) -> list[Theme]:
    """Every ``*.toml`` theme in the directories, in name order (later dirs override)."""
    themes: dict[str, Theme] = {}
    for directory in directories:
        if directory.is_dir():
            for path in sorted(directory.glob("*.toml")):
                theme = load_theme_file(path)
                themes[theme.name] = theme
    return list(themes.values())


def check_theme_name(name: str, available: Iterable[str]) -> str:
    """``name`` if it is a known theme, else BadInput listing the choices."""
    choices = sorted(available)
    if name not in choices:
        raise BadInput(f"unknown theme {name!r}; choose one of: {', '.join(choices)}")
    return name


class ThemeStyles:
    """Rich styles in the app's theme colours, cached per theme: ``get_css_variables``
    rebuilds the whole colour system (~1.5 ms) on every call, once per table cell otherwise."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str, bool | None, bool | None], Style] = {}

    def get(self, app: App, variable: str, *, bold: bool | None = None,
            dim: bool | None = None) -> Style:
        """The style of theme colour ``$variable`` (e.g. "success"); ``bold``/``dim`` None
        inherit from the surrounding text, False switches them off."""
        key = (app.theme, variable, bold, dim)
        style = self._cache.get(key)
        if style is None:
            value = app.get_css_variables().get(variable)
            try:
                color = Color.parse(value).rich_color if value else None
                style = Style(color=color, bold=bold, dim=dim)
            except ColorParseError:  # e.g. $text-muted is "auto 60%": dim the default instead
                style = Style(bold=bold, dim=True)
            self._cache[key] = style
        return style
