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
      r.hay = shown.map(function (c) { return r[F[c[0]]] || ""; }).concat([r[F.message] || ""]).join("\u0001").toLowerCase();
    });
    var state = { sortField: null, sortDir: 1, q: "", minSev: 0, host: "" };
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

    function detailRow(r) {
      var tr = document.createElement("tr");
      tr.className = "detail";
      var td = document.createElement("td");
      td.colSpan = shown.length;
      var dl = document.createElement("dl");
      dl.className = "kv";
      data.detail.forEach(function (name) {
        var v = r[F[name]];
        if (v === null || v === undefined || v === "") { return; }
        dl.appendChild(cell("div", name));
        var dd = document.createElement("div");
        if (name === "attributes" || name === "message") {
          dd.appendChild(cell("pre", v));
        } else {
          text(dd, v);
        }
        dl.appendChild(dd);
      });
      td.appendChild(dl);
      tr.appendChild(td);
      return tr;
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
        shown.forEach(function (c) {
          var v = r[F[c[0]]];
          var td = document.createElement("td");
          if (c[2]) { td.className = c[2]; }
          if (c[0] === "severity") { td.appendChild(sevBadge(v)); } else { text(td, v); }
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
