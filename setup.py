"""Packaging for pip (``pip install -e .``) and for ament_cmake_python (ROS 2 colcon builds)."""

from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "sceneleap_ros"
ROOT = Path(__file__).resolve().parent
version = {}
exec((ROOT / "sceneleap_core" / "__init__.py").read_text(), version)  # __version__ only

extras = {
    # charset-normalizer: trimesh's loaders decode a non-UTF-8 mesh file with it (an ImportError otherwise)
    "sim": ["mujoco==4.0.0", "coacd==1.0.14", "trimesh==5.2.0", "charset-normalizer==3.4.7"],
    "data": ["h5py==3.16.0", "trimesh==5.2.0", "rtree==1.4.1", "charset-normalizer==3.4.7"],
    "train": ["lightning==2.6.6", "omegaconf==2.4.0", "tensorboard==2.21.0"],
    "export": ["onnx==1.23.2", "onnxruntime==1.32.0"],
    "ros-offline": ["rosbags==0.11.9"],
    "pybullet": ["pybullet==3.2.7"],  # random_urdfs meshes for the data engine (000-799 train)
    "dev": ["pytest==9.2.0", "pytest-xdist==3.8.0", "ruff==0.17.6", "pytorch-kinematics==0.10.0"],
}
extras["all"] = sorted({req for reqs in extras.values() for req in reqs})

setup(
    name="sceneleap",
    version=version["__version__"],
    description="Diffusion-based dexterous grasping in clutter for the LEAP Hand: library, CLI and ROS 2 node",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["sceneleap_core", "sceneleap_core.*", "sceneleap_ros", "sceneleap_ros.*"]),
    package_data={
        "sceneleap_core": [
            "hand/assets/*.urdf",
            "hand/assets/*.yaml",
            "data/sample/*.json",
            "data/sample/*.h5",
            "data/sample/grasps/*.npz",
            "data/library_default/*.npz",
            "assets/default_model/*.json",
            "assets/default_model/*.safetensors",
            "assets/default_model/*.yaml",
            "assets/default_model/*.csv",
            "assets/*.md",
        ]
    },
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        # the replay tool registers the interfaces from these files (sceneleap_ros.messages.interface_dir)
        (f"share/{PACKAGE}/msg", ["msg/DexGrasp.msg", "msg/DexGraspArray.msg"]),
        (f"share/{PACKAGE}/srv", ["srv/PlanGrasps.srv"]),
        (f"share/{PACKAGE}/config", ["config/grasp.yaml", "config/grasp.rviz"]),
        (f"share/{PACKAGE}/launch", ["launch/grasp.launch.py"]),
    ],
    install_requires=[
        "torch>=2.4",
        "numpy>=1.26",
        "scipy>=1.11",
        "pyyaml>=6.0",
        "safetensors>=0.4",
        "matplotlib>=3.8",
        "tqdm>=4.66",
        "rich>=13",
    ],
    extras_require=extras,
    entry_points={"console_scripts": ["sceneleap = sceneleap_core.cli:main"]},
    zip_safe=False,
)
