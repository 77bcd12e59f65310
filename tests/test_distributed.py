"""torch.distributed: 2 CPU processes (gloo) train and edit like 1 process."""

import numpy as np
import torch
import torch.multiprocessing as mp

import sc_neuronedit as sne

#: Float rounding differs (sums of two half-batches vs one sum), nothing else.
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


def _run():
    """Train, learn an edit and apply it; 301 cells so that shards are uneven."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(301, 12)).astype(np.float32)
    treated = np.arange(301) >= 150
    X[treated, :4] += 2.0
    model = sne.NeuronEditor(X, hidden=(16,), n_latent=4).train(
        max_epochs=4, batch_size=32, random_state=0, device="cpu", progress=False)
    edit = model.learn_edit(~treated, treated)
    return {"weights": model.network.state_dict(), "source_knots": edit.neurons.source_knots,
            "residual_knots": edit.residual.target_knots,
            "prediction": torch.from_numpy(model.apply_edit(~treated, edit)),
            "train_loss": torch.tensor(model.history.train_loss),
            "validation_loss": torch.tensor(model.history.validation_loss)}


def _worker(rank, world_size, init_file, out_dir):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        torch.save(_run(), f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_give_the_single_process_model(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = _run()
    finally:
        torch.set_num_threads(threads)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name, weight in single["weights"].items():
            torch.testing.assert_close(got["weights"][name], weight, **TOLERANCE, msg=name)
        for key in ("source_knots", "residual_knots", "prediction", "train_loss", "validation_loss"):
            torch.testing.assert_close(got[key].to(single[key].dtype), single[key], **TOLERANCE, msg=key)


def test_training_time_is_the_wall_clock_of_training():
    import time

    X = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    start = time.perf_counter()
    model = sne.NeuronEditor(X, hidden=(8,), n_latent=2).train(max_epochs=2, batch_size=16, progress=False)
    assert 0 < model.history.seconds <= time.perf_counter() - start
