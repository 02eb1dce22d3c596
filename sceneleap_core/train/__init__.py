"""Training: typed configs, the shard DataModule, the LightningModule, EMA, atomic checkpoints.

Single GPU (bf16-mixed by default on CUDA, fp32 on CPU)::

    sceneleap train --config config/train/default.yaml data.root=data/train run_dir=runs/dit
    sceneleap train --resume runs/dit                       # exact resume from checkpoints/last.ckpt
    sceneleap train --resume runs/dit trainer.max_steps=40000   # continue a finished run further

Several GPUs of one host (Lightning launches one process per GPU, DDP)::

    sceneleap train --config config/train/default.yaml trainer.devices=2

The same through torchrun (Lightning detects the torchelastic environment; ``devices`` must be
the processes per node, ``num_nodes`` the node count)::

    torchrun --standalone --nproc_per_node=2 -m sceneleap_core.cli train \\
        --config config/train/default.yaml trainer.devices=2

Several nodes with torchrun (run on every node, same rendezvous endpoint)::

    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=$HEAD:29500 \\
        -m sceneleap_core.cli train --config config/train/default.yaml trainer.devices=8 trainer.num_nodes=2

SLURM (Lightning reads ``SLURM_*``; one task per GPU, launched by srun)::

    #!/bin/bash
    #SBATCH --nodes=2
    #SBATCH --ntasks-per-node=8
    #SBATCH --gpus-per-node=8
    #SBATCH --cpus-per-task=8
    srun .venv/bin/sceneleap train --config config/train/default.yaml \\
        trainer.devices=8 trainer.num_nodes=2 run_dir=runs/$SLURM_JOB_ID

``data.batch_size`` is per GPU: the global batch is ``batch_size * devices * num_nodes *
optim.accumulate``; scale ``optim.lr`` accordingly. Each rank reads its own positions of one
shuffled stream (no DistributedSampler), so a resumed multi-GPU run continues with the same data.
"""

import importlib

_EXPORTS = {
    "AtomicCheckpointIO": "checkpoint",
    "load_checkpoint": "checkpoint",
    "AugmentConfig": "config",
    "DataConfig": "config",
    "EMAConfig": "config",
    "OptimConfig": "config",
    "TrainConfig": "config",
    "TrainerConfig": "config",
    "ValConfig": "config",
    "config_to_dict": "config",
    "load_config": "config",
    "save_config": "config",
    "GraspDataModule": "data",
    "GraspSceneDataset": "data",
    "StreamSampler": "data",
    "fit_normalizer": "data",
    "EMA": "ema",
    "GraspTrainingModule": "module",
    "train": "runner",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Lazy exports: ``import sceneleap_core.train`` stays cheap and needs neither Lightning nor
    omegaconf until a name that uses them is touched."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
