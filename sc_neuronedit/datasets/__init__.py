"""Real example data sets, downloaded once (pinned URL + sha256) and cached.

Set ``SC_NEURONEDIT_DATA_DIR`` to a folder that already holds the converted
``.h5ad`` files to work offline.
"""

from ._fetch import data_dir
from ._kang import kang

__all__ = ["data_dir", "kang"]
