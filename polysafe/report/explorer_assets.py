"""The explorer pages' one stylesheet and one script, inlined into every page.

The script is allowed by its SHA-256 hash in the page's Content-Security-Policy, so no other script can run.
It only moves, hides and shows existing elements and sets `textContent`: it never parses text as markup.
"""

STYLE = """
:root{--fg:#1d2330;--muted:#5f6b7d;--line:#e1e5ec;--head:#f4f6f9;--accent:#2457a6;--bar:3.2rem}
*{box-sizing:border-box}
body{margin:0;color:var(--fg);background:#fff;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",
 "Noto Sans CJK SC","Noto Sans Bengali","Noto Sans Thai",sans-serif}
header.top{padding:1.1rem 2rem .9rem;border-bottom:1px solid var(--line);background:#f8f9fb}
header.top h1{font-size:1.3rem;margin:0 0 .35rem;font-weight:650}
.meta{color:var(--muted);margin:.15rem 0}
.meta code,code{background:#eceff4;padding:.05em .35em;border-radius:4px;font-size:.92em;color:var(--fg)}
nav.sections{margin-top:.6rem}
nav.sections a{margin-right:1.1rem;color:var(--accent);text-decoration:none;font-weight:550}
main{padding:0 2rem 4rem}
h2{font-size:1.08rem;margin:2.2rem 0 .5rem;font-weight:650}
p.note{color:var(--muted);margin:.2rem 0 .7rem;max-width:70rem}
details.setup{display:inline-block;vertical-align:top;margin-left:.6rem}
details>summary{cursor:pointer;color:var(--accent)}
.run-meta{margin:.15rem 0}.run-meta .meta{display:inline}
ul.setup{margin:.4rem 0 0;padding-left:1.2rem;color:var(--muted);font-size:13px}
table{border-collapse:separate;border-spacing:0;font-size:13px;margin:.3rem 0 1rem}
th,td{padding:.38rem .6rem;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{position:sticky;top:0;z-index:2;background:var(--head);border-bottom:2px solid #c8cfda;white-space:nowrap;
 font-weight:600}
table.sortable thead th{cursor:pointer;user-select:none}
table.sortable thead th:hover{background:#e8ecf2}
th[aria-sort=ascending]::after{content:" \\25B2";font-size:.75em;color:var(--accent)}
th[aria-sort=descending]::after{content:" \\25BC";font-size:.75em;color:var(--accent)}
tbody tr:hover td{background-color:#f7f9fc}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.ci{color:var(--muted);font-variant-numeric:tabular-nums;white-space:nowrap}
td.sig{font-weight:650}
td.nowrap{white-space:nowrap}
table.heat td.cell{text-align:center;vertical-align:middle;min-width:6.5rem;padding:0;border:2px solid #fff}
table.heat td.cell a{display:block;padding:.45rem .5rem;color:inherit;text-decoration:none}
table.heat td.cell a:hover{outline:2px solid var(--fg);outline-offset:-2px}
table.heat .big{display:block;font-size:1.05rem;font-weight:650;font-variant-numeric:tabular-nums}
table.heat .small{display:block;font-size:.78rem;opacity:.9;font-variant-numeric:tabular-nums}
table.heat th.row{white-space:nowrap;vertical-align:middle}
table.heat .tier{color:var(--muted);font-weight:400;margin-left:.3rem}
.overview{display:flex;flex-wrap:wrap;gap:1.5rem 2.5rem;align-items:flex-start}
.wide{overflow-x:auto;max-width:100%}
.bar{position:sticky;top:0;z-index:3;display:flex;flex-wrap:wrap;gap:.4rem .8rem;align-items:center;
 min-height:var(--bar);padding:.45rem .2rem;background:#fff;border-bottom:1px solid var(--line)}
.bar label{color:var(--muted);font-size:13px}
.bar select{max-width:10rem}
.bar select,.bar input{font:inherit;font-size:13px;padding:.2rem .35rem;border:1px solid #c8cfda;border-radius:5px;
 background:#fff;color:var(--fg)}
.bar input[type=search]{width:13rem}
.bar button{font:inherit;font-size:13px;padding:.2rem .7rem;border:1px solid #c8cfda;border-radius:5px;background:#f4f6f9;
 cursor:pointer}
.bar .count{margin-left:auto;color:var(--muted)}
#responses thead th{top:var(--bar)}
#responses{scroll-margin-top:var(--bar)}
#responses tbody tr{scroll-margin-top:calc(var(--bar) + 2.6rem)}
#responses .finish.cut{color:#9b1c14;font-weight:600}
#responses .tokens{color:var(--muted);font-size:12px;white-space:nowrap}
#responses{width:100%}
#responses td.text{min-width:9rem}
#responses td.text .clip{max-height:13.5em;overflow:auto;white-space:pre-wrap;word-break:break-word}
#responses td.query{min-width:12rem}
#responses td.query .clip{color:#243b63}
#responses td.text .clip.code{font:12px/1.4 ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace;white-space:pre;overflow:auto}
#responses td.muted .clip{color:var(--muted);font-style:italic}
#responses details summary{cursor:pointer;color:var(--accent);font-size:12px;margin-top:.25rem}
#responses details pre{white-space:pre-wrap;word-break:break-word;font-size:12px;background:#f6f7f9;padding:.4rem;
 border-radius:4px;max-height:20em;overflow:auto;margin:.3rem 0 0}
.pill{display:inline-block;padding:.05rem .5rem;border-radius:999px;font-size:12px;font-weight:600}
.pill.unsafe{background:#fde1df;color:#9b1c14}.pill.safe{background:#dff3e2;color:#1d6b2c}
.pill.invalid{background:#fff1cc;color:#7a5600}.pill.error,.pill.pending{background:#eceef1;color:#4a5160}
img.chart{max-width:min(100%,56rem);border:1px solid var(--line);border-radius:6px}
ul.ratios{margin:.2rem 0 1rem;color:var(--muted)}
"""

SCRIPT = """
(function () {
  'use strict';
  var PAGE = 100;
  var onSorted = {};
  function value(row, index) {
    var cell = row.cells[index];
    if (!cell) return '';
    var v = cell.getAttribute('data-v');
    return v !== null ? v : cell.textContent.trim();
  }
  function order(a, b) {
    var x = a === '' ? NaN : Number(a), y = b === '' ? NaN : Number(b);
    if (!isNaN(x) && !isNaN(y)) return x - y;
    if (!isNaN(x)) return -1;
    if (!isNaN(y)) return 1;
    return a.localeCompare(b);
  }
  function sortBy(th) {
    var table = th.closest('table');
    var index = Array.prototype.indexOf.call(th.parentNode.children, th);
    var dir = th.getAttribute('aria-sort') === 'ascending' ? 'descending' : 'ascending';
    table.querySelectorAll('thead th').forEach(function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', dir);
    var sign = dir === 'ascending' ? 1 : -1;
    var body = table.tBodies[0];
    var keyed = Array.prototype.map.call(body.rows, function (r, i) { return [value(r, index), i, r]; });
    keyed.sort(function (a, b) {
      if ((a[0] === '') !== (b[0] === '')) return a[0] === '' ? 1 : -1;
      return sign * order(a[0], b[0]) || a[1] - b[1];
    });
    table.removeChild(body);  // reorder off the page: one layout instead of one per row
    keyed.forEach(function (e) { body.appendChild(e[2]); });
    table.appendChild(body);
    if (onSorted[table.id]) onSorted[table.id]();
  }
  document.querySelectorAll('table.sortable thead th').forEach(function (th) {
    th.tabIndex = 0;
    th.addEventListener('click', function () { sortBy(th); });
    th.addEventListener('keydown', function (e) {
      if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); sortBy(th); }
    });
  });

  var table = document.getElementById('responses');
  if (!table) return;
  var rows = Array.prototype.slice.call(table.tBodies[0].rows);
  rows.forEach(function (r, i) { r.setAttribute('data-i', String(i)); });
  var texts = null;
  var limit = PAGE;
  var bar = document.querySelector('.bar');
  function fitHeader() { table.style.setProperty('--bar', bar.offsetHeight + 'px'); }
  window.addEventListener('resize', fitHeader);
  fitHeader();
  var selects = document.querySelectorAll('select[data-filter]');
  var search = document.getElementById('search');
  var counter = document.getElementById('shown');
  var more = document.getElementById('more');
  var paged = document.getElementById('paged');
  function apply(keepLimit) {
    if (!keepLimit) limit = PAGE;
    var wanted = {};
    selects.forEach(function (s) { if (s.value) wanted[s.getAttribute('data-filter')] = s.value; });
    var keys = Object.keys(wanted);
    var needle = search.value.trim().toLowerCase();
    if (needle && !texts) texts = rows.map(function (r) { return r.textContent.toLowerCase(); });
    var matched = 0;
    Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
      var ok = keys.every(function (k) { return r.getAttribute('data-' + k) === wanted[k]; })
        && (!needle || texts[Number(r.getAttribute('data-i'))].indexOf(needle) !== -1);
      if (ok) matched++;
      r.hidden = !ok || matched > limit;  // only a page of rows is laid out; the rest wait for 'show more'
    });
    counter.textContent = String(matched);
    paged.textContent = matched > limit ? 'showing the first ' + limit + ' · ' : '';
    more.hidden = matched <= limit;
    fitHeader();
  }
  onSorted.responses = function () { apply(true); };
  function has(select, v) {
    return Array.prototype.some.call(select.options, function (o) { return o.value === v; });
  }
  function fromHash() {
    var hash = window.location.hash;
    if (hash.indexOf('#responses?') !== 0) return;
    var params = new URLSearchParams(hash.slice('#responses?'.length));
    selects.forEach(function (s) {
      var v = params.get(s.getAttribute('data-filter'));
      s.value = v !== null && has(s, v) ? v : '';
    });
    search.value = params.get('text') || '';
    apply();
    document.getElementById('responses-section').scrollIntoView();
  }
  var timer = null;
  selects.forEach(function (s) { s.addEventListener('change', function () { apply(); }); });
  search.addEventListener('input', function () { clearTimeout(timer); timer = setTimeout(apply, 150); });
  more.addEventListener('click', function () { limit += 5 * PAGE; apply(true); });
  document.getElementById('reset').addEventListener('click', function () {
    selects.forEach(function (s) { s.value = ''; });
    search.value = '';
    apply();
  });
  window.addEventListener('hashchange', fromHash);
  apply();
  fromHash();
})();
"""
