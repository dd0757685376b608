// mphate compare-runs page: one canvas panel per run, shared colourings, a sortable table.
// Reads the JSON in #mphate-data (written by mphate.plot.grid.grid_html); needs no network.
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("mphate-data").textContent);
  const COLORINGS = DATA.colorings;
  const state = { coloring: COLORINGS.length ? COLORINGS[0].name : null, sameScale: false,
                  sortKey: null, sortDir: null, drawn: {} };

  // ------------------------------------------------------------------ data
  const TYPED = { float32: Float32Array, uint8: Uint8Array, uint16: Uint16Array, int32: Int32Array };

  function decode(spec) {
    const raw = atob(spec.b64);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return new TYPED[spec.dtype](bytes.buffer);
  }

  function prepare(p) {
    const panel = Object.assign({}, p, { failed: !p.x });
    if (panel.failed) return panel;
    panel.x = decode(p.x);
    panel.y = decode(p.y);
    panel.n = panel.x.length;
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < panel.n; i++) {
      x0 = Math.min(x0, panel.x[i]); x1 = Math.max(x1, panel.x[i]);
      y0 = Math.min(y0, panel.y[i]); y1 = Math.max(y1, panel.y[i]);
    }
    panel.centre = [(x0 + x1) / 2, (y0 + y1) / 2];
    panel.half = Math.max(x1 - x0, y1 - y0, 1e-12) / 2;
    panel.cache = {};
    // unit labels: layer name and index within the layer
    panel.unitLabel = [];
    const seen = {};
    for (let u = 0; u < panel.n_units; u++) {
      if (!panel.unit_layer) { panel.unitLabel.push("unit " + u); continue; }
      const l = panel.unit_layer[u];
      seen[l] = (seen[l] || 0) + 1;
      panel.unitLabel.push(panel.layer_names[l] + " unit " + (seen[l] - 1));
    }
    return panel;
  }

  const panels = DATA.panels.map(prepare);
  const byName = {};
  panels.forEach(p => { byName[p.name] = p; });

  function coloringByName(name) { return COLORINGS.find(c => c.name === name) || null; }

  // per shown point: the value (continuous) or category code, or null where the run lacks it
  function pointValues(panel, col) {
    if (panel.cache[col.name] !== undefined) return panel.cache[col.name];
    const spec = panel.colorings[col.name];
    let out = null;
    if (spec) {
      const nu = panel.n_units, ns = panel.shown_slices.length;
      if (spec.per === "point") out = decode(spec.values);
      else {
        out = new Float64Array(ns * nu);
        for (let s = 0; s < ns; s++)
          for (let u = 0; u < nu; u++) {
            const v = spec.per === "slice" ? spec.values[s] : spec.values[u];
            out[s * nu + u] = v === null ? NaN : v;
          }
      }
    }
    panel.cache[col.name] = out;
    return out;
  }

  function colorOf(col, v) {
    if (v === undefined || v === null || Number.isNaN(v)) return DATA.missing_color;
    if (col.kind === "categorical") return col.colors[v] || DATA.missing_color;
    const bins = DATA.continuous_colors, span = col.vmax - col.vmin;
    const f = span > 0 ? (v - col.vmin) / span : 0.5;
    return bins[Math.min(bins.length - 1, Math.max(0, Math.floor(f * bins.length)))];
  }

  // ------------------------------------------------------------------ drawing
  function order(panel, col) {
    const idx = Array.from({ length: panel.n }, (_, i) => i);
    if (col && col.kind === "categorical") {
      let seed = 12345;  // a fixed shuffle: no category always on top, same picture every time
      for (let i = idx.length - 1; i > 0; i--) {
        seed = (seed * 1103515245 + 12345) % 2147483648;
        const j = seed % (i + 1);
        const t = idx[i]; idx[i] = idx[j]; idx[j] = t;
      }
    }
    return idx;
  }

  function globalHalf() { return Math.max(...panels.filter(p => !p.failed).map(p => p.half), 1e-12); }

  function draw(panel) {
    const canvas = panel.canvas, dpr = window.devicePixelRatio || 1;
    const size = canvas.clientWidth || 260;
    canvas.width = Math.round(size * dpr);
    canvas.height = Math.round(size * dpr);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, size, size);
    const col = coloringByName(state.coloring);
    const values = col ? pointValues(panel, col) : null;
    const half = (state.sameScale ? globalHalf() : panel.half) * 1.06, pad = 4;
    const scale = (size / 2 - pad) / half;
    const r = Math.max(0.9, Math.min(3, 3.6 - 0.6 * Math.log10(panel.n)));
    panel.px = new Float32Array(panel.n);
    panel.py = new Float32Array(panel.n);
    ctx.globalAlpha = panel.n > 2000 ? 0.7 : 0.85;
    for (const i of order(panel, col)) {
      const sx = size / 2 + (panel.x[i] - panel.centre[0]) * scale;
      const sy = size / 2 - (panel.y[i] - panel.centre[1]) * scale;
      panel.px[i] = sx; panel.py[i] = sy;
      ctx.fillStyle = col ? colorOf(col, values ? values[i] : null) : "#555";
      ctx.beginPath();
      ctx.arc(sx, sy, r, 0, 2 * Math.PI);
      ctx.fill();
    }
    ctx.globalAlpha = 1;
    state.drawn[panel.name] = panel.n;
    panel.note.textContent = values || !col ? panel.strideNote : "grey: this run has no " + col.label;
  }

  function drawAll() { panels.filter(p => !p.failed).forEach(draw); drawKey(); }

  function drawKey() {
    const key = document.getElementById("key");
    key.innerHTML = "";
    const col = coloringByName(state.coloring);
    if (!col) return;
    if (col.kind === "categorical") {
      col.categories.forEach((c, i) => {
        const item = document.createElement("span");
        item.className = "key-item";
        item.innerHTML = `<span class="swatch" style="background:${col.colors[i]}"></span>`;
        item.appendChild(document.createTextNode(c));
        key.appendChild(item);
      });
    } else {
      const bar = `<span class="colorbar" style="background:linear-gradient(to right,${DATA.continuous_colors.join(",")})"></span>`;
      key.innerHTML = `<span>${fmt(col.vmin)}</span>${bar}<span>${fmt(col.vmax)}</span>`;
    }
  }

  // ------------------------------------------------------------------ panels and hover
  function buildPanels() {
    const box = document.getElementById("panels");
    for (const p of panels) {
      const div = document.createElement("div");
      div.className = "panel" + (p.failed ? " failed" : "");
      div.dataset.run = p.name;
      const h = document.createElement("h3");
      h.textContent = p.name;
      const sub = document.createElement("p");
      sub.className = "subtitle muted";
      sub.textContent = p.failed ? "failed" : p.subtitle;
      div.append(h, sub);
      if (p.failed) {
        const err = document.createElement("div");
        err.className = "error";
        err.textContent = p.error;
        div.appendChild(err);
      } else {
        p.canvas = document.createElement("canvas");
        p.note = document.createElement("p");
        p.note.className = "panel-note muted";
        const shown = p.shown_slices.length;
        p.strideNote = shown < p.n_slices ? `${shown} of ${p.n_slices} slices shown (the PNG has all)` : "";
        div.append(p.canvas, p.note);
        p.canvas.addEventListener("mousemove", e => hover(p, e));
        p.canvas.addEventListener("mouseleave", () => { tooltip.hidden = true; });
      }
      p.div = div;
      box.appendChild(div);
    }
  }

  const tooltip = document.getElementById("tooltip");

  function nearest(panel, mx, my, radius) {
    let best = -1, bestD = radius * radius;
    for (let i = 0; i < panel.n; i++) {
      const dx = panel.px[i] - mx, dy = panel.py[i] - my, d = dx * dx + dy * dy;
      if (d <= bestD) { best = i; bestD = d; }
    }
    return best;
  }

  function hover(panel, event) {
    if (!panel.px) return;
    const box = panel.canvas.getBoundingClientRect();
    const i = nearest(panel, event.clientX - box.left, event.clientY - box.top, 7);
    if (i < 0) { tooltip.hidden = true; return; }
    const s = Math.floor(i / panel.n_units), u = i % panel.n_units;
    const col = coloringByName(state.coloring), values = col ? pointValues(panel, col) : null;
    let value = "";
    if (col && values) {
      const v = values[i];
      value = col.kind === "categorical" ? col.categories[v] : fmt(v);
      value = `<br>${escapeHtml(col.label)}: ${escapeHtml(String(value))}`;
    }
    tooltip.innerHTML = `<b>${escapeHtml(panel.name)}</b><br>${escapeHtml(panel.unitLabel[u])}` +
      `<br>epoch ${fmt(panel.epochs[s])} (slice ${panel.shown_slices[s] + 1} of ${panel.n_slices})${value}`;
    tooltip.style.left = (event.clientX + 14) + "px";
    tooltip.style.top = (event.clientY + 10) + "px";
    tooltip.hidden = false;
  }

  // ------------------------------------------------------------------ the table
  const columns = DATA.table.columns.filter(c => c.key !== "path" &&
    DATA.table.rows.some(r => r[c.key] !== null && r[c.key] !== undefined && r[c.key] !== ""));
  let rows = DATA.table.rows.slice();

  function fmt(v) {
    if (v === null || v === undefined || (typeof v === "number" && !Number.isFinite(v))) return "";
    if (typeof v !== "number") return String(v);
    return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(4)));
  }

  function escapeHtml(text) {
    return text.replace(/[&<>"]/g, ch => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[ch]));
  }

  function buildTable() {
    const head = document.querySelector("#runs-table thead");
    const tr = document.createElement("tr");
    for (const c of columns) {
      const th = document.createElement("th");
      th.dataset.key = c.key;
      th.setAttribute("aria-sort", "none");
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = c.label;
      button.addEventListener("click", () => sortBy(c.key));
      th.appendChild(button);
      tr.appendChild(th);
    }
    head.appendChild(tr);
    renderRows();
  }

  function renderRows() {
    const body = document.querySelector("#runs-table tbody");
    body.innerHTML = "";
    for (const r of rows) {
      const tr = document.createElement("tr");
      tr.dataset.run = r.run;
      if (r.status === "error") tr.className = "error";
      for (const c of columns) {
        const td = document.createElement("td");
        td.textContent = fmt(r[c.key]);
        if (c.kind === "text") td.className = c.key === "error" ? "error-text" : "text";
        if (c.key === "run") td.title = r.path || "";
        if (c.kind === "float" && typeof r[c.key] === "number") td.title = String(r[c.key]);
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
  }

  function compare(a, b, key, kind) {
    const va = a[key], vb = b[key];
    const missing = v => v === null || v === undefined || v === "";
    if (missing(va) || missing(vb)) return missing(va) - missing(vb);  // empty cells last either way
    return kind === "text" ? String(va).localeCompare(String(vb)) : va - vb;
  }

  function sortBy(key, dir) {
    const col = columns.find(c => c.key === key) || DATA.table.columns.find(c => c.key === key);
    if (!col) throw new Error("no column " + key);
    state.sortDir = dir || (state.sortKey === key && state.sortDir === "ascending" ? "descending" : "ascending");
    state.sortKey = key;
    const sign = state.sortDir === "ascending" ? 1 : -1;
    rows = DATA.table.rows.slice().sort((a, b) => {
      const missing = v => v === null || v === undefined || v === "";
      if (missing(a[key]) !== missing(b[key])) return compare(a, b, key, col.kind);
      return sign * compare(a, b, key, col.kind);
    });
    document.querySelectorAll("#runs-table th").forEach(th => {
      th.setAttribute("aria-sort", th.dataset.key === key ? state.sortDir : "none");
    });
    renderRows();
    const box = document.getElementById("panels");
    rows.forEach(r => { if (byName[r.run]) box.appendChild(byName[r.run].div); });  // panels follow the table
  }

  // ------------------------------------------------------------------ start
  function start() {
    document.getElementById("summary").textContent = DATA.summary;
    const notes = document.getElementById("notes");
    for (const text of DATA.notes) {
      const p = document.createElement("p");
      p.className = "note";
      p.textContent = text;
      notes.appendChild(p);
    }
    const select = document.getElementById("color-by");
    for (const c of COLORINGS) {
      const o = document.createElement("option");
      o.value = c.name;
      o.textContent = c.label;
      select.appendChild(o);
    }
    select.addEventListener("change", () => { state.coloring = select.value; drawAll(); });
    const same = document.getElementById("same-scale");
    same.addEventListener("change", () => { state.sameScale = same.checked; drawAll(); });
    buildPanels();
    buildTable();
    drawAll();
    window.addEventListener("resize", drawAll);
    window.mphateGrid = {
      state, data: DATA, sortBy,
      setColoring(name) { select.value = name; state.coloring = name; drawAll(); },
      panelOrder() { return [...document.querySelectorAll("#panels .panel")].map(d => d.dataset.run); },
      pointsDrawn(name) { return state.drawn[name] || 0; },
      // where point i of a run's panel is drawn, in CSS pixels from the canvas's top left
      screenPoint(name, i) { const p = byName[name]; return [p.px[i], p.py[i]]; },
    };
    document.body.dataset.ready = "1";
  }

  start();
})();
