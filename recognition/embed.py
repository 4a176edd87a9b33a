"""Recognizers: aligned face crops in, L2-normalised embeddings out."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import onnxruntime as ort

from footfall.models.manifest import ModelEntry, ModelError
from footfall.recognition.onnx_session import ModelSession


class Embedder(Protocol):
    """Turns aligned crops into unit-length embeddings."""

    dim: int

    def embed(self, crops: list[np.ndarray]) -> np.ndarray: ...


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def preprocess(crops: list[np.ndarray], entry: ModelEntry) -> np.ndarray:
    """BGR uint8 crops -> the network's input tensor, as the manifest describes it."""
    if entry.layout == "nchw":
        # OpenCV's blob builder does the swap, scaling and transpose in one native pass.
        return cv2.dnn.blobFromImages(crops, 1.0 / entry.std, mean=(entry.mean,) * 3,
                                      swapRB=entry.channels == "rgb")
    batch = np.stack(crops).astype(np.float32)
    if entry.channels == "rgb":
        batch = batch[..., ::-1]
    if entry.mean or entry.std != 1.0:
        batch = (batch - entry.mean) / entry.std
    return np.ascontiguousarray(batch, dtype=np.float32)


class OnnxEmbedder(ModelSession):
    """Any ONNX embedding model described by its manifest entry."""

    def __init__(self, entry: ModelEntry, path: Path, *, batch_size: int = 16, threads: int = 0,
                 load: bool = True) -> None:
        """With `load` False the model file is opened only when a face is first embedded (count_only
        never embeds, so never loads it)."""
        if entry.role != "recognizer":
            raise ModelError(f"{entry.file} is a {entry.role}, not a recognizer")
        super().__init__(path, threads)
        self.entry = entry
        self.dim = entry.embedding_dim
        # A static batch axis of 1 means one face per run.
        self.batch_size = 1 if entry.max_batch == 1 else batch_size
        if load:
            self._load()

    def _check(self, session: ort.InferenceSession) -> None:
        """The model's embeddings must have the manifest's length."""
        out_dim = session.get_outputs()[0].shape[-1]
        if isinstance(out_dim, int) and out_dim != self.entry.embedding_dim:
            raise ModelError(f"{self.path}: outputs {out_dim}-d embeddings, the manifest says {self.entry.embedding_dim}")

    @property
    def input_size(self) -> tuple[int, int]:
        return self.entry.input_size

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """(n, dim) float32 unit vectors for n aligned crops of the model's input size."""
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        for start in range(0, len(crops), self.batch_size):
            blob = preprocess(crops[start:start + self.batch_size], self.entry)
            session = self.session
            out.append(session.run(None, {self.input_name: blob})[0].reshape(len(blob), -1))
        return l2_normalise(np.concatenate(out))
