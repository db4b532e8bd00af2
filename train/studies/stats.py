"""The study's statistics, pure functions of numbers: intervals over seeds, the paired test of one
method against another (its p-value Holm-adjusted over the contrasts of a readout, its interval
at the level of its Holm step) and its verdict, the minimum detectable difference of a readout, a hierarchical bootstrap over seeds and
videos, the held-out-loss gate, and whether fine-tuning is stable enough to report.

Two kinds of noise, reported apart (docs/results.md):
- over **val videos**: one probe's top-1 is a mean of ~1000 0/1 outcomes; its 95 % bootstrap
  interval (`train/eval/probe.py`) says how much another draw of val videos could move it;
- over **pretraining seeds**: the same method with another seed gives another encoder; the 95 %
  t interval of the mean over seeds says how much another set of seeds could move the row.
A difference between two methods is tested **paired** over seeds (the same seed gives both
methods the same clips, crops and initial weights), which removes what the seeds share.
"""
from __future__ import annotations

import math

import numpy as np

# Student's t, 97.5 % quantile (two-sided 95 %), df 1..30; above 30 the Cornish-Fisher series
# below is within 1e-4. A table rather than scipy, which the project does not depend on.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
Z975 = 1.959964
# the 80 % quantile (the power term of a minimum detectable difference at 80 % power), df 1..30
T80 = (1.376, 1.061, 0.978, 0.941, 0.920, 0.906, 0.896, 0.889, 0.883, 0.879,
       0.876, 0.873, 0.870, 0.868, 0.866, 0.865, 0.863, 0.862, 0.861, 0.860,
       0.859, 0.858, 0.858, 0.857, 0.856, 0.856, 0.855, 0.855, 0.854, 0.854)
Z80 = 0.841621


def _t_quantile(table: tuple[float, ...], z: float, df: int) -> float:
    if df < 1:
        raise ValueError(f"need df >= 1, got {df}")
    if df <= len(table):
        return table[df - 1]
    return (z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * df ** 3))


def t975(df: int) -> float:
    """The 97.5 % quantile of Student's t with `df` degrees of freedom."""
    return _t_quantile(T975, Z975, df)


def t80(df: int) -> float:
    """The 80 % quantile of Student's t with `df` degrees of freedom."""
    return _t_quantile(T80, Z80, df)


def mdd(sd: float, n: int) -> float | None:
    """The minimum detectable difference of a paired t test over `n` seeds whose per-seed
    differences have standard deviation `sd`: two-sided 5 %, 80 % power,
    (t_0.975 + t_0.80)(n - 1) sd / sqrt(n). None below 2 seeds."""
    if n < 2:
        return None
    return (t975(n - 1) + t80(n - 1)) * sd / math.sqrt(n)


def readout_mdd(per_method: list[list[float]]) -> float | None:
    """A readout's minimum detectable difference between two methods from its seed spread: the
    standard deviation over seeds pooled over methods (`per_method`: each method's values, one per
    seed), times sqrt 2 for the difference of two methods (paired seeds share their clips and
    initial weights, so the paired spread is at most this where the two correlate positively)."""
    rows = [np.asarray(v, np.float64) for v in per_method if len(v) > 1]
    if not rows:
        return None
    dof = sum(len(v) - 1 for v in rows)
    pooled = math.sqrt(sum(((v - v.mean()) ** 2).sum() for v in rows) / dof)
    return mdd(math.sqrt(2) * pooled, min(len(v) for v in rows))


def hierarchical_bootstrap(values: dict, resamples: int = 2000, seed: int = 0) -> list[float]:
    """95 % percentile interval of a mean over seeds of means over videos, resampling both: seeds with
    replacement, then the videos within each drawn seed (`values`: seed -> per-video values). Two
    levels of noise in one interval: another set of seeds, and another draw of val videos."""
    rows = [np.asarray(v, np.float64) for v in values.values()]
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for r in range(resamples):
        picked = rng.integers(0, len(rows), len(rows))
        means[r] = np.mean([rows[i][rng.integers(0, len(rows[i]), len(rows[i]))].mean() for i in picked])
    return [float(x) for x in np.quantile(means, [0.025, 0.975])]


def mean_std(values: list[float]) -> dict:
    """Mean, sample standard deviation (ddof 1; 0 for a single value) and the 95 % t interval of
    the mean (None for a single value) over seeds."""
    a = np.asarray(values, dtype=np.float64)
    n = len(a)
    std = float(a.std(ddof=1)) if n > 1 else 0.0
    half = t975(n - 1) * std / math.sqrt(n) if n > 1 else None
    mean = float(a.mean())
    return {"mean": mean, "std": std, "n": n, "values": [float(v) for v in a],
            "ci95": None if half is None else [mean - half, mean + half]}


def bootstrap_mean(values: np.ndarray, resamples: int = 10000, seed: int = 0) -> list[float]:
    """A 95 % percentile bootstrap interval of the mean of `values` (fixed resampling seed)."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(1)
    return [float(x) for x in np.quantile(means, [0.025, 0.975])]


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with `df` degrees of freedom, in closed form for integer df
    (Abramowitz & Stegun 26.7.3-4: a finite series in theta = atan(t / sqrt(df)))."""
    if df < 1:
        raise ValueError(f"need df >= 1, got {df}")
    theta = math.atan(abs(t) / math.sqrt(df))
    c, s = math.cos(theta), math.sin(theta)
    if df % 2:
        term, series = c, 0.0
        for k in range(1, (df - 1) // 2 + 1):  # cos + 2/3 cos^3 + (2 4)/(3 5) cos^5 + ..., up to cos^(df-2)
            series += term
            term *= c * c * (2 * k) / (2 * k + 1)
        inside = 2 / math.pi * (theta + s * series)
    else:
        term, series = 1.0, 0.0
        for k in range(1, df // 2 + 1):        # 1 + 1/2 cos^2 + (1 3)/(2 4) cos^4 + ..., up to cos^(df-2)
            series += term
            term *= c * c * (2 * k - 1) / (2 * k)
        inside = s * series
    return min(1.0, max(0.0, 1.0 - inside))


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values, in their order: the i-th smallest is
    multiplied by (m - i + 1), capped at 1, and made no smaller than the one before it. A test
    whose adjusted p is <= 0.05 keeps the family's chance of any false positive <= 5 %."""
    m = len(pvalues)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda k: pvalues[k])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def holm_levels(pvalues: list[float], alpha: float = 0.05) -> list[float]:
    """The significance level of the step at which Holm's procedure tests each p-value, in their
    order: the i-th smallest (0-based) is tested at alpha / (m - i) while every smaller one was
    rejected; from the first that is not, all the rest at that step's level. An interval at 1 - its
    level excludes 0 exactly where Holm rejects (`holm_interval`)."""
    m = len(pvalues)
    levels = [0.0] * m
    stopped = None
    for rank, i in enumerate(sorted(range(m), key=lambda k: pvalues[k])):
        level = alpha / (m - rank) if stopped is None else stopped
        if stopped is None and pvalues[i] > level:
            stopped = level
        levels[i] = level
    return levels


def t_quantile_two_sided(level: float, df: int) -> float:
    """t with P(|T| >= t) = `level` for Student's t with `df` degrees of freedom (bisection on
    `t_two_sided_p`, to 1e-9)."""
    lo, hi = 0.0, 1.0
    while t_two_sided_p(hi, df) > level:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_two_sided_p(mid, df) > level else (lo, mid)
        if hi - lo < 1e-9:
            break
    return (lo + hi) / 2


def holm_interval(p: dict, level: float) -> list[float] | None:
    """A `paired` result's t interval at 1 - `level` (its Holm step's level: `holm_levels`); None
    without one (fewer than 2 seeds, or no spread)."""
    if p["n"] < 2 or not p["se"]:
        return None
    half = t_quantile_two_sided(level, p["n"] - 1) * p["se"]
    return [p["mean"] - half, p["mean"] + half]


def paired_p(p: dict) -> float | None:
    """The two-sided p-value of a `paired` result's t test (mean difference / its standard error,
    df n - 1); None with fewer than 2 seeds."""
    if p["n"] < 2 or p["se"] is None:
        return None
    if p["se"] == 0:
        return 1.0 if p["mean"] == 0 else 0.0
    return t_two_sided_p(p["mean"] / p["se"], p["n"] - 1)


def holm_family(comparisons: list[dict], step: int, pools: list[str], levels: bool = False
                ) -> dict[tuple[int, str], float]:
    """Holm-adjusted p of every paired test the report states a verdict on: each comparison at
    `step` in each pool ((index into comparisons, pool) -> adjusted p; tests without a p left out).
    `levels`: the level of each test's Holm step instead (`holm_levels`)."""
    family = [(i, how, paired_p(x[how])) for i, x in enumerate(comparisons) if x["step"] == step for how in pools]
    family = [(i, how, p) for i, how, p in family if p is not None]
    adjust = holm_levels if levels else holm
    return {(i, how): q for (i, how, _), q in zip(family, adjust([p for *_, p in family]))}


def paired(a: dict, b: dict) -> dict:
    """Paired comparison of method a against method b over the seeds both have (seed -> top-1).

    Returns the per-seed differences a - b, their mean, the 95 % t interval and a 95 %
    bootstrap interval over seeds of the mean difference, the seeds where a wins / ties / loses,
    and `inside_noise`: True when the t interval contains 0 (None with fewer than 2 seeds: no
    interval). With 5 seeds the bootstrap interval is rough (5^5 resamples at most, and it
    is too narrow for small n); the t interval is the one the verdict reads."""
    seeds = sorted(set(a) & set(b), key=int)
    diffs = np.array([a[s] - b[s] for s in seeds], dtype=np.float64)
    n = len(diffs)
    out = {"seeds": [int(s) for s in seeds], "diff": [float(d) for d in diffs], "n": n,
           "mean": float(diffs.mean()) if n else math.nan,
           "wins": int((diffs > 0).sum()), "ties": int((diffs == 0).sum()), "losses": int((diffs < 0).sum()),
           "t_ci95": None, "boot_ci95": None, "se": None, "inside_noise": None}
    if n > 1:
        se = float(diffs.std(ddof=1)) / math.sqrt(n)
        half = t975(n - 1) * se
        out.update(se=se, t_ci95=[out["mean"] - half, out["mean"] + half], boot_ci95=bootstrap_mean(diffs),
                   inside_noise=bool(out["mean"] - half <= 0 <= out["mean"] + half))
        out["p"] = paired_p(out)
    return out


def verdict(p: dict, p_holm: float | None) -> str:
    """A contrast's plain verdict: "helps" / "hurts" where its Holm-adjusted p is <= 0.05 (by the
    sign of a - b), else "inside the noise". "cannot tell" without an interval, and where every seed
    differs by the same nonzero amount: no spread, no t test (a top-1 over a few val videos moves in
    steps of one video, so two seeds can tie on their difference)."""
    if p["n"] < 2 or p_holm is None or (p["se"] == 0 and p["mean"] != 0):
        return "cannot tell"
    if p_holm > 0.05:
        return "inside the noise"
    return "helps" if p["mean"] > 0 else "hurts"


def unpaired_se(a: list[float], b: list[float]) -> dict:
    """mean(a) - mean(b) in standard errors of that difference (Welch): how far a method's probe
    sits above random init. `z` is None where both spreads are 0 (one seed each)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = float(a.mean() - b.mean())
    var = (a.var(ddof=1) / len(a) if len(a) > 1 else 0.0) + (b.var(ddof=1) / len(b) if len(b) > 1 else 0.0)
    se = math.sqrt(var)
    return {"diff": diff, "se": se, "z": diff / se if se > 0 else None}


def gate(ratios: list[float], threshold: float = 0.8) -> dict:
    """Held-out loss / predict-0 of the last checkpoint of every seed against `threshold`: PASS
    when every seed's ratio is at or below it (a mean could hide a seed that learned nothing)."""
    worst = max(ratios)
    return {"threshold": threshold, "worst": float(worst), "mean": float(np.mean(ratios)),
            "verdict": "PASS" if worst <= threshold else "FAIL"}


def stable(std: float, n: int, threshold: float) -> bool:
    """Whether a fine-tuned top-1 is reported: at least 2 seeds and a std over them below `threshold`."""
    return n > 1 and std < threshold
