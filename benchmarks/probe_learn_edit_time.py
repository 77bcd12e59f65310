"""Time of ``learn_edit`` and ``apply_edit`` with the pooled (1) and level-binned (10) residual
edit on Kang, CD4T held out, next to the training time, and a profile of one
``predict_perturbation(self_check=True)`` (the cumulative time of ``fit_level_residual_edit``
over its calls is the line to read).

    SC_NEURONEDIT_DATA_DIR=/work/shared/data python benchmarks/probe_learn_edit_time.py
"""

import cProfile
import pstats
import time
import warnings

import torch

import sc_neuronedit as sne


def main():
    torch.set_num_threads(1)
    adata = sne.datasets.kang()
    groups = adata.obs["cell_type"].to_numpy().astype(str)
    cond = adata.obs["condition"].to_numpy()
    held = "CD4T"
    start = time.perf_counter()
    model = sne.NeuronEditor(adata).train(cells=~((groups == held) & (cond == "stimulated")),
                                         random_state=0, progress=False)
    print(f"fit {time.perf_counter() - start:.1f} s")
    source, target = (groups != held) & (cond == "control"), (groups != held) & (cond == "stimulated")
    for k in (1, 10, 1, 10):
        start = time.perf_counter()
        edit = model.learn_edit(source, target, groupby="cell_type", residual_bins=k)
        learn = time.perf_counter() - start
        start = time.perf_counter()
        model.apply_edit((groups == held) & (cond == "control"), edit)
        print(f"residual_bins={k}: learn_edit {learn:.2f} s, apply_edit {time.perf_counter() - start:.2f} s")
    profile = cProfile.Profile()
    profile.enable()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sne.tl.predict_perturbation(adata, "condition", control="control", perturbed="stimulated",
                                    groupby="cell_type", predict_for=held, self_check=True, model=model,
                                    progress=False, inplace=False)
    profile.disable()
    pstats.Stats(profile).sort_stats("cumulative").print_stats("fit_level_residual_edit|train_autoencoder")


if __name__ == "__main__":
    main()
