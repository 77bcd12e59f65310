"""Tools: neuron editing on AnnData, one public function per module."""

from ._batch_correct import batch_correct
from ._combination import predict_combination, synergy
from ._neuron_edit import neuron_edit
from ._predict_perturbation import predict_perturbation

__all__ = ["batch_correct", "neuron_edit", "predict_combination", "predict_perturbation", "synergy"]
