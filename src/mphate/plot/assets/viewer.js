/* mphate report viewer: colouring switch, time slider / play, trajectories, loss curves.
 *
 * Reads the JSON in #mphate-data (written by mphate.plot.html.report_data). Points are
 * slice-major (point i = unit i % U at slice floor(i / U)), so "slices 0..k" is the prefix
 * of length (k + 1) * U of every per-point array: the slider just takes typed-array views.
 *
 * The page can also grow: window.mphateReport.update(data) replaces the payload (the live
 * view calls it for every frame `mphate watch` pushes). An empty #mphate-data ("null") waits
 * for the first update.
 */
(function () {
  "use strict";

  var D = null, S = 0, U = 0, N = 0, views = [], colorings = {}, sliceText = [];
  var TYPES = { float32: Float32Array, uint8: Uint8Array, uint16: Uint16Array, int32: Int32Array };

  function decode(col) {
    var bin = atob(col.b64), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new TYPES[col.dtype](bytes.buffer);
  }
  function num(v) { return v === null ? NaN : v; }
  function fmt(v) {
    if (v === null || !isFinite(v)) return "n/a";
    var a = Math.abs(v);
    return (a !== 0 && (a < 1e-3 || a >= 1e5)) ? v.toExponential(3) : String(+v.toPrecision(4));
  }

  // ---- data ------------------------------------------------------------------------------
  // every colouring as a Float32Array over all N points (categorical: category codes)
  function perPoint(c) {
    if (c.per === "point") return Float32Array.from(decode(c.values));
    var out = new Float32Array(N), s, u;
    if (c.per === "slice") {
      for (s = 0; s < S; s++) out.fill(num(c.values[s]), s * U, (s + 1) * U);
    } else {
      for (s = 0; s < S; s++) for (u = 0; u < U; u++) out[s * U + u] = num(c.values[u]);
    }
    return out;
  }

  // hover text: layer / unit / epoch / that epoch's scalars / most-active class, made when hovered
  function hoverText(i) {
    var s = Math.floor(i / U), u = i % U, cls = colorings["class"];
    return "<b>" + D.unit_names[u] + "</b> (unit " + u + ")<br>" + sliceText[s] +
      (cls ? "<br>most-active class " + cls.categories[cls.data[i]] : "");
  }

  // (re)read a payload: the report's one, or each frame of the live view
  function ingest(data) {
    D = data; S = D.n_slices; U = D.n_units; N = S * U;
    views = D.views.map(function (v) {
      return { name: v.name, dims: v.dims, coords: v.coords.map(decode), range: v.range };
    });
    colorings = {};
    D.colorings.forEach(function (c) { colorings[c.name] = Object.assign({ data: perPoint(c) }, c); });
    var names = Object.keys(D.scalars);
    sliceText = [];
    for (var s = 0; s < S; s++) {
      var t = "epoch " + fmt(D.epochs[s]);
      if (D.steps[s] !== D.epochs[s]) t += " (step " + D.steps[s] + ")";
      names.forEach(function (n) { t += "<br>" + n.replace(/_/g, " ") + " " + fmt(D.scalars[n][s]); });
      sliceText.push(t);
    }
    binCache = {};
    size = Math.max(2, Math.min(7, 320 / Math.sqrt(N)));
    pastOpacity = Math.max(0.3, Math.min(0.85, 1.25 - 0.15 * Math.log10(N)));
    frameMs = Math.max(40, Math.min(400, 8000 / S));
  }

  // ---- state & controls ------------------------------------------------------------------
  var el = function (id) { return document.getElementById(id); };
  // hidden: colour bins (categories) switched off in the legend; currentIndex: points of "current"
  var state = { color: null, view: 0, k: 0, trajectories: true, playing: false,
                hidden: {}, currentIndex: [] };
  var slider = el("time-slider");

  function fillOptions(select, items) {
    // rebuilt only when the items change, so an open menu is not reset by every live frame
    var key = JSON.stringify(items);
    if (select.getAttribute("data-items") === key) return;
    select.setAttribute("data-items", key);
    select.innerHTML = "";
    items.forEach(function (item) {
      var o = document.createElement("option");
      o.value = item[0]; o.textContent = item[1];
      select.appendChild(o);
    });
  }

  function syncControls() {
    var layerText = D.layer_names ? ", " + D.layer_names.length + " layer" + (D.layer_names.length > 1 ? "s" : "") : "";
    el("summary").textContent = N.toLocaleString() + " points: " + S + " slices \u00d7 " + U +
      " units" + layerText + ", traced on " + D.n_trace + " inputs";
    fillOptions(el("color-by"), D.colorings.map(function (c) {
      return [c.name, c.name === "class" ? "most-active class" : c.label];
    }));
    if (!colorings[state.color]) { state.color = D.colorings[0].name; state.hidden = {}; }
    el("color-by").value = state.color;
    if (state.view >= views.length) state.view = 0;
    fillOptions(el("view"), views.map(function (v, i) { return [String(i), v.name]; }));
    el("view").value = String(state.view);
    el("view-control").hidden = views.length < 2;
    slider.max = String(S - 1);
    slider.value = String(state.k);
    el("trail-label").textContent = trailLength() < S ? " (last " + trailLength() + " slices)" : "";
    if (!D.curves.length) {
      el("loss-curves").innerHTML = '<p class="notice">No loss was logged with this trace.</p>';
    } else {
      var notice = el("loss-curves").querySelector(".notice");
      if (notice) notice.remove();
    }
  }

  function timeLabel(k) {
    var t = "epoch " + fmt(D.epochs[k]);
    if (D.steps[k] !== D.epochs[k]) t += ", step " + D.steps[k];
    return t + " \u2014 slice " + (k + 1) + " of " + S;
  }

  // ---- embedding -------------------------------------------------------------------------
  // Plotly converts a per-point colour array point by point (slow past ~20k points), so the
  // points are split into colour bins, one single-colour trace each: categories for a
  // categorical colouring, D.continuous_colors.length value bins for a continuous one. Within
  // a bin points stay slice-major, so "slices 0..k" is again a prefix: binCounts[b][k + 1].
  var size = 2, pastOpacity = 0.5;  // set by ingest() from the number of points
  var NA_COLOR = "#bbbbbb";
  var binCache = {};

  function binsOf(c) {
    var nb, colors, names, code = new Int32Array(N), i, b;
    if (c.kind === "categorical") {
      nb = c.categories.length; colors = c.colors.slice(); names = c.categories.slice();
      for (i = 0; i < N; i++) code[i] = c.data[i];
    } else {
      colors = D.continuous_colors.slice(); nb = colors.length; names = colors.map(function () { return ""; });
      var span = c.cmax - c.cmin;
      for (i = 0; i < N; i++) {
        var v = c.data[i];
        code[i] = isNaN(v) ? nb : span > 0 ? Math.min(nb - 1, Math.floor((v - c.cmin) / span * nb)) : nb - 1;
      }
      colors.push(NA_COLOR); names.push("n/a"); nb += 1;  // last bin: points without a value
    }
    var sizes = new Int32Array(nb), counts = [];
    for (b = 0; b < nb; b++) counts.push(new Int32Array(S + 1));
    for (i = 0; i < N; i++) sizes[code[i]]++;
    var members = [], fill = new Int32Array(nb);
    for (b = 0; b < nb; b++) members.push(new Int32Array(sizes[b]));
    for (var s = 0; s < S; s++) {
      for (i = s * U; i < (s + 1) * U; i++) { b = code[i]; members[b][fill[b]++] = i; }
      for (b = 0; b < nb; b++) counts[b][s + 1] = fill[b];
    }
    return { colors: colors, names: names, code: code, members: members, counts: counts };
  }

  function binData(c, v) {
    var key = c.name + "|" + state.view;
    if (binCache[key]) return binCache[key];
    var bins = binsOf(c);
    bins.coords = bins.members.map(function (m) {
      return v.coords.map(function (col) {
        var out = new Float32Array(m.length);
        for (var j = 0; j < m.length; j++) out[j] = col[m[j]];
        return out;
      });
    });
    binCache = {};  // keep one colouring's bins: they are as big as the embedding itself
    binCache[key] = bins;
    return bins;
  }

  function coordsOf(cols, dims, hi, lo) {
    var o = { x: cols[0].subarray(lo || 0, hi), y: cols[1].subarray(lo || 0, hi) };
    if (dims === 3) o.z = cols[2].subarray(lo || 0, hi);
    return o;
  }

  // trajectories are capped at this many line vertices: beyond it they cost more than they show
  var TRAIL_VERTICES = 30000;
  function trailLength() { return Math.max(2, Math.floor(TRAIL_VERTICES / U)); }

  function trajectories(v, type, k, units) {
    // each listed unit's path over its last trailLength() slices up to k, separated by NaN gaps
    var first = Math.max(0, k + 1 - trailLength()), m = k - first + 1;
    var len = units.length * (m + 1), cols = [], d, u, j, s, i;
    for (d = 0; d < v.dims; d++) cols.push(new Float32Array(len));
    for (j = 0, i = 0; j < units.length; j++) {
      u = units[j];
      for (s = first; s <= k; s++, i++) for (d = 0; d < v.dims; d++) cols[d][i] = v.coords[d][s * U + u];
      for (d = 0; d < v.dims; d++) cols[d][i] = NaN;
      i++;
    }
    var t = { type: type, mode: "lines", uid: "trajectories", name: "trajectories", hoverinfo: "skip",
              showlegend: false, connectgaps: false, x: cols[0], y: cols[1],
              line: { color: "rgba(90,90,90,0.35)", width: v.dims === 3 ? 1.5 : 0.8 } };
    if (v.dims === 3) t.z = cols[2];
    return t;
  }

  function embeddingTraces() {
    var v = views[state.view], c = colorings[state.color], k = state.k;
    var type = v.dims === 3 ? "scatter3d" : (D.webgl ? "scattergl" : "scatter");
    var bins = binData(c, v), traces = [], sz = v.dims === 3 ? size * 0.6 : size;
    var categorical = c.kind === "categorical", hidden = state.hidden;
    // the current slice without the categories hidden from the legend
    var lo = k * U, current = [], i;
    for (i = lo; i < lo + U; i++) if (!hidden[bins.code[i]]) current.push(i);
    state.currentIndex = current;
    if (state.trajectories && k > 0) {
      traces.push(trajectories(v, type, k, current.map(function (i) { return i - lo; })));
    }
    bins.colors.forEach(function (color, b) {
      var n = bins.counts[b][k + 1];
      traces.push(Object.assign({
        type: type, mode: "markers", uid: "points-" + b, name: bins.names[b],
        showlegend: categorical && bins.members[b].length > 0, visible: hidden[b] ? "legendonly" : true,
        hoverinfo: "none",  // the tooltip is ours (see showTooltip): no per-point text arrays
        marker: { color: color, size: sz, opacity: k === S - 1 ? pastOpacity : pastOpacity * 0.6 }
      }, coordsOf(bins.coords[b], v.dims, n)));
    });
    // the current slice, larger and opaque, drawn last so it sits on top
    var now = { type: type, mode: "markers", uid: "current", name: "current slice", showlegend: false,
                hoverinfo: "none", marker: { color: current.map(function (i) { return bins.colors[bins.code[i]]; }),
                size: sz * 1.6, opacity: 1 } };
    ["x", "y", "z"].slice(0, v.dims).forEach(function (axisName, d) {
      now[axisName] = Float32Array.from(current, function (i) { return v.coords[d][i]; });
    });
    traces.push(now);
    if (!categorical) {
      // no data, only the colour-bar of the continuous map
      var bar = { type: type, mode: "markers", uid: "colorbar", showlegend: false, hoverinfo: "skip",
                  x: [null], y: [null], marker: { color: [c.cmin], colorscale: D.continuous_scale,
                  cmin: c.cmin, cmax: c.cmax, showscale: true, size: 0.1,
                  colorbar: { title: { text: c.label }, thickness: 12, len: 0.8, outlinewidth: 0 } } };
      if (v.dims === 3) bar.z = [null];
      traces.push(bar);
    }
    return traces;
  }

  // ---- tooltip ---------------------------------------------------------------------------
  // Handing plotly a hover-text array per trace costs more than drawing the points, so the
  // page maps a hovered (trace, point) back to its point index and writes the tooltip itself.
  var tooltip = document.createElement("div");
  tooltip.id = "tooltip"; tooltip.setAttribute("role", "tooltip"); tooltip.hidden = true;
  document.body.appendChild(tooltip);

  function pointIndex(p) {
    var uid = String(p.data.uid);
    if (uid === "current") return state.currentIndex[p.pointNumber];
    if (uid.indexOf("points-") === 0) {
      var bins = binData(colorings[state.color], views[state.view]);
      return bins.members[+uid.slice(7)][p.pointNumber];
    }
    return -1;
  }
  function showTooltip(ev) {
    var p = (ev.points || []).filter(function (q) { return pointIndex(q) >= 0; })[0];
    if (!p) { tooltip.hidden = true; return; }
    var i = pointIndex(p), e = ev.event || {};
    tooltip.innerHTML = hoverText(i);
    tooltip.hidden = false;
    var x = (e.clientX || 0) + 14, y = (e.clientY || 0) + 14;
    var w = tooltip.offsetWidth, h = tooltip.offsetHeight;
    if (x + w > window.innerWidth - 4) x = Math.max(4, x - w - 28);
    if (y + h > window.innerHeight - 4) y = Math.max(4, y - h - 28);
    tooltip.style.left = x + "px"; tooltip.style.top = y + "px";
  }

  function axis(title, range) {
    var pad = (range[1] - range[0]) * 0.04 || 1;
    return { title: { text: title }, range: [range[0] - pad, range[1] + pad], showticklabels: false,
             ticks: "", showgrid: false, zeroline: false, showline: true, linecolor: "#444" };
  }

  function embeddingLayout() {
    var v = views[state.view], c = colorings[state.color];
    var layout = {
      uirevision: "view-" + state.view, hovermode: "closest", dragmode: v.dims === 3 ? "orbit" : "pan",
      margin: { l: 40, r: 10, t: 34, b: 40 }, paper_bgcolor: "white", plot_bgcolor: "white",  // t: room for the modebar
      showlegend: c.kind === "categorical",
      legend: { title: { text: c.label }, itemsizing: "constant" },
      font: { family: "system-ui, sans-serif", size: 13 }
    };
    if (v.dims === 3) {
      layout.scene = { xaxis: axis("M-PHATE 1", v.range[0]), yaxis: axis("M-PHATE 2", v.range[1]),
                       zaxis: axis("M-PHATE 3", v.range[2]) };
    } else {
      layout.xaxis = axis("M-PHATE 1", v.range[0]);
      layout.yaxis = axis("M-PHATE 2", v.range[1]);
    }
    return layout;
  }

  // ---- loss curves -----------------------------------------------------------------------
  var palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];
  function lossTraces() {
    var k = state.k, traces = D.curves.map(function (n, i) {
      return { type: "scatter", mode: S > 60 ? "lines" : "lines+markers", name: n.replace(/_/g, " "),
               x: D.epochs, y: D.scalars[n], line: { color: palette[i % palette.length], width: 2 },
               marker: { size: 4 }, hovertemplate: "epoch %{x}<br>%{y:.4g}<extra>%{fullData.name}</extra>" };
    });
    traces.push({ type: "scatter", mode: "markers", uid: "loss-now", name: "now", showlegend: false,
                  hoverinfo: "skip", x: D.curves.map(function () { return D.epochs[k]; }),
                  y: D.curves.map(function (n) { return D.scalars[n][k]; }),
                  marker: { size: 10, color: D.curves.map(function (_, i) { return palette[i % palette.length]; }),
                            line: { color: "white", width: 1.5 } } });
    return traces;
  }
  function lossLayout() {
    var e = D.epochs[state.k];
    var isLoss = D.curves.some(function (n) { return /loss/i.test(n); });
    return {
      uirevision: "loss", margin: { l: 50, r: 10, t: 30, b: 40 }, hovermode: "x",
      title: { text: isLoss ? "Loss" : "Logged values", font: { size: 14 }, x: 0.02 },
      xaxis: { title: { text: "epoch" }, zeroline: false, showgrid: false, showline: true },
      yaxis: { title: { text: isLoss ? "loss" : "" }, zeroline: false, showline: true, gridcolor: "#eee" },
      legend: { orientation: "h", x: 1, xanchor: "right", y: 1.12 },
      shapes: [{ type: "line", xref: "x", yref: "paper", x0: e, x1: e, y0: 0, y1: 1,
                 line: { color: "#555", width: 1, dash: "dot" } }],
      font: { family: "system-ui, sans-serif", size: 12 }, paper_bgcolor: "white", plot_bgcolor: "white"
    };
  }

  // ---- rendering (coalesced: a slider drag renders at most one frame at a time) ----------
  var config = { responsive: true, displaylogo: false, scrollZoom: true,
                 toImageButtonOptions: { format: "png", filename: "mphate", scale: 2 } };
  var rendering = false, pending = false, renders = 0, waiters = [];

  function render() {
    if (D === null) return;
    if (rendering) { pending = true; return; }
    var waiting = el("waiting");
    if (waiting) waiting.remove();
    rendering = true;
    el("time-label").textContent = timeLabel(state.k);
    var jobs = [Plotly.react(el("embedding"), embeddingTraces(), embeddingLayout(), config)];
    if (D.curves.length) jobs.push(Plotly.react(el("loss-curves"), lossTraces(), lossLayout(), config));
    Promise.all(jobs).then(done, function (err) { done(); showError(err); });
  }
  function done() {
    rendering = false; renders++;
    if (pending) { pending = false; render(); return; }
    var w = waiters; waiters = [];
    w.forEach(function (f) { f(); });
  }
  function showError(err) {
    var box = document.createElement("p");
    box.className = "notice"; box.textContent = "Could not draw the plot: " + err;
    el("embedding").appendChild(box);
  }

  function setSlice(k) {
    state.k = Math.max(0, Math.min(S - 1, k | 0));
    slider.value = String(state.k);
    render();
  }

  // ---- play ------------------------------------------------------------------------------
  var frameMs = 200;
  function setPlaying(on) {
    state.playing = on;
    el("play").innerHTML = on ? "&#10074;&#10074; Pause" : "&#9654; Play";
    if (on) {
      if (state.k >= S - 1) setSlice(0);
      tick();
    }
  }
  function tick() {
    if (!state.playing) return;
    whenIdle().then(function () {
      if (!state.playing) return;
      if (state.k >= S - 1) { setPlaying(false); return; }
      setSlice(state.k + 1);
      setTimeout(tick, frameMs);
    });
  }
  function whenIdle() {
    return new Promise(function (resolve) { if (!rendering && !pending) resolve(); else waiters.push(resolve); });
  }

  el("color-by").addEventListener("change", function (e) { state.color = e.target.value; state.hidden = {}; render(); });
  el("view").addEventListener("change", function (e) { state.view = +e.target.value; render(); });
  el("trajectories").addEventListener("change", function (e) { state.trajectories = e.target.checked; render(); });
  slider.addEventListener("input", function () { setPlaying(false); setSlice(+slider.value); });
  el("play").addEventListener("click", function () { setPlaying(!state.playing); });

  // ---- the plots' own events, attached once each plot exists ---------------------------
  function hookEmbedding() {
    // a legend click hides a category everywhere (past points, current slice, trajectories)
    el("embedding").on("plotly_legendclick", function (ev) {
      var uid = String(ev.data[ev.curveNumber].uid);
      if (uid.indexOf("points-") === 0) {
        var b = +uid.slice(7);
        if (state.hidden[b]) delete state.hidden[b]; else state.hidden[b] = true;
        render();
      }
      return false;
    });
    el("embedding").on("plotly_legenddoubleclick", function () { return false; });
    el("embedding").on("plotly_hover", showTooltip);
    el("embedding").on("plotly_unhover", function () { tooltip.hidden = true; });
  }
  var lossHooked = false;
  function hookLossCurves() {
    if (lossHooked || !el("loss-curves").on) return;
    lossHooked = true;
    // clicking a point of a loss curve jumps to that moment of training
    el("loss-curves").on("plotly_click", function (ev) {
      var p = (ev.points || []).filter(function (q) { return q.data.uid !== "loss-now"; })[0];
      if (p) { setPlaying(false); setSlice(p.pointIndex); }
    });
  }

  // ---- new data: the first payload, or the next frame of a growing run ------------------
  var started = false;
  function update(data) {
    // a viewer on the last slice follows the run; one looking back stays where it is
    var following = D === null || state.k >= S - 1;
    ingest(data);
    state.k = following ? S - 1 : Math.min(state.k, S - 1);
    syncControls();
    render();
    if (!started) {
      started = true;
      whenIdle().then(function () {
        hookEmbedding();
        document.body.setAttribute("data-ready", "1");
      });
    }
    return whenIdle().then(hookLossCurves);
  }

  // a hook for tests, for scripting the page from the console, and for the live view
  window.mphateReport = {
    get data() { return D; }, state: state, hoverText: hoverText, setSlice: setSlice, whenIdle: whenIdle,
    update: update,
    // points drawn now (all slices up to the slider's), summed over the colour-bin traces
    pointsShown: function () {
      return (el("embedding").data || []).reduce(function (n, t) {
        return n + (String(t.uid).indexOf("points-") === 0 ? t.x.length : 0);
      }, 0);
    },
    setColor: function (name) { el("color-by").value = name; state.color = name; state.hidden = {}; render(); },
    renders: function () { return renders; }
  };

  var initial = JSON.parse(el("mphate-data").textContent);
  if (initial) {
    update(initial);
  } else {
    el("embedding").innerHTML = '<p class="notice" id="waiting">Waiting for the first slices\u2026</p>';
  }
})();
