"""The in-memory clip record shared by every reader, the generator and the TFRecord writer."""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np


@dataclasses.dataclass
class Clip:
    """One video clip and what is known about it.

    Attributes:
      clip_id: a name unique within the dataset (file stem, Penn id, ...).
      frames: uint8 array [T, H, W, 3], RGB.
      label: action class index, or -1 for datasets without classes.
      joints: optional float32 [T, J, 2] ground-truth joints (x, y) in pixels of `frames`.
      visibility: optional float32 [T, J], 1 where the joint is visible.
      meta: free-form JSON-serialisable facts (source file, actor, ...).
    """

    clip_id: str
    frames: np.ndarray
    label: int = -1
    joints: Optional[np.ndarray] = None
    visibility: Optional[np.ndarray] = None
    meta: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        f = self.frames
        if f.dtype != np.uint8 or f.ndim != 4 or f.shape[-1] != 3:
            raise ValueError(
                f"clip {self.clip_id!r}: frames must be uint8 [T, H, W, 3], got {f.dtype} {f.shape}")
        if f.shape[0] == 0:
            raise ValueError(f"clip {self.clip_id!r}: no frames")
        if self.joints is not None:
            if self.joints.shape[0] != f.shape[0] or self.joints.shape[-1] != 2:
                raise ValueError(
                    f"clip {self.clip_id!r}: joints must be [T={f.shape[0]}, J, 2], got {self.joints.shape}")
            if self.visibility is None:
                self.visibility = np.ones(self.joints.shape[:2], np.float32)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])
