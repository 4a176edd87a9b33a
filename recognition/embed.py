"""Recognizers: aligned face crops in, L2-normalised embeddings out."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from footfall.models.manifest import ModelEntry, ModelError
from footfall.recognition.onnx_session import open_session


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


class OnnxEmbedder:
    """Any ONNX embedding model described by its manifest entry."""

    def __init__(self, entry: ModelEntry, path: Path, *, batch_size: int = 16, threads: int = 0) -> None:
        if entry.role != "recognizer":
            raise ModelError(f"{entry.file} is a {entry.role}, not a recognizer")
        self.entry = entry
        self.session = open_session(path, threads)
        self.input_name = self.session.get_inputs()[0].name
        out_dim = self.session.get_outputs()[0].shape[-1]
        if isinstance(out_dim, int) and out_dim != entry.embedding_dim:
            raise ModelError(f"{path}: outputs {out_dim}-d embeddings, the manifest says {entry.embedding_dim}")
        self.dim = entry.embedding_dim
        # A static batch axis of 1 means one face per run.
        self.batch_size = 1 if entry.max_batch == 1 else batch_size

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
            out.append(self.session.run(None, {self.input_name: blob})[0].reshape(len(blob), -1))
        return l2_normalise(np.concatenate(out))
