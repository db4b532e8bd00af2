"""The study's statistics, pure functions of numbers: intervals over seeds, the paired test of one
method against another, the held-out-loss gate, and whether fine-tuning is stable enough to report.

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


def t975(df: int) -> float:
    """The 97.5 % quantile of Student's t with `df` degrees of freedom."""
    if df < 1:
        raise ValueError(f"need df >= 1, got {df}")
    if df <= len(T975):
        return T975[df - 1]
    z = Z975
    return (z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * df ** 3))


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
    return out


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


def steps_to_reach(steps: list[int], ratios: list[float], target: float) -> float | None:
    """Pretraining steps at which the least-squares line of the held-out ratio against ln(steps)
    reaches `target`: a rough extrapolation of the budget the gate needs (a curve bending either
    way moves it by orders of magnitude). None with fewer than 2 points or a line that does not fall."""
    if len(steps) < 2:
        return None
    slope, intercept = np.polyfit(np.log(np.asarray(steps, float)), np.asarray(ratios, float), 1)
    if slope >= 0:
        return None
    return float(math.exp((target - intercept) / slope))


def stable(std: float, n: int, threshold: float) -> bool:
    """Whether a fine-tuned top-1 is reported: at least 2 seeds and a std over them below `threshold`."""
    return n > 1 and std < threshold


def noise_words(p: dict, a: str, b: str) -> str:
    """The paired test in one sentence."""
    if p["n"] < 2:
        return f"`{a}` vs `{b}`: {p['n']} seed, no interval: cannot tell."
    lo, hi = p["t_ci95"]
    verdict = ("inside the noise: the 95 % interval contains 0" if p["inside_noise"] else
               f"outside the noise: `{a}` is {'better' if p['mean'] > 0 else 'worse'}")
    return (f"`{a}` - `{b}`: {p['mean']:+.3f} top-1 (95 % t interval [{lo:+.3f}, {hi:+.3f}] over "
            f"{p['n']} seeds; `{a}` wins on {p['wins']} of {p['n']}): {verdict}.")
