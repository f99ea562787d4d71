"""The text and image frames of the parsing game, on a small hand-made state (no env)."""

import numpy as np
import pytest

from sb3_parsing import rendering
from sb3_parsing.rendering import render_ansi, render_rgb, shown_columns

TOKENS = ("the", "dog", "barks")
NAMES = ["NP VP => S", "Det N => NP", "the => Det", "dog => N", "barks => VP"]
TREE = "(S (NP (Det the) (N dog)) (VP barks))"
COUNTERS = dict(n_actions=2, max_steps=12, min_actions=5, n_parses=1, is_success=False)


def _history(*cells: tuple[int, int], obs_len: int = 5, n_columns: int = len(NAMES)) -> np.ndarray:
    history = np.zeros((obs_len, n_columns), dtype=np.uint8)
    for m, n in cells:
        history[m, n] = 1
    return history


def _cells(*cells: tuple[int, int], obs_len: int = 5, n_columns: int = len(NAMES)) -> np.ndarray:
    return _history(*cells, obs_len=obs_len, n_columns=n_columns).astype(bool)


# the chart of "the dog barks": the => Det @0, dog => N @1, barks => VP @2, Det N => NP @0, NP VP => S @0
CHART = _cells((0, 2), (1, 3), (2, 4), (0, 1), (0, 0))


def test_ansi_rows_header_and_counters():
    text = render_ansi(TOKENS, _history((0, 2), (2, 1)), NAMES, **COUNTERS, legend=False)
    lines = text.splitlines()
    assert lines[0] == "sentence: the dog barks"
    assert lines[1] == "actions: 2/12  min_actions: 5  parses: 1  success: False"
    header = lines[2]
    row = next(line for line in lines if line.startswith("  0 the"))
    # the header's column ids stand exactly above the cells of the rows
    assert header.strip() == "01234" and row.index("|") + 1 == header.index("0")
    assert row.endswith("|..#..|")
    assert next(line for line in lines if line.startswith("  2 barks")).endswith("|.#...|")
    assert "NP VP => S" not in text, "no legend when legend=False"
    assert len([line for line in lines if "|" in line]) == len(TOKENS), "padding rows are not drawn"


def test_ansi_legend_only_when_asked_and_tree_drawn():
    with_legend = render_ansi(TOKENS, _history(), NAMES, **COUNTERS, legend=True)
    for n, name in enumerate(NAMES):
        assert f"  {n}  {name}" in with_legend.splitlines()
    won = render_ansi(TOKENS, _history(), NAMES, **COUNTERS, tree=TREE, legend=False)
    tree_lines = won.split("parse:\n", 1)[1].splitlines()
    pytest.importorskip("nltk")
    # nltk draws the tree: the root label on the first line, the words on the last
    assert tree_lines[0].strip() == "S" and tree_lines[-1].split() == list(TOKENS)


def test_ansi_bracketed_tree_when_nltk_cannot_read_it():
    text = render_ansi(TOKENS, _history(), NAMES, **COUNTERS, tree="(S (NP", legend=False)
    assert text.endswith("parse:\n(S (NP")


def test_ansi_many_columns_shows_set_columns_with_their_names():
    names = [f"w{n} => L{n}" for n in range(250)]
    history = _history((0, 7), (1, 123), obs_len=4, n_columns=250)
    text = render_ansi(TOKENS, history, names, **COUNTERS, legend=False)
    assert "2 of 250 columns shown" in text
    assert "w123 => L123" in text and "w7 => L7" in text and "w8 => L8" not in text
    assert next(line for line in text.splitlines() if line.startswith("  1 dog")).endswith("|.#|")


def test_shape_errors_are_explained():
    with pytest.raises(ValueError, match=r"history must have shape .* 5 column names"):
        render_ansi(TOKENS, np.zeros((5, 4), np.uint8), NAMES, **COUNTERS)
    with pytest.raises(ValueError, match="chart_cells and useful_cells"):
        render_rgb(TOKENS, _history(), NAMES, chart_cells=CHART[:3], useful_cells=CHART, n_actions=0, is_success=False)


def _rgb(history: np.ndarray, **kwargs) -> np.ndarray:
    options = dict(chart_cells=CHART, useful_cells=CHART, n_actions=0, is_success=False) | kwargs
    return render_rgb(TOKENS, history, NAMES, **options)


def _cell_colour(image: np.ndarray, history: np.ndarray, m: int, n: int) -> tuple[int, ...]:
    """``image``'s colour at the centre of cell (m, n), found as the place where setting that cell in ``history`` changes
    the picture."""
    changed = np.any(_rgb(history) != _rgb(np.maximum(history, _history((m, n)))), axis=2)
    ys, xs = np.nonzero(changed)
    return tuple(int(v) for v in image[int(ys.mean()), int(xs.mean())])


def test_rgb_shape_dtype_and_fixed_size():
    image = _rgb(_history())
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] % 16 == 0 and image.shape[1] % 16 == 0, "video encoders need multiples of 16"
    assert image.shape[0] >= 200 and image.shape[1] >= 400, "readable at video size"
    other = render_rgb(("a", "much", "longer", "sentence"), _history(), NAMES, chart_cells=CHART, useful_cells=CHART,
                       n_actions=3, is_success=True, tree=TREE)  # fmt: skip
    assert other.shape == image.shape, "every frame of an env has the same size"


def test_rgb_set_cell_changes_the_picture_with_its_colour():
    empty = _history()
    changed = np.any(_rgb(empty) != _rgb(_history((1, 3))), axis=2)
    assert 0 < changed.sum() < 2000, "one cell changes, not the whole picture"
    assert _cell_colour(_rgb(empty), empty, 1, 3) == rendering.UNSET_CHART
    assert _cell_colour(_rgb(_history((1, 3))), empty, 1, 3) == rendering.SET_USEFUL
    assert _cell_colour(_rgb(_history((2, 0))), empty, 2, 0) == rendering.SET_WASTED
    chart_only = _rgb(_history((1, 3)), useful_cells=np.zeros_like(CHART))
    assert _cell_colour(chart_only, empty, 1, 3) == rendering.SET_CHART


def test_rgb_draws_text():
    plain = _rgb(_history())
    assert not np.array_equal(plain, _rgb(_history(), n_actions=7)), "the action count is written"
    assert not np.array_equal(plain, _rgb(_history(), tree=TREE)), "the tree is written"
    # the token column holds dark text pixels
    assert (plain[:, :100].sum(axis=2) < 200).sum() > 100


def test_rgb_many_columns_draws_only_set_and_chart_columns():
    names = [f"w{n} => L{n}" for n in range(300)]
    chart = _cells((0, 5), (1, 250), obs_len=5, n_columns=300)
    history = _history((2, 17), obs_len=5, n_columns=300)
    assert shown_columns(history, chart) == [5, 17, 250]
    image = render_rgb(TOKENS, history, names, chart_cells=chart, useful_cells=chart, n_actions=1, is_success=False)
    many = _history(*[(0, n) for n in range(0, 300, 3)], obs_len=5, n_columns=300)
    assert len(shown_columns(many, chart)) == rendering.MAX_IMAGE_COLUMNS
    crowded = render_rgb(TOKENS, many, names, chart_cells=chart, useful_cells=chart, n_actions=100, is_success=False)
    assert crowded.shape == image.shape and image.shape[1] < 2000
