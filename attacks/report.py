"""Human reports of an audit: ``audit.md`` and a self-contained ``audit.html``, plus the sweep plot.

The HTML embeds its plots as base64 PNG and its style inline: it loads nothing from anywhere,
so it can be mailed to a reviewer or opened offline. Both reports hold the verdict table, one
paragraph per attack, the privacy layers and epsilon in force, the DP ledger of the parties
that used DP, one plot per attack family (score against baseline with 95% confidence
intervals) and the commands that reproduce the audit.
"""
from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

from . import verdict as V
from statistics import NormalDist

from .stats import ALPHA, PERMUTATIONS

MD, HTML = "audit.md", "audit.html"
FAMILY_PNG = {V.LABELS: "audit_labels.png", V.FEATURES: "audit_features.png", V.MEMBERSHIP: "audit_membership.png"}
COLORS = {V.LEAKS: "#c0392b", V.NO_LEAK: "#1e8449", V.INCONCLUSIVE: "#b9770e"}
Z95 = NormalDist().inv_cdf(0.975)
Z_ALPHA = NormalDist().inv_cdf(1 - ALPHA)

METHOD = (
    f"Each attack is scored on the rows outside the attacker's side knowledge, against a baseline "
    f"attacker with the same side knowledge and no transcript. The p-value is a paired sign-flip "
    f"permutation test ({PERMUTATIONS} random sign vectors, so p resolves down to "
    f"{1 / (PERMUTATIONS + 1):.4f}) of \"the transcript adds nothing\": each row's contribution to the "
    f"advantage is equally likely to have either sign (McNemar's exact test for accuracy; DeLong "
    f"placement values for AUC). The minimum detectable advantage (MDA) is the null's "
    f"{1 - ALPHA:.0%} quantile (z times its exact standard deviation), never below {Z_ALPHA:.2f} standard "
    f"errors of an uninformative attacker; the verdicts state it at their own Bonferroni level "
    f"({ALPHA} over the number of verdicts), so it is larger there than in the detail table. "
    f"Confidence intervals are +-1.96 standard errors over rows (DeLong's for AUC). "
    f"MSE and MAD advantages are also shown as the fraction of the baseline's error removed, so "
    f"every advantage reads on a 0..1 scale. The baselines use the side knowledge only: the known "
    f"labels' majority class (or mean), the known rows' mean of the victim's columns (feature scores "
    f"leave out columns constant on the scored rows). They do not use "
    f"the attacker's own columns, which may already predict the victim's: the advantage measures what "
    f"the transcript adds to the side knowledge, not what the attacker can infer in all.")


def _fmt_eps(value) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "none (inf)" if math.isinf(value) else f"{value:g}"


def _layers_lines(audit: dict) -> list[str]:
    layers = audit.get("layers") or {}
    layer = f"; registered layer {layers['layer']!r}" if layers.get("layer") else ""
    if layers.get("owner_layer"):
        layer += f" (the label owner's plan: {layers['owner_layer']!r}; the parties set their own DP)"
    lines = [f"Residual transport: {layers.get('residuals', audit.get('residuals', 'unknown'))} "
             f"(layers in force: {layers.get('mode', 'unknown')}{layer})"]
    if layers.get("label_dp_epsilon") is not None:
        lines.append(f"Label-DP on the residuals: epsilon = {_fmt_eps(layers['label_dp_epsilon'])}")
    for party, eps in (layers.get("feature_dp_epsilon") or {}).items():
        lines.append(f"Feature-DP at {party}: epsilon = {_fmt_eps(eps)}")
    if not layers.get("label_dp_epsilon") and not layers.get("feature_dp_epsilon"):
        lines.append("No differential privacy in force (epsilon = inf).")
    return lines


def _privacy_rows(audit: dict) -> list[list[str]]:
    rows = []
    for party, block in (audit.get("privacy") or {}).items():
        if not isinstance(block, dict):
            continue
        noise = block.get("noise_multiplier")
        noise = ", ".join(f"{k} {v:.3g}" for k, v in noise.items()) if isinstance(noise, dict) else str(noise)
        rows.append([party, _fmt_eps(block.get("epsilon_budget")), f"{float(block.get('epsilon_spent', 0)):.4f}",
                     f"{block.get('delta', '')}", str(block.get("accountant", "")), noise,
                     str(len(block.get("releases", [])))])
    return rows


PRIVACY_HEAD = ["party", "epsilon budget", "epsilon spent", "delta", "accountant", "noise multipliers", "releases"]
VERDICT_HEAD = ["attack", "attacker -> victim", "verdict", "metric", "score", "baseline", "advantage", "MDA", "p"]
DETAIL_HEAD = ["attack", "attacker", "victim", "metric", "score (95% CI)", "baseline", "advantage",
               "normalized", "MDA", "p", "view"]


def _verdict_rows(audit: dict) -> list[list[str]]:
    return [[v["attack"], f"{v['attacker']} -> {v['victim']}", v["text"], v["metric"], f"{v['score']:.3f}",
             f"{v['baseline']:.3f}", f"{v['advantage']:+.3f}", f"{v['mda']:.3f}", f"{v['p_value']:.4f}"]
            for v in audit.get("verdicts", [])]


def _detail_rows(audit: dict) -> list[list[str]]:
    out = []
    for a in audit.get("attacks", []):
        low, high = ci95(a, "score")
        ci = f"{a['score']:.3f} ({low:.3f}..{high:.3f})"
        view = a["view"]
        if "bayes_bound" in a:
            view += (f"; label-DP Bayes bound on accuracy {a['bayes_bound']:.3f}: "
                     + ("within" if a["within_bayes_bound"] else "EXCEEDED"))
        out.append([a["attack"], a["attacker"], a["victim"], a["metric"], ci, f"{a['baseline']:.3f}",
                    f"{a['advantage']:+.3f}", f"{a.get('normalized_advantage', a['advantage']):+.3f}",
                    f"{a.get('mda') or 0:.3f}", f"{a.get('p_value') or 1:.4f}", view])
    return out


def ci95(row: dict, which: str) -> tuple[float, float]:
    """95% normal interval of ``row[which]`` ("score" or "baseline"), kept inside the metric's range."""
    value, se = row[which], row.get(f"{which}_se") or 0.0
    se = se if math.isfinite(se) else 0.0
    low, high = value - Z95 * se, value + Z95 * se
    if row["metric"] in ("accuracy", "auc"):
        low, high = max(low, 0.0), min(high, 1.0)
    elif row["metric"] == "r2":
        high = min(high, 1.0)
    else:
        low = max(low, 0.0)
    return low, high


def _bayes_lines(audit: dict) -> list[str]:
    rows = [a for a in audit.get("attacks", []) if "bayes_bound" in a]
    if not rows:
        return []
    eps = _fmt_eps(rows[0]["epsilon"])
    lines = [f"Label-DP check (epsilon = {eps}): any attacker's label accuracy is at most "
             f"e^eps pi / (e^eps pi + 1 - pi) + delta, pi the largest class share (e^eps / (1 + e^eps) "
             f"for two balanced classes; e^eps / (e^eps + C - 1) for C balanced classes). "
             f"Measured accuracies:"]
    for a in rows:
        lines.append(f"{a['attack']} {a['attacker']}: {a['score']:.3f} against bound {a['bayes_bound']:.3f} "
                     f"({'within' if a['within_bayes_bound'] else 'EXCEEDED: the DP claim does not hold'})")
    return lines


# ---- plots ---------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def family_plot(audit: dict, family: str) -> bytes | None:
    """PNG of every attack of ``family``: score and baseline (primary metric) with 95% CIs."""
    rows = {(a["attack"], a["attacker"], a["victim"], a["metric"]): a for a in audit.get("attacks", [])}
    items = [v for v in audit.get("verdicts", []) if v["family"] == family]
    if not items:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(items) + 1.6))
    for i, v in enumerate(items):
        a = rows[(v["attack"], v["attacker"], v["victim"], v["metric"])]
        y = len(items) - 1 - i
        for which, dy, fmt, color, label in (("baseline", -0.15, "s", "grey", "baseline (no transcript)"),
                                             ("score", 0.15, "o", COLORS[v["verdict"]], None)):
            low, high = ci95(a, which)
            xerr = [[max(a[which] - low, 0.0)], [max(high - a[which], 0.0)]]
            ax.errorbar(a[which], y + dy, xerr=xerr, fmt=fmt, color=color,
                        capsize=3, label=label if i == 0 else None)
    for name, color in COLORS.items():
        if any(v["verdict"] == name for v in items):
            ax.plot([], [], "o", color=color, label=f"attack: {name}")
    ax.set_yticks(range(len(items)), [f"{v['attack']} {v['attacker']}->{v['victim']} ({v['metric']})"
                                      for v in reversed(items)], fontsize=8)
    metric_names = sorted({v["metric"] for v in items})
    ax.set_xlabel(f"{' / '.join(metric_names)} on the rows the attacker did not know (95% CI)")
    ax.set_title(f"{family}: attack score vs baseline")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


MODES = ("plain", "CKKS", "feature-DP", "feature-DP + CKKS", "label-DP")
MODE_STYLE = {"plain": ("o", "#c0392b"), "CKKS": ("s", "#2471a3"), "feature-DP": ("^", "#1e8449"),
              "feature-DP + CKKS": ("v", "#17a589"), "label-DP": ("D", "#8e44ad"),
              "crafted residuals": ("x", "black")}


def _mode(audit: dict) -> str:
    return (audit.get("layers") or {}).get("mode") or audit.get("residuals") or "plain"


def plot_sweep(audits: list[dict], path: Path) -> Path:
    """Largest advantage over attacks and victims against the epsilon in force, for label
    inference and feature reconstruction side by side; one line per layer (plain, CKKS,
    feature-DP, feature-DP + CKKS, label-DP). Runs without DP sit at "inf", right of a break in the axis; markers
    are spread sideways so equal points stay visible; the legend sits below the panels."""
    plt = _pyplot()
    finite = sorted({float(a["layers"]["epsilon"]) for a in audits if math.isfinite(float(a["layers"]["epsilon"]))})
    lo, hi = (min(finite), max(finite)) if finite else (1.0, 1.0)
    inf_x = hi * 4 if finite else 1.0
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.3), sharey=True)
    modes = [m for m in MODES if any(_mode(a) == m for a in audits)]
    modes += sorted({_mode(a) for a in audits} - set(modes))
    for ax, family in zip(axes, (V.LABELS, V.FEATURES)):
        for k, mode in enumerate(modes):
            pts = {}
            for a in audits:
                if _mode(a) != mode:
                    continue
                eps = float(a["layers"]["epsilon"])
                best = max((v["advantage"] if v["metric"] != "mse" else v["advantage"] / max(v["baseline"], 1e-12)
                            for v in a.get("verdicts", []) if v["family"] == family), default=None)
                if best is not None:
                    pts.setdefault(eps if math.isfinite(eps) else inf_x, []).append(best)
            if not pts:
                continue
            xs = sorted(pts)
            jitter = 1.0 + 0.06 * (k - (len(modes) - 1) / 2)  # multiplicative: same look on a log axis
            marker, color = MODE_STYLE.get(mode, ("v", "grey"))
            ax.plot([x * jitter for x in xs], [max(pts[x]) for x in xs], marker=marker, color=color,
                    mfc="none" if k % 2 else color, ms=7, lw=1.3, alpha=0.9, label=mode)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ticks = finite + [inf_x]
        ax.set_xticks(ticks, [f"{t:g}" for t in finite] + ["inf\n(no DP)"])
        ax.minorticks_off()
        if finite:
            ax.axvline(math.sqrt(hi * inf_x), color="grey", ls=":", lw=1)
        ax.set_xlim(lo / 1.6, inf_x * 1.6)
        ax.set_xlabel("epsilon in force in the run")
        ax.set_title(f"{family} (labels)" if family == V.LABELS else f"{family} (features)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("largest advantage over baseline\n(AUC / R^2 points)")
    handles, labels = axes[0].get_legend_handles_labels()
    h2, l2 = axes[1].get_legend_handles_labels()
    for h, lab in zip(h2, l2):
        if lab not in labels:
            handles.append(h)
            labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.suptitle("Leakage vs privacy budget")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---- documents -----------------------------------------------------------------------------

def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + \
        ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]


def _title(audit: dict) -> str:
    who = f" as {audit['party']}" if audit.get("party") else ""
    return f"Leakage audit{who}: {audit.get('dataset') or audit['run']}"


def _attacks_present(audit: dict) -> list[str]:
    seen = []
    for v in audit.get("verdicts", []):
        if v["attack"] not in seen:
            seen.append(v["attack"])
    return seen


def _notes(audit: dict) -> list[str]:
    notes = list(audit.get("notes", []))
    notes += [f"nothing to attack: {r}" for r in audit.get("nothing_to_attack", [])]
    return notes


def _scope(audit: dict) -> str:
    """The rows and the side knowledge the audit is about, in one line."""
    if audit.get("task") == "membership":
        return (f"{audit.get('party_rows')} rows held by the auditing party, {audit.get('candidates')} candidate IDs "
                f"it does not hold · side knowledge: none (the sizes of both ID sets are public)")
    return (f"{audit.get('n_train')} training rows · side knowledge: {audit['known_labels']:.0%} of labels, "
            f"{audit['known_rows']:.0%} of a victim's rows")


def render_markdown(audit: dict, images: dict[str, str]) -> str:
    """``audit.md``; ``images`` maps family to the PNG file name beside it."""
    out = [f"# {_title(audit)}", "", f"Run: `{audit['run']}` · {_scope(audit)}", ""]
    out += ["## Verdicts", ""] + _md_table(VERDICT_HEAD, _verdict_rows(audit)) + [""]
    out += [f"Decision rule: {_rule()}", ""]
    out += ["## Privacy layers in force", ""] + [f"- {x}" for x in _layers_lines(audit)] + [""]
    priv = _privacy_rows(audit)
    if priv:
        out += ["### DP ledger", ""] + _md_table(PRIVACY_HEAD, priv) + [""]
    bayes = _bayes_lines(audit)
    if bayes:
        out += ["### Label-DP Bayes bound", "", bayes[0], ""] + [f"- {x}" for x in bayes[1:]] + [""]
    out += ["## What each attack does", ""]
    for name in _attacks_present(audit):
        out += [f"**{name}** ({V.ATTACKS[name][0]}). {V.ATTACKS[name][1]}", ""]
    out += ["## Plots", ""]
    for family, name in images.items():
        out += [f"![{family}]({name})", ""]
    out += ["## All measurements", ""] + _md_table(DETAIL_HEAD, _detail_rows(audit)) + [""]
    out += ["## Method", "", METHOD, ""]
    notes = _notes(audit)
    if notes:
        out += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    out += ["## Reproduce", "", "```bash"] + _commands(audit) + ["```", ""]
    return "\n".join(out)


def _rule() -> str:
    return (f"per attack and victim, on its primary metric (AUC for class labels, R^2 for regression labels "
            f"and features; AUC for membership): **LEAKS** if p <= {ALPHA} divided by the number of verdicts "
            f"(Bonferroni: at most a {ALPHA} chance of any false LEAKS in the audit); otherwise **no leak "
            f"detected** if the MDA at that level is at most {V.MATERIAL} (a leak that size "
            f"would have been seen), else **inconclusive**. Also inconclusive: fewer than {V.MIN_ROWS} rows to "
            f"score, or an attack that could only read ciphertext bytes its attacker could decrypt.")


def _commands(audit: dict) -> list[str]:
    return [c for c in (audit.get("train_command"), audit.get("command")) if c]


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .55em;text-align:left;vertical-align:top}th{background:#f2f2f2}
.v-LEAKS{background:#fbe3e0;color:#8e1c10;font-weight:600}.v-no{background:#e3f4e8;color:#145a32}
.v-inconclusive{background:#fdf0d5;color:#7e5109}code,pre{background:#f6f6f6;padding:.15em .3em}
pre{padding:.7em;overflow-x:auto}img{max-width:100%;border:1px solid #ddd;margin:.5em 0}"""


def _html_table(head: list[str], rows: list[list[str]], verdict_col: int | None = None) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = []
    for r in rows:
        cells = []
        for j, c in enumerate(r):
            cls = ""
            if j == verdict_col:
                word = str(c).split(" ")[0]
                cls = f' class="v-{html.escape(word)}"'
            cells.append(f"<td{cls}>{html.escape(str(c))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(audit: dict, pngs: dict[str, bytes]) -> str:
    """``audit.html``: self-contained (inline style, plots as base64 PNG, no scripts)."""
    e = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(_title(audit))}</title>"
             f"<style>{CSS}</style></head><body>", f"<h1>{e(_title(audit))}</h1>",
             f"<p>Run <code>{e(audit['run'])}</code> · {e(_scope(audit))}</p>",
             "<h2>Verdicts</h2>", _html_table(VERDICT_HEAD, _verdict_rows(audit), verdict_col=2),
             f"<p><b>Decision rule</b>: {e(_rule()).replace('**', '')}</p>",
             "<h2>Privacy layers in force</h2><ul>" + "".join(f"<li>{e(x)}</li>" for x in _layers_lines(audit))
             + "</ul>"]
    priv = _privacy_rows(audit)
    if priv:
        parts += ["<h3>DP ledger</h3>", _html_table(PRIVACY_HEAD, priv)]
    bayes = _bayes_lines(audit)
    if bayes:
        parts += ["<h3>Label-DP Bayes bound</h3>", f"<p>{e(bayes[0])}</p><ul>"
                  + "".join(f"<li>{e(x)}</li>" for x in bayes[1:]) + "</ul>"]
    parts.append("<h2>What each attack does</h2>")
    for name in _attacks_present(audit):
        parts.append(f"<p><b>{e(name)}</b> ({e(V.ATTACKS[name][0])}). {e(V.ATTACKS[name][1])}</p>")
    parts.append("<h2>Plots</h2>")
    for family, png in pngs.items():
        parts.append(f"<img alt='{e(family)}' src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>")
    parts += ["<h2>All measurements</h2>", _html_table(DETAIL_HEAD, _detail_rows(audit)),
              f"<h2>Method</h2><p>{e(METHOD)}</p>"]
    notes = _notes(audit)
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    parts.append("<h2>Reproduce</h2><pre>" + e("\n".join(_commands(audit))) + "</pre></body></html>")
    return "\n".join(parts)


def write_reports(audit: dict, out_dir: Path) -> dict[str, Path]:
    """Write ``audit.md`` (with its family PNGs beside it) and ``audit.html`` into ``out_dir``."""
    out_dir = Path(out_dir)
    pngs = {f: png for f in FAMILY_PNG if (png := family_plot(audit, f)) is not None}
    names = {}
    for family, png in pngs.items():
        (out_dir / FAMILY_PNG[family]).write_bytes(png)
        names[family] = FAMILY_PNG[family]
    (out_dir / MD).write_text(render_markdown(audit, names), encoding="utf-8")
    (out_dir / HTML).write_text(render_html(audit, pngs), encoding="utf-8")
    return {"md": out_dir / MD, "html": out_dir / HTML}

