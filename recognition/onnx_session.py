"""The one place onnxruntime sessions are created, with deliberate options."""

from __future__ import annotations

import os
from pathlib import Path

import onnxruntime as ort

from footfall.models.manifest import ModelError


def relaxed_input_model(path: Path) -> bytes:
    """The model with its image input's height and width (and the outputs' anchor axis) made free.

    For fully convolutional detectors exported with a fixed input size (YuNet 2023mar is
    1x3x640x640): the weights work at any multiple of 32, so a 16:9 frame need not be padded
    to a square.
    """
    import onnx

    model = onnx.load(str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    for output in model.graph.output:
        output.type.tensor_type.shape.dim[1].dim_param = "anchors"
    del model.graph.value_info[:]  # shapes inferred for the fixed size no longer hold
    return model.SerializeToString()


def open_session(path: Path, threads: int = 0, *, relax_input: bool = False) -> ort.InferenceSession:
    """An inference session on the CPU for the model at `path`.

    `threads` = 0 uses one intra-op thread per core: the convolutions are the
    whole cost. One inter-op thread and sequential execution: no second pool
    competing with the first. Graph optimisation is fully on.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or (os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # Detector and recognizer sessions take turns on the same cores; a pool that
    # spin-waits after its run steals the cores from the next session's pool.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        model = relaxed_input_model(path) if relax_input else str(path)
        return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise ModelError(f"{path}: onnxruntime cannot load this model: {exc}") from exc


class ModelSession:
    """A model file's inference session, opened by `_load` or on first use of `session`."""

    input_name: str

    def __init__(self, path: Path, threads: int = 0, *, relax_input: bool = False) -> None:
        self.path = path
        self.threads = threads
        self.relax_input = relax_input
        self._session: ort.InferenceSession | None = None

    @property
    def loaded(self) -> bool:
        """Whether the model file has been opened (count_only never opens it)."""
        return self._session is not None

    @property
    def session(self) -> ort.InferenceSession:
        """The inference session, opened on first use."""
        return self._session if self._session is not None else self._load()

    def _load(self) -> ort.InferenceSession:
        return self.use_session(open_session(self.path, self.threads, relax_input=self.relax_input))

    def use_session(self, session: ort.InferenceSession) -> ort.InferenceSession:
        """Run this model in `session` (opened elsewhere, e.g. with default options) from now on."""
        self._check(session)
        self.input_name = session.get_inputs()[0].name
        self._session = session
        return session

    def _check(self, session: ort.InferenceSession) -> None:
        """Raise ModelError when the opened model does not fit its use; nothing to check by default."""
