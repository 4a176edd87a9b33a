"""`footfall bench calibration`: the dedup and member thresholds of a recognizer, from measurement.

Every labelled photo is detected once (largest face); its clean shot is what enrolment sees.
Each photo is then rendered several times as an entrance camera would see it (low resolution,
blur, other light, tilt, JPEG), every rendition giving a few shots: the detector's landmarks are
moved by the rendition's known rotation and jittered by a detector's typical error, so no second
detection is needed (a 2-core box runs the 1 312-photo set in minutes). A **passage** is a
rendition's gated shots combined as the tracker combines them. From these:

* per-passage-pair FAR at each threshold, with a Clopper-Pearson 95 % interval on the impostor
  pair count, and the threshold at FAR 1e-3 .. 1e-5;
* recall of a re-entry shown by another rendition of the same photo (same day) and by another
  photo (another day: the member case);
* the false-merge curve: a stranger's passage against N = 50 .. 300 open windows of *distinct*
  other people, under the window's rule (threshold, margin, mutual nearest), and the recall of a
  true re-entry among N - 1 distinct others under the same rule;
* member open-set identification: FNIR at FPIR <= 0.1 % with 100 enrolled measured directly, and
  for 1 000 and 10 000 enrolled extrapolated from the measured per-person false-match rate;
* template (mean of enrolment photos vs best of photos) and passage (weighted mean vs best shot
  vs per-shot vote; 3 vs 5 shots) strategies, each at the same FAR;
* `operating_point`: the configured thresholds' recall, FAR and false merges at N = 300.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from footfall.config.schema import Config
from footfall.recognition.align import align_face
from footfall.recognition.analyzer import FaceAnalyzer
from footfall.recognition.embed import l2_normalise
from footfall.recognition.evaluation import labelled_photos
from footfall.recognition.images import pad_photo, read_image
from footfall.recognition.quality import assess

WINDOW_COUNTS = (50, 100, 150, 200, 250, 300)
THRESHOLDS = tuple(round(float(x), 2) for x in np.arange(0.25, 0.71, 0.05))
FARS = (1e-3, 1e-4, 1e-5)
ENROLLED = (100, 1000, 10000)
FPIR_TARGET = 1e-3
LANDMARK_JITTER = 0.015  # detector landmark error, as a share of the face width


def degrade(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One entrance-camera rendition of a photo and the 2x3 matrix that moved its pixels."""
    h, w = image.shape[:2]
    scale = rng.uniform(0.35, 0.7)
    small = cv2.resize(image, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.0))
    gain, gamma = rng.uniform(0.7, 1.3), rng.uniform(0.8, 1.25)
    lut = np.clip(255.0 * ((np.arange(256) / 255.0) ** gamma) * gain, 0, 255).astype(np.uint8)
    out = cv2.LUT(out, lut)
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-10, 10), 1.0)
    out = cv2.warpAffine(out, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)
    ok, jpeg = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 75))])
    decoded = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
    assert decoded is not None
    return np.asarray(decoded), np.asarray(matrix)


@dataclass
class Passages:
    """Per passage: identity, source photo, and its shots (vectors, quality x area weights)."""

    identities: np.ndarray
    photos: np.ndarray
    shots: list[tuple[np.ndarray, np.ndarray]]

    def combined(self, how: str = "mean", limit: int | None = None) -> np.ndarray:
        """One unit vector per passage: weighted mean of its shots, or its best-weighted shot."""
        out = []
        for vecs, w in self.shots:
            vecs, w = vecs[:limit], w[:limit]
            if how == "best":
                out.append(vecs[int(np.argmax(w))])
            else:
                out.append(((w / w.sum())[:, None] * vecs).sum(axis=0))
        return l2_normalise(np.stack(out))


@dataclass
class Embedded:
    """The whole labelled set under one recognizer."""

    clean: np.ndarray          # (photos, dim); zero rows where the clean shot failed the gate
    clean_ok: np.ndarray       # bool per photo
    photo_ids: np.ndarray      # identity per photo
    photo_names: np.ndarray
    passages: Passages
    shots_refused: int
    shots_total: int


def embed_set(analyzer: FaceAnalyzer, faces_dir: Path, *, renditions: int, shots: int, seed: int,
              progress: bool) -> Embedded:
    """Detect each photo once, render it, gate and embed every shot (batched)."""
    rng = np.random.default_rng(seed)
    entry = analyzer.embedder.entry
    limits = analyzer.limits
    crops: list[np.ndarray] = []
    owners: list[tuple[int, int]] = []  # (photo index, rendition or -1 for the clean shot)
    weights: list[float] = []
    ids, names = [], []
    refused = total = 0
    photos = labelled_photos(faces_dir)
    for p, photo in enumerate(tqdm(photos, desc="rendering photos", disable=not progress, leave=False)):
        ids.append(photo.identity)
        names.append(f"{photo.identity}/{photo.path.name}")
        image = pad_photo(read_image(photo.path))
        dets = analyzer.detector.detect(image)
        if not dets:
            continue
        det = max(dets, key=lambda d: d.width * d.height)
        crop = align_face(image, det.landmarks, entry.template, entry.input_size)
        q = assess(det.box, det.landmarks, det.score, crop, limits)
        if q.passed:
            crops.append(crop)
            owners.append((p, -1))
            weights.append(q.score * det.width * det.height)
        # renditions of the face's surroundings only (a face width each side): the same pixels, less work
        x0, y0 = (max(0, int(v - det.width)) for v in det.box[:2])
        x1, y1 = int(det.box[2] + det.width), int(det.box[3] + det.height)
        region, origin = image[y0:y1, x0:x1], np.array([x0, y0], dtype=np.float32)
        for r in range(renditions):
            rendered, matrix = degrade(region, rng)
            moved = np.c_[det.landmarks - origin, np.ones(5)] @ matrix.T
            for _ in range(shots):
                total += 1
                marks = (moved + rng.normal(0, LANDMARK_JITTER * det.width, moved.shape)).astype(np.float32)
                crop = align_face(rendered, marks, entry.template, entry.input_size)
                q = assess(det.box, marks, det.score, crop, limits)
                if not q.passed:
                    refused += 1
                    continue
                crops.append(crop)
                owners.append((p, r))
                weights.append(q.score * det.width * det.height)
    vectors = np.zeros((len(crops), analyzer.embedder.dim), dtype=np.float32)
    step = 256
    for start in tqdm(range(0, len(crops), step), desc="embedding shots", disable=not progress, leave=False):
        vectors[start:start + step] = analyzer.embedder.embed(crops[start:start + step])
    clean = np.zeros((len(photos), analyzer.embedder.dim), dtype=np.float32)
    clean_ok = np.zeros(len(photos), dtype=bool)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (p, r) in enumerate(owners):
        if r < 0:
            clean[p], clean_ok[p] = vectors[i], True
        else:
            groups.setdefault((p, r), []).append(i)
    keys = sorted(groups)
    w = np.asarray(weights)
    passages = Passages(np.asarray([ids[p] for p, _ in keys]), np.asarray([names[p] for p, _ in keys]),
                        [(vectors[groups[k]], w[groups[k]]) for k in keys])
    return Embedded(clean, clean_ok, np.asarray(ids), np.asarray(names), passages, refused, total)


# -- statistics (pure) ----------------------------------------------------------------

def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial confidence interval of k successes in n trials."""
    from scipy.stats import beta

    if n == 0:
        return 0.0, 1.0
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def threshold_at_far(impostor_sorted_desc: np.ndarray, far: float) -> float:
    """The lowest threshold accepting at most floor(far * n) impostor scores."""
    allowed = int(np.floor(far * len(impostor_sorted_desc)))
    if allowed >= len(impostor_sorted_desc):
        return float(impostor_sorted_desc[-1])
    return float(np.nextafter(impostor_sorted_desc[allowed], np.float32(np.inf)))


def pair_masks(ids: np.ndarray, photos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Upper-triangle pair indices and masks: (iu, ju, same person, same photo)."""
    iu, ju = np.triu_indices(len(ids), 1)
    return iu, ju, ids[iu] == ids[ju], photos[iu] == photos[ju]


def window_merges(sims_q: np.ndarray, sims_ww: np.ndarray, threshold: float, margin: float, mutual: bool) -> int | None:
    """The window rule on one query: index of the window it merges into, or None.

    sims_q: query vs each open window; sims_ww: windows vs windows (diagonal ignored).
    """
    order = np.argsort(-sims_q)
    best = order[0]
    if sims_q[best] < threshold:
        return None
    if len(order) > 1 and sims_q[order[1]] > 0 and sims_q[best] - sims_q[order[1]] < margin:
        return None
    if mutual and len(order) > 1:
        rival = np.delete(sims_ww[best], best).max()
        if sims_q[best] <= rival:
            return None
    return int(best)


def false_merge_curve(sims: np.ndarray, ids: np.ndarray, photos: np.ndarray, threshold: float, margin: float,
                      counts: tuple[int, ...], trials: int, seed: int, mutual: bool = True) -> dict:
    """Strangers merged into N open windows of distinct other people, and true re-entries found among
    N - 1 distinct others, under the window's rule. Each window holds one passage of its person.

    `sims` is the passages' cosine matrix. A set with fewer than N + 1 people reports its largest
    possible N instead."""
    rng = np.random.default_rng(seed)
    people, person_of = np.unique(ids, return_inverse=True)
    order = np.argsort(person_of, kind="stable")
    starts = np.searchsorted(person_of[order], np.arange(len(people)))
    sizes = np.bincount(person_of, minlength=len(people))
    out: dict[str, dict] = {}
    largest = len(people) - 1
    for n in sorted({min(n, largest) for n in counts}):
        merges = found = returning = 0
        for _ in range(trials):
            person = int(rng.integers(len(people)))
            mine = order[starts[person]:starts[person] + sizes[person]]
            q = int(rng.choice(mine))
            others = rng.choice(len(people) - 1, size=n, replace=False)
            others += others >= person  # every person but the query's
            window = order[starts[others] + (rng.random(n) * sizes[others]).astype(int)]
            sims_q = sims[window, q]
            sims_ww = sims[np.ix_(window, window)]
            merges += window_merges(sims_q, sims_ww, threshold, margin, mutual) is not None
            # the same person re-enters (another passage of theirs, another photo if they have one)
            other_photo = mine[(photos[mine] != photos[q])]
            own = int(rng.choice(other_photo if other_photo.size else mine[mine != q] if mine.size > 1 else mine))
            window2 = np.r_[window[:-1], own]
            sims_q2 = sims[window2, q]
            sims_ww2 = sims[np.ix_(window2, window2)]
            returning += 1
            found += window_merges(sims_q2, sims_ww2, threshold, margin, mutual) == len(window2) - 1
        lo, hi = clopper_pearson(merges, trials)
        out[str(n)] = {"false_merge": merges / trials, "false_merges": merges, "trials": trials,
                       "ci95": [lo, hi], "reentry_found": found / returning}
    return out


# -- member identification ---------------------------------------------------------

def member_templates(emb: Embedded, how: str) -> tuple[list[str], list[np.ndarray], np.ndarray]:
    """Per identity with >= 2 usable photos: (identity, enrolment vectors, probe photo name).

    Enrolment = the clean shots of every photo but the last; probes = passages of the last photo.
    `how`: "mean" = one template (mean of the photos), "best" = every photo kept, the best counts.
    """
    names, templates, probe_photos = [], [], []
    for person in np.unique(emb.photo_ids):
        idx = np.flatnonzero((emb.photo_ids == person) & emb.clean_ok)
        if idx.size < 2:
            continue
        enrol = emb.clean[idx[:-1]]
        templates.append(l2_normalise(enrol.mean(axis=0, keepdims=True)) if how == "mean" else enrol)
        names.append(str(person))
        probe_photos.append(emb.photo_names[idx[-1]])
    return names, templates, np.asarray(probe_photos)


def identity_scores(passages: np.ndarray, templates: list[np.ndarray]) -> np.ndarray:
    """(passages, people): each passage's best score against each person's templates."""
    flat = np.concatenate(templates)
    owner = np.repeat(np.arange(len(templates)), [len(t) for t in templates])
    sims = passages @ flat.T
    out = np.full((len(passages), len(templates)), -1.0, dtype=np.float32)
    np.maximum.at(out.T, owner, sims.T)
    return out


def identification(emb: Embedded, passage_vecs: np.ndarray, how: str, seed: int, draws: int = 20) -> dict:
    """FNIR at FPIR <= 0.1 %: measured with 100 enrolled, extrapolated to 1 000 and 10 000.

    Measured: `draws` random galleries of 100 people; mated probes are the passages of an enrolled
    person's held-out photo, non-mated probes every passage of the people not enrolled.
    Extrapolated: p(t), the chance that a stranger's passage reaches t against one enrolled person
    (max over their templates), is measured over every (passage, other person) pair; with K people
    FPIR(t) = 1 - (1 - p(t))^K (people taken as independent). Where p(t) is below what the pair count
    resolves, the figure is marked as an extrapolation beyond the data.
    """
    names, templates, probe_photos = member_templates(emb, how)
    ids = emb.passages.identities
    scores = identity_scores(passage_vecs, templates)          # (passages, people)
    person_of = {p: i for i, p in enumerate(names)}
    col = np.array([person_of.get(str(i), -1) for i in ids])
    mated_rows = np.flatnonzero(np.isin(emb.passages.photos, probe_photos) & (col >= 0))
    own = scores[mated_rows, col[mated_rows]]
    rng = np.random.default_rng(seed)
    result: dict = {"template": how, "people_with_templates": len(names),
                    "mated_probes": int(mated_rows.size)}
    k = min(ENROLLED[0], len(names) // 2)  # the rest are the strangers
    fnirs, thrs = [], []
    for _ in range(draws):
        enrolled = rng.choice(len(names), size=k, replace=False)
        in_gallery = np.zeros(len(names), dtype=bool)
        in_gallery[enrolled] = True
        non_mated = np.flatnonzero(~np.isin(col, enrolled))
        best_non = np.sort(scores[np.ix_(non_mated, enrolled)].max(axis=1))[::-1]
        t = threshold_at_far(best_non, FPIR_TARGET)
        rows = mated_rows[in_gallery[col[mated_rows]]]
        sub = scores[np.ix_(rows, enrolled)]
        mine = scores[rows, col[rows]]
        rank1 = sub.max(axis=1) <= mine
        fnirs.append(float(np.mean(~((mine >= t) & rank1))))
        thrs.append(t)
    result["measured"] = {str(k): {"fnir": float(np.mean(fnirs)), "threshold": float(np.mean(thrs)),
                                   "draws": draws, "non_mated_people": len(names) - k}}
    # per (passage, other person) false-match rate
    other = col[:, None] != np.arange(len(names))[None, :]
    impostor = np.sort(scores[other])[::-1]
    pairs = impostor.size
    result["impostor_person_pairs"] = int(pairs)
    extrapolated = {}
    for k in ENROLLED:
        p_needed = 1 - (1 - FPIR_TARGET) ** (1 / k)
        t = threshold_at_far(impostor, p_needed)
        resolved = p_needed * pairs >= 3
        miss_thr = own < t
        # a mated probe also fails when one of the K-1 others beats its own score
        p_beat = np.searchsorted(-impostor, -own, side="left") / pairs
        lost = 1 - (1 - p_beat) ** (k - 1)
        fnir = float(np.mean(np.where(miss_thr, 1.0, lost)))
        extrapolated[str(k)] = {"fnir": fnir, "threshold": t, "per_person_far": p_needed,
                                "resolved_by_data": bool(resolved)}
    result["extrapolated"] = extrapolated
    return result


# -- strategies ---------------------------------------------------------------------

def separation(vecs: np.ndarray, ids: np.ndarray, photos: np.ndarray, far: float) -> dict:
    """Recall (other photo / same photo) at the threshold where passage pairs reach `far`."""
    sims = vecs @ vecs.T
    iu, ju, same, same_photo = pair_masks(ids, photos)
    s = sims[iu, ju]
    impostor = np.sort(s[~same])[::-1]
    t = threshold_at_far(impostor, far)
    return {"threshold": round(t, 4), "recall_other_photo": round(float(np.mean(s[same & ~same_photo] >= t)), 4),
            "recall_same_photo": round(float(np.mean(s[same & same_photo] >= t)), 4)}


def vote_separation(passages: Passages, means: np.ndarray, far: float) -> dict:
    """The per-shot weighted vote: each shot of one passage scored against the other's mean, both ways."""
    vecs = np.concatenate([v for v, _ in passages.shots])
    w = np.concatenate([wt / wt.sum() for _, wt in passages.shots]).astype(np.float32)
    starts = np.cumsum([0] + [len(v) for v, _ in passages.shots[:-1]])
    vote = np.add.reduceat((vecs @ means.T) * w[:, None], starts, axis=0)
    symmetric = (vote + vote.T) / 2
    iu, ju, same, same_photo = pair_masks(passages.identities, passages.photos)
    s = symmetric[iu, ju]
    impostor = np.sort(s[~same])[::-1]
    t = threshold_at_far(impostor, far)
    return {"threshold": round(t, 4), "recall_other_photo": round(float(np.mean(s[same & ~same_photo] >= t)), 4),
            "recall_same_photo": round(float(np.mean(s[same & same_photo] >= t)), 4)}


# -- the report ---------------------------------------------------------------------

def calibrate(config: Config, faces_dir: Path, crowd: Path | None = None, *, renditions: int = 4, shots: int = 5,
              trials: int = 2000, seed: int = 0, progress: bool = True) -> dict:
    """All the figures behind the dedup and member thresholds of the configured recognizer.

    `crowd` is accepted for the command line's sake and ignored: the labelled sets now hold enough
    strangers (see docs/calibration.md).
    """
    started = time.perf_counter()
    analyzer = FaceAnalyzer.from_config(config)
    pack = analyzer.pack
    assert pack is not None
    emb = embed_set(analyzer, faces_dir, renditions=renditions, shots=shots, seed=seed, progress=progress)
    embedded_at = time.perf_counter()
    used = config.tracking.shots
    psg = emb.passages
    vecs = psg.combined("mean", used)
    ids, photos = psg.identities, psg.photos
    sims = vecs @ vecs.T
    iu, ju, same, same_photo = pair_masks(ids, photos)
    s = sims[iu, ju]
    impostor = s[~same]
    impostor_desc = np.sort(impostor)[::-1]
    other, same_r = s[same & ~same_photo], s[same & same_photo]
    n_imp = int(impostor.size)
    table = []
    for thr in THRESHOLDS:
        k = int(np.sum(impostor >= thr))
        lo, hi = clopper_pearson(k, n_imp)
        table.append({"threshold": thr, "impostor_pairs_accepted": k, "passage_far": k / n_imp,
                      "far_ci95": [lo, hi], "recall_same_photo": float(np.mean(same_r >= thr)),
                      "recall_other_photo": float(np.mean(other >= thr))})
    at_far = {}
    for far in FARS:
        t = threshold_at_far(impostor_desc, far)
        at_far[f"{far:g}"] = {"threshold": round(t, 4), "recall_other_photo": float(np.mean(other >= t)),
                              "recall_same_photo": float(np.mean(same_r >= t)),
                              "resolved_by_data": far * n_imp >= 3}
    dedup_t, dedup_m = pack.threshold("dedup.threshold"), pack.threshold("dedup.margin")
    member_t = pack.threshold("members.threshold")
    curves = {}
    for thr in sorted({dedup_t, *(t for t in THRESHOLDS if 0.3 <= t <= 0.6)}):
        curves[f"{thr:.2f}/{dedup_m:.2f}/mutual"] = false_merge_curve(sims, ids, photos, thr, dedup_m,
                                                                     WINDOW_COUNTS, trials, seed)
    configured_curve = curves[f"{dedup_t:.2f}/{dedup_m:.2f}/mutual"]
    k_op = int(np.sum(impostor >= dedup_t))
    op_lo, op_hi = clopper_pearson(k_op, n_imp)
    n300 = configured_curve[max(configured_curve, key=int)]
    operating_point = {
        "dedup_threshold": dedup_t, "dedup_margin": dedup_m, "member_threshold": member_t,
        "recall_other_photo": float(np.mean(other >= dedup_t)),
        "recall_same_photo": float(np.mean(same_r >= dedup_t)),
        "member_recall_other_photo": float(np.mean(other >= member_t)),
        "passage_far": k_op / n_imp, "passage_far_ci95": [op_lo, op_hi],
        "false_merges": n300["false_merges"], "false_merge_open_windows": int(max(configured_curve, key=int)),
        "false_merge_trials": n300["trials"], "false_merge_rate": n300["false_merge"],
        "reentry_found": n300["reentry_found"],
    }
    strategies = {
        f"mean_{used}_shots": separation(vecs, ids, photos, 1e-4),
        f"best_shot_of_{used}": separation(psg.combined("best", used), ids, photos, 1e-4),
        f"vote_{used}_shots": vote_separation(Passages(ids, photos, [(v[:used], w[:used]) for v, w in psg.shots]),
                                              vecs, 1e-4),
        f"mean_{shots}_shots": separation(psg.combined("mean"), ids, photos, 1e-4),
    }
    members = {how: identification(emb, vecs, how, seed) for how in ("mean", "best")}
    return {
        "recognizer": pack.recognizer.file, "detector": pack.detector.file, "faces": str(faces_dir.name),
        "photos": int(len(emb.photo_ids)), "identities": int(len(np.unique(emb.photo_ids))),
        "photos_enrolable": int(emb.clean_ok.sum()),
        "passages": int(len(ids)), "shots_per_passage": used, "renditions": renditions,
        "shots_refused_by_gate": emb.shots_refused, "shots_rendered": emb.shots_total,
        "impostor_pairs_passages": n_imp, "identity_pairs": int(len(np.unique(ids)) * (len(np.unique(ids)) - 1) / 2),
        "genuine_pairs_other_photo": int(other.size), "genuine_pairs_same_photo": int(same_r.size),
        "impostor_max_passages": float(impostor_desc[0]),
        "far_interval": "Clopper-Pearson exact 95 % on impostor passage-pair counts (pairs taken as independent)",
        "table": table, "at_far": at_far,
        "false_merge": curves, "identification": members, "strategies_at_far_1e-4": strategies,
        "operating_point": operating_point,
        "seconds_embedding": round(embedded_at - started, 1),
        "seconds": round(time.perf_counter() - started, 1),
    }


def format_report(r: dict) -> str:
    """Tables for people: per-pair error rates, the false-merge curve, identification, strategies."""
    op = r["operating_point"]
    lines = [f"{r['detector']} + {r['recognizer']} on {r['faces']}: {r['photos']} photos, {r['identities']} identities, "
             f"{r['passages']} passages, {r['impostor_pairs_passages']} impostor passage pairs "
             f"(max {r['impostor_max_passages']:.3f}); {r['seconds']} s",
             "", "operating point: " + ", ".join(f"{k} {v}" for k, v in op.items()),
             "", "thr   FAR passages [95% CI]              recall same photo  recall other photo"]
    for row in r["table"]:
        lo, hi = row["far_ci95"]
        lines.append(f"{row['threshold']:.2f}  {row['passage_far']:.2e} [{lo:.1e}, {hi:.1e}]"
                     f"      {row['recall_same_photo']:.4f}             {row['recall_other_photo']:.4f}")
    lines += ["", "at FAR: " + "; ".join(f"{k}: thr {v['threshold']:.3f} recall other {v['recall_other_photo']:.4f}"
                                          for k, v in r["at_far"].items())]
    lines += ["", "false merges of a stranger vs N open windows of distinct people (re-entries found)"]
    for key, curve in r["false_merge"].items():
        cells = [f"N={n}: {c['false_merge']:.4f} ({c['reentry_found']:.3f})" for n, c in curve.items()
                 if c.get("false_merge") is not None]
        lines.append(f"{key:<20} " + "  ".join(cells))
    lines += ["", "member identification, FNIR at FPIR <= 0.1 %"]
    for how, m in r["identification"].items():
        meas = "; ".join(f"{k} enrolled: {v['fnir']:.4f} (thr {v['threshold']:.3f})" for k, v in m["measured"].items())
        ext = "; ".join(f"{k}: {v['fnir']:.4f} (thr {v['threshold']:.3f}{'' if v['resolved_by_data'] else ', beyond data'})"
                        for k, v in m["extrapolated"].items())
        lines.append(f"  template {how}: measured {meas}; extrapolated {ext}")
    lines += ["", "passage strategies at FAR 1e-4"]
    for name, v in r["strategies_at_far_1e-4"].items():
        lines.append(f"  {name:<16} thr {v['threshold']:.3f}  recall other {v['recall_other_photo']:.4f}"
                     f"  same {v['recall_same_photo']:.4f}")
    return "\n".join(lines)
