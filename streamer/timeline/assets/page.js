/* oomstream timeline page: the offline report (data embedded) and the live page (SSE). */
(function () {
  "use strict";
  var DATA = { incidents: [] };
  var LIMIT_COLOURS = {
    container_limit: "#e6a700", pod_limit: "#b04ad0", node_allocatable: "#e0523a", node: "#b00020",
    cgroup_limit: "#2a9d8f", unknown: "#8a8f98", kubernetes_only: "#1f77b4", evicted: "#1f77b4"
  };
  var LIMIT_NAMES = {
    container_limit: "container limit", pod_limit: "pod limit", node_allocatable: "node allocatable",
    node: "node (global OOM)", cgroup_limit: "other cgroup limit", unknown: "unknown",
    kubernetes_only: "Kubernetes signal only", evicted: "eviction"
  };
  var PAGE = 300;
  var incidents = new Map(); // key -> incident
  var state = { q: "", namespace: "", workload: "", node: "", limit: "", lanes: "node", series: "namespace",
                from: null, to: null, sort: "t", desc: false, open: new Set(), shown: PAGE };
  var lanesPlot = null, killsPlot = null, rssPlot = null, markers = [];

  function $(id) { return document.getElementById(id); }
  function esc(s) { return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]; }); }
  function mib(b) { return b == null ? "?" : (b / 1048576).toFixed(b >= 1073741824 ? 0 : 1) + " MiB"; }
  function kb(v) { return v == null ? "?" : (v >= 1048576 ? (v / 1048576).toFixed(2) + " GiB" : v >= 1024 ? (v / 1024).toFixed(1) + " MiB" : v + " KiB"); }
  function utc(t) { return t == null ? "-" : new Date(t * 1000).toISOString().replace("T", " ").replace("Z", ""); }
  function toInput(t) { return t == null ? "" : new Date(t * 1000).toISOString().slice(0, 19); }
  function fromInput(v) { if (!v) return null; var t = Date.parse(v + "Z"); return isNaN(t) ? null : t / 1000; }
  function workloadOf(i) { return i.workload ? (i.namespace || "-") + "/" + i.workload : (i.pod ? (i.namespace || "-") + "/pod/" + i.pod : "(no workload)"); }
  function laneOf(i) { return state.lanes === "node" ? (i.node || "(unknown node)") : workloadOf(i); }

  /* ---- URL state: the range and filters, so a link can be shared ---- */
  var URL_KEYS = ["q", "namespace", "workload", "node", "limit", "lanes", "series", "from", "to"];
  function readUrl() {
    var p = new URLSearchParams(location.search);
    URL_KEYS.forEach(function (k) {
      if (!p.has(k)) return;
      var v = p.get(k);
      if (k === "from" || k === "to") { var t = Date.parse(v); state[k] = isNaN(t) ? null : t / 1000; }
      else state[k] = v;
    });
  }
  function writeUrl() {
    var p = new URLSearchParams();
    URL_KEYS.forEach(function (k) {
      var v = state[k];
      if (v == null || v === "" || (k === "lanes" && v === "node") || (k === "series" && v === "namespace")) return;
      p.set(k, (k === "from" || k === "to") ? new Date(v * 1000).toISOString() : v);
    });
    var s = p.toString();
    history.replaceState(null, "", location.pathname + (s ? "?" + s : "") + location.hash);
  }

  /* ---- filtering ---- */
  function matches(i, ignoreRange) {
    if (state.namespace && i.namespace !== state.namespace) return false;
    if (state.workload && workloadOf(i) !== state.workload) return false;
    if (state.node && i.node !== state.node) return false;
    if (state.limit && i.limit_fired !== state.limit) return false;
    if (!ignoreRange) {
      if (state.from != null && (i.t == null || i.t < state.from)) return false;
      if (state.to != null && (i.t == null || i.t >= state.to)) return false;
    }
    if (state.q) {
      var hay = [i.key, i.incident_id, i.node, i.namespace, i.workload, i.pod, i.container, i.victim, i.limit_fired].join(" ").toLowerCase();
      if (hay.indexOf(state.q.toLowerCase()) < 0) return false;
    }
    return true;
  }
  function sorted(list) {
    var k = state.sort, d = state.desc ? -1 : 1;
    return list.slice().sort(function (a, b) {
      var x = a[k], y = b[k];
      if (Array.isArray(x)) x = x.join(","); if (Array.isArray(y)) y = y.join(",");
      if (x == null && y == null) return a.key < b.key ? -1 : 1;
      if (x == null) return 1; if (y == null) return -1;
      if (x < y) return -d; if (x > y) return d;
      return (a.t || 0) - (b.t || 0);
    });
  }

  function fillSelect(id, values, current) {
    var sel = $(id), keep = sel.options[0].outerHTML;
    sel.innerHTML = keep + values.map(function (v) { return '<option value="' + esc(v) + '">' + esc(LIMIT_NAMES[v] || v) + "</option>"; }).join("");
    sel.value = values.indexOf(current) >= 0 ? current : "";
  }
  function uniq(list, f) { var s = new Set(); list.forEach(function (i) { var v = f(i); if (v) s.add(v); }); return Array.from(s).sort(); }

  /* ---- header ---- */
  function renderHeader(all, shown) {
    var kills = 0, unseen = 0, times = [], byWorkload = {};
    all.forEach(function (i) {
      kills += i.kills;
      if (i.visible_in_kubernetes === false) unseen++;
      if (i.kills) { var w = i.workload_key || workloadOf(i); byWorkload[w] = (byWorkload[w] || 0) + 1; if (i.t != null) times.push(i.t); }
    });
    $("count-kills").textContent = kills;
    $("count-incidents").textContent = all.length;
    $("count-unseen").textContent = unseen;
    $("count-repeated").textContent = Object.keys(byWorkload).filter(function (k) { return byWorkload[k] > 1; }).length;
    $("first-kill").textContent = times.length ? utc(Math.min.apply(null, times)) : "-";
    $("last-kill").textContent = times.length ? utc(Math.max.apply(null, times)) : "-";
    $("shown-incidents").textContent = shown.length;
    $("shown-kills").textContent = shown.reduce(function (n, i) { return n + i.kills; }, 0);
    $("source").textContent = DATA.source || "";
  }

  /* ---- timeline lanes (uPlot; markers drawn in the draw hook so each kind has its own shape) ---- */
  function shape(ctx, kind, x, y, r, colour) {
    ctx.beginPath();
    if (kind === "k8s") { ctx.moveTo(x, y - r); ctx.lineTo(x + r, y); ctx.lineTo(x, y + r); ctx.lineTo(x - r, y); ctx.closePath(); }
    else if (kind === "evicted") { ctx.rect(x - r * 0.8, y - r * 0.8, r * 1.6, r * 1.6); }
    else { ctx.arc(x, y, r, 0, 2 * Math.PI); }
    if (kind === "kill") { ctx.fillStyle = colour; ctx.fill(); ctx.strokeStyle = "#fff"; ctx.lineWidth = 1; ctx.stroke(); }
    else { ctx.fillStyle = "#fff"; ctx.fill(); ctx.strokeStyle = colour; ctx.lineWidth = 2; ctx.stroke(); }
  }
  function renderLegend() {
    var items = [["container_limit", "kill"], ["pod_limit", "kill"], ["node_allocatable", "kill"], ["node", "kill"],
                 ["cgroup_limit", "kill"], ["unknown", "kill"], ["kubernetes_only", "k8s"], ["evicted", "evicted"]];
    $("legend").innerHTML = items.map(function (it) {
      var c = document.createElement("canvas"); c.width = 14; c.height = 14;
      shape(c.getContext("2d"), it[1], 7, 7, 5, LIMIT_COLOURS[it[0]]);
      return '<span><img alt="" src="' + c.toDataURL() + '">' + esc(it[1] === "k8s" ? "Kubernetes signal" : LIMIT_NAMES[it[0]]) + "</span>";
    }).join("");
  }
  function plotWidth(el) { return Math.max(320, (el.clientWidth || document.body.clientWidth - 40)); }
  function tzUtc(ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); }
  /* 24-hour UTC tick labels: seconds when zoomed in, the date when the axis spans days. */
  function timeTicks(u, splits) {
    var span = splits.length > 1 ? splits[splits.length - 1] - splits[0] : 0;
    return splits.map(function (t) {
      var iso = new Date(t * 1000).toISOString();
      if (span > 2 * 86400) return iso.slice(5, 10) + " " + iso.slice(11, 16);
      return span < 600 ? iso.slice(11, 19) : iso.slice(11, 16);
    });
  }

  function renderLanes(list) {
    var lanes = uniq(list, laneOf), index = {};
    lanes.forEach(function (l, n) { index[l] = n; });
    markers = [];
    list.forEach(function (i) {
      (i.events || []).forEach(function (e) {
        if (e.t == null || e.type === "incident") return;
        var kind = e.type === "oom_kill" ? "kill" : (e.type === "k8s_evicted" ? "evicted" : "k8s");
        var colour = kind === "kill" ? (LIMIT_COLOURS[i.limit_fired] || LIMIT_COLOURS.unknown) : LIMIT_COLOURS.kubernetes_only;
        markers.push({ t: e.t, lane: index[laneOf(i)], kind: kind, colour: colour, incident: i, event: e });
      });
    });
    markers.sort(function (a, b) { return a.t - b.t; });
    var xs = markers.map(function (m) { return m.t; }), ys = markers.map(function (m) { return m.lane; });
    var el = $("lanes"); el.innerHTML = "";
    if (lanesPlot) { lanesPlot.destroy(); lanesPlot = null; }
    if (!markers.length) { el.innerHTML = '<div class="empty">No events in the range.</div>'; return; }
    var min = xs[0], max = xs[xs.length - 1], pad = Math.max(30, (max - min) * 0.03);
    var opts = {
      width: plotWidth(el), height: Math.min(640, 70 + lanes.length * 26), tzDate: tzUtc,
      legend: { show: false }, cursor: { drag: { x: true, y: false }, points: { show: false } },
      scales: { x: { time: true, min: state.from != null ? state.from : min - pad, max: state.to != null ? state.to : max + pad },
                y: { auto: false, range: [-0.6, lanes.length - 0.4] } },
      axes: [{ values: timeTicks }, { size: 150, splits: function () { return lanes.map(function (_, n) { return n; }); },
                   values: function (u, splits) { return splits.map(function (n) { var l = lanes[n] || ""; return l.length > 24 ? "…" + l.slice(-23) : l; }); } }],
      series: [{}, { label: "events", paths: function () { return null; }, points: { show: false } }],
      hooks: {
        draw: [function (u) {
          var ctx = u.ctx, b = u.bbox, r = 5 * devicePixelRatio;
          ctx.save(); ctx.beginPath(); ctx.rect(b.left, b.top, b.width, b.height); ctx.clip();
          for (var n = 0; n < markers.length; n++) {
            var m = markers[n], x = u.valToPos(m.t, "x", true), y = u.valToPos(m.lane, "y", true);
            if (x < b.left - r || x > b.left + b.width + r) continue;
            shape(ctx, m.kind, x, y, r, m.colour);
          }
          ctx.restore();
        }],
        setSelect: [function (u) {
          if (u.select.width < 4) return;
          state.from = u.posToVal(u.select.left, "x"); state.to = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
          update();
        }]
      }
    };
    lanesPlot = new uPlot(opts, [xs, ys], el);
    lanesPlot.over.addEventListener("dblclick", function () { state.from = state.to = null; update(); });
    lanesPlot.over.addEventListener("mousemove", function (ev) { hover(ev, true); });
    lanesPlot.over.addEventListener("mouseleave", function () { $("tip").style.display = "none"; });
    lanesPlot.over.addEventListener("click", function (ev) {
      var m = hover(ev, false);
      if (m) { state.open.add(m.incident.key); renderTable(currentList()); var row = document.querySelector('tr.row[data-key="' + cssEsc(m.incident.key) + '"]'); if (row) row.scrollIntoView({ block: "center" }); }
    });
  }
  function cssEsc(s) { return window.CSS && CSS.escape ? CSS.escape(s) : s.replace(/"/g, '\\"'); }
  function hover(ev, show) {
    var u = lanesPlot, best = null, bestD = 64;
    var px = ev.offsetX, py = ev.offsetY;
    for (var n = 0; n < markers.length; n++) {
      var m = markers[n], dx = u.valToPos(m.t, "x") - px, dy = u.valToPos(m.lane, "y") - py, d = dx * dx + dy * dy;
      if (d < bestD) { bestD = d; best = m; }
    }
    var tip = $("tip");
    if (show && best) {
      var i = best.incident;
      tip.textContent = utc(best.t) + "\n" + best.event.type + (best.event.reason ? " " + best.event.reason : "") + "\n" +
        [i.namespace, i.pod, i.container].filter(Boolean).join("/") + "\n" + (i.victim || "") + "  " + (LIMIT_NAMES[i.limit_fired] || i.limit_fired || "");
      tip.style.left = ev.clientX + 14 + "px"; tip.style.top = ev.clientY + 10 + "px"; tip.style.display = "block";
    } else if (show) tip.style.display = "none";
    return best;
  }

  /* ---- charts ---- */
  var PALETTE = ["#0b63c5", "#e6a700", "#b04ad0", "#2a9d8f", "#e0523a", "#6b7f00", "#8a5a44", "#d6336c", "#495057"];
  function niceBucket(span) {
    var steps = [60, 300, 900, 1800, 3600, 10800, 21600, 43200, 86400, 604800];
    for (var n = 0; n < steps.length; n++) if (span / steps[n] <= 80) return steps[n];
    return 2592000;
  }
  function renderKills(list) {
    var el = $("chart-kills"); el.innerHTML = "";
    if (killsPlot) { killsPlot.destroy(); killsPlot = null; }
    var kills = [];
    list.forEach(function (i) { (i.events || []).forEach(function (e) { if (e.type === "oom_kill" && e.t != null) kills.push({ t: e.t, i: i }); }); });
    if (!kills.length) { el.innerHTML = '<div class="empty">No kernel kills in the range.</div>'; return; }
    var keyOf = state.series === "namespace" ? function (i) { return i.namespace || "(no namespace)"; } : workloadOf;
    var totals = {};
    kills.forEach(function (k) { var key = keyOf(k.i); totals[key] = (totals[key] || 0) + 1; });
    var keys = Object.keys(totals).sort(function (a, b) { return totals[b] - totals[a]; });
    var top = keys.slice(0, 8); if (keys.length > 8) top.push("(other)");
    var t0 = Math.min.apply(null, kills.map(function (k) { return k.t; })), t1 = Math.max.apply(null, kills.map(function (k) { return k.t; }));
    var step = niceBucket(Math.max(1, t1 - t0)), start = Math.floor(t0 / step) * step, n = Math.floor((t1 - start) / step) + 1;
    var xs = []; for (var b = 0; b < n; b++) xs.push(start + b * step);
    var cols = top.map(function () { var a = []; for (var b = 0; b < n; b++) a.push(0); return a; });
    kills.forEach(function (k) {
      var key = keyOf(k.i), s = top.indexOf(key); if (s < 0) s = top.length - 1;
      cols[s][Math.floor((k.t - start) / step)] += 1;
    });
    var series = [{}].concat(top.map(function (name, s) {
      return { label: name, stroke: PALETTE[s % PALETTE.length], width: 2, paths: uPlot.paths.stepped({ align: 1 }), points: { show: n < 40 } };
    }));
    killsPlot = new uPlot({ width: plotWidth(el), height: 260, tzDate: tzUtc, scales: { x: { time: true } },
      axes: [{ values: timeTicks }, { label: "kills per " + (step >= 3600 ? step / 3600 + " h" : step / 60 + " min") }], series: series },
      [xs].concat(cols), el);
  }
  function renderRss(list) {
    var el = $("chart-rss"); el.innerHTML = "";
    if (rssPlot) { rssPlot.destroy(); rssPlot = null; }
    var per = {};
    list.forEach(function (i) {
      if (!i.kills || i.rss_bytes == null) return;
      var w = workloadOf(i), cur = per[w];
      if (!cur) cur = per[w] = { rss: 0, limit: null, kills: 0 };
      cur.kills += i.kills;
      if (i.rss_bytes > cur.rss) { cur.rss = i.rss_bytes; cur.limit = i.limit_bytes; }
    });
    var names = Object.keys(per).sort(function (a, b) { return per[b].kills - per[a].kills; }).slice(0, 20);
    if (!names.length) { el.innerHTML = '<div class="empty">No kills with RSS figures in the range.</div>'; return; }
    var xs = names.map(function (_, n) { return n; });
    var rss = names.map(function (w) { return per[w].rss / 1048576; });
    var lim = names.map(function (w) { return per[w].limit == null ? null : per[w].limit / 1048576; });
    rssPlot = new uPlot({
      width: plotWidth(el), height: 260,
      scales: { x: { time: false, range: [-0.6, names.length - 0.4] }, y: { range: function (u, lo, hi) { return [0, Math.max(1, hi) * 1.08]; } } },
      axes: [{ splits: function () { return xs; }, values: function (u, s) { return s.map(function (n) { var w = names[n] || ""; return w.length > 16 ? "…" + w.slice(-15) : w; }); }, rotate: 0 },
             { label: "MiB" }],
      series: [{ label: "workload", value: function (u, v) { return v == null ? "-" : names[v]; } },
               { label: "RSS at kill", fill: "#0b63c5aa", stroke: "#0b63c5", paths: uPlot.paths.bars({ size: [0.35, 40], align: -1 }), points: { show: false } },
               { label: "limit", fill: "#e6a70066", stroke: "#e6a700", paths: uPlot.paths.bars({ size: [0.35, 40], align: 1 }), points: { show: false } }]
    }, [xs, rss, lim], el);
  }

  /* ---- incident table with expandable rows ---- */
  function kv(pairs) {
    return '<dl class="kv">' + pairs.map(function (p) { return "<dt>" + esc(p[0]) + "</dt><dd>" + esc(p[1] == null ? "-" : p[1]) + "</dd>"; }).join("") + "</dl>";
  }
  function details(i) {
    var k = i.kernel, html = '<div class="detail-grid">';
    if (k) {
      var v = k.victim || {}, t = k.trigger || {}, c = k.cgroup || {}, m = k.memcg || {};
      html += '<div class="kernel-victim"><h3>Victim</h3>' + kv([["process", (v.comm || "?") + " (pid " + v.pid + ")"], ["anon RSS", kb(v.anon_rss_kb)], ["file RSS", kb(v.file_rss_kb)], ["shmem RSS", kb(v.shmem_rss_kb)], ["oom_score_adj", v.oom_score_adj], ["uid", v.uid]]) + "</div>";
      html += '<div class="kernel-trigger"><h3>Trigger</h3>' + kv([["process", (t.comm || "?") + " (pid " + t.pid + ")"], ["gfp", (t.gfp_mask || "") + " " + (t.gfp_flags || []).join("|")], ["order", t.order], ["constraint", k.constraint], ["message", k.kill_message]]) + "</div>";
      html += '<div class="kernel-memcg"><h3>Memory cgroup</h3>' + kv([["usage", kb(m.usage_kb)], ["limit", kb(m.limit_kb)], ["failcnt", m.failcnt], ["swap usage", kb(m.swap_usage_kb)], ["limit fired", LIMIT_NAMES[i.limit_fired] || i.limit_fired], ["RSS / limit", i.rss_fraction == null ? "-" : (i.rss_fraction * 100).toFixed(1) + "% (" + mib(i.rss_bytes) + " of " + mib(i.limit_bytes) + ")"]]) + "</div>";
      html += '<div class="kernel-cgroup"><h3>Cgroup</h3>' + kv([["task memcg", c.task_memcg], ["oom memcg", c.oom_memcg], ["scope", c.limit_scope], ["QoS", c.qos_class], ["container id", c.container_id ? String(c.container_id).slice(0, 12) : null]]) + "</div>";
      var tasks = (k.top_tasks || []).map(function (r) { return "<tr><td>" + esc(r.pid) + "</td><td>" + esc(r.rss_pages == null ? "?" : (r.rss_pages * 4 / 1024).toFixed(1)) + "</td><td>" + esc(r.oom_score_adj) + "</td><td>" + esc(r.name) + "</td></tr>"; }).join("");
      html += '<div class="kernel-tasks"><h3>Top tasks (' + esc(k.tasks_total) + ' in the report)</h3><table class="tasks"><tr><th>pid</th><th>RSS MiB</th><th>adj</th><th>name</th></tr>' + tasks + "</table></div>";
    } else {
      html += '<div><h3>Kernel</h3><p class="muted">No kernel report: Kubernetes signals only.</p></div>';
    }
    var signals = (i.events || []).map(function (e) {
      return "<tr><td>" + esc(utc(e.t)) + "</td><td>" + esc(e.type) + "</td><td>" + esc(e.reason || (e.comm ? e.comm + " (" + e.pid + ")" : "")) + "</td><td>" + esc(e.message || "") + "</td></tr>";
    }).join("");
    html += '<div class="k8s-signals"><h3>Events of this incident</h3><table class="tasks">' + signals + "</table>" +
      kv([["incident", i.incident_id || i.key], ["Kubernetes saw it", i.visible_in_kubernetes == null ? "unknown" : (i.visible_in_kubernetes ? "yes" : "NO")], ["verdict", i.verdict], ["kill of workload", i.workload_kills > 1 ? i.workload_kill_number + " of " + i.workload_kills : "only one"]]) + "</div>";
    return html + "</div>";
  }
  function renderTable(list) {
    var body = document.querySelector("#incidents tbody"), rows = sorted(list), html = [];
    rows.slice(0, state.shown).forEach(function (i) {
      var open = state.open.has(i.key);
      var seen = i.visible_in_kubernetes == null ? '<span class="muted">?</span>' : (i.visible_in_kubernetes ? "seen" : '<span class="bad">NOT SEEN</span>');
      var repeat = i.workload_kills > 1 ? ' <span class="warn">(' + i.workload_kill_number + "/" + i.workload_kills + ")</span>" : "";
      html.push('<tr class="row' + (open ? " open" : "") + '" data-key="' + esc(i.key) + '">' +
        "<td>" + esc(utc(i.t)) + "</td><td>" + esc(i.node || "-") + "</td><td>" + esc(i.namespace || "-") + "</td><td>" + esc(i.workload || "-") + repeat + "</td>" +
        "<td>" + esc([i.pod, i.container].filter(Boolean).join(" / ") || "-") + "</td><td>" + esc(i.victim || "-") + "</td>" +
        '<td><span class="swatch" style="background:' + (LIMIT_COLOURS[i.limit_fired] || "#888") + '"></span>' + esc(LIMIT_NAMES[i.limit_fired] || i.limit_fired || "-") + "</td>" +
        '<td class="num">' + (i.rss_fraction == null ? "-" : (i.rss_fraction * 100).toFixed(1) + "%") + '</td><td class="num">' + i.kills + "</td><td>" + seen + "</td><td>" + esc((i.signals || []).join(", ")) + "</td></tr>");
      if (open) html.push('<tr class="details" data-key="' + esc(i.key) + '"><td colspan="11">' + details(i) + "</td></tr>");
    });
    body.innerHTML = html.join("");
    $("more").hidden = rows.length <= state.shown;
    $("more").textContent = "Show more (" + (rows.length - state.shown) + " left)";
    $("empty").hidden = rows.length > 0;
    document.querySelectorAll("#incidents th").forEach(function (th) {
      th.className = th.dataset.key === state.sort ? (state.desc ? "sorted-desc" : "sorted-asc") : "";
    });
  }

  /* ---- update cycle ---- */
  function currentList() {
    return Array.from(incidents.values()).filter(function (i) { return matches(i, false); });
  }
  /* A workload's n-th kill of N among the incidents held, the way `oomstream timeline` counts. */
  function numberRepeats(all) {
    var byWorkload = {};
    all.filter(function (i) { return i.kills; }).sort(function (a, b) { return (a.t || 0) - (b.t || 0) || (a.key < b.key ? -1 : 1); })
      .forEach(function (i) { var w = i.workload_key || workloadOf(i); (byWorkload[w] = byWorkload[w] || []).push(i); });
    all.forEach(function (i) { i.workload_kill_number = 0; i.workload_kills = 0; });
    Object.keys(byWorkload).forEach(function (w) {
      var list = byWorkload[w];
      list.forEach(function (i, n) { i.workload_kill_number = n + 1; i.workload_kills = list.length; });
    });
  }
  function update() {
    var all = Array.from(incidents.values());
    numberRepeats(all);
    var inFilters = all.filter(function (i) { return matches(i, true); });
    fillSelect("f-namespace", uniq(all, function (i) { return i.namespace; }), state.namespace);
    fillSelect("f-workload", uniq(all, function (i) { return i.kills || i.workload ? workloadOf(i) : null; }), state.workload);
    fillSelect("f-node", uniq(all, function (i) { return i.node; }), state.node);
    fillSelect("f-limit", uniq(all, function (i) { return i.limit_fired; }), state.limit);
    $("f-q").value = state.q; $("f-lanes").value = state.lanes; $("f-series").value = state.series;
    $("f-from").value = toInput(state.from); $("f-to").value = toInput(state.to);
    var list = inFilters.filter(function (i) { return matches(i, false); });
    renderHeader(all, list);
    renderLanes(inFilters);
    renderKills(list);
    renderRss(list);
    renderTable(list);
    writeUrl();
  }
  var pending = false;
  function scheduleUpdate() {
    if (pending) return; pending = true;
    setTimeout(function () { pending = false; update(); }, 50);
  }

  function bind() {
    [["f-namespace", "namespace"], ["f-workload", "workload"], ["f-node", "node"], ["f-limit", "limit"], ["f-lanes", "lanes"], ["f-series", "series"]].forEach(function (p) {
      $(p[0]).addEventListener("change", function (ev) { state[p[1]] = ev.target.value; state.shown = PAGE; update(); });
    });
    $("f-q").addEventListener("input", function (ev) { state.q = ev.target.value; state.shown = PAGE; scheduleUpdate(); });
    $("f-from").addEventListener("change", function (ev) { state.from = fromInput(ev.target.value); update(); });
    $("f-to").addEventListener("change", function (ev) { state.to = fromInput(ev.target.value); update(); });
    $("reset").addEventListener("click", function () { state.from = state.to = null; update(); });
    $("more").addEventListener("click", function () { state.shown += PAGE; renderTable(currentList()); });
    document.querySelectorAll("#incidents th").forEach(function (th) {
      th.addEventListener("click", function () {
        if (state.sort === th.dataset.key) state.desc = !state.desc; else { state.sort = th.dataset.key; state.desc = false; }
        renderTable(currentList());
      });
    });
    document.querySelector("#incidents tbody").addEventListener("click", function (ev) {
      var row = ev.target.closest("tr.row"); if (!row) return;
      var key = row.dataset.key;
      if (state.open.has(key)) state.open.delete(key); else state.open.add(key);
      renderTable(currentList());
    });
    var resizeTimer = null;
    window.addEventListener("resize", function () { clearTimeout(resizeTimer); resizeTimer = setTimeout(update, 200); });
  }

  /* ---- live mode: snapshot then server-sent events ---- */
  function live() {
    var status = $("live-status");
    var source = new EventSource("api/stream" + location.search);
    source.addEventListener("open", function () { status.textContent = "● live"; status.className = "on"; });
    source.addEventListener("error", function () { status.textContent = "○ reconnecting…"; status.className = "off"; });
    source.addEventListener("snapshot", function (ev) {
      var data = JSON.parse(ev.data);
      incidents.clear();
      data.incidents.forEach(function (i) { incidents.set(i.key, i); });
      DATA.source = data.source;
      scheduleUpdate();
    });
    source.addEventListener("incident", function (ev) {
      var i = JSON.parse(ev.data);
      incidents.set(i.key, i);
      (i.replaces || []).forEach(function (k) { incidents.delete(k); });
      scheduleUpdate();
    });
    source.addEventListener("status", function (ev) {
      DATA.source = JSON.parse(ev.data);
      $("source").textContent = DATA.source;
    });
    source.addEventListener("evict", function (ev) {
      JSON.parse(ev.data).forEach(function (k) { incidents.delete(k); });
      scheduleUpdate();
    });
  }

  /* The report embeds its data gzip-compressed (base64); the live page's shell embeds plain JSON. */
  function loadData() {
    var text = document.getElementById("oom-data").textContent.trim();
    var prefix = "gzip+base64:";
    if (text.indexOf(prefix) !== 0) return Promise.resolve(JSON.parse(text));
    var binary = atob(text.slice(prefix.length)), bytes = new Uint8Array(binary.length);
    for (var n = 0; n < binary.length; n++) bytes[n] = binary.charCodeAt(n);
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).text().then(JSON.parse);
  }

  loadData().then(function (data) {
    DATA = data;
    (DATA.incidents || []).forEach(function (i) { incidents.set(i.key, i); });
    readUrl();
    renderLegend();
    bind();
    update();
    document.body.dataset.ready = "true";
    if (DATA.mode === "live") live();
    window.oomTimeline = { incidents: incidents, state: state, update: update };
  }).catch(function (error) {
    document.body.insertAdjacentHTML("afterbegin", '<p class="bad" style="padding:12px">Could not read the report data: ' + esc(error) + "</p>");
    throw error;
  });
})();
