"""Training throughput: the window arithmetic, and that a slow loader and a slow step are told apart."""

import time

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from sceneleap_core.train.throughput import ThroughputMonitor, ThroughputWindow


def test_window_rates_from_a_known_clock():
    w = ThroughputWindow()
    # batch i starts at 1.0 * i + 0.25 (a 0.25 s wait for data) and ends at 1.0 * (i + 1)
    for i in range(5):
        w.batch_start(i + 0.25)
        w.batch_end(i + 1.0)
    rates = w.summary(batch_size=8)
    assert rates["steps_per_s"] == pytest.approx(1.0)  # 4 intervals over 4 s (the first end opens the window)
    assert rates["samples_per_s"] == pytest.approx(8.0)
    assert rates["data_wait_frac"] == pytest.approx(0.25)
    assert w.summary(batch_size=8) is None  # the window restarted
    w.batch_start(5.5)  # a 0.5 s wait
    w.batch_end(6.0)
    assert w.summary(batch_size=1)["data_wait_frac"] == pytest.approx(0.5)


def test_pause_drops_the_interval_in_progress():
    w = ThroughputWindow()
    w.batch_start(0.0)
    w.batch_end(1.0)
    w.pause()  # e.g. validation from 1 s to 100 s
    w.batch_start(100.0)
    w.batch_end(101.0)
    w.batch_start(101.0)
    w.batch_end(102.0)
    rates = w.summary(batch_size=1)
    assert rates["steps_per_s"] == pytest.approx(1.0)
    assert rates["data_wait_frac"] == pytest.approx(0.0)


class _Batches(Dataset):
    def __init__(self, delay: float):
        self.delay = delay

    def __len__(self):
        return 10_000

    def __getitem__(self, i):
        time.sleep(self.delay)
        return {"points": torch.zeros(4, 3)}


class _Module(L.LightningModule):
    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay
        self.w = torch.nn.Parameter(torch.zeros(()))

    def training_step(self, batch, batch_idx):
        time.sleep(self.delay)
        return (self.w - 1.0) ** 2 + batch["points"].sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("load_s, step_s, loader_bound", [(0.006, 0.0, True), (0.0, 0.03, False)])
def test_a_slow_loader_and_a_slow_step_are_told_apart(load_s, step_s, loader_bound):
    monitor = ThroughputMonitor(log_every=4, print_every=4)
    trainer = L.Trainer(
        accelerator="cpu", max_steps=12, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[monitor],
    )  # fmt: skip
    loader = DataLoader(_Batches(load_s), batch_size=4, num_workers=0)  # 4 items: ~24 ms of loading per batch
    trainer.fit(_Module(step_s), loader)
    rates = monitor.last
    assert rates is not None and rates["samples_per_s"] == pytest.approx(4 * rates["steps_per_s"])
    if loader_bound:
        assert rates["data_wait_frac"] > 0.6
    else:
        assert rates["data_wait_frac"] < 0.4
        assert rates["steps_per_s"] < 1 / 0.03 + 1e-6  # the step's sleep bounds the rate
