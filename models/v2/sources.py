"""Emoji artwork of the v2 data set, read from npm packages (never committed):

  noto     emoji-datasource-google 16.0.0 sprite sheets ("sheets-clean": Google's own art only)
  twemoji  emoji-datasource-twitter 16.0.0 sprite sheets (same emoji.json and sheet layout)

Each image is RGB composited on white (recipe/prepare.py `_cell`: a sheet cell is size+2 px with a 1 px
transparent border). Packages are looked up in models/v2/art/node_modules (installed by
scripts/setup.sh --models), then in the repository's node_modules.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from models.recipe.prepare import _cell, composite_on_white

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PACKAGE_DIRS = (os.path.join(ROOT, "models", "v2", "art", "node_modules"), os.path.join(ROOT, "node_modules"))
# style -> (npm package, emoji.json vendor key)
SHEET_STYLES = {"noto": ("emoji-datasource-google", "google"), "twemoji": ("emoji-datasource-twitter", "twitter")}
SHEET_SIZES = (16, 20, 32, 64)


class MissingPackageError(FileNotFoundError):
    pass


def package_dir(name: str) -> str:
    for base in PACKAGE_DIRS:
        path = os.path.join(base, name)
        if os.path.isfile(os.path.join(path, "package.json")):
            return path
    raise MissingPackageError(f"npm package {name} not found under {' or '.join(PACKAGE_DIRS)}: "
                              "run `bash scripts/setup.sh --models`")


@dataclass(frozen=True)
class EmojiEntry:
    """One emoji.json row (base emoji; skin-tone variants are listed in `skin`)."""

    name: str  # emoji-datasource's name, e.g. "RED APPLE", "Egypt Flag"
    unified: str  # code points, e.g. "1F34E"
    non_qualified: str | None
    category: str
    subcategory: str
    short_names: tuple[str, ...]
    sheet: tuple[int, int]
    skin: tuple[tuple[str, str, tuple[int, int]], ...]  # (tone, variant's code points, sheet cell) with art

    @property
    def prompt(self) -> str:
        """The emoji's name as emoji-datasource spells it, lower-cased ("red apple", "egypt flag")."""
        return self.name.lower()


def emoji_entries(style: str = "noto") -> list[EmojiEntry]:
    """Base emoji that have art in `style`, in emoji-datasource's sort order."""
    package, vendor = SHEET_STYLES[style]
    with open(os.path.join(package_dir(package), "emoji.json"), encoding="utf-8") as f:
        rows = sorted(json.load(f), key=lambda e: e["sort_order"])
    key = f"has_img_{vendor}"
    return [
        EmojiEntry(
            name=e["name"], unified=e["unified"], non_qualified=e.get("non_qualified"), category=e["category"],
            subcategory=e["subcategory"], short_names=tuple(e.get("short_names") or ()),
            sheet=(e["sheet_x"], e["sheet_y"]),
            skin=tuple((tone, v["unified"], (v["sheet_x"], v["sheet_y"]))
                       for tone, v in (e.get("skin_variations") or {}).items() if v.get(key)),
        )
        for e in rows
        if e.get(key)
    ]


def load_sheet(style: str, size: int) -> np.ndarray:
    """The RGBA sprite sheet of `style` at `size` px (one of SHEET_SIZES)."""
    if size not in SHEET_SIZES:
        raise ValueError(f"sheets exist at {SHEET_SIZES} px, not {size}")
    package, vendor = SHEET_STYLES[style]
    path = os.path.join(package_dir(package), "img", vendor, "sheets-clean", f"{size}.png")
    return np.asarray(Image.open(path).convert("RGBA"))


def sheet_cells(sheet: np.ndarray, cells: list[tuple[int, int]], size: int) -> np.ndarray:
    """uint8 (N, size, size, 3) on white."""
    return np.stack([_cell(sheet, sx, sy, size) for sx, sy in cells])


def base_images(style: str, size: int) -> tuple[list[EmojiEntry], np.ndarray]:
    """Every base emoji of `style` (no skin-tone variants) and its image on white."""
    entries = emoji_entries(style)
    return entries, sheet_cells(load_sheet(style, size), [e.sheet for e in entries], size)


# --- Fluent Emoji Flat (Microsoft, MIT) via @iconify-json/fluent-emoji-flat: SVG bodies in a 32x32 view box,
# rendered with cairosvg. chars.json maps code points (lower case, no FE0F) to icon names; an alias is
# its parent icon, possibly mirrored.
FLUENT_PACKAGE = "@iconify-json/fluent-emoji-flat"


def code_key(unified: str) -> str:
    """emoji.json code points -> the key form of chars.json ("2600-FE0F" -> "2600")."""
    return "-".join(p for p in unified.lower().split("-") if p != "fe0f")


class FluentIcons:
    def __init__(self):
        base = package_dir(FLUENT_PACKAGE)
        with open(os.path.join(base, "icons.json"), encoding="utf-8") as f:
            self.icons = json.load(f)
        with open(os.path.join(base, "chars.json"), encoding="utf-8") as f:
            self.chars = json.load(f)

    def name_of(self, unified: str) -> str | None:
        return self.chars.get(code_key(unified))

    def svg(self, name: str, size: int) -> str:
        alias = self.icons.get("aliases", {}).get(name)
        icon = self.icons["icons"][alias["parent"] if alias else name]
        w, h = icon.get("width", self.icons.get("width", 16)), icon.get("height", self.icons.get("height", 16))
        left, top = icon.get("left", 0), icon.get("top", 0)
        body = icon["body"]
        h_flip = bool(icon.get("hFlip")) ^ bool(alias and alias.get("hFlip"))
        if h_flip:
            body = f'<g transform="translate({2 * left + w} 0) scale(-1 1)">{body}</g>'
        if alias and (alias.get("vFlip") or alias.get("rotate")):
            raise ValueError(f"fluent icon {name}: vFlip/rotate aliases are not handled")
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
                f'viewBox="{left} {top} {w} {h}">{body}</svg>')

    def render(self, name: str, size: int) -> np.ndarray:
        """uint8 (size, size, 3) on white."""
        import cairosvg  # only the Fluent source needs cairo

        png = cairosvg.svg2png(bytestring=self.svg(name, size).encode(), output_width=size, output_height=size)
        rgba = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))
        return composite_on_white(rgba)

