"""Train scGen on one held-out Kang cell type and predict it: run INSIDE the separate
scGen environment (``benchmarks/envs/scgen-requirements.txt``), never the project's.

scGen is GPL-3; this script imports it and nothing of sc_neuronedit.
``benchmarks/scgen_compare.py`` calls it with the Kang data exported to an .h5ad
and scores what it writes. Settings are scGen's tutorial's: ``SCGEN`` defaults
(800 hidden units, 2 layers, 100 latent), batch 32, at most 100 epochs, early
stopping with patience 25.

    /work/scgen-venv/bin/python benchmarks/scgen_run.py kang.h5ad CD4T out_dir [--max-epochs 100]

Writes ``out_dir/pred.npy`` (predicted stimulated cells x genes) and
``out_dir/timing.json`` (training seconds, epochs run).
"""

import argparse
import json
import time
import warnings
from pathlib import Path

import anndata
import numpy as np
import scgen
import scvi
import torch

warnings.filterwarnings("ignore")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("h5ad")
    p.add_argument("cell_type")
    p.add_argument("out_dir")
    p.add_argument("--max-epochs", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    scvi.settings.seed = args.seed

    adata = anndata.read_h5ad(args.h5ad)
    held_out = (adata.obs["cell_type"] == args.cell_type) & (adata.obs["condition"] == "stimulated")
    train = adata[~held_out.to_numpy()].copy()
    scgen.SCGEN.setup_anndata(train, batch_key="condition", labels_key="cell_type")
    model = scgen.SCGEN(train)
    start = time.perf_counter()
    model.train(max_epochs=args.max_epochs, batch_size=32, early_stopping=True,
                early_stopping_patience=25, use_gpu=False)
    seconds = time.perf_counter() - start
    epochs = len(model.history["train_loss_epoch"])
    pred, _ = model.predict(ctrl_key="control", stim_key="stimulated",
                            celltype_to_predict=args.cell_type)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    X = pred.X.toarray() if hasattr(pred.X, "toarray") else np.asarray(pred.X)
    np.save(out / "pred.npy", X.astype(np.float32))
    (out / "timing.json").write_text(json.dumps({
        "seconds": seconds, "epochs": epochs, "train_cells": int(train.n_obs),
        "threads": torch.get_num_threads(), "scgen": scgen.__version__}))
    print(json.dumps({"cell_type": args.cell_type, "seconds": round(seconds, 1), "epochs": epochs}))


if __name__ == "__main__":
    main()
