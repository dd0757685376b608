/* mphate live view: frames and status from `mphate watch`'s event stream.
 *
 * The server pushes two kinds of server-sent events: "frame" (the whole payload of the viewer,
 * the picture as it stands) and "status" (slices so far, the last slice's epoch and step,
 * fitting or idle, whether the writer is still there). A page that connects mid-run gets the
 * latest of each first, so it always starts from the whole picture; EventSource reconnects by
 * itself if the server goes away and comes back.
 */
(function () {
  "use strict";

  var el = function (id) { return document.getElementById(id); };
  var frames = 0, lastStatus = null, connected = false;
  var WRITER = {
    alive: "training", gone: "stopped", unknown: "running?", none: "waiting for the run"
  };

  function text(id, value) { el(id).textContent = value || ""; }
  function fmt(v) { return v === null || v === undefined ? "n/a" : String(+(+v).toPrecision(6)); }

  function showStatus(s) {
    lastStatus = s;
    var box = el("live-status");
    box.setAttribute("data-writer", s.writer || "none");
    box.setAttribute("data-activity", s.activity || "idle");
    text("live-writer", WRITER[s.writer || "none"] || s.writer);
    if (s.state === "waiting") {
      text("live-slices", ""); text("live-last", "");
    } else {
      var embedded = s.embedded === undefined ? 0 : s.embedded;
      text("live-slices", s.n_slices + " slice" + (s.n_slices === 1 ? "" : "s") +
        (embedded < s.n_slices ? " (" + embedded + " drawn)" : ""));
      text("live-last", s.last_step === null || s.last_step === undefined ? "" :
        "last: epoch " + fmt(s.last_epoch) + ", step " + s.last_step);
    }
    text("live-activity", s.activity === "fitting" ? "fitting" : s.activity === "error" ? "error" : "idle");
    var message = s.message || "";
    if (!message && s.last_frame && s.last_frame.kind === "refit" && s.last_frame.residual !== null) {
      message = "last refit aligned to the previous frame (Procrustes residual " + (+s.last_frame.residual).toFixed(2) + ")";
    }
    text("live-message", message);
  }

  var source = new EventSource("events");
  source.addEventListener("frame", function (ev) {
    frames++;
    window.mphateReport.update(JSON.parse(ev.data));
  });
  source.addEventListener("status", function (ev) { connected = true; showStatus(JSON.parse(ev.data)); });
  source.addEventListener("error", function () {
    if (!connected) return;
    connected = false;
    el("live-status").setAttribute("data-writer", "server-gone");
    text("live-writer", "server unreachable");
    text("live-message", "reconnecting\u2026 (is `mphate watch` still running?)");
  });

  // for tests and the console
  window.mphateLive = {
    frames: function () { return frames; },
    status: function () { return lastStatus; }
  };
})();
