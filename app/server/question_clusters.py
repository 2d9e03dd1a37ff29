"""Incremental clustering of questions by meaning, across languages (pure numpy, no database).

A question joins the cluster whose centroid is nearest when their cosine reaches the model's
threshold, else it starts a cluster of its own; a centroid is the running mean of its members'
vectors, compared after normalising. All centroids live in one matrix, so assigning a batch is
one matrix product against the centroids as they were when the batch began, then a short loop
over the batch for the clusters the batch itself creates (a question must be able to join a
cluster started two questions earlier). Updates of existing centroids inside one batch are
applied after each question but only seen by the next batch: the drift is one batch's worth.

The vectors given here are already in the space clustering uses: E5 query form, corrected for
their language (app/server/insights.py, `mean` correction; bench/calibrate_clusters.py measured
why).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_MODEL_THRESHOLD = 0.65
"""For a model that was never calibrated: above multilingual-e5-small's 0.55 on purpose, so an
unknown model splits rather than merges different questions (a merge hides a question from the
operator, a split only shows it twice); on e5-small 0.65 gives precision 0.88, recall 0.56.
Calibrate a new model with bench/calibrate_clusters.py and add it to THRESHOLDS."""

THRESHOLDS: dict[str, float] = {
    # bench/calibrate_clusters.py, DEV data (XQuAD dev, 158 questions x 12 languages, and 900
    # Tatoeba pairs), language-corrected vectors ("mean"): at 0.55 the clustering's pairwise
    # precision 0.760, recall 0.810 (F1 0.784; 0.50: 0.577/0.866, 0.60: 0.832/0.711) and
    # Tatoeba recall 0.81 at 0.0002 false positives. Raw vectors do worse at any threshold
    # (best F1 0.647 at 0.86): two different questions in one language outscore one question
    # in two languages there.
    "intfloat/multilingual-e5-small": 0.55,
}


def threshold_for(model_id: str) -> float:
    """The calibrated joining threshold of `model_id` (a hub id, or a folder named after one)."""
    if model_id in THRESHOLDS:
        return THRESHOLDS[model_id]
    name = model_id.rstrip("/").rsplit("/", 1)[-1].lower()
    for known, value in THRESHOLDS.items():  # materialised folders: owner--name--variant
        if known.split("/")[-1].lower() in name:
            return value
    return DEFAULT_MODEL_THRESHOLD


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


@dataclass(frozen=True)
class Assignment:
    cluster: int  # the cluster's id
    score: float  # cosine to the centroid it joined (1.0 for a new cluster's first question)
    new: bool  # the question started this cluster


class ClusterIndex:
    """Centroids (running means) of clusters with stable integer ids; `touched` lists the ids
    whose mean or size changed since `clear_touched`, for the caller to persist."""

    def __init__(self, dimension: int, threshold: float) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        self.dimension, self.threshold = dimension, threshold
        self._ids = np.zeros(0, np.int64)
        self._means = np.zeros((0, dimension), np.float32)
        self._units = np.zeros((0, dimension), np.float32)
        self._sizes = np.zeros(0, np.int64)
        self._count = 0
        self._row: dict[int, int] = {}
        self._next_id = 1
        self.touched: set[int] = set()

    @classmethod
    def from_arrays(
        cls, ids: np.ndarray, means: np.ndarray, sizes: np.ndarray, threshold: float
    ) -> ClusterIndex:
        """Stored clusters back into an index (ids unique, means as stored, unnormalised)."""
        means = np.asarray(means, np.float32).reshape(len(ids), -1)
        index = cls(means.shape[1] if len(ids) else 0, threshold)
        index._grow(len(ids))
        n = len(ids)
        index._ids[:n] = ids
        index._means[:n] = means
        index._units[:n] = normalise(means)
        index._sizes[:n] = sizes
        index._count = n
        index._row = {int(i): r for r, i in enumerate(ids)}
        index._next_id = int(np.max(ids)) + 1 if n else 1
        return index

    def __len__(self) -> int:
        return self._count

    @property
    def ids(self) -> np.ndarray:
        return self._ids[: self._count]

    def mean(self, cluster: int) -> np.ndarray:
        return self._means[self._row[cluster]]

    def centroid(self, cluster: int) -> np.ndarray:
        return self._units[self._row[cluster]]

    def size(self, cluster: int) -> int:
        return int(self._sizes[self._row[cluster]])

    def clear_touched(self) -> None:
        self.touched = set()

    def assign(self, vectors: np.ndarray) -> list[Assignment]:
        """Put each vector (unit length, in order) into a cluster; returns where each went."""
        x = normalise(np.atleast_2d(vectors))
        if len(x) and self.dimension == 0:
            self.dimension = x.shape[1]
            self._means = np.zeros((0, self.dimension), np.float32)
            self._units = np.zeros((0, self.dimension), np.float32)
        if len(x) and x.shape[1] != self.dimension:
            raise ValueError(f"vectors have {x.shape[1]} dimensions, the index {self.dimension}")
        start = self._count
        best_row, best_score = self._nearest(x, start)
        self._grow(start + len(x))
        out: list[Assignment] = []
        for i, vector in enumerate(x):
            row, score = int(best_row[i]), float(best_score[i])
            if self._count > start:  # clusters this batch created
                fresh = self._units[start : self._count] @ vector
                j = int(np.argmax(fresh))
                if fresh[j] > score:
                    row, score = start + j, float(fresh[j])
            if row >= 0 and score >= self.threshold:
                self._join(row, vector)
                out.append(Assignment(int(self._ids[row]), score, False))
            else:
                out.append(Assignment(self._create(vector), 1.0, True))
        return out

    def _nearest(self, x: np.ndarray, upto: int, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
        rows = np.full(len(x), -1, np.int64)
        scores = np.full(len(x), -np.inf, np.float32)
        if upto == 0:
            return rows, scores
        units = self._units[:upto]
        for lo in range(0, len(x), chunk):  # bounded memory: chunk x clusters scores at a time
            sims = x[lo : lo + chunk] @ units.T
            rows[lo : lo + chunk] = np.argmax(sims, axis=1)
            scores[lo : lo + chunk] = sims[np.arange(len(sims)), rows[lo : lo + chunk]]
        return rows, scores

    def _join(self, row: int, vector: np.ndarray) -> None:
        size = self._sizes[row]
        mean = (self._means[row] * size + vector) / (size + 1)
        self._means[row] = mean
        self._units[row] = normalise(mean)
        self._sizes[row] = size + 1
        self.touched.add(int(self._ids[row]))

    def _create(self, vector: np.ndarray) -> int:
        row = self._count
        cluster = self._next_id
        self._next_id += 1
        self._ids[row] = cluster
        self._means[row] = vector
        self._units[row] = vector
        self._sizes[row] = 1
        self._row[cluster] = row
        self._count += 1
        self.touched.add(cluster)
        return cluster

    def _grow(self, needed: int) -> None:
        """Room for `needed` clusters, doubling so that many small batches stay linear."""
        capacity = len(self._ids)
        if needed <= capacity:
            return
        new = max(needed, 2 * capacity, 64)
        dim = self.dimension
        ids, means, units, sizes = (
            np.zeros(new, np.int64),
            np.zeros((new, dim), np.float32),
            np.zeros((new, dim), np.float32),
            np.zeros(new, np.int64),
        )
        n = self._count
        ids[:n], means[:n], units[:n], sizes[:n] = (
            self._ids[:n],
            self._means[:n],
            self._units[:n],
            self._sizes[:n],
        )
        self._ids, self._means, self._units, self._sizes = ids, means, units, sizes
