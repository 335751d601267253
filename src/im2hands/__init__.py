"""im2hands: neural occupancy of two interacting hands from one RGB image and 3D keypoints.

Conventions (one page: docs/CONVENTIONS.md): metres everywhere inside the code, OpenCV camera frame,
21-joint internal order = manopth order (wrist, thumb1-4, index1-4, middle1-4, ring1-4, pinky1-4),
left hands mirrored in x inside the occupancy networks, query space = per-hand canonical frame in which
0.4 * p is metres.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # The API pulls in torch and the networks: import it on first use, so that `import im2hands` stays light.
    if name in ("Im2Hands", "Reconstruction", "HandMesh", "StageResult"):
        from im2hands import api

        return getattr(api, name)
    raise AttributeError(f"module 'im2hands' has no attribute {name!r}")
