"""Relevance scores that mean the same thing for every pair of query and target modality.

Raw cosines are not comparable across pairs: in AudioCLIP's space a matching text and image
may score 0.3 where a matching text and sound score 0.1, and the unrelated pairs of each sit
at their own level too. So each hit's cosine is compared with the cosines of the same query
against the target modality's reference sample (a fixed random sample of the index's items of
that modality, kept with each generation). Three choices make that comparison hold at every
index size and far into the tail:

- Fisher's scale. Cosines live on [-1, 1]: a modality whose unrelated items spread widely
  (sounds against a sound, say at 0.5 +- 0.2) leaves a copy of the query (cosine 1) only
  2.5 spreads above the mean, less than an ordinary top hit of a tight modality. On
  `atanh(cosine)`, the variance-stabilising scale of correlations, cosines of unrelated
  vectors are close to normal and the ceiling lies infinitely far out: there a copy scores
  about 27 against that background, a near-copy (0.98) about 7.
- A background that relevant items cannot move. Its location is the sample's median and its
  spread is measured below the median only, which the few related items, high above it,
  do not reach; items at cosine >= `COPY_COSINE` (copies of the query) are not background.
  The location needs no prior: a few items place it well, and a prior mean of 0 would be
  far off for pairs of one modality.
- A prior for small samples. For unit vectors in d dimensions, unrelated cosines spread by
  about 1/sqrt(d) on either scale, whatever the model. The sample's spread is shrunk toward
  that prior (the prior weighs as much as `PRIOR_WEIGHT` deviations) and never falls below
  `FLOOR` times it, so that ten items that happen to agree closely cannot make an ordinary
  hit look like a standout.

A score of 3 thus says: on Fisher's scale the hit lies three background spreads above the
typical unrelated item of its modality for this query; an unrelated item gets that far about
once in 740 (the normal's tail), so `--min-score 3` keeps hits that stand out equally far
from their background whatever the pair. For a fixed query and modality the score is
increasing in the cosine, so it never reorders the hits of one modality.
"""

from __future__ import annotations

import math

import numpy as np

# Cosines are clipped this far inside [-1, 1] before atanh: float32 products of a vector
# with itself land within about 1e-6 of 1, so every copy of the query scores the same.
EDGE = 1e-6
# A reference item this close to the query is a copy of it, not part of its background.
COPY_COSINE = 0.999
# How many below-median deviations the prior spread 1/sqrt(d) is worth.
PRIOR_WEIGHT = 8
# The spread never falls below this fraction of the prior spread.
FLOOR = 0.25


def fisher(cosines: np.ndarray) -> np.ndarray:
    """Cosines on Fisher's scale, atanh, with copies of the query kept finite."""
    clipped = np.clip(np.asarray(cosines, dtype=np.float64), EDGE - 1, 1 - EDGE)
    return np.arctanh(clipped)


def prior_spread(dim: int) -> float:
    """The spread of cosines between unrelated unit vectors in `dim` dimensions."""
    return 1.0 / math.sqrt(dim)


def background(reference: np.ndarray, query: np.ndarray) -> tuple[float, float]:
    """Location and spread, on Fisher's scale, of the query's cosines with the reference
    vectors that are not copies of it."""
    prior = prior_spread(query.shape[-1])
    if not len(reference):
        return 0.0, prior
    # einsum, not `@`: a BLAS product this small gains nothing from threads, and right
    # after a FAISS search its threads fight FAISS's still-spinning OpenMP threads for the
    # cores (10 ms instead of 0.5 ms for 2,048 x 1,024 on 2 cores).
    cosines = np.einsum("ij,j->i", reference, query)
    values = fisher(cosines[cosines < COPY_COSINE])
    if not len(values):
        return 0.0, prior
    middle = (len(values) - 1) // 2
    location = float(np.partition(values, middle)[middle])
    return location, shrunk_spread(values[values < location] - location, prior)


def shrunk_spread(deviations: np.ndarray, prior: float) -> float:
    """The root mean square of `deviations` pooled with `PRIOR_WEIGHT` deviations of the
    prior's size, floored at `FLOOR` times the prior."""
    pooled = float(deviations @ deviations) + PRIOR_WEIGHT * prior**2
    spread = math.sqrt(pooled / (len(deviations) + PRIOR_WEIGHT))
    return max(spread, FLOOR * prior)


def relevance(cosines: np.ndarray, reference: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Calibrated scores of hits of one modality: how many background spreads each cosine
    lies above the typical unrelated item, on Fisher's scale."""
    location, spread = background(reference, query)
    return (fisher(cosines) - location) / spread
