"""
Pictures of a parsing-game state: the text frame of ``render_mode="ansi"``/``"human"`` and the image of ``"rgb_array"``.

Pure functions of the state (tokens, the History matrix, column names, counters): they import nothing from the env,
so they can be tested, and reused by tools, on their own.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from matplotlib import font_manager
from PIL import Image, ImageDraw, ImageFont

__all__ = ["render_ansi", "render_rgb", "shown_columns"]

# A text frame wider than this many columns shows only the columns that have a set cell
MAX_ANSI_COLUMNS = 100
# An image shows at most this many columns: all of them when the grammar has no more, else the set and chart ones
MAX_IMAGE_COLUMNS = 40
# Characters kept of a token and of a column name in the image (longer ones end in "…")
TOKEN_CHARS = 12
NAME_CHARS = 32
TREE_LINES = 3
FONT_SIZE = 14

# Cell colours of the image (RGB); the legend repeats them
BACKGROUND = (255, 255, 255)
PADDING_ROW = (232, 232, 232)
GRID_LINE = (200, 200, 200)
TEXT = (20, 20, 20)
UNSET_CHART = (205, 222, 250)
SET_USEFUL = (40, 160, 70)
SET_CHART = (240, 160, 40)
SET_WASTED = (210, 50, 50)
CELL_KEY = (
    (SET_USEFUL, "set, in a complete parse"),
    (SET_CHART, "set, a chart constituent in no parse"),
    (SET_WASTED, "set, no constituent (wasted)"),
    (UNSET_CHART, "not set, a chart constituent"),
)


def _digit_header(ids: Sequence[int], indent: int) -> list[str]:
    """Column ids written vertically, one line per digit, so that each column stays one character wide."""
    digits = len(str(max(ids, default=0)))
    labels = [str(i).rjust(digits) for i in ids]
    return [" " * indent + "".join(label[d] for label in labels) for d in range(digits)]


def _format_tree(tree: str) -> str:
    """The tree drawn by nltk's ``Tree.pretty_print`` when nltk is importable and reads it, else the bracketed string."""
    try:
        from nltk import Tree
    except ImportError:
        return tree
    try:
        parsed = Tree.fromstring(tree)
    except ValueError:
        return tree
    stream = io.StringIO()
    parsed.pretty_print(stream=stream)
    return stream.getvalue().rstrip("\n")


def render_ansi(
    tokens: Sequence[str],
    history: np.ndarray,
    column_names: Sequence[str],
    *,
    n_actions: int,
    max_steps: int,
    min_actions: int,
    n_parses: int,
    is_success: bool,
    tree: str | None = None,
    legend: bool = True,
) -> str:
    """
    The state as text: the sentence, the counters, then one line per token with its row of H (``#`` set, ``.`` not)
    under a header of column ids, the column legend when asked, and the parse tree when given.

    With more than ``MAX_ANSI_COLUMNS`` columns only the columns that have a set cell are shown, and their names are
    listed on every frame (the full legend would be as long as the grammar).

    :param tokens: the sentence
    :param history: the History matrix H, shape ``(obs_len, n_columns)``; rows past the sentence are padding
    :param column_names: one name per column of H (a rule ``NP VP => S`` or a label)
    :param n_actions: actions taken in the episode
    :param max_steps: the episode's action budget
    :param min_actions: the fewest actions that win
    :param n_parses: the sentence's number of complete parses
    :param is_success: whether the episode is won
    :param tree: the parse found (bracketed), drawn with nltk when it is importable
    :param legend: list every column's name (the env asks for it on the first frame of an episode)
    :return: the frame, lines separated by ``\\n``
    """
    _check_shapes(tokens, history, column_names)
    rows = history[: len(tokens)]
    n_columns = history.shape[1]
    restricted = n_columns > MAX_ANSI_COLUMNS
    columns = [int(n) for n in np.flatnonzero(rows.any(axis=0))] if restricted else list(range(n_columns))
    width = max(len(token) for token in tokens)
    indent = 4 + width + 2
    lines = [
        f"sentence: {' '.join(tokens)}",
        f"actions: {n_actions}/{max_steps}  min_actions: {min_actions}  parses: {n_parses}  success: {is_success}",
    ]
    if restricted:
        lines.append(f"H: {len(columns)} of {n_columns} columns shown (those with a set cell)")
    lines += _digit_header(columns, indent)
    for m, token in enumerate(tokens):
        cells = "".join("#" if rows[m, n] else "." for n in columns)
        lines.append(f"{m:>3} {token:<{width}} |{cells}|")
    if restricted:
        lines += [f"  {n:>{len(str(n_columns - 1))}}  {column_names[n]}" for n in columns]
    elif legend:
        lines.append("columns:")
        lines += [f"  {n:>{len(str(n_columns - 1))}}  {name}" for n, name in enumerate(column_names)]
    if tree is not None:
        lines.append("parse:")
        lines.append(_format_tree(tree))
    return "\n".join(lines)


def _check_shapes(tokens: Sequence[str], history: np.ndarray, column_names: Sequence[str], *cells: np.ndarray) -> None:
    if history.ndim != 2 or history.shape[1] != len(column_names) or history.shape[0] < len(tokens) or not tokens:
        raise ValueError(
            f"history must have shape (obs_len >= {len(tokens)} tokens, {len(column_names)} column names), "
            f"got {history.shape} for {len(tokens)} tokens"
        )
    for mask in cells:
        if mask.shape != history.shape:
            raise ValueError(f"chart_cells and useful_cells must have the shape of history {history.shape}, got {mask.shape}")


def shown_columns(history: np.ndarray, chart_cells: np.ndarray, max_columns: int = MAX_IMAGE_COLUMNS) -> list[int]:
    """
    The columns an image shows: all of them up to ``max_columns``, else those with a set cell or a chart cell
    (set ones first), at most ``max_columns``, in column order.

    :param history: the History matrix H, ``(obs_len, n_columns)``
    :param chart_cells: the cells that are chart constituents, same shape
    :param max_columns: the most columns drawn
    """
    n_columns = history.shape[1]
    if n_columns <= max_columns:
        return list(range(n_columns))
    set_columns = np.flatnonzero(history.any(axis=0))
    chart_columns = np.setdiff1d(np.flatnonzero(chart_cells.any(axis=0)), set_columns)
    return sorted(int(n) for n in np.concatenate([set_columns, chart_columns])[:max_columns])


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont:
    """DejaVu Sans Mono, which matplotlib ships, so every character has one width."""
    return ImageFont.truetype(font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans Mono")), size)


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def render_rgb(
    tokens: Sequence[str],
    history: np.ndarray,
    column_names: Sequence[str],
    *,
    chart_cells: np.ndarray,
    useful_cells: np.ndarray,
    n_actions: int,
    is_success: bool,
    tree: str | None = None,
) -> np.ndarray:
    """
    The state as a picture a person can read in a video: a title line (actions, success), the grid of H with one
    row per position (the token written beside it, padding rows greyed) under a header of column ids, the names of
    the columns drawn, a key of the cell colours, and the parse tree when given.

    The image size depends only on ``history.shape`` and ``column_names``, so that every frame of an env has the same
    size (a video needs it); with more than ``MAX_IMAGE_COLUMNS`` columns only the set and chart columns are drawn.
    Tokens and names are cut to ``TOKEN_CHARS`` and ``NAME_CHARS`` characters, the tree to ``TREE_LINES`` lines.

    :param tokens: the sentence
    :param history: the History matrix H, shape ``(obs_len, n_columns)``
    :param column_names: one name per column of H
    :param chart_cells: bool, H's shape: the cells that are constituents of the sentence's chart
    :param useful_cells: bool, H's shape: the cells of some complete parse
    :param n_actions: actions taken in the episode
    :param is_success: whether the episode is won
    :param tree: the parse found (bracketed string)
    :return: ``(height, width, 3)`` uint8, height and width multiples of 16 (what video encoders need)
    """
    _check_shapes(tokens, history, column_names, chart_cells, useful_cells)
    obs_len, n_columns = history.shape
    font = _font(FONT_SIZE)
    char_w = round(font.getlength("M"))
    line_h = FONT_SIZE + 6
    id_chars = len(str(n_columns - 1))
    n_shown = min(n_columns, MAX_IMAGE_COLUMNS)
    cell = max(line_h, id_chars * char_w + 6)
    margin = 10
    label_w = (3 + 1 + TOKEN_CHARS) * char_w + 6
    grid_x, grid_y = margin + label_w, margin + 2 * line_h
    name_chars = min(NAME_CHARS, max(len(name) for name in column_names))
    legend_chars = max(id_chars + 2 + name_chars, len(f"{n_columns} of {n_columns} columns (set or chart)"))
    key_y = grid_y + max(obs_len * cell, (n_shown + 1) * line_h) + margin
    tree_y = key_y + 2 * line_h + margin
    key_column = line_h + (max(len(text) for _, text in CELL_KEY) + 3) * char_w
    width = max(grid_x + n_shown * cell + 2 * margin + legend_chars * char_w, margin + 2 * key_column) + margin
    tree_chars = max(20, (width - 2 * margin) // char_w)
    height = tree_y + (TREE_LINES + 1) * line_h + margin

    image = Image.new("RGB", (-(-width // 16) * 16, -(-height // 16) * 16), BACKGROUND)
    draw = ImageDraw.Draw(image)
    status = "parsed" if is_success else "not parsed yet"
    draw.text((margin, margin), f"actions: {n_actions}   {status}", fill=TEXT, font=font)

    columns = shown_columns(history, chart_cells)
    for slot, n in enumerate(columns):
        draw.text((grid_x + slot * cell + 3, grid_y - line_h), str(n).rjust(id_chars), fill=TEXT, font=font)
    for m in range(obs_len):
        y = grid_y + m * cell
        if m < len(tokens):
            draw.text((margin, y + 2), f"{m:>3} {_clip(tokens[m], TOKEN_CHARS)}", fill=TEXT, font=font)
        for slot, n in enumerate(columns):
            if m >= len(tokens):
                colour = PADDING_ROW
            elif history[m, n]:
                colour = SET_USEFUL if useful_cells[m, n] else SET_CHART if chart_cells[m, n] else SET_WASTED
            else:
                colour = UNSET_CHART if chart_cells[m, n] else BACKGROUND
            x = grid_x + slot * cell
            draw.rectangle((x, y, x + cell, y + cell), fill=colour, outline=GRID_LINE)

    # the names stand right of the columns drawn (fewer than the image has room for when only some are drawn)
    legend_x = grid_x + len(columns) * cell + 2 * margin
    shown = "columns" if n_columns <= MAX_IMAGE_COLUMNS else f"{len(columns)} of {n_columns} columns (set or chart)"
    draw.text((legend_x, grid_y - line_h), shown, fill=TEXT, font=font)
    for i, n in enumerate(columns):
        text = f"{str(n).rjust(id_chars)}  {_clip(column_names[n], NAME_CHARS)}"
        draw.text((legend_x, grid_y + i * line_h), text, fill=TEXT, font=font)

    for index, (colour, text) in enumerate(CELL_KEY):
        x, y = margin + (index % 2) * key_column, key_y + (index // 2) * line_h
        draw.rectangle((x, y + 3, x + line_h - 6, y + line_h - 3), fill=colour, outline=GRID_LINE)
        draw.text((x + line_h, y + 1), text, fill=TEXT, font=font)

    if tree is not None:
        wrapped = textwrap.wrap(tree, tree_chars) or [""]
        if len(wrapped) > TREE_LINES:
            wrapped = [*wrapped[: TREE_LINES - 1], _clip(wrapped[TREE_LINES - 1] + " …", tree_chars)]
        draw.text((margin, tree_y), "parse:", fill=TEXT, font=font)
        for i, line in enumerate(wrapped):
            draw.text((margin, tree_y + (i + 1) * line_h), line, fill=TEXT, font=font)
    return np.asarray(image, dtype=np.uint8)
