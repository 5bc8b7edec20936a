"""A diagnosis written out: ``diagnosis.json`` (every number), ``diagnosis.md`` (a summary) and
``diagnosis.html`` (one self-contained page, figures inline as base64 PNG, no external resource)."""

from __future__ import annotations

import html
from pathlib import Path

from pyrovae.diagnosis.findings import Diagnosis
from pyrovae.runs import write_json, write_text

__all__ = ["write_report", "markdown", "html_page", "FIGURE_TITLES"]

FIGURE_TITLES = {
    "trajectories": "σ and KL during training",
    "kl_bars": "KL per latent dimension",
    "q_vs_posterior": "q(z | x) against the true posterior",
    "data_vs_samples": "data against the model's samples",
}
_MARK = {"ok": "✅ ok", "warning": "⚠️ warning", "failure": "❌ failure", "skipped": "– skipped"}


def _number(value) -> str:
    return "—" if value is None else f"{value:.4g}"


def markdown(diag: Diagnosis) -> str:
    top = diag.top_remedy
    lines = [f"# Diagnosis of `{diag.run_dir}`", "",
             f"Model: **{diag.model}**, algorithm **{diag.config.get('algorithm')}**. Overall verdict: "
             f"**{diag.verdict}** ({diag.seconds:.1f} s).", ""]
    if top is not None:
        lines += [f"**Try first:** {top.text}.", "", "```", top.command, "```", ""]
    lines += ["| check | verdict | number | threshold | source |", "|---|---|---|---|---|"]
    for f in diag.findings:
        lines.append(f"| {f.check} | {_MARK[f.verdict]} | {_number(f.value)} | {f.threshold} | {f.source} |")
    lines.append("")
    for f in diag.findings:
        lines += [f"## {f.check}: {f.verdict}", "", f.summary + ".", ""]
        if f.remedy is not None:
            lines += [f"Remedy: {f.remedy.text}.", "", "```", f.remedy.command, "```", ""]
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1080px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;width:100%;margin:1em 0}th,td{border:1px solid #ccc;padding:.4em .6em;text-align:left;
vertical-align:top}th{background:#f3f3f3}.v-ok{color:#176f2c}.v-warning{color:#9a6700}.v-failure{color:#b42318}
.v-skipped{color:#777}.v-ok,.v-warning,.v-failure{font-weight:600}code,pre{background:#f6f8fa;padding:.15em .3em;border-radius:3px;font-size:90%}
pre{padding:.7em;overflow-x:auto;white-space:pre-wrap}img{max-width:100%;border:1px solid #eee}
.finding{border-left:4px solid #ccc;padding:.2em 1em;margin:1em 0}.finding.failure{border-color:#b42318}
.finding.warning{border-color:#d4a72c}.finding.ok{border-color:#2da44e}
"""


def html_page(diag: Diagnosis) -> str:
    e = html.escape
    top = diag.top_remedy
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>pyrovae diagnosis: {e(diag.run_dir)}</title>", f"<style>{_CSS}</style></head><body>",
             f"<h1>Diagnosis of <code>{e(diag.run_dir)}</code></h1>",
             f"<p>Model <b>{e(diag.model)}</b>, algorithm <b>{e(str(diag.config.get('algorithm')))}</b>. "
             f"Overall verdict: <b class=\"v-{diag.verdict}\">{e(diag.verdict)}</b> ({diag.seconds:.1f} s).</p>"]
    if top is not None:
        parts.append(f"<p><b>Try first:</b> {e(top.text)}.</p><pre>{e(top.command)}</pre>")
    parts.append("<table><thead><tr><th>check</th><th>verdict</th><th>number</th><th>threshold</th><th>source</th>"
                 "</tr></thead><tbody>")
    for f in diag.findings:
        parts.append(f"<tr><td>{e(f.check)}</td><td class=\"v-{f.verdict}\">{e(f.verdict)}</td>"
                     f"<td>{e(_number(f.value))}</td><td>{e(f.threshold)}</td><td>{e(f.source)}</td></tr>")
    parts.append("</tbody></table>")
    for f in diag.findings:
        parts.append(f'<div class="finding {f.verdict}"><h2>{e(f.check)}: <span class="v-{f.verdict}">{e(f.verdict)}'
                     f"</span></h2><p>{e(f.summary)}.</p>")
        if f.remedy is not None:
            parts.append(f"<p>Remedy: {e(f.remedy.text)}.</p><pre>{e(f.remedy.command)}</pre>")
        parts.append("</div>")
    if diag.figures:
        parts.append("<h2>Figures</h2>")
    for name, data in diag.figures.items():
        title = FIGURE_TITLES.get(name, name)
        parts.append(f"<figure><figcaption><b>{e(title)}</b></figcaption>"
                     f'<img alt="{e(title)}" src="data:image/png;base64,{data}"></figure>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(diag: Diagnosis, out_dir: str | Path) -> dict[str, Path]:
    """Write the three files into ``out_dir``; returns their paths by kind."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "diagnosis.json", "markdown": out_dir / "diagnosis.md", "html": out_dir / "diagnosis.html"}
    write_json(paths["json"], diag.to_dict())
    write_text(paths["markdown"], markdown(diag))
    write_text(paths["html"], html_page(diag))
    return paths
