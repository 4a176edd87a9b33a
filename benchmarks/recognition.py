"""`footfall bench recognition`: speed and accuracy of the recognition stage against a naive baseline.

Both sides use the same model files on the same photos in the same run. The
baseline is what a user would write: insightface's `FaceAnalysis.get()` where
the models allow it (an SCRFD detector with an ArcFace-style 112 px
recognizer), otherwise the same ONNX files called one image and one face at a
time with default onnxruntime settings.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import onnxruntime as ort
from tqdm import tqdm

from footfall.benchmarks import three_columns
from footfall.config.schema import Config
from footfall.recognition.align import template_points
from footfall.recognition.analyzer import FaceAnalyzer, ModelPack
from footfall.recognition.boxes import STRIDES, decode_scrfd, letterbox, nms
from footfall.recognition.embed import l2_normalise, preprocess
from footfall.recognition.evaluation import far_at, labelled_photos, pair_scores, tar_at, tar_at_far
from footfall.recognition.images import pad_photo, read_image

FAR = 1e-3
WARMUP_IMAGES = 3
F = TypeVar("F")  # a face as one detector reports it


@dataclass
class Run:
    """Per-photo embeddings (largest face) and stage timings of one side of the benchmark."""

    embeddings: list[np.ndarray] = field(default_factory=list)
    identities: list[str] = field(default_factory=list)
    det_ms: list[float] = field(default_factory=list)
    align_ms: list[float] = field(default_factory=list)
    embed_ms: list[float] = field(default_factory=list)
    faces: int = 0
    seconds: float = 0.0
    missed: list[str] = field(default_factory=list)


def _largest(boxes: list[np.ndarray]) -> int:
    return int(np.argmax([(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]))


def _with_faces(run: Run, images: list[tuple[str, np.ndarray]],
                detect: Callable[[np.ndarray], list[F]]) -> Iterator[tuple[str, np.ndarray, list[F]]]:
    """Each photo in which `detect` finds a face, with those faces: every detection timed into
    `run.det_ms`, the photos without a face counted in `run.missed`."""
    for ident, image in images:
        t = time.perf_counter()
        found = detect(image)
        run.det_ms.append((time.perf_counter() - t) * 1000)
        if not found:
            run.missed.append(ident)
            continue
        yield ident, image, found


def run_pipeline(analyzer: FaceAnalyzer, images: list[tuple[str, np.ndarray]], batch: int) -> Run:
    """Our stage: detect each image, align every face, embed all faces in batches.

    Every detected face is embedded (as the baseline does); the largest face of
    each photo is the one scored for accuracy.
    """
    run = Run()
    start = time.perf_counter()
    pending: list[tuple[str | None, np.ndarray]] = []  # (identity if the photo's largest face, crop)

    def flush() -> None:
        t = time.perf_counter()
        vectors = analyzer.embedder.embed([crop for _, crop in pending])
        run.embed_ms.extend([(time.perf_counter() - t) * 1000 / len(pending)] * len(pending))
        for (ident, _), vector in zip(pending, vectors):
            if ident is not None:
                run.embeddings.append(vector)
                run.identities.append(ident)
        pending.clear()

    for ident, image, detections in _with_faces(run, images, analyzer.detector.detect):
        t = time.perf_counter()
        faces = analyzer.assess(image, detections)
        run.align_ms.append((time.perf_counter() - t) * 1000 / len(faces))
        run.faces += len(faces)
        largest = _largest([f.detection.box for f in faces])
        pending.extend((ident if i == largest else None, f.crop) for i, f in enumerate(faces))
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    run.seconds = time.perf_counter() - start
    return run


class _NaiveOnnx:
    """The same model files, default onnxruntime sessions, one image and one face per call."""

    def __init__(self, pack: ModelPack) -> None:
        self.pack = pack
        self.rec = ort.InferenceSession(str(pack.recognizer_path), providers=["CPUExecutionProvider"])
        if pack.detector.family == "yunet":
            w, h = pack.detector.input_size
            self.yunet = cv2.FaceDetectorYN.create(str(pack.detector_path), "", (w, h),
                                                   pack.detector.score_threshold, pack.detector.nms_threshold, 5000)
        else:
            self.det = ort.InferenceSession(str(pack.detector_path), providers=["CPUExecutionProvider"])

    def detect(self, image: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        if self.pack.detector.family == "yunet":
            canvas, lb = letterbox(image, *self.pack.detector.input_size)
            _, rows = self.yunet.detect(canvas)
            rows = [] if rows is None else rows
            return [(np.array([r[0], r[1], r[0] + r[2], r[1] + r[3]]) / lb.scale,
                     r[4:14].reshape(5, 2) / lb.scale) for r in rows]
        canvas, lb = letterbox(image, 640, 640)
        blob = cv2.dnn.blobFromImage(canvas, 1 / 128, (640, 640), (127.5, 127.5, 127.5), swapRB=True)
        out = self.det.run(None, {self.det.get_inputs()[0].name: blob})
        out = [o[0] if o.ndim == 3 else o for o in out]
        parts = [decode_scrfd(out[i], out[i + 3], out[i + 6], s, 640, 640) for i, s in enumerate(STRIDES)]
        scores, boxes, points = (np.concatenate(x) for x in zip(*parts))
        mask = scores >= self.pack.detector.score_threshold
        scores, boxes, points = scores[mask], boxes[mask], points[mask]
        return [(boxes[i] / lb.scale, points[i] / lb.scale) for i in nms(boxes, scores, self.pack.detector.nms_threshold)]

    def align(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        entry = self.pack.recognizer
        ref = template_points(entry.template, entry.input_size).astype(np.float32)
        matrix = cv2.estimateAffinePartial2D(landmarks.astype(np.float32), ref, method=cv2.LMEDS)[0]
        return cv2.warpAffine(image, matrix, entry.input_size)

    def embed(self, crop: np.ndarray) -> np.ndarray:
        blob = preprocess([crop], self.pack.recognizer)
        return l2_normalise(self.rec.run(None, {self.rec.get_inputs()[0].name: blob})[0].reshape(1, -1))[0]


def _insightface_eligible(pack: ModelPack) -> bool:
    rec = pack.recognizer
    return pack.detector.family == "scrfd" and rec.template == "arcface" and rec.input_size == (112, 112) \
        and rec.layout == "nchw"


def run_naive(pack: ModelPack, images: list[tuple[str, np.ndarray]]) -> tuple[Run, str]:
    """The baseline: every face of every image, one call at a time."""
    run = Run()
    if _insightface_eligible(pack):
        from insightface.app import FaceAnalysis

        with tempfile.TemporaryDirectory() as pack_dir:
            for p in (pack.detector_path, pack.recognizer_path):
                (Path(pack_dir) / p.name).symlink_to(p.resolve())
            app = FaceAnalysis(name=pack_dir, allowed_modules=["detection", "recognition"],
                               providers=["CPUExecutionProvider"])
            app.prepare(ctx_id=-1, det_size=(640, 640))
            start = time.perf_counter()
            for ident, _image, faces in _with_faces(run, images, app.get):
                run.faces += len(faces)
                best = faces[_largest([f.bbox for f in faces])]
                run.embeddings.append(best.normed_embedding)
                run.identities.append(ident)
            run.seconds = time.perf_counter() - start
        return run, "insightface FaceAnalysis.get()"
    naive = _NaiveOnnx(pack)
    start = time.perf_counter()
    for ident, image, found in _with_faces(run, images, naive.detect):
        vectors = []
        for _box, landmarks in found:
            t = time.perf_counter()
            crop = naive.align(image, landmarks)
            run.align_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            vectors.append(naive.embed(crop))
            run.embed_ms.append((time.perf_counter() - t) * 1000)
        run.faces += len(found)
        run.embeddings.append(vectors[_largest([b for b, _ in found])])
        run.identities.append(ident)
    run.seconds = time.perf_counter() - start
    return run, "same ONNX files, default onnxruntime sessions, one face per call"


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def _accuracy(run: Run, match_threshold: float) -> dict[str, float]:
    genuine, impostor = pair_scores(np.stack(run.embeddings), run.identities)
    tar, threshold = tar_at_far(genuine, impostor, FAR)
    return {
        "tar_at_far_1e-3": round(tar, 4),
        "threshold": round(threshold, 4),
        "tar_at_match_threshold": round(tar_at(genuine, match_threshold), 4),
        "far_at_match_threshold": round(far_at(impostor, match_threshold), 6),
        "genuine_pairs": int(genuine.size),
        "impostor_pairs": int(impostor.size),
    }


def bench_recognition(config: Config, faces_dir: Path, *, progress: bool = True) -> dict:
    """Measure both sides on every photo of `faces_dir/<identity>/` and return the figures."""
    analyzer = FaceAnalyzer.from_config(config)
    pack = analyzer.pack
    photos = labelled_photos(faces_dir)
    images = [(p.identity, pad_photo(read_image(p.path)))
              for p in tqdm(photos, desc="loading photos", disable=not progress, leave=False)]
    warm = images[:WARMUP_IMAGES]
    run_pipeline(analyzer, warm, config.recognition.batch_size)
    ours = run_pipeline(analyzer, images, config.recognition.batch_size)
    run_naive(pack, warm)
    naive, naive_kind = run_naive(pack, images)
    faces_per_s = round(ours.faces / ours.seconds, 2)
    naive_faces_per_s = round(naive.faces / naive.seconds, 2)
    result: dict[str, object] = {
        "detector": pack.detector.file,
        "recognizer": pack.recognizer.file,
        "images": len(images),
        "identities": len(set(p.identity for p in photos)),
        "faces": ours.faces,
        "images_without_face": len(ours.missed),
        "det_size": analyzer.detector.width,
        "match_threshold": pack.match_threshold,
        **_accuracy(ours, pack.match_threshold),
        "det_ms_p50": _pct(ours.det_ms, 50), "det_ms_p95": _pct(ours.det_ms, 95),
        "align_ms_p50": _pct(ours.align_ms, 50), "align_ms_p95": _pct(ours.align_ms, 95),
        "embed_ms_p50": _pct(ours.embed_ms, 50), "embed_ms_p95": _pct(ours.embed_ms, 95),
        "faces_per_s": faces_per_s,
        "naive": naive_kind,
        "naive_faces": naive.faces,
        "naive_det_ms_p50": _pct(naive.det_ms, 50), "naive_det_ms_p95": _pct(naive.det_ms, 95),
        "naive_embed_ms_p50": _pct(naive.embed_ms, 50), "naive_embed_ms_p95": _pct(naive.embed_ms, 95),
        "naive_faces_per_s": naive_faces_per_s,
    }
    naive_acc = _accuracy(naive, pack.match_threshold)
    result["naive_tar_at_far_1e-3"] = naive_acc["tar_at_far_1e-3"]
    result["naive_threshold"] = naive_acc["threshold"]
    result["speedup"] = round(faces_per_s / naive_faces_per_s, 2)
    return result


def format_table(r: dict) -> str:
    """The figures as a short table for people."""
    rows = [
        ("models", f"{r['detector']} + {r['recognizer']}", ""),
        ("photos / identities / faces", f"{r['images']} / {r['identities']} / {r['faces']}", ""),
        ("", "footfall", "naive"),
        ("detect ms p50 / p95", f"{r['det_ms_p50']} / {r['det_ms_p95']}", f"{r['naive_det_ms_p50']} / {r['naive_det_ms_p95']}"),
        ("align ms per face p50 / p95", f"{r['align_ms_p50']} / {r['align_ms_p95']}", ""),
        ("embed ms per face p50 / p95", f"{r['embed_ms_p50']} / {r['embed_ms_p95']}", f"{r['naive_embed_ms_p50']} / {r['naive_embed_ms_p95']}"),
        ("faces/s", f"{r['faces_per_s']}", f"{r['naive_faces_per_s']}"),
        ("TAR @ FAR 1e-3 (threshold)", f"{r['tar_at_far_1e-3']} ({r['threshold']})", f"{r['naive_tar_at_far_1e-3']} ({r['naive_threshold']})"),
        ("at match threshold", f"{r['match_threshold']}: TAR {r['tar_at_match_threshold']}, FAR {r['far_at_match_threshold']}", ""),
        ("speed-up vs naive", f"{r['speedup']}x", r["naive"]),
    ]
    return three_columns(rows)
