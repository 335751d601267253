"""A scene module whose hand models load in the main process but not in worker processes (tests only)."""

import multiprocessing as mp

from im2hands.data.synth.scene import load_hand_models as _load_hand_models
from im2hands.data.synth.scene import sample_scene  # noqa: F401  (the scene API)


def load_hand_models(mano_dir=None):
    if mp.parent_process() is not None:
        raise OSError("MANO_RIGHT.pkl: disk unreadable in this worker")
    return _load_hand_models(mano_dir)
