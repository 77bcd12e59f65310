"""Real example data sets, downloaded once (pinned URL + sha256), converted and cached.

Each loader reads ``<data_dir()>/<name>.h5ad`` when it is there and downloads nothing.
Otherwise it fetches the upstream files, checks them, converts them to AnnData and writes
the ``.h5ad`` into :func:`data_dir` for next time.

Offline: set ``SC_NEURONEDIT_DATA_DIR`` to a folder that already holds the converted
``.h5ad`` files, or ``SC_NEURONEDIT_DATA_URL`` (or ``base_url=``) to a local folder /
``file://`` URL / mirror that holds the upstream files.

- :func:`kang_pbmc` (alias :func:`kang`): scRNA-seq PBMCs, control vs IFN-β.
- :func:`bodenmiller_bcrxl`: CyTOF PBMCs, reference vs BCR/FcR cross-linking, 6 donors.
- :func:`cytonorm_gates`: CyTOF controls run in 4 batches (batch correction).
- :func:`bcrxl_combination`: semi-synthetic drugs A, B and A+B (known effects, tunable
  interaction) on the real unstimulated cells of :func:`bodenmiller_bcrxl`.
"""

from ._bodenmiller import bodenmiller_bcrxl
from ._cytonorm import cytonorm_gates
from ._fetch import data_dir
from ._kang import kang, kang_pbmc
from ._semisynthetic import bcrxl_combination

__all__ = ["bcrxl_combination", "bodenmiller_bcrxl", "cytonorm_gates", "data_dir", "kang", "kang_pbmc"]
