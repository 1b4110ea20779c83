/* Findings table (sort, filter, details) and sortable static tables. Text goes in with textContent only:
   every value is attacker-controlled evidence and is never parsed as HTML. */
(function () {
  "use strict";
  var SEV = ["info", "low", "medium", "high", "critical"];

  function text(el, value) {
    el.textContent = value === null || value === undefined ? "" : String(value);
    return el;
  }

  function cell(tag, value, cls) {
    var el = text(document.createElement(tag), value);
    if (cls) { el.className = cls; }
    return el;
  }

  function sevBadge(value) {
    var i = SEV.indexOf(value);
    var span = cell("span", value, "badge " + (i >= 0 ? "sev-" + SEV[i] : ""));
    return span;
  }

  /* ---- findings table ------------------------------------------------------------------- */
  var dataEl = document.getElementById("findings-data");
  var table = document.getElementById("findings-table");
  if (dataEl && table) {
    var data = JSON.parse(dataEl.textContent);
    var F = {};
    data.fields.forEach(function (name, i) { F[name] = i; });
    var shown = data.columns;  // [field, label, class]
    var rows = data.rows;
    rows.forEach(function (r, i) {
      r.idx = i;
      r.sevIndex = SEV.indexOf(r[F.severity]);
      r.hay = shown.map(function (c) { return r[F[c[0]]] || ""; })
        .concat([r[F.message] || "", r[F.rule_id] || "", r[F.analyzer] || ""]).join("\u0001").toLowerCase();
    });
    var state = { sortField: null, sortDir: 1, q: "", minSev: 0, host: "", target: -1 };
    var tbody = table.querySelector("tbody");
    var count = document.getElementById("findings-count");
    var search = document.getElementById("findings-filter");
    var sevSel = document.getElementById("findings-severity");
    var hostSel = document.getElementById("findings-host");
    var open = {};

    var hosts = {};
    rows.forEach(function (r) { hosts[r[F.host]] = true; });
    Object.keys(hosts).sort().forEach(function (h) {
      var o = document.createElement("option");
      o.value = h;
      text(o, h);
      hostSel.appendChild(o);
    });

    var CLIP = 240;  // characters of a value shown before "show all"

    function longText(parent, value) {
      var full = value === null || value === undefined ? "" : String(value);
      var span = text(document.createElement("span"), full.length > CLIP ? full.slice(0, CLIP) + "\u2026" : full);
      parent.appendChild(span);
      if (full.length > CLIP) {
        var btn = cell("button", "show all (" + full.length + " characters)", "more");
        btn.type = "button";
        btn.addEventListener("click", function (ev) {
          ev.stopPropagation();
          var whole = span.textContent.length >= full.length;
          text(span, whole ? full.slice(0, CLIP) + "\u2026" : full);
          text(btn, whole ? "show all (" + full.length + " characters)" : "show less");
        });
        parent.appendChild(btn);
      }
      return parent;
    }

    function detailRow(r) {
      var tr = document.createElement("tr");
      tr.className = "detail";
      var td = document.createElement("td");
      td.colSpan = shown.length;
      var dl = document.createElement("div");
      dl.className = "kv";
      ["rule_title", "evidence_path"].concat(data.detail).forEach(function (name) {
        var v = r[F[name]];
        if (v === null || v === undefined || v === "" || (Array.isArray(v) && !v.length)) { return; }
        dl.appendChild(cell("div", name));
        var dd = document.createElement("div");
        if (name === "attributes") {
          var grid = document.createElement("div");
          grid.className = "attrs";
          v.forEach(function (kv) {
            grid.appendChild(cell("div", kv[0]));
            grid.appendChild(longText(document.createElement("div"), kv[1]));
          });
          dd.appendChild(grid);
        } else {
          longText(dd, v);
        }
        dl.appendChild(dd);
      });
      td.appendChild(dl);
      tr.appendChild(td);
      return tr;
    }

    function shortPath(p) {
      if (!p) { return ""; }
      var parts = String(p).split("/");
      return parts.length > 2 ? "\u2026/" + parts.slice(-2).join("/") : String(p);
    }

    function render() {
      var q = state.q.toLowerCase();
      var out = rows.filter(function (r) {
        if (r.sevIndex < state.minSev) { return false; }
        if (state.host && r[F.host] !== state.host) { return false; }
        return !q || r.hay.indexOf(q) !== -1;
      });
      if (state.sortField !== null) {
        var k = F[state.sortField];
        var dir = state.sortDir;
        out.sort(function (a, b) {
          var x = state.sortField === "severity" ? a.sevIndex : (a[k] || "");
          var y = state.sortField === "severity" ? b.sevIndex : (b[k] || "");
          return (x < y ? -1 : x > y ? 1 : a.idx - b.idx) * dir;
        });
      }
      var frag = document.createDocumentFragment();
      out.forEach(function (r) {
        var tr = document.createElement("tr");
        tr.className = "finding-row";
        tr.id = "f-" + r[F.finding_id];
        if (r.idx === state.target) { tr.classList.add("target"); }
        shown.forEach(function (c) {
          var v = r[F[c[0]]];
          var td = document.createElement("td");
          if (c[2]) { td.className = c[2]; }
          if (c[0] === "severity") {
            td.appendChild(sevBadge(v));
          } else if (c[0] === "rule_title") {
            text(td, v);
            td.title = r[F.rule_id] || "";  // the rule id on hover
          } else if (c[0] === "evidence_path") {
            text(td, shortPath(v));
            td.title = v || "";
          } else {
            text(td, v);
          }
          tr.appendChild(td);
        });
        tr.addEventListener("click", function () {
          open[r.idx] = !open[r.idx];
          render();
        });
        frag.appendChild(tr);
        if (open[r.idx]) { frag.appendChild(detailRow(r)); }
      });
      tbody.replaceChildren(frag);
      text(count, out.length + " of " + rows.length + " shown" +
        (data.total > rows.length ? " (the report holds the top " + rows.length + " of " + data.total +
          " findings; all are in findings.parquet / .csv / .jsonl / .xlsx)" : ""));
    }

    var timer = null;
    search.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { state.q = search.value; render(); }, 120);
    });
    sevSel.addEventListener("change", function () { state.minSev = Number(sevSel.value) || 0; render(); });
    hostSel.addEventListener("change", function () { state.host = hostSel.value; render(); });
    table.querySelectorAll("th[data-field]").forEach(function (th) {
      th.addEventListener("click", function () {
        var f = th.getAttribute("data-field");
        state.sortDir = state.sortField === f ? -state.sortDir : (f === "severity" ? -1 : 1);
        state.sortField = f;
        table.querySelectorAll("th[data-field]").forEach(function (o) { o.classList.remove("sorted-asc", "sorted-desc"); });
        th.classList.add(state.sortDir > 0 ? "sorted-asc" : "sorted-desc");
        render();
      });
    });
    render();

    /* a link to a finding (the attack sequence, a URL ending in #f-ID): clear the filters, open and show it */
    var byId = {};
    rows.forEach(function (r) { byId[r[F.finding_id]] = r; });
    function showFinding(id) {
      var r = byId[id];
      if (!r) { return false; }
      state.q = ""; state.minSev = 0; state.host = ""; state.target = r.idx;
      search.value = ""; sevSel.value = "0"; hostSel.value = "";
      open[r.idx] = true;
      render();
      var tr = document.getElementById("f-" + id);
      if (tr) { tr.scrollIntoView({ block: "center" }); }
      return true;
    }
    document.addEventListener("click", function (ev) {
      var a = ev.target.closest ? ev.target.closest("a[data-finding]") : null;
      if (a && showFinding(a.getAttribute("data-finding"))) {
        ev.preventDefault();
        history.replaceState(null, "", "#f-" + a.getAttribute("data-finding"));
      }
    });
    if (location.hash.indexOf("#f-") === 0) { showFinding(location.hash.slice(3)); }
  }

  /* ---- timeline: zoom over the cells the report embedded (svg.py draws the first view) -------- */
  var tlData = document.getElementById("timeline-data");
  var svg = document.getElementById("timeline-chart");
  if (tlData && svg && svg.getAttribute("data-from") !== null) {
    var T = JSON.parse(tlData.textContent);
    var L = T.layout;
    var NS = "http://www.w3.org/2000/svg";
    var rangeEl = document.getElementById("timeline-range");
    var view = [Number(svg.getAttribute("data-from")), Number(svg.getAttribute("data-to"))];
    var plotW = L.width - L.left - L.right;

    function el(name, attrs, title) {
      var e = document.createElementNS(NS, name);
      Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
      if (title) { e.appendChild(text(document.createElementNS(NS, "title"), title)); }
      return e;
    }
    function pad(n) { return (n < 10 ? "0" : "") + n; }
    function label(sec, span) {
      var d = new Date(sec * 1000);
      var day = d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate());
      if (span >= 30 * 86400) { return day; }
      var hm = day + " " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
      return span < 600 ? hm + ":" + pad(d.getUTCSeconds()) : hm;
    }
    function widthName(w) {
      if (w < 60) { return w + " s"; }
      if (w < 3600) { return (w / 60) + " min"; }
      if (w < 86400) { return (w / 3600) + " h"; }
      return (w / 86400) + (w >= 2 * 86400 ? " days" : " day");
    }
    function pickSet(lo, hi) {
      var fits = T.sets.filter(function (s) { return s.from <= lo && hi <= s.to; });
      if (!fits.length) { fits = T.sets.filter(function (s) { return s.from < hi && lo < s.to; }); }
      if (!fits.length) { fits = T.sets; }
      return fits.reduce(function (a, b) { return b.width < a.width ? b : a; });
    }
    function viewWidth(lo, hi, finest) {
      for (var i = 0; i < T.widths.length; i++) {
        var w = T.widths[i];
        if (w >= finest && (hi - lo) / w <= T.max_bins) { return w; }
      }
      return T.widths[T.widths.length - 1];
    }

    function draw(lo, hi) {
      lo = Math.floor(lo); hi = Math.max(Math.ceil(hi), lo + 1);
      view = [lo, hi];
      var cs = pickSet(lo, hi);
      var bw = viewWidth(lo, hi, cs.width);
      var nLanes = T.lanes.length, nSev = T.severities.length;
      var x = function (sec) { return L.left + (sec - lo) / (hi - lo) * plotW; };
      var bins = {};
      for (var i = 0; i < cs.t.length; i++) {
        if (cs.t[i] + cs.width <= lo || cs.t[i] > hi) { continue; }
        var key = Math.floor(cs.t[i] / bw) + ":" + cs.l[i];
        if (!bins[key]) { bins[key] = []; for (var k = 0; k < nSev; k++) { bins[key].push(0); } }
        bins[key][cs.s[i]] += cs.n[i];
      }
      var peak = 1;
      Object.keys(bins).forEach(function (k) {
        peak = Math.max(peak, bins[k].reduce(function (a, b) { return a + b; }, 0));
      });
      var frag = document.createDocumentFragment();
      var laneH = L.lane * nLanes;
      if (T.window && (T.window[0] > lo || T.window[1] < hi)) {
        var wx0 = x(Math.max(T.window[0], lo)), wx1 = x(Math.min(T.window[1], hi));
        if (wx1 > wx0) {
          frag.appendChild(el("rect", { "class": "attack-window", x: wx0.toFixed(1), y: L.top,
            width: Math.max(wx1 - wx0, 1).toFixed(1), height: laneH, fill: "#fde9e4" }, "attack window"));
        }
      }
      T.lanes.forEach(function (lane, li) {
        var y0 = L.top + li * L.lane;
        var g = el("g", { "class": "lane", "data-lane": lane[0] });
        g.appendChild(el("line", { x1: L.left, y1: y0 + L.lane, x2: L.left + plotW, y2: y0 + L.lane, stroke: "#e3e3e3" }));
        g.appendChild(text(el("text", { x: L.left - 8, y: (y0 + L.lane / 2 + 4).toFixed(1), "text-anchor": "end",
          "font-size": 12, fill: "#333" }), lane[1]));
        Object.keys(bins).forEach(function (key) {
          var parts = key.split(":");
          if (Number(parts[1]) !== li) { return; }
          var t0 = Number(parts[0]) * bw;
          var bx = x(Math.max(t0, lo)), bx1 = x(Math.min(t0 + bw, hi));
          var w = Math.max(bx1 - bx - 0.5, 1.5);
          var y = y0 + L.lane - 2;
          var sevs = bins[key];
          var total = sevs.reduce(function (a, b) { return a + b; }, 0);
          var tip = label(t0, bw) + " UTC, " + widthName(bw) + ": " + total + " " + lane[1] + " finding(s)";
          T.severities.forEach(function (sev, si) {
            var c = sevs[si];
            if (!c) { return; }
            var h = Math.max((L.lane - 6) * c / peak, 2);
            y -= h;
            g.appendChild(el("rect", { "class": "bar sev-" + sev, x: bx.toFixed(2), y: y.toFixed(2), width: w.toFixed(2),
              height: h.toFixed(2), fill: T.colors[sev], "data-t": t0, "data-n": c }, tip + "; " + c + " " + sev));
          });
        });
        frag.appendChild(g);
      });
      var axisY = L.top + laneH;
      for (var k2 = 0; k2 < 6; k2++) {
        var sec = lo + (hi - lo) * k2 / 5;
        frag.appendChild(text(el("text", { "class": "tick", x: x(sec).toFixed(1), y: axisY + 14, "font-size": 11,
          fill: "#555", "text-anchor": k2 === 0 ? "start" : k2 === 5 ? "end" : "middle" }), label(Math.floor(sec), hi - lo)));
      }
      if (T.marker && lo <= T.marker[0] && T.marker[0] <= hi) {
        var mx = x(T.marker[0]).toFixed(1);
        frag.appendChild(el("line", { "class": "marker", x1: mx, y1: L.top, x2: mx, y2: axisY, stroke: "#333",
          "stroke-dasharray": "4 3" }, T.marker[1]));
      }
      var height = L.top + laneH + L.axis + L.legend;
      var lx = L.left;
      T.severities.slice().reverse().forEach(function (sev) {
        frag.appendChild(el("rect", { x: lx, y: height - 14, width: 10, height: 10, fill: T.colors[sev] }));
        frag.appendChild(text(el("text", { x: lx + 14, y: height - 5, "font-size": 11, fill: "#333" }), sev));
        lx += 74;
      });
      frag.appendChild(text(el("text", { x: L.left + plotW, y: height - 5, "text-anchor": "end", "font-size": 11,
        fill: "#555" }), "one bar per " + widthName(bw) + " and source, UTC"));
      svg.replaceChildren(frag);
      svg.setAttribute("data-from", lo);
      svg.setAttribute("data-to", hi);
      svg.setAttribute("data-bin", bw);
      text(rangeEl, "showing " + label(lo, 0) + " to " + label(hi, 0) + " UTC");
    }

    function zoom(factor) {
      var mid = (view[0] + view[1]) / 2;
      var half = Math.max((view[1] - view[0]) * factor / 2, 30);
      draw(mid - half, mid + half);
    }
    document.querySelectorAll("#timeline-controls button[data-zoom]").forEach(function (b) {
      b.addEventListener("click", function () {
        var what = b.getAttribute("data-zoom");
        if (what === "window" && T["default"]) { draw(T["default"][0], T["default"][1]); }
        if (what === "span" && T.span) {
          var pad2 = Math.max((T.span[1] - T.span[0]) * 0.02, 60);
          draw(T.span[0] - pad2, T.span[1] + pad2);
        }
        if (what === "in") { zoom(0.5); }
        if (what === "out") { zoom(2); }
      });
    });

    // drag across the plot to zoom to that stretch
    var dragFrom = null, band = null;
    function secAt(ev) {
      var box = svg.getBoundingClientRect();
      var px = (ev.clientX - box.left) / box.width * L.width;
      return view[0] + (px - L.left) / plotW * (view[1] - view[0]);
    }
    svg.addEventListener("mousedown", function (ev) {
      dragFrom = secAt(ev);
      band = el("rect", { "class": "selection", y: L.top, height: L.lane * T.lanes.length, fill: "#2159a8",
        "fill-opacity": "0.15", x: 0, width: 0 });
      svg.appendChild(band);
      ev.preventDefault();
    });
    svg.addEventListener("mousemove", function (ev) {
      if (dragFrom === null) { return; }
      var a = dragFrom, b2 = secAt(ev);
      var x0 = L.left + (Math.min(a, b2) - view[0]) / (view[1] - view[0]) * plotW;
      var x1 = L.left + (Math.max(a, b2) - view[0]) / (view[1] - view[0]) * plotW;
      band.setAttribute("x", x0.toFixed(1));
      band.setAttribute("width", Math.max(x1 - x0, 0).toFixed(1));
    });
    window.addEventListener("mouseup", function (ev) {
      if (dragFrom === null) { return; }
      var a = dragFrom, b2 = secAt(ev);
      dragFrom = null;
      if (band && band.parentNode) { band.parentNode.removeChild(band); }
      if (Math.abs(b2 - a) / (view[1] - view[0]) > 0.01) { draw(Math.min(a, b2), Math.max(a, b2)); }
    });
    text(rangeEl, "showing " + label(view[0], 0) + " to " + label(view[1], 0) + " UTC");
  }

  /* ---- static tables: click a header to sort -------------------------------------------- */
  document.querySelectorAll("table.sortable-table").forEach(function (tbl) {
    var heads = tbl.querySelectorAll("thead th");
    heads.forEach(function (th, col) {
      th.classList.add("sortable");
      th.addEventListener("click", function () {
        var dir = th.classList.contains("sorted-asc") ? -1 : 1;
        heads.forEach(function (o) { o.classList.remove("sorted-asc", "sorted-desc"); });
        th.classList.add(dir > 0 ? "sorted-asc" : "sorted-desc");
        var body = tbl.tBodies[0];
        var list = Array.prototype.slice.call(body.rows);
        var numeric = th.classList.contains("num");
        list.sort(function (a, b) {
          var x = a.cells[col] ? (a.cells[col].getAttribute("data-sort") || a.cells[col].textContent) : "";
          var y = b.cells[col] ? (b.cells[col].getAttribute("data-sort") || b.cells[col].textContent) : "";
          if (numeric) { x = parseFloat(x.replace(/,/g, "")) || 0; y = parseFloat(y.replace(/,/g, "")) || 0; }
          return (x < y ? -1 : x > y ? 1 : 0) * dir;
        });
        list.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
