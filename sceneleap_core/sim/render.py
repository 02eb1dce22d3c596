"""Pictures of one grasp's rollout, so a person can see why it failed.

``render_grasp`` re-runs one protocol on one grasp, records key frames (commanded grasp, pregrasp,
approach, squeeze, lift or pushes) and writes a PNG contact sheet and/or a video. Frames come from
MuJoCo's offscreen renderer when an OpenGL backend works headless (set ``MUJOCO_GL=egl`` or
``osmesa`` before MuJoCo is imported; the CLI sets ``egl`` when unset), otherwise from a
matplotlib drawing of the collision geoms (boxes, primitives, meshes). Videos: ``.gif`` always
(Pillow); ``.mp4`` needs PyAV or imageio-ffmpeg.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from sceneleap_core.hand.draw import save_figure
from sceneleap_core.sim.config import SimConfig
from sceneleap_core.sim.scene import SceneSpec

log = logging.getLogger(__name__)


class _MujocoCamera:
    """MuJoCo offscreen renderer looking at one point."""

    def __init__(self, model, size: tuple[int, int]):
        import mujoco

        self.renderer = mujoco.Renderer(model, height=size[1], width=size[0])
        self.option = mujoco.MjvOption()
        self.option.geomgroup[:] = [1, 1, 1, 0, 0, 0]  # visual geoms (group 2), not collision (3)
        self.camera = mujoco.MjvCamera()
        self.camera.distance, self.camera.azimuth, self.camera.elevation = 0.5, 135.0, -25.0

    def __call__(self, data, lookat: np.ndarray, title: str) -> np.ndarray:
        self.camera.lookat[:] = lookat
        self.renderer.update_scene(data, camera=self.camera, scene_option=self.option)
        return self.renderer.render().copy()

    def close(self) -> None:
        self.renderer.close()


class _MatplotlibCamera:
    """Fallback: draws the collision geoms (group 3) with matplotlib."""

    _CORNERS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=float)
    _FACES = ((0, 1, 3, 2), (4, 5, 7, 6), (0, 1, 5, 4), (2, 3, 7, 6), (0, 2, 6, 4), (1, 3, 7, 5))

    def __init__(self, model, size: tuple[int, int]):
        self.model, self.size = model, size

    def _polys(self, data) -> tuple[list, list]:
        import mujoco

        m = self.model
        polys, colours = [], []
        for g in range(m.ngeom):
            if m.geom_group[g] != 3:
                continue
            rot, pos, size = data.geom_xmat[g].reshape(3, 3), data.geom_xpos[g], m.geom_size[g]
            rgba = (*tuple(m.geom_rgba[g][:3]), 0.6)
            kind = m.geom_type[g]
            if kind == mujoco.mjtGeom.mjGEOM_PLANE:
                continue
            if kind == mujoco.mjtGeom.mjGEOM_MESH:
                mid = m.geom_dataid[g]
                v0, nv = m.mesh_vertadr[mid], m.mesh_vertnum[mid]
                f0, nf = m.mesh_faceadr[mid], m.mesh_facenum[mid]
                verts = m.mesh_vert[v0 : v0 + nv] @ rot.T + pos
                polys += [verts[f] for f in m.mesh_face[f0 : f0 + nf]]
                colours += [rgba] * nf
                continue
            if kind == mujoco.mjtGeom.mjGEOM_BOX:
                half = size
            elif kind == mujoco.mjtGeom.mjGEOM_SPHERE:
                half = np.full(3, size[0])
            else:  # cylinder, capsule: their bounding box
                half = np.array([size[0], size[0], size[1] + (size[0] if kind == mujoco.mjtGeom.mjGEOM_CAPSULE else 0)])
            corners = (self._CORNERS * half) @ rot.T + pos
            polys += [corners[list(f)] for f in self._FACES]
            colours += [rgba] * 6
        return polys, colours

    def __call__(self, data, lookat: np.ndarray, title: str) -> np.ndarray:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from mpl_toolkits.mplot3d.art3d import Poly3DCollection

        polys, colours = self._polys(data)
        dpi = 100
        fig = plt.figure(figsize=(self.size[0] / dpi, self.size[1] / dpi), dpi=dpi)
        ax = fig.add_subplot(projection="3d")
        ax.add_collection3d(Poly3DCollection(polys, facecolors=colours, edgecolors="k", linewidths=0.1))
        r = 0.15
        for setter, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), lookat, strict=True):
            setter(c - r, c + r)
        ax.set_box_aspect((1, 1, 1))
        ax.view_init(elev=25, azim=135 - 180)
        ax.set_title(title, fontsize=8)
        fig.canvas.draw()
        image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
        plt.close(fig)
        return image

    def close(self) -> None:
        pass


def make_camera(model, size: tuple[int, int] = (480, 360), backend: str = "auto"):
    """A callable ``camera(data, lookat, title) -> (H, W, 3) uint8``: MuJoCo when possible."""
    if backend not in ("auto", "mujoco", "matplotlib"):
        raise ValueError(f"backend: expected 'auto', 'mujoco' or 'matplotlib', got {backend!r}")
    if backend in ("auto", "mujoco"):
        try:
            return _MujocoCamera(model, size)
        except Exception as err:  # no OpenGL context headless: fall back
            if backend == "mujoco":
                raise ValueError(f"MuJoCo offscreen rendering: expected a working GL backend, got {err}") from None
            log.info("MuJoCo renderer unavailable (%s); drawing with matplotlib", err)
    return _MatplotlibCamera(model, size)


def render_grasp(
    scene: SceneSpec,
    palm_pose: np.ndarray,
    joints: np.ndarray,
    target: int = 0,
    *,
    protocol: str = "lift",
    config: SimConfig | None = None,
    png: str | Path | None = None,
    video: str | Path | None = None,
    size: tuple[int, int] = (480, 360),
    fps: int = 25,
    backend: str = "auto",
    seed: int = 0,
):
    """Re-run one grasp and picture it.

    Args:
        scene: the scene.
        palm_pose: (4, 4) palm pose; joints: (J,); target: object index.
        protocol: "lift" or "disturbance".
        png: contact sheet of the key frames, each titled with its phase and the outcome.
        video: ``.gif`` or ``.mp4`` of the whole rollout at ``fps`` (simulated time, real speed).
        size: (width, height) of one frame.
        backend: "auto", "mujoco" or "matplotlib".

    Returns:
        The GraspOutcome of the re-run (``frames`` filled).
    """
    from sceneleap_core.sim.simulator import GraspSim

    if protocol not in ("lift", "disturbance"):
        raise ValueError(f"protocol: expected 'lift' or 'disturbance' for a rendering, got {protocol!r}")
    if png is None and video is None:
        raise ValueError("render_grasp: expected png and/or video output paths, got neither")
    if video is not None and Path(video).suffix.lower() not in (".gif", ".mp4"):
        raise ValueError(f"video: expected a .gif or .mp4 path, got {video}")
    config = config or SimConfig()
    sim_scene = scene if protocol == "lift" else scene.single(target)
    sim = GraspSim(sim_scene, config=config, seed=seed, render_size=size)
    target_in_sim = target if protocol == "lift" else 0
    camera = make_camera(sim.model, size, backend)
    body = sim.object_body[target_in_sim]
    lookat0 = np.asarray(scene.objects[target].pose[:3, 3], dtype=np.float64)
    video_frames: list[np.ndarray] = []
    if video is not None:
        every = max(1, round(1.0 / (fps * sim.dt)))
        counter = {"n": 0}

        def capture(s):
            counter["n"] += 1
            if counter["n"] % every == 0:
                video_frames.append(camera(s.data, 0.5 * (lookat0 + s.data.xpos[body]), s.phase))

        sim.on_step = capture
    runner = sim.run_lift if protocol == "lift" else sim.run_disturbance
    outcome = runner(
        np.asarray(palm_pose, dtype=np.float64), np.asarray(joints, dtype=np.float64), target_in_sim, record=True
    )
    sim.on_step = None
    verdict = "success" if outcome.success else f"FAIL: {outcome.failure}"
    import mujoco

    if png is not None:
        images, titles = [], []
        for frame in outcome.frames:
            sim.data.qpos[:] = frame.qpos
            mujoco.mj_kinematics(sim.model, sim.data)
            images.append(camera(sim.data, 0.5 * (lookat0 + sim.data.xpos[body]), frame.phase))
            titles.append(frame.phase)
        _contact_sheet(images, titles, f"{protocol} test: {verdict}", Path(png))
    if video is not None:
        if not video_frames:  # gated before any motion: show the key frames, half a second each
            for frame in outcome.frames:
                sim.data.qpos[:] = frame.qpos
                mujoco.mj_kinematics(sim.model, sim.data)
                video_frames += [camera(sim.data, lookat0, frame.phase)] * max(1, fps // 2)
        _write_video(video_frames, Path(video), fps)
    camera.close()
    return outcome


def _contact_sheet(images: list[np.ndarray], titles: list[str], heading: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, max(1, len(images)))
    rows = -(-len(images) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, title in zip(axes.ravel(), images, titles, strict=False):
        ax.imshow(image)
        ax.set_title(title, fontsize=9)
    fig.suptitle(heading, fontsize=11)
    save_figure(fig, out, dpi=100)


def _write_video(frames: list[np.ndarray], out: Path, fps: int) -> None:
    if not frames:
        raise ValueError("video: expected at least one frame, got none (the grasp was gated before any motion)")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        images[0].save(out, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
        return
    try:
        import av
    except ImportError:
        av = None
    if av is not None:
        with av.open(str(out), mode="w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.height, stream.width = frames[0].shape[:2]
            stream.pix_fmt = "yuv420p"
            for f in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        return
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise ValueError(
            "video: .mp4 needs PyAV ('av') or imageio-ffmpeg, neither is installed; write a .gif instead"
        ) from None
    imageio.mimwrite(out, frames, fps=fps)
