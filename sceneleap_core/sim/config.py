"""Physics parameters of the grasp evaluator, in one typed, frozen config.

Every number the two protocols use lives here with its default and the reason for it; nothing
in :mod:`sceneleap_core.sim` hard-codes a physical constant. Build a variant with
``dataclasses.replace(SimConfig(), pad_friction=0.3)`` or ``SimConfig(**json_dict)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

_INTEGRATORS = ("Euler", "implicit", "implicitfast", "RK4")
_CONES = ("pyramidal", "elliptic")
_MESH_MODES = ("auto", "hull", "coacd")


@dataclass(frozen=True)
class SimConfig:
    """Parameters of the MuJoCo evaluator (SI units: m, kg, s, rad, N).

    Simulation
        timestep: 0.002 s (SPEC §6: 2 ms with ``implicitfast`` is stable for the LEAP model).
        integrator: ``"implicitfast"`` (joint damping and actuator damping are implicit).
        cone: ``"elliptic"`` friction cones with ``impratio`` 10, as MuJoCo recommends for grasping
            (pyramidal cones let a squeezed object creep).
        gravity: 9.81 m/s², along world −z, switched on only for the lift phase of the lift test.

    Hand (LEAP, from the hand description; gains as measured in SPEC §6)
        kp: 3.0 N·m/rad position gain of every joint actuator (Menagerie's LEAP value).
        force_limit: actuator torque cap; None = each joint's URDF effort limit (0.95 N·m for LEAP).
        joint_damping: 0.03 N·m·s/rad (Menagerie), joint_armature: 0.001 kg·m² (servo rotor
            inertia; keeps the 3 N·m/rad loop on 20–50 g links stable at 2 ms).
        pad_friction / hand_friction: None = the description's ``pad_friction`` (0.5, fingertip
            pads) and ``body_friction`` (0.2, every other hand box).
        weld_solref: (time constant s, damping ratio) of the weld that drags the free-floating
            palm onto the mocap target; 0.01 s tracks the commanded pose to ~1 mm under squeeze.
        hand_self_collision: fingers collide with each other (parent/child pairs excluded).

    Objects and table
        object_mass: 0.1 kg when an :class:`ObjectSpec` gives none; object_friction: 0.5 likewise.
        table_friction: 0.5.
        mesh_mode: ``"hull"`` one convex hull per mesh, ``"coacd"`` CoACD pieces, ``"auto"`` hull
            when the mesh fills ≥ ``convex_volume_ratio`` (0.95) of its hull, else CoACD.
        coacd_threshold: 0.05 CoACD concavity; coacd_max_pieces: 16.
        cache_dir: where decompositions are cached (None: ``$SCENELEAP_CACHE`` or
            ``~/.cache/sceneleap/coacd``).

    Lift test (DexGraspNet 2.0 style; timings in simulated seconds)
        pregrasp_distance: 0.10 m back-off along the approach axis; approach_time 0.25 s,
        close_time 0.25 s (open → grasp joints), squeeze_delta 0.15 rad further along each joint's
        closing direction over squeeze_time 0.2 s, settle_time 0.1 s with gravity on,
        lift_distance 0.20 m over lift_time 0.5 s, hold_time 0.2 s;
        lift_success_height: 0.03 m, the target must end this far above its start;
        penetration_tolerance: 0.001 m, the pregrasp counts as penetrating beyond this depth.
        max_grasp_penetration: 0.005 m; the commanded grasp itself (placed kinematically) may not
            sink deeper than this into any object or the table (both protocols; None = no check,
            the bare DexGraspNet 2.0 criterion). Without it a palm inside an object is simply
            ejected by the contact solver and the outcome is luck.

    Disturbance test (BODex / DexGraspBench style; target object alone, gravity off)
        disturbance_force_scale: 10, the push is this many times the object's mass (N per kg);
        disturbance_time: 0.5 s per direction (+x, −x, +y, −y, +z, −z, each from the squeezed state);
        disturbance_max_translation: 0.05 m; disturbance_max_rotation_deg: 15.

    Metrics
        q1_friction: μ = 0.5 of the friction cones in Q1 (the pad friction of the simulated hand);
        q1_cone_edges: 8; torques are divided by the object's bounding radius (Q1 in newtons).
        tip_contact_links: None = the last link of each finger in the description.
    """

    # simulation
    timestep: float = 0.002
    integrator: str = "implicitfast"
    cone: str = "elliptic"
    impratio: float = 10.0
    gravity: float = 9.81
    # hand
    kp: float = 3.0
    force_limit: float | None = None
    joint_damping: float = 0.03
    joint_armature: float = 0.001
    pad_friction: float | None = None
    hand_friction: float | None = None
    weld_solref: tuple[float, float] = (0.01, 1.0)
    hand_self_collision: bool = True
    # objects and table
    object_mass: float = 0.1
    object_friction: float = 0.5
    table_friction: float = 0.5
    mesh_mode: str = "auto"
    convex_volume_ratio: float = 0.95
    coacd_threshold: float = 0.05
    coacd_max_pieces: int = 16
    cache_dir: str | None = None
    # lift test
    pregrasp_distance: float = 0.10
    approach_time: float = 0.25
    close_time: float = 0.25
    squeeze_delta: float = 0.15
    squeeze_time: float = 0.2
    settle_time: float = 0.1
    lift_distance: float = 0.20
    lift_time: float = 0.5
    hold_time: float = 0.2
    lift_success_height: float = 0.03
    penetration_tolerance: float = 0.001
    max_grasp_penetration: float | None = 0.005
    # disturbance test
    disturbance_force_scale: float = 10.0
    disturbance_time: float = 0.5
    disturbance_max_translation: float = 0.05
    disturbance_max_rotation_deg: float = 15.0
    # metrics
    q1_friction: float = 0.5
    q1_cone_edges: int = 8
    tip_contact_links: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.integrator not in _INTEGRATORS:
            raise ValueError(f"SimConfig.integrator: expected one of {_INTEGRATORS}, got {self.integrator!r}")
        if self.cone not in _CONES:
            raise ValueError(f"SimConfig.cone: expected one of {_CONES}, got {self.cone!r}")
        if self.mesh_mode not in _MESH_MODES:
            raise ValueError(f"SimConfig.mesh_mode: expected one of {_MESH_MODES}, got {self.mesh_mode!r}")
        positive = [
            "timestep",
            "kp",
            "object_mass",
            "pregrasp_distance",
            "approach_time",
            "close_time",
            "squeeze_time",
            "lift_time",
            "disturbance_time",
            "disturbance_force_scale",
        ]
        for name in positive:
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"SimConfig.{name}: expected a positive number, got {value!r}")
        non_negative = ["settle_time", "hold_time", "squeeze_delta", "q1_friction", "penetration_tolerance"]
        for name in non_negative:
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"SimConfig.{name}: expected a non-negative number, got {value!r}")
        if self.q1_cone_edges < 3:
            raise ValueError(f"SimConfig.q1_cone_edges: expected at least 3, got {self.q1_cone_edges}")
        if len(self.weld_solref) != 2:
            raise ValueError(f"SimConfig.weld_solref: expected (timeconst, dampratio), got {self.weld_solref!r}")

    def to_dict(self) -> dict:
        """Plain dict (JSON-serializable) of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> SimConfig:
        """Build from a dict, rejecting unknown keys with the list of valid ones."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"SimConfig: unknown keys {unknown}; expected some of {sorted(names)}")
        values = dict(values)
        for key in ("weld_solref", "tip_contact_links"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)
