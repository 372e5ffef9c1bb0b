"""``summary.md``: every finding in a sentence, with its unit of replication, the range of x
it covers and its interval.

Wording rules (``docs/decisions.md``, "Statistics"): an effect whose interval contains 0 is
"no detectable effect"; a trend is stated over the range actually covered ("over 3.4x of
parameters"), and per decade only with that range; a law on fewer than 3 distinct x is
not reported as a law; a brain-score trend opposite to the validation-loss trend is stated;
an interval over parcels of a single seed is said to describe where, not how sure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cortexscale.labels import POOLED
from cortexscale.scaling.stats import NO_EFFECT, t_half_width, verdict

__all__ = ["summary_markdown"]

AXIS_NAMES = {"data_size": "pretraining data (frames)", "n_params": "parameters",
              "train_flops": "training compute (FLOPs)"}


def _g(v: float) -> str:
    return f"{v:.3g}"


def _ci(row, name: str, fmt: str = "+.3f") -> str:
    lo, hi = row[f"{name}_lo"], row[f"{name}_hi"]
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "no interval"
    return f"95% CI {lo:{fmt}} to {hi:{fmt}}"


def _overview(table: pd.DataFrame, lines: list[str]) -> None:
    arm = table[table["family"] == "videogpt"]
    cond_cols = [c for c in ("family", "data_size", "hidden", "layers", "heads", "precision",
                             "budget", "tokens") if c in table.columns]
    n_cond = arm[cond_cols].drop_duplicates().shape[0]
    n_seeds = arm["seed"].nunique() if len(arm) else 0
    lines.append(
        f"VideoGPT arm: {arm['grid'].nunique()} runs = {n_cond} model/data/precision "
        f"conditions x {n_seeds} seed(s); {table['subject'].nunique()} subject(s), "
        f"{table['roi'].nunique()} ROI(s)."
    )
    if len(arm):
        # a condition is a run without its replicate: the grid name less its `_s{seed}`
        by_cond = arm.groupby(arm["grid"].str.replace(r"_s\d+$", "", regex=True))["mean_r"]
        by_cond = by_cond.mean()
        lines.append(
            f"Mean held-out r over all VideoGPT rows {arm['mean_r'].mean():.3f} (normalised "
            f"score {arm['mean_normalised'].mean():.1f}% of the noise ceiling); best "
            f"condition {by_cond.idxmax()} (any seed) with mean r {by_cond.max():.3f} (mean "
            f"over its seeds, subjects and ROIs)."
        )
    if "ceiling_r" in table.columns and np.isfinite(table["ceiling_r"]).any():
        lines.append(f"Noise ceiling of r (mean over ROIs and subjects): "
                     f"{table['ceiling_r'].mean():.3f}.")
    lines.append(
        "Unit of replication for claims that one model beats another: "
        + (f"{n_seeds} seeds (replicate runs); intervals resample seeds and, within them, "
           "parcels." if n_seeds > 1 else
           "a single seed: every interval below resamples parcels only and describes where "
           "in the brain an effect lies, not how sure it is to survive a reseed.")
    )


def _trend(change: float, target: str) -> str:
    good = change > 0 if target == "score" else change < 0
    return "better" if good else "worse"


def _scaling(fits: pd.DataFrame, lines: list[str]) -> None:
    lines += ["", "## Scaling (pooled over subjects and ROIs, log-linear in log10 x)", ""]
    if fits.empty:
        lines.append("- The grid varies no axis along which a law can be fitted.")
        return
    pooled = fits[(fits["subject"] == POOLED) & (fits["roi"] == POOLED)
                  & (fits["law"] == "loglinear")]
    for family in pooled["family"].unique():
        for axis, name in AXIS_NAMES.items():
            part = pooled[(pooled["family"] == family) & (pooled["axis"] == axis)]
            score = part[part["target"] == "score"]
            if score.empty:
                continue
            series_cols = [c for c in ("hidden", "layers", "heads", "data_size", "precision",
                                       "budget") if c in score.columns]
            for _, row in score.iterrows():
                label = ", ".join(f"{c} {row[c]:g}" if isinstance(row[c], int | float)
                                  and not pd.isna(row[c]) else f"{c} {row[c]}"
                                  for c in series_cols if not pd.isna(row[c]))
                head = f"- {family}, {name} ({label})"
                if row["status"] != "ok":
                    lines.append(f"{head}: no law fitted: {row['status']}.")
                    continue
                verdict_s = verdict(row["change_over_range_lo"], row["change_over_range_hi"])
                effect = NO_EFFECT if verdict_s == NO_EFFECT else "a detectable change"
                lines.append(
                    f"{head}: over {row['fold_range']:.3g}x of {name} ({_g(row['x_min'])} to "
                    f"{_g(row['x_max'])}, {int(row['n_x'])} values) the fitted mean r changes "
                    f"by {row['change_over_range']:+.3f} ({_ci(row, 'change_over_range')}; "
                    f"resampled: {row['ci_unit']}), i.e. {row['gain_per_decade']:+.3f} per "
                    f"decade within that range only; R^2 {row['r2']:.2f}: {effect}."
                )
                loss = part[(part["target"] == "val_loss") & (part["status"] == "ok")]
                for c in series_cols:
                    if c in loss.columns and not pd.isna(row[c]):
                        loss = loss[loss[c] == row[c]]
                if len(loss):
                    lrow = loss.iloc[0]
                    s_dir = _trend(row["change_over_range"], "score")
                    l_dir = _trend(lrow["change_over_range"], "val_loss")
                    l_det = verdict(lrow["change_over_range_lo"], lrow["change_over_range_hi"])
                    # the score's sign alone says little when its own interval includes 0
                    only = (f" in its point estimate only ({NO_EFFECT})"
                            if effect == NO_EFFECT else "")
                    if s_dir != l_dir:
                        lines.append(
                            f"  - Opposite trends: along {name} the validation loss gets "
                            f"{l_dir} (change {lrow['change_over_range']:+.4f}, "
                            f"{_ci(lrow, 'change_over_range', '+.4f')}"
                            f"{'; ' + NO_EFFECT if l_det == NO_EFFECT else ''}) while the "
                            f"brain score gets {s_dir}{only}."
                        )
    sat = fits[(fits["law"] == "saturating") & (fits["status"] == "ok")]
    if len(sat):
        at = sat[sat["at_bound"].fillna("").astype(str) != ""]
        lines.append(
            f"- Saturating fits (r = r_inf - c x^-alpha, r_inf <= 1): {len(sat)}; {len(at)} "
            "end with a parameter at a bound (column at_bound), which makes them bounds, not "
            "estimates."
        )


def _allocation_sentence(alloc: pd.DataFrame, family: str, target: str) -> str:
    part = alloc[(alloc["family"] == family) & (alloc["target"] == target)]
    per = part[part["method"] == "isoflop_parabola"]
    what = "brain score" if target == "score" else "validation loss"
    ok = per[per["status"] == "ok"]
    if ok.empty:
        reasons = "; ".join(dict.fromkeys(per["status"].astype(str))) or "no IsoFLOP rows"
        return (f"- By {what}: the best model for a budget cannot be said: {reasons}.")
    r = ok.sort_values("budget").iloc[-1]
    out = (f"- By {what}: for C = {r['budget']:.3g} FLOPs, the best model has N = "
           f"{r['n_opt']:.3g} parameters (95% CI {r['n_opt_lo']:.3g} to {r['n_opt_hi']:.3g}; "
           f"resampled: {r['ci_unit']}) trained on D = {r['d_opt']:.3g} tokens (95% CI "
           f"{r['d_opt_lo']:.3g} to {r['d_opt_hi']:.3g}); sampled N {r['n_min']:.3g} to "
           f"{r['n_max']:.3g}. {len(ok)} of {len(per)} budget(s) have an interior optimum")
    edge = per[per["status"] != "ok"]
    if len(edge):
        out += (" (others: " + "; ".join(f"C = {b:.3g}: {s}" for b, s in
                                         zip(edge["budget"], edge["status"], strict=True)) + ")")
    return out + "."


def _law_sentence(alloc: pd.DataFrame, family: str, target: str) -> str:
    part = alloc[(alloc["family"] == family) & (alloc["target"] == target)]
    law = part[part["method"] == "isoflop_power_law"]
    if law.empty:
        return ""
    r = law.iloc[0]
    if r["status"] != "ok":
        return f"  - N*(C), D*(C) power laws: {r['status']}."
    return (f"  - Over {r['budget_max'] / r['budget_min']:.3g}x of compute ({r['budget_min']:.3g}"
            f" to {r['budget_max']:.3g} FLOPs, {int(r['n_budgets'])} budgets): N* ~ C^"
            f"{r['exponent_n']:.2f} ({_ci(r, 'exponent_n', '.2f')}), D* ~ C^"
            f"{r['exponent_d']:.2f} ({_ci(r, 'exponent_d', '.2f')}).")


def _parametric_sentence(alloc: pd.DataFrame, family: str, target: str) -> str:
    part = alloc[(alloc["family"] == family) & (alloc["target"] == target)
                 & (alloc["method"] == "parametric")]
    if part.empty:
        return ""
    r = part.iloc[0]
    if r["status"] != "ok":
        return f"  - Parametric L(N, D) fit (approach 3): {r['status']}."
    bound = f"; at a bound: {r['at_bound']}" if str(r["at_bound"]) not in ("", "nan") else ""
    return (f"  - Parametric fit (approach 3, {r['transform']}): E = {r['E']:.3g}, alpha = "
            f"{r['alpha']:.2f} ({_ci(r, 'alpha', '.2f')}), beta = {r['beta']:.2f} "
            f"({_ci(r, 'beta', '.2f')}){bound}; implied N* ~ C^{r['exponent_n']:.2f} "
            f"({_ci(r, 'exponent_n', '.2f')}), D* ~ C^{r['exponent_d']:.2f}.")


def _overlap(a: pd.Series, b: pd.Series, name: str) -> bool | None:
    lo = [a[f"{name}_lo"], b[f"{name}_lo"]]
    hi = [a[f"{name}_hi"], b[f"{name}_hi"]]
    if not np.all(np.isfinite(lo + hi)):
        return None
    return max(lo) <= min(hi)


def _agreement(alloc: pd.DataFrame, family: str) -> str:
    law = alloc[(alloc["family"] == family) & (alloc["method"] == "isoflop_power_law")
                & (alloc["status"] == "ok")].set_index("target")
    if {"score", "val_loss"} <= set(law.index):
        ov = _overlap(law.loc["score"], law.loc["val_loss"], "exponent_n")
        if ov is False:
            return (f"- Finding: loss and brain score disagree on the allocation: N* ~ C^"
                    f"{law.loc['val_loss', 'exponent_n']:.2f} by loss but C^"
                    f"{law.loc['score', 'exponent_n']:.2f} by score (intervals do not overlap).")
        if ov:
            return "- Loss and brain score agree on the N*(C) exponent within their intervals."
    per = alloc[(alloc["family"] == family) & (alloc["method"] == "isoflop_parabola")
                & (alloc["status"] == "ok")]
    out = []
    for budget, g in per.groupby("budget"):
        g = g.set_index("target")
        if {"score", "val_loss"} <= set(g.index):
            ov = _overlap(g.loc["score"], g.loc["val_loss"], "n_opt")
            if ov is False:
                out.append(f"C = {budget:.3g}: N* {g.loc['val_loss', 'n_opt']:.3g} by loss vs "
                           f"{g.loc['score', 'n_opt']:.3g} by score")
    if out:
        return ("- Finding: loss and brain score pick different model sizes (intervals do not "
                "overlap): " + "; ".join(out) + ".")
    return ""


def _allocation(alloc: pd.DataFrame, lines: list[str]) -> None:
    lines += ["", "## Compute-optimal allocation", ""]
    if alloc.empty:
        lines.append("- No family with a parameter count and a compute budget: nothing to "
                     "allocate.")
        return
    for family in alloc["family"].unique():
        lines.append(f"### {family}")
        lines.append("")
        for target in ("score", "val_loss"):
            if not ((alloc["family"] == family) & (alloc["target"] == target)).any():
                continue
            for s in (_allocation_sentence(alloc, family, target),
                      _law_sentence(alloc, family, target),
                      _parametric_sentence(alloc, family, target)):
                if s:
                    lines.append(s)
        agree = _agreement(alloc, family)
        if agree:
            lines.append(agree)
        lines.append("")


PLANTED_KEYS = {"exponent_n": "N*(C) exponent a", "exponent_d": "D*(C) exponent b",
                "alpha": "alpha", "beta": "beta"}


def _planted(alloc: pd.DataFrame, planted: dict | None, lines: list[str]) -> None:
    if planted is None and not (alloc["family"] == "planted").any():
        return
    lines += ["## Planted reference: recovered vs planted", ""]
    if planted is None:
        lines.append("- The reference summaries carry no planted truth (key `planted`).")
        return
    part = alloc[alloc["family"] == "planted"]
    for key, name in PLANTED_KEYS.items():
        if key not in planted:
            continue
        truth = float(planted[key])
        for method in ("isoflop_power_law", "parametric"):
            rows = part[(part["method"] == method) & (part["status"] == "ok")]
            for r in rows.itertuples():
                est, lo, hi = (getattr(r, key), getattr(r, f"{key}_lo", np.nan),
                               getattr(r, f"{key}_hi", np.nan))
                if not np.isfinite(est):
                    continue
                # equal to rounding (a noise-free target gives a zero-width interval)
                tol = 1e-9 * max(1.0, abs(truth))
                inside = (np.isfinite(lo) and np.isfinite(hi)
                          and lo - tol <= truth <= hi + tol)
                flat = (" (zero-width: this target carries no noise, so any difference is "
                        "the method's own bias)" if np.isfinite(lo) and hi - lo <= tol else "")
                lines.append(
                    f"- {name} ({method}, {r.target}): planted {truth:.3g}, recovered "
                    f"{est:.3g} (95% CI {lo:.3g} to {hi:.3g}{flat}): "
                    f"{'inside' if inside else 'outside'} the interval."
                )
    lines.append("")


def _references(table: pd.DataFrame, lines: list[str]) -> None:
    refs = table[table["family"].isin(["latents", "random"])]
    if refs.empty:
        return
    lines += ["## Reference rows (synthetic world)", ""]
    arm = table[table["family"] == "videogpt"]
    best = arm.groupby("grid")["mean_r"].mean().max() if len(arm) else np.nan
    for family, g in refs.groupby("family"):
        per_seed = g.groupby("seed")["mean_r"].mean()
        what = "the best any model can do" if family == "latents" else "chance"
        lines.append(
            f"- {family} ({what}): mean r {per_seed.mean():.3f} over {per_seed.size} seed(s) "
            f"(best VideoGPT run {best:.3f})."
        )
    lines.append("")


def _factors(comparisons: pd.DataFrame, lines: list[str]) -> None:
    lines += ["## Factors (paired tests on run pairs, FDR-corrected)", ""]
    if comparisons.empty:
        lines.append("- The grid varies no factor at fixed context.")
    for _, row in comparisons.iterrows():
        at = "" if row["at_precision"] == "any" else f" at {row['at_precision']}"
        q = f", q = {row['q']:.2g}" if np.isfinite(row["q"]) else ""
        lines.append(
            f"- {row['factor']} {row['value_b']} vs {row['value_a']}{at}: mean r "
            f"{row['mean_b']:.3f} vs {row['mean_a']:.3f}, difference {row['mean_diff']:+.4f} "
            f"(95% CI {row['diff_lo']:+.4f} to {row['diff_hi']:+.4f}; {row['n_pairs']} run "
            f"pair(s), resampled: {row['ci_unit']}{q}): {row['verdict']}."
        )
    lines.append("")


def _pretrained(pre: pd.DataFrame | None, sample: pd.DataFrame | None,
                pre_fits: pd.DataFrame | None, lines: list[str]) -> None:
    if pre is None:
        return
    lines += ["## Pretrained-model arm", ""]
    scored = pre.dropna(subset=["mean_r"])
    n_sub = scored["subject"].nunique()
    for (model, kind), g in scored.groupby(["model", "kind"], sort=True):
        per_sub = g.groupby("subject")["mean_r"].mean()
        half = t_half_width(per_sub.to_numpy(float))
        ci = (f"+- {half:.3f} (95%, over {per_sub.size} subjects)" if np.isfinite(half)
              else "(1 subject: no interval)")
        n = g["n_params"].iloc[0]
        lines.append(f"- {model} ({kind}{', ' + _g(n) + ' parameters' if pd.notna(n) else ''})"
                     f": mean r {per_sub.mean():.3f} {ci}.")
    if pre_fits is not None and len(pre_fits):
        pooled = pre_fits[(pre_fits["roi"] == POOLED) & (pre_fits["axis"] == "n_params")]
        for _, r in pooled.iterrows():
            if r["n_points"] < 3:
                lines.append(f"- Parameters, family {r['series']}: {int(r['n_points'])} model "
                             "size(s): too few x values for a law.")
            else:
                lines.append(f"- Parameters, family {r['series']}: slope {r['b']:+.3f} per "
                             f"decade over {int(r['n_points'])} model sizes (no interval: "
                             "one run per model).")
    if sample is not None and len(sample):
        lines.append(f"- fMRI sample size (unit of replication: {n_sub} subject(s)):")
        for model, g in sample.groupby("model", sort=True):
            n_lo, n_hi = g["n_train"].min(), g["n_train"].max()
            per = g.groupby(["subject", "n_train"])["mean_r"].mean().unstack()
            if n_hi <= n_lo or per.shape[1] < 2:
                lines.append(f"  - {model}: a single training-set size.")
                continue
            change = per[n_hi] - per[n_lo]
            if change.size > 1:
                half = t_half_width(change.to_numpy(float))
                lo, hi = change.mean() - half, change.mean() + half
                trend = (NO_EFFECT if lo <= 0 <= hi
                         else "a detectable increase" if lo > 0 else "a detectable decrease")
                tail = f"95% CI {lo:+.3f} to {hi:+.3f}, t over subjects: {trend}"
            else:
                tail = "1 subject: no interval"
            lines.append(
                f"  - {model}: from {int(n_lo)} to {int(n_hi)} training samples "
                f"({n_hi / n_lo:.3g}x, {per.shape[1]} sizes) mean r changes by "
                f"{change.mean():+.3f} ({tail})."
            )
    lines.append("")


def summary_markdown(
    table: pd.DataFrame, fits: pd.DataFrame, frontier: pd.DataFrame,
    allocation: pd.DataFrame, comparisons: pd.DataFrame, study: str = "study",
    pretrained: pd.DataFrame | None = None, pretrained_sample_size: pd.DataFrame | None = None,
    pretrained_fits: pd.DataFrame | None = None, planted: dict | None = None,
) -> str:
    """Each finding of the study in a sentence with its numbers (see the module docstring).

    Parameters
    ----------
    table, fits, frontier, allocation, comparisons : DataFrame
        ``encoding.tsv`` and the analysis tables.
    study : str
        The title.
    pretrained, pretrained_sample_size, pretrained_fits : DataFrame, optional
        The pretrained-model arm's tables, when the study has one.
    planted : dict, optional
        The planted law's truth (the reference summary's ``planted`` dict).
    """
    lines = [f"# Findings of {study}", ""]
    _overview(table, lines)
    _scaling(fits, lines)
    lines += ["", "## Compute frontier", ""]
    front = frontier[(frontier["roi"] == POOLED) & frontier["on_front"]
                     & (frontier["family"] == "videogpt")]
    n_all = int(((frontier["roi"] == POOLED) & (frontier["family"] == "videogpt")).sum())
    lines.append(f"- {len(front)} of {n_all} VideoGPT conditions are on the compute frontier "
                 "(score = mean over seeds and subjects).")
    _allocation(allocation, lines)
    _planted(allocation, planted, lines)
    _references(table, lines)
    _factors(comparisons, lines)
    _pretrained(pretrained, pretrained_sample_size, pretrained_fits, lines)
    return "\n".join(lines).rstrip() + "\n"
