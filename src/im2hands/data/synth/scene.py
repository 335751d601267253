"""Random scenes of two interacting hands: poses, shapes, placement, contact and a camera.

:func:`sample_scene` draws one scene from a ``numpy`` generator (the only source of randomness):

1. an interaction category (:data:`KINDS`) and, per hand, a shape (``betas``) and an anatomical pose
   (:mod:`im2hands.data.synth.poses`, styles chosen per category);
2. a relative placement of the two hands for that category (below); one hand (the *mover*) is brought
   towards the other along a direction ``m`` until the surfaces first touch (found by casting rays from
   each hand's vertices along the motion against the other mesh), then pushed in by a small depth
   (contact) or held back by a gap (no contact);
3. for clasps, each hand closes its fingers around the other: every finger is flexed towards a fist
   until its vertices would enter the other hand (checked on a ladder of closing levels, then refined by
   bisection);
4. contact, minimum surface distance and penetration volume are measured; a scene whose penetration
   volume exceeds :data:`MAX_PENETRATION_VOLUME` is rejected and drawn again;
5. a random rigid motion places the pair in the world; a camera looks at them from a random viewpoint
   (often along the line through both hands, so that one occludes the other) with the normalised crop.

Categories (shares in :data:`KINDS`):

- ``clasp``: palms facing (handshake, interlaced or crossed at right angles), pressed together, fingers
  closed around the other hand;
- ``touch``: a fingertip (pad or tip) or the palm of one hand pressed onto a random point of the other;
- ``cross``: the hands stacked across each other (palm or back on palm or back, 35-145 degrees apart,
  anywhere from the wrists to the fingers), touching in half of the cases, else 2-20 mm apart;
- ``near``: any relative orientation, 3-30 mm apart along a random approach direction (a near miss).

Measurements (:func:`measure_pair`): inside tests by fast winding numbers (point-cloud-utils); the
minimum distance is the smallest vertex-to-surface distance (both ways); the penetration volume is a
Monte-Carlo estimate of the volume inside both meshes in a box that provably contains it.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from im2hands.data.synth import poses as P
from im2hands.data.synth.camera import Camera, sample_camera
from im2hands.data.synth.seal import MANO_WRIST_RIM, boundary_loops, seal_topology, seal_vertices
from im2hands.hand import skeleton as sk
from im2hands.hand.skeleton import Side
from im2hands.hand.mano import ManoLayer, load_mano_pickle, find_mano_file, mano_model_from_dict

__all__ = [
    "Camera", "HandState", "Scene", "HandModel", "HandModels", "PairMeasure", "KINDS", "CONTACT_DISTANCE",
    "MAX_PENETRATION_VOLUME", "load_hand_models", "sample_scene", "measure_pair",
]


KINDS: dict[str, float] = {"clasp": 0.2, "touch": 0.3, "cross": 0.25, "near": 0.25}
"""Interaction categories and their probabilities."""

CONTACT_DISTANCE = 0.002
"""Two hands are in contact when their minimum surface distance is below this (metres) or they overlap."""

MAX_PENETRATION_VOLUME = 1.0e-6
"""Scenes whose penetration volume (inside both hands) exceeds this (m^3, = 1 cm^3) are rejected."""

PENETRATION_SAMPLES = 4096
"""Monte-Carlo points for the penetration volume."""

MAX_ATTEMPTS = 8
"""Placements tried per scene before the mover is backed off until the penetration volume is accepted."""

BETAS_STD = 0.8
"""Standard deviation of each shape coefficient (clipped to +-2)."""

_INSIDE_RADIUS = 0.03
"""Upper bound (metres) of the distance from any point inside a hand to its surface (half a palm's
thickness is about 15 mm); used to skip winding numbers of points that cannot be inside."""

_CLOSE_LEVELS = 8
_CLOSE_BISECTIONS = 3


# --------------------------------------------------------------------------------------------------
# Contract dataclasses


@dataclass(frozen=True)
class HandState:
    """One posed hand of a scene. Every array is float64 except ``faces``."""

    side: Side
    global_orient: np.ndarray
    """(3,) axis-angle of the wrist, MANO convention, world frame, radians."""
    hand_pose: np.ndarray
    """(45,) axis-angle of the 15 finger joints (MANO order), radians, as the hand model's
    :class:`~im2hands.hand.mano.ManoLayer` takes it (default ``flat_hand_mean=False``: relative to the
    model's ``hands_mean``); :attr:`HandModel.layer` reproduces ``vertices`` from these parameters."""
    betas: np.ndarray
    """(10,) shape coefficients."""
    transl: np.ndarray
    """(3,) translation, metres, world frame."""
    vertices: np.ndarray
    """(V, 3) posed closed mesh, world frame, metres (for an open model the last vertex is the seal's
    centre)."""
    faces: np.ndarray
    """(F, 3) int64 outward-oriented triangles of the closed mesh."""
    joints: np.ndarray
    """(21, 3) joints, internal (manopth) order, world frame, metres."""
    joint_transforms: np.ndarray
    """(16, 4, 4) posed frame of each MANO kinematic joint (MANO order), world frame: maps joint-local
    coordinates (rest-pose axes, origin at the joint) to the world; translation = posed joint."""


@dataclass(frozen=True)
class Scene:
    """Two interacting hands and a camera."""

    right: HandState
    left: HandState
    camera: Camera
    kind: str
    """Interaction category: ``"clasp"``, ``"touch"``, ``"cross"`` or ``"near"``."""
    contact: bool
    """Minimum surface distance below :data:`CONTACT_DISTANCE`, or overlapping."""
    penetration_volume: float
    """Volume inside both hands, m^3 (Monte-Carlo estimate, after rejection)."""
    min_distance: float
    """Minimum vertex-to-surface distance between the hands, metres (0 when overlapping)."""
    attempts: int = 1
    """Placements drawn for this scene (1: the first passed the penetration test; more: earlier ones were
    rejected or missed; ``MAX_ATTEMPTS + 1``: the mover was finally backed off)."""


# --------------------------------------------------------------------------------------------------
# Hand models


@contextmanager
def _one_thread():
    """Run torch on one thread inside the block (restored after). The layer's tensors here are tiny
    (a few thousand vertices): with several threads on a busy machine the thread start-up costs 10-20x
    the work itself."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@dataclass(frozen=True)
class HandModel:
    """One side's posable hand: the MANO-format layer plus what the sampler derives from it once."""

    side: Side
    layer: ManoLayer
    """float64 layer (``flat_hand_mean=False``); its ``hand_pose`` is :attr:`HandState.hand_pose`."""
    faces: np.ndarray
    """(F', 3) int64 faces of the closed mesh (the model's faces, plus a wrist fan if it was open)."""
    rim: np.ndarray
    """(R,) int64 wrist-rim vertices sealed by a centre vertex, or (0,) if the model is closed."""
    frames: np.ndarray
    """(5, 3, 3, 3) anatomical joint frames (:func:`~im2hands.data.synth.poses.anatomical_frames`)."""
    hands_mean: np.ndarray
    """(45,) the pose the layer adds to ``hand_pose``, radians."""
    vertex_finger: np.ndarray
    """(V',) int64 finger (0 thumb .. 4 pinky) whose joints dominate each vertex's skinning, -1 for the
    palm and wrist (the seal's centre included)."""
    edge_max: float
    """Longest edge of the rest mesh, metres (bounds how far a surface point lies from a vertex)."""

    def forward(self, hand_pose: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pose the hand in its model frame (no global rotation or translation).

        Args:
            hand_pose: (B, 45) layer pose (relative to ``hands_mean``), radians.
            betas: (B, 10) or (10,) shape coefficients.
        Returns:
            ``(vertices (B, V', 3) closed mesh, joints (B, 21, 3) internal order, joint_transforms
            (B, 16, 4, 4))``, float64, metres.
        """
        hand_pose = np.array(np.atleast_2d(hand_pose), dtype=np.float64)  # a writable copy for torch
        betas = np.array(np.broadcast_to(np.asarray(betas, dtype=np.float64), (hand_pose.shape[0], self.layer.num_betas)))
        with torch.no_grad(), _one_thread():
            out = self.layer(hand_pose=torch.from_numpy(hand_pose), betas=torch.from_numpy(betas))
        v = out.vertices.numpy()
        if len(self.rim):
            v = seal_vertices(v, self.rim)
        return v, out.joints.numpy(), out.joint_transforms.numpy()


@dataclass(frozen=True)
class HandModels:
    """The right and left hand models used by :func:`sample_scene`."""

    right: HandModel
    left: HandModel
    source: str
    """Where the model files came from (a folder)."""

    def side(self, side: Side) -> HandModel:
        return self.right if side == "right" else self.left


def _hand_model(path: Path, side: Side) -> HandModel:
    data = load_mano_pickle(path)
    # the open hand model's left file is an exact mirror: the left-shapedirs fix of real MANO would break it
    is_open_hand_model = "openhand_version" in data
    model = mano_model_from_dict(data, side, path)
    layer = ManoLayer(model, side, fix_left_shapedirs=not is_open_hand_model, dtype=torch.float64)
    num_vertices = model.num_vertices
    loops = boundary_loops(model.faces)
    if not loops:
        faces, rim = model.faces, np.zeros(0, dtype=np.int64)
    else:
        rim = MANO_WRIST_RIM if num_vertices == 778 else None
        topo = seal_topology(model.faces, num_vertices, rim)
        faces, rim = topo.faces, topo.rim
    hands_mean = layer.hands_mean.numpy().copy()
    with torch.no_grad():
        rest = layer(hand_pose=torch.from_numpy(-hands_mean)[None]).joints[0].numpy()
    frames = P.anatomical_frames(rest, side)
    finger_of_joint = np.array([-1] + [sk.FINGERS.index(n[:-1]) for n in sk.MANO[1:16]])
    vertex_finger = finger_of_joint[model.weights.argmax(1)]
    if len(rim):
        vertex_finger = np.concatenate([vertex_finger, [-1]])
    v = model.v_template
    e = v[model.faces[:, [0, 1, 2]]] - v[model.faces[:, [1, 2, 0]]]
    return HandModel(side=side, layer=layer, faces=np.ascontiguousarray(faces, dtype=np.int64), rim=rim,
                     frames=frames, hands_mean=hands_mean, vertex_finger=vertex_finger.astype(np.int64),
                     edge_max=float(np.linalg.norm(e, axis=-1).max()))


def load_hand_models(mano_dir: Path | str | None = None) -> HandModels:
    """Load both hands for :func:`sample_scene`.

    Args:
        mano_dir: folder with ``MANO_RIGHT.pkl`` and ``MANO_LEFT.pkl`` (real MANO, e.g. the unpacked official
            download; the wrist is sealed and the left ``shapedirs`` fix applied), or None for the open hand
            model shipped with im2hands.
    Returns:
        :class:`HandModels`.
    """
    if mano_dir is None:
        from im2hands.hand.openhand import openhand_dir

        folder = openhand_dir()
    else:
        folder = Path(mano_dir)
    right = _hand_model(find_mano_file(folder, "right"), "right")
    left = _hand_model(find_mano_file(folder, "left"), "left")
    return HandModels(right=right, left=left, source=str(folder))


# --------------------------------------------------------------------------------------------------
# Geometry of a pair of meshes


@dataclass
class _Mesh:
    """A closed mesh with the acceleration structures used by the measurements (lazily built)."""

    vertices: np.ndarray
    faces: np.ndarray
    edge_max: float
    _tree: cKDTree | None = None
    _faces32: np.ndarray | None = None
    _trimesh: object | None = None

    @property
    def tree(self) -> cKDTree:
        if self._tree is None:
            self._tree = cKDTree(self.vertices)
        return self._tree

    def _candidates(self, points: np.ndarray, near: np.ndarray | None) -> np.ndarray:
        if near is None:
            near = self.tree.query(points, distance_upper_bound=_INSIDE_RADIUS + self.edge_max)[0]
        return np.flatnonzero(near < _INSIDE_RADIUS + self.edge_max)

    def inside(self, points: np.ndarray, near: np.ndarray | None = None) -> np.ndarray:
        """(N,) bool: points (N, 3) inside the mesh (fast winding number > 0.5, point-cloud-utils).
        `near` (N,): known distances to the nearest vertex; points farther than ``_INSIDE_RADIUS +
        edge_max`` cannot be inside and are skipped."""
        import point_cloud_utils as pcu

        if self._faces32 is None:
            self._faces32 = np.ascontiguousarray(self.faces, dtype=np.int32)
        cand = self._candidates(points, near)
        out = np.zeros(len(points), dtype=bool)
        if len(cand):
            w = pcu.triangle_soup_fast_winding_number(self.vertices, self._faces32, np.ascontiguousarray(points[cand]))
            out[cand] = w > 0.5
        return out

    def inside_by_rays(self, points: np.ndarray) -> np.ndarray:
        """(N,) bool: points inside by ray parity (embree through trimesh, acceleration structure kept);
        cheaper than :meth:`inside` for a few hundred points, used while closing fingers."""
        import trimesh

        if self._trimesh is None:
            self._trimesh = trimesh.Trimesh(self.vertices, self.faces, process=False)
        cand = self._candidates(points, None)
        out = np.zeros(len(points), dtype=bool)
        if len(cand):
            out[cand] = self._trimesh.ray.contains_points(points[cand])
        return out


@dataclass(frozen=True)
class PairMeasure:
    """Contact measurements of two closed meshes."""

    min_distance: float
    """Smallest vertex-to-surface distance (both ways), metres; 0 if a vertex lies inside the other mesh."""
    contact: bool
    """``min_distance < CONTACT_DISTANCE``."""
    penetration_volume: float
    """Monte-Carlo estimate of the volume inside both meshes, m^3."""


def _signed_distance(points: np.ndarray, mesh: _Mesh) -> np.ndarray:
    """(N,) signed distance of points (N, 3) to a closed mesh (negative inside; pseudonormal sign)."""
    import igl

    if len(points) == 0:
        return np.zeros(0)
    return igl.signed_distance(np.ascontiguousarray(points), mesh.vertices, mesh.faces,
                               igl.SignedDistanceType.SIGNED_DISTANCE_TYPE_PSEUDONORMAL)[0]


def _measure(a: _Mesh, b: _Mesh, rng: np.random.Generator, samples: int) -> PairMeasure:
    e = max(a.edge_max, b.edge_max)
    near_ab = b.tree.query(a.vertices)[0]  # (Va,) distance of a's vertices to b's nearest vertex
    near_ba = a.tree.query(b.vertices)[0]
    in_ab, in_ba = b.inside(a.vertices, near_ab), a.inside(b.vertices, near_ba)
    overlap = bool(in_ab.any() or in_ba.any())
    min_distance = 0.0
    volume = 0.0
    if not overlap:
        # a vertex's distance d to the other surface satisfies near - e <= d <= near: only vertices whose
        # lower bound beats the best upper bound can hold the minimum
        best = min(near_ab.min(), near_ba.min())
        ca, cb = near_ab <= best + e, near_ba <= best + e
        min_distance = float(min(np.abs(_signed_distance(a.vertices[ca], b)).min(initial=np.inf),
                                 np.abs(_signed_distance(b.vertices[cb], a)).min(initial=np.inf)))
    else:
        # Every boundary point of the intersection lies on a triangle of one mesh inside the other; that
        # triangle's vertices are within e of it, hence closer than e to the other surface and closer than
        # 2e to its nearest vertex. So the intersection lies in the box of those vertices grown by e.
        pts = np.concatenate([a.vertices[in_ab | (near_ab < 2 * e)], b.vertices[in_ba | (near_ba < 2 * e)]])
        lo = np.maximum(pts.min(0) - e, np.maximum(a.vertices.min(0), b.vertices.min(0)))
        hi = np.minimum(pts.max(0) + e, np.minimum(a.vertices.max(0), b.vertices.max(0)))
        if np.all(hi > lo):
            q = rng.uniform(lo, hi, size=(samples, 3))
            in_a = np.flatnonzero(a.inside(q))
            both = int(b.inside(q[in_a]).sum()) if len(in_a) else 0
            volume = both / samples * float(np.prod(hi - lo))
    return PairMeasure(min_distance=min_distance, contact=min_distance < CONTACT_DISTANCE,
                       penetration_volume=volume)


def measure_pair(vertices_a: np.ndarray, faces_a: np.ndarray, vertices_b: np.ndarray, faces_b: np.ndarray,
                 rng: np.random.Generator, *, samples: int = PENETRATION_SAMPLES) -> PairMeasure:
    """Contact, minimum distance and penetration volume of two closed, outward-oriented meshes.

    Note that a penetration without any vertex inside the other mesh (an edge through a face) counts as
    no overlap; the minimum distance is then the vertex-to-surface distance.

    Args:
        vertices_a, vertices_b: (Va, 3), (Vb, 3) vertices, same frame, metres.
        faces_a, faces_b: (Fa, 3), (Fb, 3) triangle indices of closed meshes.
        rng: source of the Monte-Carlo points.
        samples: number of Monte-Carlo points.
    Returns:
        :class:`PairMeasure`.
    """
    meshes = []
    for name, v, f in (("a", vertices_a, faces_a), ("b", vertices_b, faces_b)):
        v = np.ascontiguousarray(v, dtype=np.float64)
        f = np.asarray(f)
        if v.ndim != 2 or v.shape[1] != 3:
            raise ValueError(f"vertices_{name}: expected shape (V, 3), got {v.shape}")
        if f.ndim != 2 or f.shape[1] != 3 or f.min() < 0 or f.max() >= len(v):
            raise ValueError(f"faces_{name}: expected (F, 3) indices into {len(v)} vertices, got shape {f.shape}")
        f = np.ascontiguousarray(f, dtype=np.int64)
        e = v[f[:, [0, 1, 2]]] - v[f[:, [1, 2, 0]]]
        meshes.append(_Mesh(v, f, float(np.linalg.norm(e, axis=-1).max())))
    return _measure(meshes[0], meshes[1], rng, samples)


# --------------------------------------------------------------------------------------------------
# Sampling


@dataclass
class _Hand:
    """Working state of one hand while a scene is built: its pose (model frame) and rigid placement
    ``world = rot @ local + pos``. Call :meth:`pose_` before reading the geometry."""

    model: HandModel
    betas: np.ndarray
    """(10,) shape coefficients."""
    angles: np.ndarray = field(default_factory=lambda: np.zeros((5, 3, 3)))
    """(5, 3, 3) anatomical angles, radians."""
    rot: np.ndarray = field(default_factory=lambda: np.eye(3))
    """(3, 3) placement rotation."""
    pos: np.ndarray = field(default_factory=lambda: np.zeros(3))
    """(3,) placement translation, metres."""
    local_vertices: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    """(V', 3) closed posed mesh in the model frame, metres."""
    local_joints: np.ndarray = field(default_factory=lambda: np.zeros((21, 3)))
    """(21, 3) posed joints in the model frame (internal order), metres."""
    local_transforms: np.ndarray = field(default_factory=lambda: np.zeros((16, 4, 4)))
    """(16, 4, 4) posed joint transforms in the model frame."""

    def pose_(self, angles: np.ndarray) -> None:
        """Pose the hand with anatomical `angles` (5, 3, 3) and update the model-frame geometry."""
        self.angles = angles
        hp = P.angles_to_hand_pose(self.angles, self.model.frames) - self.model.hands_mean
        v, j, t = self.model.forward(hp[None], self.betas)
        self.local_vertices, self.local_joints, self.local_transforms = v[0], j[0], t[0]

    @property
    def vertices(self) -> np.ndarray:
        return self.local_vertices @ self.rot.T + self.pos

    @property
    def joints(self) -> np.ndarray:
        return self.local_joints @ self.rot.T + self.pos

    def mesh(self) -> _Mesh:
        return _Mesh(self.vertices, self.model.faces, self.model.edge_max)

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World (distal, radial, palm normal) of the posed hand."""
        return P.palm_axes(self.joints, self.model.side)

    def palm_centre(self) -> np.ndarray:
        j = self.joints
        return 0.5 * j[0] + 0.5 * j[[5, 9, 13, 17]].mean(0)


def _basis(distal: np.ndarray, normal: np.ndarray) -> np.ndarray:
    d = distal / np.linalg.norm(distal)
    n = normal - np.dot(normal, d) * d
    n /= np.linalg.norm(n)
    return np.stack([d, n, np.cross(d, n)], axis=1)


def _align(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Smallest rotation taking unit vector u to unit vector v."""
    u, v = u / np.linalg.norm(u), v / np.linalg.norm(v)
    axis = np.cross(u, v)
    s, c = np.linalg.norm(axis), float(np.dot(u, v))
    if s < 1e-9:
        if c > 0:
            return np.eye(3)
        perp = np.cross(u, [1.0, 0.0, 0.0])
        if np.linalg.norm(perp) < 1e-6:
            perp = np.cross(u, [0.0, 1.0, 0.0])
        return Rotation.from_rotvec(np.pi * perp / np.linalg.norm(perp)).as_matrix()
    return Rotation.from_rotvec(axis / s * np.arctan2(s, c)).as_matrix()


def _rot_about(axis: np.ndarray, angle: float) -> np.ndarray:
    return Rotation.from_rotvec(axis / np.linalg.norm(axis) * angle).as_matrix()


def _first_contact(mover: _Hand, fixed: _Hand, m: np.ndarray) -> float:
    """Distance the mover can travel along unit `m` before its surface first meets the fixed hand's
    (vertex rays both ways); inf if they never meet."""
    import trimesh

    va, vb = mover.vertices, fixed.vertices
    mesh_b = trimesh.Trimesh(vb, fixed.model.faces, process=False)
    mesh_a_local = trimesh.Trimesh(mover.local_vertices, mover.model.faces, process=False)
    best = np.inf
    loc, idx, _ = mesh_b.ray.intersects_location(va, np.broadcast_to(m, va.shape), multiple_hits=False)
    if len(idx):
        best = min(best, float(np.linalg.norm(loc - va[idx], axis=1).min()))
    ob = (vb - mover.pos) @ mover.rot  # fixed vertices in the mover's model frame
    db = np.broadcast_to(-m @ mover.rot, vb.shape)
    loc, idx, _ = mesh_a_local.ray.intersects_location(ob, db, multiple_hits=False)
    if len(idx):
        best = min(best, float(np.linalg.norm(loc - ob[idx], axis=1).min()))
    return best


def _slide(mover: _Hand, fixed: _Hand, anchor_mover: np.ndarray, anchor_fixed: np.ndarray, m: np.ndarray,
           push: float) -> bool:
    """Translate the mover so that it approaches along `m` on the line through `anchor_fixed` (its
    `anchor_mover` point moving along it), stopping `push` metres past the first contact (a gap if
    negative). Returns False if the surfaces never meet on that line."""
    m = m / np.linalg.norm(m)
    reach = 0.6
    mover.pos = mover.pos + (anchor_fixed - anchor_mover) - reach * m
    t = _first_contact(mover, fixed, m)
    if not np.isfinite(t):
        return False
    mover.pos = mover.pos + (t + push) * m
    return True


def _close(hand: _Hand, other: _Mesh, target: np.ndarray) -> None:
    """Flex each finger from its current angles towards `target` (5, 3, 3) until it would enter `other`.

    The closing level of every finger (0 = current, 1 = target) climbs a ladder of levels, all fingers at
    once, until the finger's vertices first enter `other`; the last free level is refined by bisection.
    """
    start = hand.angles
    vf = hand.model.vertex_finger
    finger_vertices = [np.flatnonzero(vf == f) for f in range(5)]

    def entered(lam: np.ndarray, fingers: np.ndarray) -> np.ndarray:  # lam (5,) -> (len(fingers),) bool
        ang = start + lam[:, None, None] * (target - start)
        hp = P.angles_to_hand_pose(ang, hand.model.frames) - hand.model.hands_mean
        v = hand.model.forward(hp[None], hand.betas)[0][0] @ hand.rot.T + hand.pos
        idx = np.concatenate([finger_vertices[f] for f in fingers])
        inside = other.inside_by_rays(v[idx])
        counts = np.cumsum([0] + [len(finger_vertices[f]) for f in fingers])
        return np.array([inside[counts[i]:counts[i + 1]].any() for i in range(len(fingers))])

    levels = np.linspace(0.0, 1.0, _CLOSE_LEVELS)
    lo, hi = np.zeros(5), np.ones(5)
    active = np.arange(5)
    for k, level in enumerate(levels):
        lam = lo.copy()
        lam[active] = level
        hit = entered(lam, active)
        for f in active[hit]:
            lo[f], hi[f] = (levels[k - 1], level) if k else (0.0, 0.0)
        lo[active[~hit]] = level
        active = active[~hit]
        if not len(active):
            break
    hi[active] = lo[active] = 1.0
    open_ = np.flatnonzero(hi > lo)
    for _ in range(_CLOSE_BISECTIONS if len(open_) else 0):
        mid = 0.5 * (lo + hi)
        lam = lo.copy()
        lam[open_] = mid[open_]
        hit = entered(lam, open_)
        lo[open_[~hit]] = mid[open_[~hit]]
        hi[open_[hit]] = mid[open_[hit]]
    hand.pose_(start + lo[:, None, None] * (target - start))


def _sample_betas(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.clip(rng.normal(0.0, BETAS_STD, n), -2.0, 2.0)


_TOUCH_FINGERS = np.array([0.25, 0.4, 0.2, 0.08, 0.07])


def _place_touch(rng: np.random.Generator, a: _Hand, b: _Hand) -> bool:
    import trimesh

    bv = b.vertices
    normals = trimesh.Trimesh(bv, b.model.faces, process=False).vertex_normals
    far_from_wrist = np.flatnonzero(np.linalg.norm(bv - b.joints[0], axis=1) > 0.03)
    q = int(rng.choice(far_from_wrist))
    target, n_q = bv[q], normals[q]
    _, _, normal = a.axes()
    j = a.joints
    if rng.uniform() < 0.75:  # fingertip: pad or tip
        f = int(rng.choice(5, p=_TOUCH_FINGERS))
        tip = j[4 + 4 * f]
        d = tip - j[3 + 4 * f]
        d /= np.linalg.norm(d)
        u = d + (0.8 * normal if rng.uniform() < 0.6 else 0.0)
        point = tip
    else:  # palm
        u, point = normal, a.palm_centre()
    rot = _rot_about(n_q, rng.uniform(0, 2 * np.pi)) @ _align(u, -n_q)
    a.rot, a.pos = rot @ a.rot, rot @ (a.pos - point) + point
    return _slide(a, b, point, target, -n_q, rng.uniform(0.0, 0.0015))


def _place_stack(a: _Hand, b: _Hand, angle: float, palms_facing: bool,
                 anchor_a: np.ndarray, anchor_b: np.ndarray, from_palm_side: bool, push: float) -> bool:
    """Orient a against b (finger directions `angle` apart about b's palm normal, palms facing or
    parallel) and slide it onto b from b's palm or back side."""
    db, _, nb = b.axes()
    da, _, na = a.axes()
    d_target = _rot_about(nb, angle) @ db
    n_target = -nb if palms_facing else nb
    rot = _basis(d_target, n_target) @ _basis(da, na).T
    centre = a.palm_centre()
    a.rot, a.pos = rot @ a.rot, rot @ (a.pos - centre) + centre
    anchor_a = rot @ (anchor_a - centre) + centre
    m = -nb if from_palm_side else nb
    return _slide(a, b, anchor_a, anchor_b, m, push)


def _axis_point(h: _Hand, alpha: float) -> np.ndarray:
    j = h.joints
    return j[0] + alpha * (j[12] - j[0])


def _place(rng: np.random.Generator, kind: str, a: _Hand, b: _Hand) -> bool:
    if kind == "touch":
        return _place_touch(rng, a, b)
    if kind == "clasp":
        r = rng.uniform()
        if r < 0.4:
            angle = np.pi + np.deg2rad(rng.normal(0, 15))  # handshake
        elif r < 0.7:
            angle = np.deg2rad(rng.normal(0, 12))  # palms together, fingers aligned
        else:
            angle = rng.choice([-1, 1]) * np.deg2rad(rng.uniform(65, 115))  # crossed grip
        db, rb, nb = b.axes()
        offset = rng.normal(0, 0.012, 2)
        anchor_b = b.palm_centre() + offset[0] * db + offset[1] * rb
        ok = _place_stack(a, b, angle, True, a.palm_centre(), anchor_b, True, rng.uniform(0.0, 0.001))
        if ok:
            _close(b, a.mesh(), P.fist_angles(rng))
            _close(a, b.mesh(), P.fist_angles(rng))
        return ok
    if kind == "cross":
        angle = rng.choice([-1, 1]) * np.deg2rad(rng.uniform(35, 145))
        push = rng.uniform(0.0, 0.001) if rng.uniform() < 0.5 else -rng.uniform(0.002, 0.02)
        return _place_stack(a, b, angle, bool(rng.uniform() < 0.5), _axis_point(a, rng.uniform(-0.1, 0.8)),
                            _axis_point(b, rng.uniform(-0.1, 0.8)), bool(rng.uniform() < 0.5), push)
    if kind == "near":
        rot = Rotation.random(random_state=rng).as_matrix()
        centre = a.palm_centre()
        a.rot, a.pos = rot @ a.rot, rot @ (a.pos - centre) + centre
        va, vb = a.vertices, b.vertices
        m = rng.normal(size=3)
        return _slide(a, b, va[rng.integers(len(va))], vb[rng.integers(len(vb))], m / np.linalg.norm(m),
                      -rng.uniform(0.003, 0.03))
    raise ValueError(f"kind: expected one of {sorted(KINDS)}, got {kind!r}")


_POSE_STYLES = {
    "clasp": {"flat": 0.5, "relaxed": 0.5},
    "touch": None,
    "cross": {"flat": 0.3, "relaxed": 0.3, "point": 0.1, "grasp": 0.1, "random": 0.2},
    "near": None,
}
_TOUCHER_STYLES = {"point": 0.35, "pinch": 0.15, "relaxed": 0.25, "flat": 0.25}


def _hand_state(h: _Hand, rot: np.ndarray, pos: np.ndarray) -> HandState:
    """Final state of a hand placed by (rot, pos) in the world (applied to the model-frame outputs)."""
    v = h.local_vertices @ rot.T + pos
    joints = h.local_joints @ rot.T + pos
    rigid = np.eye(4)
    rigid[:3, :3], rigid[:3, 3] = rot, pos
    wrist = h.local_joints[0]  # the root does not move with the finger pose
    hp = P.angles_to_hand_pose(h.angles, h.model.frames) - h.model.hands_mean
    return HandState(
        side=h.model.side, global_orient=Rotation.from_matrix(rot).as_rotvec(), hand_pose=hp,
        betas=h.betas.copy(), transl=pos - wrist + rot @ wrist, vertices=v, faces=h.model.faces, joints=joints,
        joint_transforms=rigid @ h.local_transforms)


def sample_scene(rng: np.random.Generator, hands: HandModels, *, kind: str | None = None) -> Scene:
    """Draw one scene of two interacting hands and a camera.

    Args:
        rng: the only source of randomness (same seed, same scene).
        hands: from :func:`load_hand_models`.
        kind: force an interaction category (a key of :data:`KINDS`); None draws one.
    Returns:
        :class:`Scene` with both hands in the world frame and a camera whose 256x256 crop frames them.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    if not isinstance(hands, HandModels):
        raise TypeError(f"hands: expected HandModels (from load_hand_models), got {type(hands).__name__}")
    if kind is None:
        names = list(KINDS)
        kind = names[int(rng.choice(len(names), p=np.array([KINDS[k] for k in names])))]
    elif kind not in KINDS:
        raise ValueError(f"kind: expected one of {sorted(KINDS)}, got {kind!r}")

    mover_side = "right" if rng.uniform() < 0.5 else "left"
    best = None
    for attempt in range(MAX_ATTEMPTS):
        mover, fixed = (_Hand(hands.side(s), _sample_betas(rng, hands.side(s).layer.num_betas))
                        for s in (mover_side, sk.other_side(mover_side)))
        mover_styles = _TOUCHER_STYLES if kind == "touch" else _POSE_STYLES[kind]
        mover.pose_(P.sample_hand_angles(rng, styles=mover_styles).angles)
        fixed.pose_(P.sample_hand_angles(rng, styles=_POSE_STYLES[kind]).angles)
        if not _place(rng, kind, mover, fixed):
            continue
        meas = _measure(mover.mesh(), fixed.mesh(), rng, PENETRATION_SAMPLES)
        if meas.penetration_volume <= MAX_PENETRATION_VOLUME:
            best = (mover, fixed, meas)
            break
        if best is None or meas.penetration_volume < best[2].penetration_volume:
            best = (mover, fixed, meas)
    if best is None:
        raise RuntimeError("sample_scene: no placement met the hands in any attempt")
    mover, fixed, meas = best
    attempts = attempt + 1
    # last resort: back the mover off along the line between the hands until the volume is accepted
    away = mover.palm_centre() - fixed.palm_centre()
    if np.linalg.norm(away) < 1e-6:
        away = -mover.axes()[2]  # coinciding palm centres: back off behind the mover's palm
    away /= np.linalg.norm(away)
    while meas.penetration_volume > MAX_PENETRATION_VOLUME:
        attempts = MAX_ATTEMPTS + 1
        mover.pos = mover.pos + 0.002 * away
        meas = _measure(mover.mesh(), fixed.mesh(), rng, PENETRATION_SAMPLES)

    # random rigid placement of the pair in the world
    world_rot = Rotation.random(random_state=rng).as_matrix()
    world_pos = rng.normal(0.0, 0.05, 3)
    states = {}
    for h in (mover, fixed):
        states[h.model.side] = _hand_state(h, world_rot @ h.rot, world_rot @ h.pos + world_pos)
    right, left = states["right"], states["left"]
    occlusion_axis = right.vertices.mean(0) - left.vertices.mean(0)
    camera = sample_camera(rng, np.concatenate([right.vertices, left.vertices]), occlusion_axis=occlusion_axis)
    return Scene(right=right, left=left, camera=camera, kind=kind, contact=meas.contact,
                 penetration_volume=meas.penetration_volume, min_distance=meas.min_distance, attempts=attempts)
