"""The paper's toy: a Gaussian population and an effect that depends on position.

Target = source with x0 -> g(x0) = x0 + 1 + 0.5 x0 + 0.2 x0² (non-linear: the
shift grows with x0). The edit is applied to a tight blob around x0 = 1.5
that is not part of the source or the target. Truth: g applied to the blob
(mean 3.72, sd 0.32); a global mean shift would give 2.66 and keep sd 0.15.
"""

import numpy as np
import pytest
import torch

import sc_neuronedit as sne


def g(x):
    return x + 1 + 0.5 * x + 0.2 * x**2


def blob(rng, n, x0_mean, x0_sd):
    return np.column_stack([rng.normal(x0_mean, x0_sd, n), rng.normal(0, 0.1, n)])


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    source, target = blob(rng, 800, 0, 1), blob(rng, 800, 0, 1)
    target[:, 0] = g(target[:, 0])  # unpaired: target is a fresh sample
    apply_to = blob(rng, 300, 1.5, 0.15)
    W = np.linalg.qr(rng.normal(size=(10, 2)))[0].T  # orthonormal 2 -> 10 embedding
    embed = lambda Z: (Z @ W + rng.normal(0, 0.02, (len(Z), 10))).astype(np.float32)
    X = np.vstack([embed(source), embed(target), embed(apply_to)])
    labels = np.repeat(["source", "target", "apply"], [800, 800, 300])
    return dict(source=source, target=target, apply_to=apply_to, W=W, X=X, labels=labels)


def check(pred, apply_to):
    truth = g(apply_to[:, 0])
    mean_shift = apply_to[:, 0].mean() + 1.2  # E[g(x) - x] over the source
    assert abs(pred[:, 0].mean() - truth.mean()) < 0.4 < abs(mean_shift - truth.mean())
    assert pred[:, 0].std() > 1.8 * apply_to[:, 0].std()  # stretched like the truth (2.1x)
    assert abs(pred[:, 1].mean()) < 0.2  # x1 left alone
    assert np.corrcoef(pred[:, 0], apply_to[:, 0])[0, 1] > 0.8  # a transformation, not a resampling


def test_edit_alone_transfers_the_effect(toy):
    edit = sne.fit_quantile_edit(torch.tensor(toy["source"]), torch.tensor(toy["target"]))
    check(edit.apply(torch.tensor(toy["apply_to"])).numpy(), toy["apply_to"])


def test_autoencoder_and_edit_transfer_the_effect(toy):
    X, labels = toy["X"], toy["labels"]
    model = sne.NeuronEditor(X, hidden=(16,), n_latent=2)
    model.train(max_epochs=40, batch_size=64, lr=3e-3, patience=None, random_state=0,
                progress=False, device="cpu")
    edit = model.learn_edit(labels == "source", labels == "target")
    for decode in sne.NeuronEditor.decode_forms:
        check(model.apply_edit(labels == "apply", edit, decode=decode) @ toy["W"].T, toy["apply_to"])
