"""The static page: one self-contained index.html (inline CSS and JS, no CDN, no fetch).

The rows are rendered here, in HTML with every user-provided string escaped, so the page reads the
same without JavaScript, from file:// and from any static host; the script only sorts and hides
rows. A Content-Security-Policy allows that one script (by hash) and nothing else to run.
"""
from __future__ import annotations

import base64
import hashlib
from html import escape

from sde_tasks.board.rows import TaskBoard, best_values, is_best

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em}
#controls{display:flex;flex-wrap:wrap;gap:.6em 1.2em;align-items:end;margin:1em 0;padding:.6em;background:#f4f6f8;border-radius:6px}
#controls label{display:flex;flex-direction:column;font-size:.85em;color:#444}
table{border-collapse:collapse;margin:.5em 0}
th,td{border-bottom:1px solid #ddd;padding:.25em .6em;text-align:left;white-space:nowrap}
td:first-child{white-space:normal;max-width:22em;overflow-wrap:anywhere}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.best{font-weight:bold;background:#e6f4ea}
th button{all:unset;cursor:pointer;font-weight:bold}
th[aria-sort=ascending] button::after{content:" \\25B2"}
th[aria-sort=descending] button::after{content:" \\25BC"}
tbody tr:hover{background:#fafafa}
.wrap{overflow-x:auto}
figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}
figure img{max-width:100%}
figcaption{font-size:.85em;color:#555}
code{font-size:.95em}
"""

_JS = """
(function () {
  "use strict";
  var taskSelect = document.getElementById("task");
  var search = document.getElementById("search");
  var axisSelects = Array.prototype.slice.call(document.querySelectorAll("select[data-axis]"));
  var count = document.getElementById("count");
  var sections = Array.prototype.slice.call(document.querySelectorAll("section[data-task]"));

  function apply() {
    var query = search.value.trim().toLowerCase();
    var shown = 0, total = 0;
    sections.forEach(function (section) {
      var taskOn = !taskSelect.value || taskSelect.value === section.dataset.task;
      section.hidden = !taskOn;
      section.querySelectorAll("tbody tr").forEach(function (row) {
        var ok = taskOn && (!query || row.dataset.search.indexOf(query) >= 0);
        axisSelects.forEach(function (select) {
          if (select.value && row.getAttribute("data-" + select.dataset.axis) !== select.value) { ok = false; }
        });
        row.hidden = !ok;
        if (taskOn) { total += 1; if (ok) { shown += 1; } }
      });
    });
    count.textContent = shown + " of " + total + " rows shown";
  }

  function sortBy(th) {
    var table = th.closest("table");
    var column = Array.prototype.indexOf.call(th.parentNode.children, th);
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("thead th").forEach(function (other) { other.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var numeric = th.dataset.type === "num";
    function key(row) {
      var cell = row.cells[column];
      var value = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent;
      return numeric ? (value === "" ? NaN : parseFloat(value)) : value.toLowerCase();
    }
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (numeric) {  // missing values last, whatever the direction
        if (isNaN(x) || isNaN(y)) { return isNaN(x) - isNaN(y); }
        return ascending ? x - y : y - x;
      }
      return ascending ? x.localeCompare(y) : y.localeCompare(x);
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }

  document.querySelectorAll("th button").forEach(function (button) {
    button.addEventListener("click", function () { sortBy(button.parentNode); });
  });
  [taskSelect, search].concat(axisSelects).forEach(function (control) {
    control.addEventListener("input", apply);
    control.addEventListener("change", apply);
  });
  apply();
})();
"""

_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_JS.encode("utf-8")).digest()).decode("ascii")
_CSP = f"default-src 'none'; img-src 'self' file:; style-src 'unsafe-inline'; script-src 'sha256-{_SCRIPT_HASH}'"

_DETAILS = ("Adapter", "Training", "Seed", "Evaluation", "Submitter", "Date", "Submission")


def _attr(text: object) -> str:
    return escape(str(text), quote=True)


def _th(label: str, numeric: bool = False, metric: str | None = None) -> str:
    kind = ' data-type="num"' if numeric or metric else ""
    if metric:
        kind += f' data-metric="{_attr(metric)}"'
    return f'<th scope="col"{kind}><button type="button">{_attr(label)}</button></th>'


def _table(board: TaskBoard, axes: dict[str, tuple[str, ...]]) -> str:
    best = best_values([r.metrics for r in board.rows], board.metrics, board.higher_is_better)
    arrows = {m: ("\u2191" if board.higher_is_better[m] else "\u2193") for m in board.metrics}
    head = [_th("Base model")] + [_th(a) for a in axes]
    head += [_th(f"{m} {arrows[m]}", metric=m) for m in board.metrics]
    after = 1 + len(axes) + board.metrics.index(board.primary) + 1
    head[after:after] = [_th(f"{board.primary} 95% CI"), _th(f"{board.primary} strict {arrows[board.primary]}",
                                                              numeric=True), _th("\u2248 best")]
    head += [_th("runaway \u2193", numeric=True), _th("collapsed")] + [_th(c, numeric=c == "Seed") for c in _DETAILS]
    sign = -1 if board.higher_is_better[board.primary] else 1  # best first; collapsed runs, then rows without it, last
    order = sorted(board.rows, key=lambda r: (board.collapsed(r.submission), board.primary not in r.metrics,
                                              sign * r.metrics.get(board.primary, 0.0)))
    body = []
    for row in order:
        searchable = " ".join([row.base_model, row.adapter, row.design, row.training, row.submitter, row.submission])
        attrs = "".join(f' data-{axis}="{_attr(row.axes[axis])}"' for axis in axes)
        cells = [f'<td title="revision {_attr(row.base_revision)}">{_attr(row.base_model)}</td>']
        cells += [f"<td>{_attr(row.axes[axis])}</td>" for axis in axes]
        for metric in board.metrics:
            value = row.metrics.get(metric)
            if value is None:
                cells.append(f'<td class="num" data-metric="{_attr(metric)}" data-sort="">\u2013</td>')
            else:
                cls = "num best" if is_best(value, best.get(metric)) else "num"
                cells.append(f'<td class="{cls}" data-metric="{_attr(metric)}" data-sort="{value!r}">{value:.4f}</td>')
            if metric == board.primary:
                ci = board.ci.get(row.submission)
                cells.append("<td>\u2013</td>" if ci is None else f"<td>[{ci[0]:.4f}, {ci[1]:.4f}]</td>")
                cells.append(_number(board.strict(row.submission)))
                cells.append('<td title="statistically tied with the best run of this base model">\u2248</td>'
                             if row.submission in board.tied else "<td></td>")
        cells += [_number(board.runaway(row.submission)),
                  '<td title="one answer covers 90% or more of the documents">collapsed</td>'
                  if board.collapsed(row.submission) else "<td></td>"]
        cells += [
            f'<td title="revision {_attr(row.adapter_revision)}">{_attr(row.adapter)}</td>' if row.adapter
            else "<td>(untuned)</td>",
            f"<td>{_attr(row.training)}</td>",
            f'<td class="num" data-sort="{row.seed}">{row.seed}</td>',
            f"<td>{_attr(row.evaluation)}</td>",
            f"<td>{_attr(row.submitter)}</td>",
            f"<td>{_attr(row.date)}</td>",
            f"<td><code>{_attr(row.submission)}</code></td>",
        ]
        body.append(f'<tr data-search="{_attr(searchable.lower())}" data-design="{_attr(row.design)}"{attrs}>'
                    + "".join(cells) + "</tr>")
    return (f'<div class="wrap"><table class="board" id="table-{board.task}"><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _number(value: float | None) -> str:
    if value is None:
        return '<td class="num" data-sort="">\u2013</td>'
    return f'<td class="num" data-sort="{value!r}">{value:.4f}</td>'


def render_page(boards: list[TaskBoard], plots: dict[str, list[tuple[str, str]]],
                axes: dict[str, tuple[str, ...]]) -> str:
    """The whole page; `plots` maps a task to its (PNG file name, caption) pairs beside the page."""
    task_options = "".join(f'<option value="{_attr(b.task)}">{_attr(b.task)}</option>' for b in boards)
    axis_controls = "".join(
        f'<label>{_attr(axis)}<select data-axis="{_attr(axis)}"><option value="">all</option>'
        + "".join(f'<option value="{_attr(o)}">{_attr(o)}</option>' for o in options) + "</select></label>"
        for axis, options in axes.items()
    )
    sections = []
    for board in boards:
        figures = "".join(
            f'<figure><img src="{_attr(name)}" alt="{_attr(caption)}">'
            f"<figcaption>{_attr(caption)}</figcaption></figure>"
            for name, caption in plots.get(board.task, [])
        )
        sections.append(
            f'<section data-task="{_attr(board.task)}" id="task-{_attr(board.task)}"><h2>{_attr(board.task)}</h2>'
            f"<p>{len(board.rows)} run(s); sorted by {_attr(board.primary)}; highlighted: best of each column "
            f"(\u2191 higher is better, \u2193 lower is better); 95% CI and \u2248 (statistically tied with the best "
            f"run of the same base model, paired bootstrap, \u03b1 0.05) recomputed from the logged outputs; "
            f"strict: {_attr(board.primary)} with every answer that has a format error scored as an empty "
            f"prediction; runaway: the share of answers that loop; collapsed: one answer covers \u2265 90% of the "
            f"documents while the gold answers vary (ranked last, never \u2248).</p>"
            f"{_table(board, axes)}{figures}</section>"
        )
    empty = "" if boards else "<p>No submissions yet.</p>"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_attr(_CSP)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sample Design Engineering leaderboard</title>
<style>{_CSS}</style>
</head>
<body>
<h1>Sample Design Engineering leaderboard</h1>
<p>Which sample design wins, for which base model and task. Every row is one validated lm-eval run
(<code>sde board validate</code> recomputes its metrics from the logged samples). Click a column
header to sort; filter by task, design axis or text.</p>
<div id="controls">
<label>task<select id="task"><option value="">all</option>{task_options}</select></label>
{axis_controls}
<label>search<input id="search" type="search" placeholder="model, adapter, design, submitter"></label>
<span id="count"></span>
</div>
{empty}{"".join(sections)}
<script>{_JS}</script>
</body>
</html>
"""
