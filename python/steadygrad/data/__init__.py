"""Mini-batches of aligned arrays: `DataLoader` (loader.py), and what it shares with sg.fit
(batching.py): the gather of batch b of an epoch's order, into fresh arrays or a ring of
reused buffers, and the background thread that gathers the next batch while the caller uses
the current one. It imports only `random` (a loader without a seed draws one from sg's RNG,
so sg.manual_seed makes it reproducible); `training` imports it."""

from __future__ import annotations

from steadygrad.data.loader import DataLoader

__all__ = ["DataLoader"]
