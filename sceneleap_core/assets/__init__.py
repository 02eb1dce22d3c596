"""Files the package ships beside its code, and where they live.

``DEFAULT_MODEL_DIR``: the bundled trained model (``config.json`` + ``model-0000k-of-0000n.safetensors``
float16 shards, a :meth:`sceneleap_core.models.GraspGenerator.save_pretrained` directory written by
``sceneleap model pack``). The default of ``sceneleap demo-plan --model`` and of the ROS node's
``model`` parameter (``""``).
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"

__all__ = ["DEFAULT_MODEL_DIR"]
