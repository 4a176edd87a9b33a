"""Embedders: any manifest-described ONNX model, batched, L2-normalised."""

from __future__ import annotations

import numpy as np

from footfall.models.manifest import entry_for, locate
from footfall.recognition.embed import OnnxEmbedder, l2_normalise, preprocess


def crops(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def test_batched_and_single_runs_give_the_same_embeddings(default_analyzer):
    embedder = default_analyzer.embedder
    batch = crops(5, 112)
    together = embedder.embed(batch)
    alone = np.vstack([embedder.embed([c]) for c in batch])
    assert together.shape == (5, 512)
    assert np.abs(together - alone).max() < 1e-4


def test_static_batch_model_is_run_one_face_at_a_time(shared_models):
    entry = entry_for("mobilefacenet.onnx")
    embedder = OnnxEmbedder(entry, locate(entry.file, shared_models), batch_size=8)
    assert embedder.batch_size == 1
    out = embedder.embed(crops(3, 112))
    assert out.shape == (3, 128)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_nhwc_rgb_model_gets_channels_last_rgb_input(shared_models):
    entry = entry_for("mobileface.onnx")
    image = crops(1, 112)[0]
    blob = preprocess([image], entry)
    assert blob.shape == (1, 112, 112, 3)
    assert np.array_equal(blob[0, ..., 0], image[..., 2].astype(np.float32))
    out = OnnxEmbedder(entry, locate(entry.file, shared_models)).embed([image])
    assert out.shape == (1, 256)


def test_nchw_normalisation_follows_the_manifest():
    entry = entry_for("mobilefacenet.onnx")  # RGB, (x - 127.5) / 128
    image = np.zeros((112, 112, 3), dtype=np.uint8)
    image[..., 0] = 255  # blue channel in BGR
    blob = preprocess([image], entry)
    assert blob.shape == (1, 3, 112, 112)
    assert np.allclose(blob[0, 2], (255 - 127.5) / 128) and np.allclose(blob[0, 0], -127.5 / 128)


def test_no_crops_give_an_empty_matrix(default_analyzer):
    assert default_analyzer.embedder.embed([]).shape == (0, 512)


def test_l2_normalise_leaves_zero_vectors_at_zero():
    out = l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert np.allclose(out, [[0.6, 0.8], [0.0, 0.0]])


EDGEFACE = ["edgeface_xs.onnx", "edgeface_xs_int8.onnx", "edgeface_xxs.onnx", "edgeface_xxs_int8.onnx"]


def test_edgeface_files_are_described_as_bsd_arcface_aligned_rgb_512_d():
    for name in EDGEFACE:
        entry = entry_for(name, "recognizer")
        assert entry.licence == "BSD-3-Clause" and entry.commercial_use
        assert (entry.channels, entry.mean, entry.std, entry.template) == ("rgb", 127.5, 127.5, "arcface")
        assert entry.input_size == (112, 112) and entry.embedding_dim == 512
        assert entry.provenance


def test_edgeface_files_embed_a_face_crop_into_a_512_d_unit_vector(shared_models, faces_dir):
    from footfall.config.schema import parse_config
    from footfall.recognition.analyzer import FaceAnalyzer
    from footfall.recognition.images import pad_photo, read_image

    photo = sorted(faces_dir.glob("*/*.jpg"))[0]
    for name in EDGEFACE:  # a match threshold given: not every file has a calibrated one
        analyzer = FaceAnalyzer.from_config(parse_config({"models": {"dir": str(shared_models), "recognizer": name},
                                                          "recognition": {"match_threshold": 0.4}}))
        faces = [f for f in analyzer.analyze(pad_photo(read_image(photo))) if f.embedding is not None]
        assert faces, name
        assert faces[0].embedding.shape == (512,)
        assert abs(float(np.linalg.norm(faces[0].embedding)) - 1.0) < 1e-4
