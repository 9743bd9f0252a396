"""The shape every output shares: ``write`` each finished frame, ``close`` once, usable in ``with``."""

from __future__ import annotations

from typing import Protocol, TypeVar, runtime_checkable

import numpy as np

from deepbg_live.capture import Frame

S = TypeVar("S", bound="SinkBase")


@runtime_checkable
class Sink(Protocol):
    """Receives every finished frame; whoever builds a sink closes it, best with ``with sink:``.

    ``image`` is BGR uint8, or BGRA uint8 when the output is transparent; ``alpha`` is the uint8 (H, W)
    matte. ``close()`` finalises the output (a video's trailer) and may be called more than once.
    """

    def write(self, frame: Frame, image: np.ndarray, alpha: np.ndarray) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Sink: ...

    def __exit__(self, *exc: object) -> None: ...


class SinkBase:
    """``with`` support: the sink is closed on the way out, whether the body finished or raised.

    A body that ended normally, or by Ctrl-C, is a finished job: ``close()``. One that raised
    anything else failed: ``abandon()``, which a file output uses to keep what it wrote under a
    name that says it is incomplete instead of replacing the real one.
    """

    def close(self) -> None:
        """Nothing to release unless a sink says otherwise."""

    def abandon(self) -> None:
        """Close after a failure; unless a sink says otherwise, the same as ``close()``."""
        self.close()

    def __enter__(self: S) -> S:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is None or issubclass(kind, KeyboardInterrupt):
            self.close()
        else:
            self.abandon()
