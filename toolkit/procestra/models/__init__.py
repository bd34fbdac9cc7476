"""Models: the repository of saved models, BPMN 2.0 in and out, and one renderer for every model kind."""

from procestra.models.bpmn import bpmn_to_petri, read_bpmn, write_bpmn
from procestra.models.render import DFG, DFGDiff, save, show
from procestra.models.repository import (
    LoadedModel,
    ModelInfo,
    ModelRef,
    list_models,
    load_model,
    model_info,
    save_model,
)

__all__ = [
    "DFG", "DFGDiff", "LoadedModel", "ModelInfo", "ModelRef", "bpmn_to_petri", "list_models", "load_model",
    "model_info", "read_bpmn", "save", "save_model", "show", "write_bpmn",
]
