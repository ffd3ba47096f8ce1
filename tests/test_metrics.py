import itertools
import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from ganforge.data.mixtures2d import MIXTURES, Mixture2D, get_mixture
from ganforge.errors import GanforgeError
from ganforge.metrics import (
    METRICS,
    count_modes_2d,
    count_modes_stacked,
    coverage,
    density,
    density_coverage,
    fid,
    fid_eps,
    frechet_distance,
    frechet_distance_eps,
    gaussian_stats,
    inception_score,
    kid,
    kid_subset_size,
    knn_metrics,
    mmd2_unbiased,
    prdc,
    precision,
    precision_recall,
    recall,
)

# ---------------------------------------------------------------- 2-D mixtures


def test_ring8_is_eight_modes_on_radius_2_circle():
    ring = MIXTURES["ring-8"]
    assert ring.name == "ring-8" and ring.std == 0.02 and ring.n_modes == 8
    for k, (x, y) in enumerate(ring.centres):
        assert x == pytest.approx(2 * math.cos(2 * math.pi * k / 8), abs=1e-12)
        assert y == pytest.approx(2 * math.sin(2 * math.pi * k / 8), abs=1e-12)
    assert ring.centres.dtype == np.float64


def test_grid25_is_the_product_of_even_coordinates():
    grid = MIXTURES["grid-25"]
    assert grid.std == 0.05 and grid.centres.shape == (25, 2)
    expected = set(itertools.product([-4.0, -2.0, 0.0, 2.0, 4.0], repeat=2))
    assert {tuple(c) for c in grid.centres.tolist()} == expected


def test_mixture_definition_cannot_be_changed():
    with pytest.raises(ValueError):
        MIXTURES["ring-8"].centres[0, 0] = 5.0


def test_mixture_sample_is_uniform_over_modes_with_the_stated_std():
    ring = MIXTURES["ring-8"]
    x = ring.sample(8000, torch.Generator().manual_seed(0))
    assert x.shape == (8000, 2) and x.dtype == torch.float32
    d = torch.cdist(x.double(), torch.tensor(ring.centres))
    nearest = d.argmin(dim=1)
    counts = torch.bincount(nearest, minlength=8)
    # 1000 expected per mode, binomial sd ~30
    assert counts.min() > 880 and counts.max() < 1120
    resid = x.double() - torch.tensor(ring.centres)[nearest]
    assert resid.std(dim=0).tolist() == pytest.approx([0.02, 0.02], rel=0.05)
    again = ring.sample(8000, torch.Generator().manual_seed(0))
    assert torch.equal(x, again)


def test_unknown_mixture_is_a_user_error():
    with pytest.raises(GanforgeError, match="ring-8"):
        get_mixture("ring-9")


# ---------------------------------------------------------------- FID


def random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.5 * np.eye(d)


def closed_form_fd(mu1, s1, mu2, s2) -> float:
    # Tr (S1 S2)^(1/2) = Tr (S1^(1/2) S2 S1^(1/2))^(1/2): symmetric, so eigh, no sqrtm involved
    w, v = np.linalg.eigh(s1)
    root1 = v @ np.diag(np.sqrt(w)) @ v.T
    ev = np.linalg.eigvalsh(root1 @ s2 @ root1)
    tr_covmean = np.sqrt(np.clip(ev, 0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def test_fid_of_a_set_with_itself_is_zero():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 16)) @ rng.standard_normal((16, 16)) * 30.0
    scale = np.trace(np.cov(x, rowvar=False))
    assert abs(fid(x, x)) < 1e-6 * scale


def test_frechet_distance_of_diagonal_gaussians_matches_closed_form():
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.1, 4.0, 6), rng.uniform(0.1, 4.0, 6)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_of_full_covariances_matches_eigh_closed_form():
    rng = np.random.default_rng(2)
    mu1, mu2 = rng.standard_normal(8), rng.standard_normal(8)
    s1, s2 = random_spd(rng, 8), random_spd(rng, 8)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(
        closed_form_fd(mu1, s1, mu2, s2), rel=1e-9
    )


def test_fid_of_gaussian_samples_matches_true_parameters():
    rng = np.random.default_rng(3)
    d = 8
    mu1 = rng.standard_normal(d)
    mu2 = mu1 + 0.5 * rng.standard_normal(d)
    s1, s2 = random_spd(rng, d), random_spd(rng, d)
    true = closed_form_fd(mu1, s1, mu2, s2)
    a = rng.multivariate_normal(mu1, s1, 20000)
    b = rng.multivariate_normal(mu2, s2, 20000)
    # over 20 seeds this estimator had sd ~1% of the true value (~4); 5% is ~5 sd, while a
    # formula error (a missing factor 2, a dropped mean term) moves it by tens of percent
    assert fid(a, b) == pytest.approx(true, rel=0.05)


def test_fid_accepts_tensors_and_agrees_with_cached_stats():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((300, 5)).astype(np.float32)
    b = (rng.standard_normal((300, 5)) + 1).astype(np.float32)
    mu_a, s_a = gaussian_stats(torch.from_numpy(a))
    assert mu_a.dtype == np.float64 and s_a.shape == (5, 5)
    np.testing.assert_allclose(s_a, np.cov(a.astype(np.float64), rowvar=False), rtol=1e-12)
    mu_b, s_b = gaussian_stats(b)
    assert fid(torch.from_numpy(a), torch.from_numpy(b)) == frechet_distance(mu_a, s_a, mu_b, s_b)


def pytorch_fid_formula(mu1, s1, mu2, s2, eps=0.0) -> float:
    # the reference formula as pytorch-fid writes it: sqrtm of the product, real part
    offset = eps * np.eye(len(mu1))
    covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset)).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def ill_conditioned(n: int = 1000, d: int = 32, smallest: float = 1e-4, seed: int = 0):
    """Two full-rank (N, d) sets whose standard deviations run from 1 down to ``smallest``
    along random axes: covariance eigenvalues 1..1e-8 and a product conditioned ~5e14, as
    Inception features are, yet nowhere near singular (N >> d)."""
    rng = np.random.default_rng(seed)
    scales = np.logspace(0, np.log10(smallest), d)
    q1, q2 = (np.linalg.qr(rng.standard_normal((d, d)))[0] for _ in range(2))
    a = (rng.standard_normal((n, d)) * scales) @ q1.T
    b = (rng.standard_normal((n, d)) * scales * 1.1) @ q2.T + 0.1
    s1, s2 = (q1 * scales**2) @ q1.T, (q2 * (1.1 * scales) ** 2) @ q2.T
    return a, b, (np.zeros(d), s1, np.full(d, 0.1), s2)


def test_fid_of_ill_conditioned_full_rank_sets_is_the_exact_formula():
    a, b, _ = ill_conditioned()
    mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    assert np.linalg.eigvalsh(s1).min() > 1e-9 and np.linalg.eigvalsh(s2).min() > 1e-9
    exact = pytorch_fid_formula(mu1, s1, mu2, s2)
    offset = pytorch_fid_formula(mu1, s1, mu2, s2, eps=1e-6)
    # the offset moves FID by ~1e-4 relative here, so the tolerances below can tell them apart
    assert abs(offset - exact) > 1e-5 * exact
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no offset warning (nor scipy's) on a usable root
        value, eps = fid_eps(a, b)
    assert eps == 0.0
    assert value == pytest.approx(exact, rel=1e-12)
    assert value == pytest.approx(closed_form_fd(mu1, s1, mu2, s2), rel=1e-7)
    assert fid(a, b) == value


def test_frechet_distance_of_ill_conditioned_gaussians_matches_closed_form():
    *_, (mu1, s1, mu2, s2) = ill_conditioned(d=48)
    value, eps = frechet_distance_eps(mu1, s1, mu2, s2)
    assert eps == 0.0
    assert value == pytest.approx(closed_form_fd(mu1, s1, mu2, s2), rel=1e-7)
    assert abs(pytorch_fid_formula(mu1, s1, mu2, s2, eps=1e-6) - value) > 1e-5 * value


def test_fid_with_fewer_samples_than_dimensions_warns_and_is_the_reference_value():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((10, 32)), rng.standard_normal((10, 32))
    with pytest.warns(UserWarning, match="rank-deficient") as record:
        value, eps = fid_eps(a, b)
    assert not any("adding" in str(w.message) for w in record)
    # the singular product still has a usable root: pytorch-fid takes it as it is, so do we
    assert eps == 0.0 and math.isfinite(value) and value > 0
    expected = pytorch_fid_formula(a.mean(0), np.cov(a, rowvar=False), b.mean(0),
                                   np.cov(b, rowvar=False))
    assert value == pytest.approx(expected, rel=1e-10)


def test_fid_of_features_in_a_subspace_is_the_subspace_fid():
    rng = np.random.default_rng(6)
    a, b = np.zeros((500, 12)), np.zeros((500, 12))
    a[:, :6] = rng.standard_normal((500, 6))
    b[:, :6] = rng.standard_normal((500, 6)) * 1.5 + 0.3
    value, eps = fid_eps(a, b)
    # the empty directions contribute exactly 0; an eps offset would add O(eps * d) (~2e-5)
    assert eps == 0.0
    assert value == pytest.approx(fid(a[:, :6], b[:, :6]), rel=1e-9)


def test_fid_retries_with_offset_when_the_root_is_not_finite(monkeypatch):
    rng = np.random.default_rng(7)
    mu, s1, s2 = np.zeros(4), random_spd(rng, 4), random_spd(rng, 4)
    real_sqrtm = scipy.linalg.sqrtm
    calls = []

    def flaky(m):
        calls.append(m)
        return np.full_like(m, np.nan) if len(calls) == 1 else real_sqrtm(m)

    monkeypatch.setattr(scipy.linalg, "sqrtm", flaky)
    with pytest.warns(UserWarning, match="not finite"):
        value, eps = frechet_distance_eps(mu, s1, mu, s2)
    assert len(calls) == 2 and eps == 1e-6
    np.testing.assert_allclose(calls[0], s1 @ s2)
    np.testing.assert_allclose(calls[1], (s1 + 1e-6 * np.eye(4)) @ (s2 + 1e-6 * np.eye(4)))
    assert value == pytest.approx(closed_form_fd(mu, s1, mu, s2), rel=1e-5)


def test_fid_discards_small_imaginary_parts_and_retries_on_large_ones(monkeypatch):
    s = np.diag([1.0, 4.0])
    real_sqrtm = scipy.linalg.sqrtm
    monkeypatch.setattr(scipy.linalg, "sqrtm", lambda m: real_sqrtm(m) + 1e-6j * np.eye(2))
    assert frechet_distance_eps(np.zeros(2), s, np.zeros(2), s) == (pytest.approx(0, abs=1e-9), 0)
    calls = []

    def imaginary_once(m):
        calls.append(m)
        return real_sqrtm(m) + (0.1j if len(calls) == 1 else 0) * np.eye(2)

    monkeypatch.setattr(scipy.linalg, "sqrtm", imaginary_once)
    with pytest.warns(UserWarning, match="imaginary part 0.1; adding 1e-06"):
        value, eps = frechet_distance_eps(np.zeros(2), s, np.zeros(2), s)
    assert eps == 1e-6 and value == pytest.approx(0.0, abs=1e-5)
    monkeypatch.setattr(scipy.linalg, "sqrtm", lambda m: real_sqrtm(m) + 0.1j * np.eye(2))
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="imaginary.*even with"):
        frechet_distance(np.zeros(2), s, np.zeros(2), s)


# ---------------------------------------------------------------- KID


def poly_k(x: np.ndarray, y: np.ndarray) -> float:
    return (float(x @ y) / len(x) + 1.0) ** 3


def loop_mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    m = len(x)
    xx = sum(poly_k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(poly_k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(poly_k(x[i], y[j]) for i in range(m) for j in range(m))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m)


def reference_mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    # Bińkowski et al.'s estimator written out: off-diagonal means within, full mean across
    m, d = x.shape
    kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
    off = ~np.eye(m, dtype=bool)
    return float(kxx[off].mean() + kyy[off].mean() - 2 * kxy.mean())


def test_kid_on_one_subset_is_the_unbiased_mmd_of_the_rows_it_drew():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((15, 3)), rng.standard_normal((15, 3)) + 0.2
    assert mmd2_unbiased(x, y) == pytest.approx(loop_mmd2_unbiased(x, y), rel=1e-10)
    mean, std = kid(x, y, n_subsets=1, seed=4)
    draw = np.random.default_rng(4)  # the documented draw: a's rows, then b's
    xa, xb = x[draw.choice(15, 7, replace=False)], y[draw.choice(15, 7, replace=False)]
    assert mean == pytest.approx(loop_mmd2_unbiased(xa, xb), rel=1e-10) and std == 0.0


def test_kid_is_unbiased_where_the_v_statistic_is_not():
    kids, biased = [], []
    for seed in range(30):
        rng = np.random.default_rng(100 + seed)
        x, y = rng.standard_normal((50, 4)), rng.standard_normal((50, 4))
        kids.append(mmd2_unbiased(x, y))
        # the biased estimator, to show these sets are enough to see the bias
        kx = (x @ x.T / 4 + 1) ** 3
        ky = (y @ y.T / 4 + 1) ** 3
        kxy = (x @ y.T / 4 + 1) ** 3
        biased.append(kx.mean() + ky.mean() - 2 * kxy.mean())
    kids, biased = np.array(kids), np.array(biased)
    se = kids.std(ddof=1) / math.sqrt(len(kids))
    assert abs(kids.mean()) < 3 * se
    assert (kids < 0).any()  # an unbiased estimate of 0 must sometimes be negative
    assert biased.mean() > 6 * biased.std(ddof=1) / math.sqrt(len(biased))


def test_kid_of_different_distributions_is_clearly_positive():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((500, 8)), rng.standard_normal((500, 8)) + 0.5
    mean, std = kid(x, y, n_subsets=20, subset_size=200)
    assert mean > 0.5 and mean > 5 * std


def test_kid_follows_its_seed():
    rng = np.random.default_rng(2)
    x, y = torch.from_numpy(rng.standard_normal((30, 4))), rng.standard_normal((50, 4))
    a = kid(x, y, n_subsets=5, seed=3)
    assert a == kid(x, y, n_subsets=5, seed=3)
    assert a != kid(x, y, n_subsets=5, seed=4)
    assert a[1] > 0


def test_kid_subset_size_rule():
    assert kid_subset_size(10_000, 5000) == 1000  # Bińkowski et al.'s 1000 when there is room
    assert kid_subset_size(1000, 1000) == 500  # at N <= 1000 half the smaller set, never N
    assert kid_subset_size(600, 10_000) == 300
    assert kid_subset_size(4, 4) == 2
    assert kid_subset_size(5000, 5000, 250) == 250
    for n_a, n_b, asked in ((600, 600, 301), (600, 600, 600), (5000, 5000, 1)):
        with pytest.raises(ValueError, match="half the smaller set"):
            kid_subset_size(n_a, n_b, asked)
    with pytest.raises(ValueError, match="at least 4"):
        kid_subset_size(3, 100)
    with pytest.raises(ValueError, match="half the smaller set"):
        kid(np.zeros((500, 2)), np.zeros((500, 2)), subset_size=1000)  # was silently 500


def test_kid_at_n_up_to_1000_has_a_real_error_bar():
    # N = 400: the old clip to min(1000, N) made every subset the whole set (std ~1e-16). With
    # subsets of N // 2 the spread over subsets is the error of one size-200 estimate, up to
    # the finite-population factor sqrt(1 - 200 / 400) = 0.71: check it against the spread of
    # estimates on fresh size-200 draws from the same distributions. (Over seeds the ratio ran
    # from 0.57 to 1.29: the cubic kernel's spread depends on the sample; the old one was 0.)
    rng = np.random.default_rng(3)

    def draw(n):
        return rng.standard_normal((n, 8)), rng.standard_normal((n, 8)) * 1.1 + 0.05

    x, y = draw(400)
    mean, std = kid(x, y, n_subsets=50, seed=0)
    fresh = np.array([reference_mmd2_unbiased(*draw(200)) for _ in range(50)])
    assert 0.3 * fresh.std() < std < 2.0 * fresh.std()
    # and the mean is the reference estimator averaged over the documented draws
    pick = np.random.default_rng(0)
    ref = [reference_mmd2_unbiased(x[pick.choice(400, 200, replace=False)],
                                   y[pick.choice(400, 200, replace=False)]) for _ in range(50)]
    assert mean == pytest.approx(np.mean(ref), rel=1e-10)
    assert std == pytest.approx(np.std(ref), rel=1e-8)


# ---------------------------------------------------------------- Inception Score


def test_is_of_uniform_predictions_is_one():
    mean, std = inception_score(np.full((100, 10), 0.1), splits=5)
    assert mean == pytest.approx(1.0, abs=1e-9) and std == pytest.approx(0.0, abs=1e-9)


def test_is_of_confident_predictions_spread_evenly_is_the_class_count():
    probs = np.eye(10)[np.arange(1000) % 10]
    mean, std = inception_score(probs, splits=10, seed=None)  # in order: 100 of each per split
    assert mean == pytest.approx(10.0, abs=1e-3) and std == pytest.approx(0.0, abs=1e-6)


def test_is_matches_hand_computation():
    # p(y) = (0.7, 0.3); KL(p(y|x) || p(y)) per row, then exp of the mean
    kl1 = 0.9 * math.log(0.9 / 0.7) + 0.1 * math.log(0.1 / 0.3)
    kl2 = 0.5 * math.log(0.5 / 0.7) + 0.5 * math.log(0.5 / 0.3)
    mean, _ = inception_score(torch.tensor([[0.9, 0.1], [0.5, 0.5]]), splits=1)
    assert mean == pytest.approx(math.exp((kl1 + kl2) / 2), rel=1e-5)


def test_is_mean_and_std_are_over_splits():
    probs = np.concatenate([np.full((100, 10), 0.1), np.eye(10)[np.arange(100) % 10]])
    mean, std = inception_score(probs, splits=2, seed=None)
    assert mean == pytest.approx(5.5, abs=1e-3) and std == pytest.approx(4.5, abs=1e-3)


def test_is_from_logits_equals_is_from_probabilities():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((60, 5)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert inception_score(logits + 7.0, splits=3, from_logits=True) == pytest.approx(
        inception_score(probs, splits=3), rel=1e-9
    )
    with pytest.raises(ValueError, match="from_logits"):
        inception_score(logits, splits=3)


def reference_is(probs: np.ndarray, splits: int) -> tuple[float, float]:
    # the original formula, split by split: exp(mean KL(p(y|x) || p(y))), std over the splits
    scores = []
    for part in np.array_split(probs, splits):
        kl = part * (np.log(part) - np.log(part.mean(axis=0, keepdims=True)))
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def sorted_confident_predictions(n: int = 5000, classes: int = 100) -> np.ndarray:
    # a class-conditional G sampled class by class: rows sorted by their (confident) class
    rng = np.random.default_rng(8)
    logits = rng.standard_normal((n, classes)) + 6.0 * np.eye(classes)[np.sort(
        rng.integers(0, classes, n))]
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def test_is_of_class_sorted_samples_is_that_of_shuffled_ones():
    probs = sorted_confident_predictions()
    mean, std = inception_score(probs, splits=10, seed=0)
    # the reference formula on the same shuffle
    shuffled = probs[np.random.default_rng(0).permutation(len(probs))]
    assert (mean, std) == pytest.approx(reference_is(shuffled, 10), rel=1e-10)
    # and on an unrelated shuffle, within the split-to-split noise; the given order is far off
    other = reference_is(probs[np.random.default_rng(99).permutation(len(probs))], 10)
    assert abs(mean - other[0]) < 3 * max(std, other[1])
    in_order = reference_is(probs, 10)[0]
    assert in_order < 0.6 * mean
    assert inception_score(probs, splits=10, seed=None)[0] == pytest.approx(in_order, rel=1e-10)
    assert inception_score(probs, splits=10, seed=1) != (mean, std)


# ------------------------------------------------------------ precision/recall, density/coverage


def test_prdc_of_identical_sets():
    x = np.random.default_rng(0).standard_normal((400, 6))
    got = prdc(x, x.copy(), k=5)
    assert got["precision"] == 1.0 and got["recall"] == 1.0 and got["coverage"] == 1.0
    # each open real ball holds its centre and its k - 1 nearest neighbours, k per real point:
    # density 1.0, as the prdc package gives (closed balls, k + 1 per point, gave 1.2)
    assert got["density"] == 1.0


def test_prdc_of_far_apart_sets_is_zero():
    rng = np.random.default_rng(1)
    real, fake = rng.standard_normal((200, 3)), rng.standard_normal((150, 3)) + 100.0
    assert prdc(real, fake, k=3) == {
        "precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0
    }


def test_prdc_when_fake_covers_half_of_the_real_modes():
    rng = np.random.default_rng(2)
    centres = np.array([[-20.0, 0.0], [20.0, 0.0]])
    real = centres[np.arange(2000) % 2] + rng.standard_normal((2000, 2))
    fake = centres[0] + rng.standard_normal((1000, 2))
    pr = precision_recall(real, fake, k=3)
    assert pr["precision"] > 0.95
    assert 0.45 < pr["recall"] <= 0.5
    dc = density_coverage(real, fake, k=5)
    assert 0.45 < dc["coverage"] <= 0.5
    # fake matches the real distribution on the mode it covers, and density looks only there
    assert 0.8 < dc["density"] < 1.2


def test_prdc_hand_example_with_closed_and_open_balls():
    # k=1 radii: real 0->1, 1->1, 3->2, 30->1, 31->1; fake 0.5->4.5, 5->4.5, 10->5.
    # fake 5 sits exactly on the boundary of the ball around real 3: precision's closed ball
    # counts it, density's and coverage's open ones do not.
    real = np.array([[0.0], [1.0], [3.0], [30.0], [31.0]])
    fake = np.array([[0.5], [5.0], [10.0]])
    got = prdc(real, fake, k=1)
    # precision: 0.5 (balls of 0 and 1), 5 (boundary of 3's); recall: 0, 1, 3 in 0.5's ball;
    # density: 0.5 is strictly inside 2 balls, 5 inside none; coverage: 0 and 1 only
    assert got == pytest.approx(
        {"precision": 2 / 3, "recall": 3 / 5, "density": 2 / 3, "coverage": 2 / 5}, abs=1e-12
    )
    assert precision(real, fake, k=1) == got["precision"]
    assert recall(real, fake, k=1) == got["recall"]
    assert density(real, fake, k=1) == got["density"]
    assert coverage(real, fake, k=1) == got["coverage"]


def reference_prdc(real: np.ndarray, fake: np.ndarray, k_pr: int, k_dc: int,
                   pr_inside=np.less_equal, dc_inside=np.less) -> dict:
    """Each metric as its paper's released code computes it, on full distance matrices.

    precision/recall: Kynkäänniemi et al.'s precision_recall.py (radius = the k-th value of
    np.partition over a row, self included at 0; inside when distance <= radius).
    density/coverage: Naeem et al.'s prdc (radius = the largest of the k + 1 smallest;
    inside when distance < radius). The ``*_inside`` comparisons swap the balls."""
    def dist(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    def radii(x, k):
        return np.partition(dist(x, x), k, axis=1)[:, k]

    rf = dist(real, fake)
    r_pr, f_pr, r_dc = radii(real, k_pr), radii(fake, k_pr), radii(real, k_dc)
    return {
        "precision": float(pr_inside(rf, r_pr[:, None]).any(axis=0).mean()),
        "recall": float(pr_inside(rf, f_pr[None, :]).any(axis=1).mean()),
        "density": float(dc_inside(rf, r_dc[:, None]).sum(axis=0).mean() / k_dc),
        "coverage": float(dc_inside(rf.min(axis=1), r_dc).mean()),
    }


def test_prdc_matches_the_reference_code_on_data_with_ties():
    # points on a small integer lattice: many exact duplicates and distances equal to radii
    # (integer squared distances are exact in float64, so every tie is a real one)
    rng = np.random.default_rng(9)
    real = rng.integers(0, 4, (300, 3)).astype(np.float64)
    fake = rng.integers(0, 5, (250, 3)).astype(np.float64)
    ref = reference_prdc(real, fake, k_pr=3, k_dc=5)
    got = knn_metrics(real, fake, k_pr=3, k_dc=5, chunk=64)
    assert got == ref
    assert prdc(real, fake, k=5) == reference_prdc(real, fake, k_pr=5, k_dc=5)
    # the ties matter here: each metric with the other kind of ball would come out different
    swapped = reference_prdc(real, fake, k_pr=3, k_dc=5, pr_inside=np.less,
                             dc_inside=np.less_equal)
    for name in ("precision", "recall", "density", "coverage"):
        assert swapped[name] != ref[name], name


def test_knn_metrics_agree_with_the_single_metric_functions():
    rng = np.random.default_rng(10)
    real = torch.from_numpy(rng.standard_normal((200, 4)))
    fake = torch.from_numpy(rng.standard_normal((150, 4)) * 1.2 + 0.1)
    got = knn_metrics(real, fake, k_pr=3, k_dc=5, chunk=50)
    assert got == {**precision_recall(real, fake, k=3), **density_coverage(real, fake, k=5)}
    assert got["precision"] == precision(real, fake, k=3)
    assert got["recall"] == recall(real, fake, k=3)
    assert got["density"] == density(real, fake, k=5)
    assert got["coverage"] == coverage(real, fake, k=5)
    assert knn_metrics(real, fake, metrics=["coverage"]) == {"coverage": got["coverage"]}
    with pytest.raises(ValueError, match="unknown k-NN metrics"):
        knn_metrics(real, fake, metrics=["fid"])


def test_knn_metrics_search_each_set_once_for_both_ks(monkeypatch):
    pairs = []
    real_cdist = torch.cdist

    def spy(a, b, *args, **kwargs):
        pairs.append((a.shape[0], b.shape[0]))
        return real_cdist(a, b, *args, **kwargs)

    monkeypatch.setattr(torch, "cdist", spy)
    rng = np.random.default_rng(11)
    knn_metrics(rng.standard_normal((120, 3)), rng.standard_normal((90, 3)), k_pr=3, k_dc=5)
    # real-real and fake-fake once each (k = 3 and 5 from one search), real-fake once from
    # each side; two prdc calls (k=3, k=5) made ten
    assert sorted(pairs) == sorted([(120, 120), (90, 90), (120, 90), (90, 120)])


def test_prdc_chunked_equals_unchunked():
    rng = np.random.default_rng(3)
    real = torch.from_numpy(rng.standard_normal((300, 5))).float()
    fake = torch.from_numpy(rng.standard_normal((250, 5)) * 1.3 + 0.2).float()
    assert prdc(real, fake, k=4, chunk=7) == prdc(real, fake, k=4, chunk=10_000)
    assert precision_recall(real, fake, chunk=7) == precision_recall(real, fake, chunk=10_000)


def test_prdc_never_builds_more_than_chunk_rows_of_distances(monkeypatch):
    shapes = []
    real_cdist = torch.cdist

    def spy(a, b, *args, **kwargs):
        shapes.append(tuple(a.shape[:1]) + tuple(b.shape[:1]))
        return real_cdist(a, b, *args, **kwargs)

    monkeypatch.setattr(torch, "cdist", spy)
    rng = np.random.default_rng(4)
    prdc(rng.standard_normal((120, 3)), rng.standard_normal((90, 3)), k=3, chunk=16)
    assert shapes and max(rows for rows, _ in shapes) <= 16


def test_prdc_rejects_k_not_below_set_size():
    with pytest.raises(ValueError, match="k=5"):
        prdc(np.zeros((5, 2)), np.ones((10, 2)), k=5)


# ---------------------------------------------------------------- mode counts


def at_centres(name: str, per_mode: int) -> np.ndarray:
    return np.repeat(MIXTURES[name].centres, per_mode, axis=0)


@pytest.mark.parametrize("name,k", [("ring-8", 8), ("grid-25", 25)])
def test_samples_at_every_centre_capture_all_modes(name, k):
    got = count_modes_2d(at_centres(name, 4), name)
    assert got["modes"] == k and got["modes_strict"] == k and got["n_modes"] == k
    assert got["high_quality"] == 1.0
    assert got["kl"] == pytest.approx(0.0, abs=1e-12)


def test_samples_at_one_centre_capture_one_mode():
    got = count_modes_2d(np.tile(MIXTURES["ring-8"].centres[3], (50, 1)), "ring-8")
    assert got["modes"] == 1 and got["high_quality"] == 1.0
    assert got["kl"] == pytest.approx(math.log(8), rel=1e-12)


def test_samples_far_away_capture_nothing():
    got = count_modes_2d(torch.full((30, 2), 50.0), MIXTURES["ring-8"])
    assert got["modes"] == 0 and got["modes_strict"] == 0
    assert got["high_quality"] == 0.0 and got["kl"] == math.inf


def test_high_quality_threshold_is_three_std_euclidean():
    ring = MIXTURES["ring-8"]
    c, s = ring.centres[0], ring.std  # centre (2, 0)
    assert count_modes_2d([c + [2.9 * s, 0.0]], "ring-8")["high_quality"] == 1.0
    assert count_modes_2d([c + [0.0, -2.9 * s]], "ring-8")["high_quality"] == 1.0
    assert count_modes_2d([c + [3.1 * s, 0.0]], "ring-8")["high_quality"] == 0.0
    # within 3 std per axis but 3.54 std away: the test is a distance, not a box
    assert count_modes_2d([c + [2.5 * s, 2.5 * s]], "ring-8")["high_quality"] == 0.0


def test_high_quality_share_of_true_samples_is_the_rayleigh_probability():
    grid = MIXTURES["grid-25"]
    got = count_modes_2d(grid.sample(20000, torch.Generator().manual_seed(1)), grid)
    # P(|N(0, s^2 I_2)| <= 3 s) = 1 - exp(-9/2) = 0.98889; sd of the share ~0.0007, and a
    # per-axis box would give 0.9973^2 = 0.9946
    assert got["high_quality"] == pytest.approx(1 - math.exp(-4.5), abs=0.003)
    assert got["modes"] == 25 and got["modes_strict"] == 25
    assert got["kl"] < 0.01


def test_strict_count_drops_modes_with_a_few_stray_samples():
    centres = MIXTURES["ring-8"].centres
    counts = [114] * 7 + [2]
    samples = np.repeat(centres, counts, axis=0)  # 800 samples: 100 expected per mode
    got = count_modes_2d(samples, "ring-8")
    assert got["strict_min_count"] == 10
    assert got["modes"] == 8 and got["modes_strict"] == 7
    p = np.array(counts) / 800
    assert got["kl"] == pytest.approx(float(np.sum(p * np.log(8 * p))), rel=1e-12)
    assert count_modes_2d(samples, "ring-8", strict_share=0.01)["modes_strict"] == 8


def test_kl_counts_only_high_quality_samples():
    centres = MIXTURES["ring-8"].centres
    samples = np.concatenate([np.repeat(centres[:2], 5, axis=0), np.full((10, 2), 9.0)])
    got = count_modes_2d(samples, "ring-8")
    assert got["high_quality"] == 0.5 and got["modes"] == 2
    assert got["kl"] == pytest.approx(math.log(4), rel=1e-12)  # uniform over 2 of 8 modes


def test_stacked_mnist_all_combinations():
    ids = np.array(list(itertools.product(range(10), repeat=3)) * 2)
    got = count_modes_stacked(ids)
    assert got == {"modes": 1000, "kl": pytest.approx(0.0, abs=1e-12), "n_modes": 1000}


def test_stacked_mnist_one_combination():
    got = count_modes_stacked(torch.tensor([[3, 1, 4]] * 20))
    assert got["modes"] == 1 and got["kl"] == pytest.approx(math.log(1000), rel=1e-12)


def test_stacked_mnist_uses_ordered_digit_triples():
    got = count_modes_stacked(np.array([[1, 2, 3], [3, 2, 1], [1, 2, 3], [1, 2, 3]]))
    assert got["modes"] == 2
    expected = 0.75 * math.log(750) + 0.25 * math.log(250)
    assert got["kl"] == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="0..9"):
        count_modes_stacked(np.array([[1, 2, 10]]))


# ---------------------------------------------------------------- registry


def test_registry_lists_every_metric():
    assert set(METRICS.names()) == {
        "fid", "kid", "is", "precision", "recall", "density", "coverage", "modes", "classes"
    }
    assert METRICS.get("fid") is fid and METRICS.get("is") is inception_score
    assert METRICS.get("modes") is count_modes_2d
    assert all(METRICS.doc(name) for name in METRICS.names())


def test_unknown_metric_is_a_one_line_user_error():
    with pytest.raises(GanforgeError) as err:
        METRICS.get("fidd")
    msg = str(err.value)
    assert "\n" not in msg and "fidd" in msg
    assert all(name in msg for name in METRICS.names())


def test_mixture2d_validates_its_definition():
    with pytest.raises(ValueError):
        Mixture2D("bad", np.zeros((3, 3)), 0.1)
    with pytest.raises(ValueError):
        Mixture2D("bad", np.zeros((3, 2)), 0.0)
    ok = Mixture2D("ok", [[0.0, 1.0]], 1)
    assert ok.centres.dtype == np.float64 and isinstance(ok.std, float) and ok.n_modes == 1
