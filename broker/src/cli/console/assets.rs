//! The console's stylesheet and script, served from memory: nothing is fetched from
//! anywhere else, and there is no build step.

/// `/static/console.css`.
pub const CSS: &str = r#"
:root { --bg:#f4f6f8; --card:#fff; --ink:#1d2733; --muted:#5b6b7c; --line:#dde3ea;
  --ok:#1f9d55; --ok-bg:#e3f6ea; --warn:#b7791f; --warn-bg:#fdf3dc; --bad:#c53030; --bad-bg:#fde8e8;
  --info:#2b6cb0; --info-bg:#e6f0fa; --accent:#0f4c5c; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--ink); background:var(--bg); }
header { display:flex; align-items:center; gap:24px; padding:0 24px; height:52px; background:var(--accent); color:#fff; }
.brand { font-weight:700; font-size:18px; letter-spacing:.5px; white-space:nowrap; }
.brand span { font-weight:400; font-size:13px; opacity:.8; margin-left:8px; }
nav { display:flex; gap:4px; flex:1; flex-wrap:wrap; }
nav a { color:#d8ecf0; text-decoration:none; padding:6px 12px; border-radius:6px; }
nav a:hover { background:rgba(255,255,255,.12); color:#fff; }
nav a.active { background:#fff; color:var(--accent); font-weight:600; }
.live-status { font-size:12px; opacity:.85; white-space:nowrap; }
.live-status.on::before { content:"●"; color:#68d391; margin-right:6px; }
.live-status.off::before { content:"●"; color:#fc8181; margin-right:6px; }
main { max-width:1280px; margin:0 auto; padding:20px 24px 48px; }
h1 { font-size:22px; margin:4px 0 16px; }
h2 { font-size:16px; margin:28px 0 10px; color:var(--accent); }
a { color:var(--info); }
.tiles { display:grid; grid-template-columns:repeat(auto-fill,minmax(210px,1fr)); gap:12px; }
.tile { background:var(--card); border:1px solid var(--line); border-left:6px solid var(--line); border-radius:8px; padding:12px 14px; }
.tile .label { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.4px; }
.tile .value { font-size:24px; font-weight:650; margin:2px 0; }
.tile .detail { color:var(--muted); font-size:12px; min-height:16px; }
.tile.ok { border-left-color:var(--ok); } .tile.warn { border-left-color:var(--warn); background:var(--warn-bg); }
.tile.bad { border-left-color:var(--bad); background:var(--bad-bg); } .tile.info { border-left-color:var(--info); }
table { width:100%; border-collapse:collapse; background:var(--card); border:1px solid var(--line); border-radius:8px; overflow:hidden; }
th, td { text-align:left; padding:7px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { background:#eef2f6; font-size:12px; text-transform:uppercase; letter-spacing:.3px; color:var(--muted); }
tbody tr:nth-child(even) { background:#fafbfc; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
td.empty { color:var(--muted); text-align:center; font-style:italic; }
td code, pre { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; font-size:12.5px; }
pre { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:12px; overflow:auto; max-height:420px; white-space:pre-wrap; word-break:break-all; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600; }
.badge.ok { background:var(--ok-bg); color:var(--ok); } .badge.warn { background:var(--warn-bg); color:var(--warn); }
.badge.bad { background:var(--bad-bg); color:var(--bad); } .badge.info { background:var(--info-bg); color:var(--info); }
.notice { padding:10px 14px; border-radius:8px; border:1px solid var(--line); background:var(--card); }
.notice.bad { background:var(--bad-bg); color:var(--bad); } .notice.ok { background:var(--ok-bg); color:var(--ok); }
.notice.warn { background:var(--warn-bg); color:var(--warn); }
.cols { display:grid; grid-template-columns:1fr 1fr; gap:20px; } @media (max-width:900px) { .cols { grid-template-columns:1fr; } }
ul.events { list-style:none; margin:0; padding:0; background:var(--card); border:1px solid var(--line); border-radius:8px; max-height:560px; overflow:auto; }
ul.events li { padding:7px 12px; border-bottom:1px solid var(--line); display:flex; gap:10px; align-items:baseline; }
ul.events li .t { color:var(--muted); font-size:12px; font-variant-numeric:tabular-nums; white-space:nowrap; }
ul.events li.new { animation:flash 2s ease-out; }
@keyframes flash { from { background:#fff6bf; } to { background:transparent; } }
form.inline { display:inline-flex; gap:6px; align-items:center; flex-wrap:wrap; margin:0; }
form.panel { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:12px; display:flex; gap:10px; align-items:end; flex-wrap:wrap; }
label { display:flex; flex-direction:column; font-size:12px; color:var(--muted); gap:3px; }
input, select { font:inherit; padding:5px 8px; border:1px solid #c5cfd9; border-radius:6px; background:#fff; }
button { font:inherit; padding:6px 14px; border-radius:6px; border:1px solid var(--accent); background:var(--accent); color:#fff; cursor:pointer; }
button.danger { background:var(--bad); border-color:var(--bad); }
.muted { color:var(--muted); } .crumbs a { text-decoration:none; } .crumbs { font-size:15px; margin-bottom:12px; }
svg.chart { width:100%; height:160px; background:var(--card); border:1px solid var(--line); border-radius:8px; }
svg.chart polyline { fill:none; stroke:var(--info); stroke-width:2.5; }
svg.chart line { stroke:var(--line); stroke-width:1; }
.chart-caption { margin:4px 0 0; font-size:12px; }
.toolbar { display:flex; gap:16px; align-items:center; margin-bottom:10px; flex-wrap:wrap; }
"#;

/// `/static/console.js`: the live stream, filled into the page where it has places for it.
pub const JS: &str = r#"
(function () {
  "use strict";
  var status = document.getElementById("live-status");
  function time(ms) { var d = new Date(ms); return d.toISOString().replace("T", " ").slice(0, 19) + "Z"; }
  function li(cls, t, badge, text) {
    var item = document.createElement("li"); item.className = "new";
    var ts = document.createElement("span"); ts.className = "t"; ts.textContent = time(t); item.appendChild(ts);
    if (badge) { var b = document.createElement("span"); b.className = "badge " + cls; b.textContent = badge; item.appendChild(b); }
    var s = document.createElement("span"); s.textContent = text; item.appendChild(s);
    return item;
  }
  function prepend(list, item, max) {
    var empty = list.querySelector(".none"); if (empty) empty.remove();
    list.insertBefore(item, list.firstChild);
    while (list.children.length > max) list.removeChild(list.lastChild);
  }
  function drawChart(svg) {
    var pts = JSON.parse(svg.getAttribute("data-points") || "[]");
    var line = svg.querySelector("polyline"), label = svg.nextElementSibling;
    if (!pts.length) { line.setAttribute("points", ""); label.textContent = "no samples yet"; return; }
    var now = Date.now(), span = 30 * 60 * 1000, max = 1;
    pts = pts.concat([[now, pts[pts.length - 1][1]]]);
    pts.forEach(function (p) { if (p[1] > max) max = p[1]; });
    var w = 600, h = 150;
    line.setAttribute("points", pts.map(function (p) {
      var x = w - (now - p[0]) / span * w, y = h - 8 - p[1] / max * (h - 24);
      return Math.max(0, x).toFixed(1) + "," + y.toFixed(1);
    }).join(" "));
    label.textContent = "max " + max + " · now " + pts[pts.length - 1][1] + " records behind";
  }
  document.querySelectorAll("svg.chart").forEach(drawChart);
  if (!window.EventSource) { if (status) status.textContent = "no live updates"; return; }
  var source = new EventSource("/live");
  // Browsers allow few connections per host: a page that goes (or is kept in the
  // back-forward cache) gives its stream back at once.
  window.addEventListener("pagehide", function () { source.close(); });
  source.onopen = function () { if (status) { status.textContent = "live"; status.className = "live-status on"; } };
  source.onerror = function () { if (status) { status.textContent = "reconnecting…"; status.className = "live-status off"; } };
  source.addEventListener("overview", function (e) {
    var o = JSON.parse(e.data);
    (o.tiles || []).forEach(function (t) {
      var el = document.querySelector('[data-tile="' + t.key + '"]');
      if (!el) return;
      el.className = "tile " + t.level;
      el.querySelector(".value").textContent = t.value;
      el.querySelector(".detail").textContent = t.detail;
    });
    var err = document.getElementById("overview-error");
    if (err) { err.textContent = o.error || ""; err.style.display = o.error ? "" : "none"; }
    var live = document.getElementById("live-brokers");
    if (live) live.textContent = (o.live_brokers || []).join(", ") || "none";
    var down = document.getElementById("down-brokers");
    if (down) down.textContent = (o.missing_brokers || []).join(", ") || "none";
  });
  source.addEventListener("timeline", function (e) {
    var ev = JSON.parse(e.data);
    document.querySelectorAll("ul.timeline").forEach(function (list) {
      prepend(list, li(ev.level, ev.at_ms, ev.kind, ev.text), parseInt(list.getAttribute("data-max") || "500", 10));
    });
  });
  source.addEventListener("znode", function (e) {
    var ev = JSON.parse(e.data);
    var pane = document.getElementById("znode-live");
    if (!pane) return;
    var base = pane.getAttribute("data-path");
    var under = base === "/" || ev.path === base || ev.path.indexOf(base + "/") === 0;
    if (under) prepend(pane, li("info", ev.at_ms, ev.event, ev.path), 200);
  });
  source.addEventListener("lag", function (e) {
    var ev = JSON.parse(e.data);
    document.querySelectorAll('svg.chart[data-group]').forEach(function (svg) {
      if (svg.getAttribute("data-group") !== ev.group) return;
      var pts = JSON.parse(svg.getAttribute("data-points") || "[]");
      pts.push([ev.at_ms, ev.lag]);
      pts = pts.filter(function (p) { return ev.at_ms - p[0] <= 30 * 60 * 1000; });
      svg.setAttribute("data-points", JSON.stringify(pts));
      drawChart(svg);
      var total = document.getElementById("group-lag");
      if (total) total.textContent = ev.lag;
    });
  });
})();
"#;
