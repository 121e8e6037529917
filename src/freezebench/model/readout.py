"""What the classification head reads of each example's last hidden states, in padded or packed
rows: one token (:class:`TokenReadout`: an encoder's first, a decoder's last real one) or the
mean over its real tokens (:class:`MeanReadout`). Both give ``[examples, 1, hidden]``, what
:meth:`~freezebench.model.staged.StagedForward.head` takes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TokenReadout:
    """The one token the head reads in each example.

    ``rows[i]``, ``starts[i]``: example ``i``'s row and that token's position there (packed rows
    hold several examples); ``None`` for padded rows, one example each, read at position 0.
    """

    rows: torch.Tensor | None = None
    starts: torch.Tensor | None = None

    def gather(self, states: torch.Tensor) -> torch.Tensor:
        """``[examples, 1, ...]``: the read token's entry of each example in ``states``
        ``[rows, width, ...]``."""
        if self.rows is None:
            return states[:, :1]
        return states[self.rows, self.starts].unsqueeze(1)

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[examples, 1, hidden]``: what the head reads of ``hidden``."""
        return self.gather(hidden)

    def row_of_each(self, states: torch.Tensor) -> torch.Tensor:
        """``states`` ``[rows, ...]`` repeated for each example of a row."""
        return states if self.rows is None else states[self.rows]

    def mask_rows(self, mask: torch.Tensor | None) -> torch.Tensor | None:
        """An attention mask ``[rows, 1, queries, keys]`` cut to the read tokens' queries."""
        if mask is None:
            return None
        if mask.shape[-2] == 1:  # one row for every query
            return self.row_of_each(mask)
        if self.rows is None:
            return mask[:, :, :1]
        return mask[self.rows, :, self.starts].unsqueeze(2)


@dataclass(frozen=True)
class MeanReadout:
    """The mean of each example's hidden states over its real tokens (padding left out).

    ``owners[r, p]``: the example at position ``p`` of row ``r`` (-1: padding); ``counts[i]``:
    example ``i``'s number of tokens.
    """

    owners: torch.Tensor
    counts: torch.Tensor

    @classmethod
    def of_padded(cls, attention_mask: torch.Tensor) -> MeanReadout:
        """Rows of one example each, padded on the right."""
        rows = torch.arange(len(attention_mask), device=attention_mask.device)
        owners = torch.where(attention_mask.bool(), rows[:, None], -1)
        return cls(owners, attention_mask.sum(1))

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[examples, 1, hidden]``: each example's mean over its tokens of ``hidden``
        ``[rows, width, hidden]``."""
        flat = hidden.reshape(-1, hidden.shape[-1])
        owners = self.owners.reshape(-1)
        real = owners >= 0
        sums = flat.new_zeros(len(self.counts), flat.shape[-1]).index_add(
            0, owners[real], flat[real])
        return (sums / self.counts[:, None].to(sums.dtype)).unsqueeze(1)


Readout = TokenReadout | MeanReadout


def padded_readout(pooling: str, attention_mask: torch.Tensor) -> Readout:
    """What the head reads in rows of one example each, padded on the right: the first token
    (``cls``), the last real one (``last``) or the mean over the real tokens (``mean``)."""
    if pooling == "cls":
        return TokenReadout()
    if pooling == "mean":
        return MeanReadout.of_padded(attention_mask)
    rows = torch.arange(len(attention_mask), device=attention_mask.device)
    return TokenReadout(rows, attention_mask.sum(1) - 1)
