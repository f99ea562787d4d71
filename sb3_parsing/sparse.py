"""
Reading the few set entries of the observations' matrices.

A parsing observation is almost all zeros: one word per ``text`` row, a few set cells of the ``history`` and a few
constituents in ``derived``, among ``L * (alphabet + columns + labels * L)`` entries (164,832 per observation on
``LinguisticParse-v1``). The token extractors and the left corners read only the set entries, and torch's
``nonzero`` and ``any`` scan every entry one by one; these functions scan eight bytes at a time instead, which
``scripts/benchmark_policy.py`` times. A batch that several modules read is scanned once (:class:`ScannedObservations`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch as th

_WORD = 8  # bytes read at once, as one int64


def set_entries(matrix: th.Tensor) -> tuple[th.Tensor, ...]:
    """
    The indices of the nonzero entries, as ``matrix.nonzero(as_tuple=True)`` returns them (same order).

    :param matrix: a tensor of any shape and dtype
    :return: one index tensor per dimension
    """
    return th.unravel_index(flat_set_entries(matrix), matrix.shape)


def flat_set_entries(matrix: th.Tensor) -> th.Tensor:
    """
    The row-major flat indices of the nonzero entries, in increasing order: the matrix's bytes are read as int64 words,
    and only the nonzero words byte by byte.

    :param matrix: a tensor of any shape and dtype (not uint8 or bool: compared with 0 first)
    :return: the indices ``(n_set,)``
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
    return th.cat([nonzero_words[word_of_byte] * _WORD + byte, tail])


class ScannedObservations(dict[str, th.Tensor]):
    """
    A batch of observations (key -> tensor) that keeps the set entries of each matrix once found: the token extractor
    and the left corners read the same ``text`` and ``derived`` entries. Policies wrap the batches they are given;
    :class:`~sb3_parsing.policies.BitMaskDictRolloutBuffer` hands out minibatches with their entries found once per
    rollout, so that an update's epochs scan nothing.

    :param observations: the batch
    :param found: :func:`flat_set_entries` of some of its matrices, by key
    """

    def __init__(self, observations: Mapping[str, th.Tensor], found: Mapping[str, th.Tensor] | None = None) -> None:
        super().__init__(observations)
        self.found = dict(found or {})

    def set_entries(self, key: str, shape: Sequence[int] | None = None) -> tuple[th.Tensor, ...]:
        """
        :param key: an observation key
        :param shape: the shape to read the matrix as (the same entries, another view); default its own
        :return: :func:`set_entries` of the matrix
        """
        if key not in self.found:
            self.found[key] = flat_set_entries(self[key])
        return th.unravel_index(self.found[key], tuple(self[key].shape if shape is None else shape))


def observed_entries(
    observations: Mapping[str, th.Tensor], key: str, shape: Sequence[int] | None = None
) -> tuple[th.Tensor, ...]:
    """
    :func:`set_entries` of an observation matrix, found once per batch where the batch is :class:`ScannedObservations`.

    :param observations: a batch of observations
    :param key: the key of the matrix
    :param shape: the shape to read it as; default its own
    :return: one index tensor per dimension of ``shape``
    """
    if isinstance(observations, ScannedObservations):
        return observations.set_entries(key, shape)
    matrix = observations[key]
    return set_entries(matrix if shape is None else matrix.reshape(tuple(shape)))


def matching_pairs(sorted_keys: th.Tensor, queries: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """Every (query index, index into ``sorted_keys``) pair with equal keys, by query."""
    first = th.searchsorted(sorted_keys, queries)
    counts = th.searchsorted(sorted_keys, queries, right=True) - first
    return expand_ranges(first, counts)


def expand_ranges(first: th.Tensor, counts: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """The pairs (i, first[i] + j) for j < counts[i], by i."""
    owners = th.repeat_interleave(th.arange(first.numel(), device=first.device), counts)
    steps = th.arange(owners.numel(), device=first.device) - th.repeat_interleave(counts.cumsum(0) - counts, counts)
    return owners, first[owners] + steps


def any_set(matrix: th.Tensor, dim: int = -1) -> th.Tensor:
    """
    ``matrix.any(dim=dim)`` as bool, a bool matrix reduced as bytes (torch reduces uint8 10-15x faster than bool,
    and returns uint8 for it).

    :param matrix: a tensor
    :param dim: the dimension reduced
    :return: whether each slice along ``dim`` has a nonzero entry, as bool
    """
    return (matrix.view(th.uint8) if matrix.dtype == th.bool else matrix).any(dim=dim).bool()
