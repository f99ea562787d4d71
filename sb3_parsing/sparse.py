"""
Reading the few set entries of the observations' matrices.

A parsing observation is almost all zeros: one word per ``text`` row, a few set cells of the ``history`` and a few
constituents in ``derived``, among ``L * (alphabet + columns + labels * L)`` entries (164,832 per observation on
``LinguisticParse-v1``). The token extractors and the left corners read only the set entries, and torch's
``nonzero`` and ``any`` scan every entry one by one; these functions scan eight bytes at a time instead, which
``scripts/benchmark_policy.py`` times.
"""

from __future__ import annotations

import torch as th

_WORD = 8  # bytes read at once, as one int64


def set_entries(matrix: th.Tensor) -> tuple[th.Tensor, ...]:
    """
    The indices of the nonzero entries, as ``matrix.nonzero(as_tuple=True)`` returns them (same order): the matrix's
    bytes are read as int64 words, and only the nonzero words byte by byte.

    :param matrix: a tensor of any shape and dtype (not uint8 or bool: compared with 0 first)
    :return: one index tensor per dimension
    """
    flat = (matrix if matrix.dtype in (th.uint8, th.bool) else matrix.ne(0)).reshape(-1)
    data = flat.view(th.uint8)
    if data.storage_offset() % _WORD:  # a view that starts inside a word cannot be read as words
        data = data.clone()
    n_whole = data.numel() // _WORD * _WORD
    words = data[:n_whole].view(th.int64)
    nonzero_words = words.nonzero().squeeze(-1)
    word_of_byte, byte = words[nonzero_words].view(th.uint8).view(-1, _WORD).nonzero(as_tuple=True)
    tail = data[n_whole:].nonzero().squeeze(-1) + n_whole
    flat_indices = th.cat([nonzero_words[word_of_byte] * _WORD + byte, tail])
    return th.unravel_index(flat_indices, matrix.shape)


def any_set(matrix: th.Tensor, dim: int = -1) -> th.Tensor:
    """
    ``matrix.any(dim=dim)`` as bool, a bool matrix reduced as bytes (torch reduces uint8 10-15x faster than bool,
    and returns uint8 for it).

    :param matrix: a tensor
    :param dim: the dimension reduced
    :return: whether each slice along ``dim`` has a nonzero entry, as bool
    """
    return (matrix.view(th.uint8) if matrix.dtype == th.bool else matrix).any(dim=dim).bool()
