"""Does the batch self-check's split-half proxy (volunteer 1's reference cells only) separate
the pooled residual edit from the level-binned one on the Gates data?

Prints the proxy error, skill and spread gap of the default candidate (bottleneck, pooled)
for ``residual_bins`` 1 and 10, seeds 0 and 1. Never looks at volunteer 2.

    SC_NEURONEDIT_DATA_DIR=/work/shared/data python benchmarks/probe_batch_proxy_bins.py
"""

import warnings

import anndata as ad
import torch
from batch_gates import marker_mask

import sc_neuronedit as sne


def main():
    torch.set_num_threads(1)
    adata = ad.read_h5ad(sne.datasets.data_dir() / "cytonorm_gates.h5ad")
    sne.pp.arcsinh(adata, 5)
    adata.var["marker_channel"] = marker_mask(adata)
    print("seed | residual_bins | proxy error | skill | spread gap")
    for seed in (0, 1):
        for k in (1, 10):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sne.tl.batch_correct(adata, "batch", reference_key="reference", reference_value=True,
                                     layer="arcsinh", mask_var="marker_channel", random_state=seed,
                                     progress=False, self_check=True, residual_bins=k)
            t = adata.uns["batch_corrected"]["self_check"]
            r = t[t.candidate == "bottleneck, pooled"]
            print(f"{seed} | {k} | {r.error.mean():.4f} | {r.skill.mean():.3f} | {r.spread_gap.mean():.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
