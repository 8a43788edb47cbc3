/* The image viewer's browser side (app/views/viewer.py registers these as clientside callbacks;
   component ids arrive as State values, so none is typed here).

   Keyboard use of the image grid: the grid (a plotly graph) is made focusable (Tab reaches it);
   while it has the focus the arrow keys move a visible cursor over the thumbnails, Home/End go
   to the first/last one, and Enter opens the one under the cursor in the viewer. The graph is an
   ARIA "application" region (its own keys), labelled with those keys, and a polite live region
   reads out the image under the cursor (file, label, prediction), so a screen reader user hears
   where the cursor is. In the open viewer, Left/Right go to the previous/next image (unless a
   control such as the opacity slider has the focus); Esc closes it (the dialog's own key). */
(function () {
  var CURSOR = "fx-grid-cursor", LIVE = "fx-sr-only";

  function plot(el) { return el && el.querySelector(".js-plotly-plot"); }

  function imagesTrace(gd) {
    var data = (gd && gd._fullData) || [];
    for (var i = 0; i < data.length; i++) {
      if (data[i].name === "images" && data[i].customdata) { return data[i]; }
    }
    return null;
  }

  /* Thumbnails in reading order: {x, y (slot centres), index (image), text, at: "row,col" -> k} */
  function slots(gd) {
    var t = imagesTrace(gd);
    if (!t) { return null; }
    var out = {n: t.x.length, col: [], row: [], index: [], text: [], at: {}};
    for (var k = 0; k < t.x.length; k++) {
      var c = Math.floor(t.x[k]), r = Math.floor(-t.y[k]);
      var custom = t.customdata[k];
      out.col.push(c); out.row.push(r);
      out.index.push(Array.isArray(custom) ? custom[0] : custom);
      out.text.push(t.text ? String(t.text[k] || "") : "");
      out.at[r + "," + c] = k;
    }
    return out;
  }

  function moveVertically(s, k, dr) {
    var r = s.row[k] + dr, c = s.col[k], best = null, dist = Infinity;
    if (s.at[r + "," + c] !== undefined) { return s.at[r + "," + c]; }
    for (var j = 0; j < s.n; j++) {  // an empty slot below: the nearest thumbnail of that row
      if (s.row[j] === r && Math.abs(s.col[j] - c) < dist) { best = j; dist = Math.abs(s.col[j] - c); }
    }
    return best === null ? k : best;
  }

  function place(el) {
    var gd = plot(el), s = gd && slots(gd), cursor = el.querySelector("." + CURSOR);
    if (!cursor) { return; }
    var k = el._fxCursor;
    if (!s || !s.n || k === undefined || !el._fxShow || !gd._fullLayout) { cursor.style.display = "none"; return; }
    var xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
    var box = gd.getBoundingClientRect(), outer = el.getBoundingClientRect();
    var x0 = xa._offset + xa.l2p(s.col[k]), x1 = xa._offset + xa.l2p(s.col[k] + 1);
    var y0 = ya._offset + ya.l2p(-s.row[k]), y1 = ya._offset + ya.l2p(-s.row[k] - 1);
    var inside = x1 > xa._offset && x0 < xa._offset + xa._length && y1 > ya._offset && y0 < ya._offset + ya._length;
    cursor.style.display = inside ? "block" : "none";
    cursor.style.left = (box.left - outer.left + Math.min(x0, x1)) + "px";
    cursor.style.top = (box.top - outer.top + Math.min(y0, y1)) + "px";
    cursor.style.width = Math.abs(x1 - x0) + "px";
    cursor.style.height = Math.abs(y1 - y0) + "px";
  }

  function announce(el, prefix) {
    var s = slots(plot(el)), live = el.querySelector("." + LIVE), k = el._fxCursor;
    if (!s || !live || k === undefined || !s.n) { return; }
    live.textContent = (prefix || "") + "Image " + (k + 1) + " of " + s.n + ": " +
      s.text[k].replace(/\n/g, ", ");
  }

  function install(el, keyId) {
    el._fxKeyId = keyId;
    if (el._fxInstalled) { return; }
    el._fxInstalled = true;
    el.tabIndex = 0;
    el.setAttribute("role", "application");
    el.setAttribute("aria-roledescription", "image grid");
    el.setAttribute("aria-label", "Images of the open cell. Arrow keys move between images, " +
                    "Home and End go to the first and last, Enter opens the image in the viewer.");
    if (getComputedStyle(el).position === "static") { el.style.position = "relative"; }
    var cursor = document.createElement("div");
    cursor.className = CURSOR;
    cursor.setAttribute("aria-hidden", "true");
    var live = document.createElement("div");
    live.className = LIVE;
    live.setAttribute("aria-live", "polite");
    el.appendChild(cursor);
    el.appendChild(live);
    el.addEventListener("mousedown", function () { el._fxPointer = Date.now(); });
    el.addEventListener("focus", function () {
      if (Date.now() - (el._fxPointer || 0) < 500) { return; }  // a click: no cursor until a key
      var s = slots(plot(el));
      if (!s || !s.n) { return; }
      if (el._fxCursor === undefined || el._fxCursor >= s.n) { el._fxCursor = 0; }
      el._fxShow = true;
      place(el);
      announce(el, "");
    });
    el.addEventListener("blur", function () { el._fxShow = false; place(el); });
    el.addEventListener("keydown", function (e) {
      if (e.target !== el) { return; }
      var s = slots(plot(el));
      if (!s || !s.n) { return; }
      var k = el._fxCursor === undefined || el._fxCursor >= s.n ? 0 : el._fxCursor, next = k;
      switch (e.key) {
        case "ArrowRight": next = Math.min(s.n - 1, k + 1); break;
        case "ArrowLeft": next = Math.max(0, k - 1); break;
        case "ArrowDown": next = moveVertically(s, k, 1); break;
        case "ArrowUp": next = moveVertically(s, k, -1); break;
        case "Home": next = 0; break;
        case "End": next = s.n - 1; break;
        case "Enter":
          e.preventDefault();
          window.dash_clientside.set_props(el._fxKeyId, {data: {index: s.index[k], t: Date.now()}});
          return;
        default: return;
      }
      e.preventDefault();
      el._fxCursor = next;
      el._fxShow = true;
      place(el);
      announce(el, "");
    });
  }

  function watch(el) {  // keep the cursor on its thumbnail through zooms, pans and redraws
    var gd = plot(el);
    if (gd && !gd._fxWatched && gd.on) {
      gd._fxWatched = true;
      gd.on("plotly_afterplot", function () { place(el); });
    }
  }

  function byId(id) { return document.getElementById(id); }

  function range(gd) {
    var fl = gd && gd._fullLayout;
    return fl && fl.xaxis ? {x: fl.xaxis.range.slice(), y: fl.yaxis.range.slice(),
                             w: (fl.meta || {}).width, h: (fl.meta || {}).height,
                             px: fl.xaxis._length, py: fl.yaxis._length} : null;
  }

  function scaleOf(r) { return r.px / Math.abs(r.x[1] - r.x[0]); }

  function pixelated(gd, r) {  // past 2 screen pixels per image pixel, show the pixels as squares
    var el = gd && gd.parentElement;
    if (el && r) { el.classList.toggle("fx-pixelated", scaleOf(r) >= 2); }
  }

  function close(a, b) { return Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(a), Math.abs(b)); }

  /* The link between the viewer's two pictures has one source of truth: the view box the analyst
     last set on either picture, as fractions of that picture. It is applied to the other picture
     once; the relayout that this causes is marked as ours and answered by nothing, and relayouts
     that set no view (a resize, a new figure) are not passed on. So no relayout ever answers a
     relayout: each picture's axes widen on their own to fill their graph (scaleanchor), and two
     graphs of other shapes used to pass the widened ranges back and forth without end. */
  function movedByHand(event) {
    for (var key in event || {}) {
      if (/^[xy]axis\.(range|autorange)/.test(key)) { return true; }
    }
    return false;
  }

  /* Only a side-by-side picture of the same region as the main one is linked (its figure says
     so: layout.meta.linked, set by the server from the data set's provenance); another crop of
     the same photo, or a picture of unknown region, keeps its own pan and zoom. */
  function linked(pairGd) {
    return !!(pairGd && pairGd._fullLayout && (pairGd._fullLayout.meta || {}).linked);
  }

  function follow(gd, other, event, pairGd) {
    if (gd._fxEcho > 0 || !movedByHand(event) || !linked(pairGd)) { return; }
    var a = range(gd), b = range(other);
    // only pictures of one shape are linked (e.g. a crop and its regeneration): a fraction of one
    // is then the same spot of the other
    if (!a || !b || !a.w || !b.w || other.offsetParent === null ||
        Math.abs(a.w / a.h - b.w / b.h) > 0.01 * (b.w / b.h)) { return; }
    var x = [a.x[0] / a.w * b.w, a.x[1] / a.w * b.w], y = [a.y[0] / a.h * b.h, a.y[1] / a.h * b.h];
    if (close(x[0], b.x[0]) && close(x[1], b.x[1]) && close(y[0], b.y[0]) && close(y[1], b.y[1])) { return; }
    other._fxEcho = (other._fxEcho || 0) + 1;  // plotly emits the event before its promise settles
    var done = function () { other._fxEcho -= 1; }, applied;
    try {
      applied = window.Plotly.relayout(other, {"xaxis.range": x, "yaxis.range": y});
    } catch (err) { done(); throw err; }
    Promise.resolve(applied).then(done, done);
  }

  /* Navigation keys of the open viewer: Left / Right = previous / next image. */
  document.addEventListener("keydown", function (e) {
    if (e.key !== "ArrowLeft" && e.key !== "ArrowRight") { return; }
    var dialog = document.querySelector(".fx-viewer.show, .fx-viewer[aria-modal='true']");
    if (!dialog || !dialog.contains(e.target)) { return; }
    if (e.target.closest("input, textarea, select, [role=slider], [role=combobox], [role=listbox], .rc-slider, .dash-dropdown")) {
      return;
    }
    var button = dialog.querySelector(e.key === "ArrowLeft" ? ".fx-viewer-prev" : ".fx-viewer-next");
    if (button && !button.disabled) { e.preventDefault(); button.click(); }
  });

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    faxplainer_viewer: {
      gridKeys: function (figure, graphId, keyId) {
        var el = byId(graphId);
        if (el) {
          install(el, keyId);
          // the figure is drawn after this callback: attach to it and re-place the cursor then
          setTimeout(function () {
            watch(el);
            var s = slots(plot(el));
            if (s && el._fxCursor !== undefined && el._fxCursor >= s.n) { el._fxCursor = 0; }
            place(el);
          }, 0);
        }
      },

      opacity: function (value, graphId) {
        var gd = plot(byId(graphId)), images = gd && gd.layout && gd.layout.images;
        if (!images) { return; }
        for (var k = 0; k < images.length; k++) {
          if (images[k].name === "relevance") {
            var update = {};
            update["images[" + k + "].opacity"] = value;
            window.Plotly.relayout(gd, update);
          }
        }
      },

      zoomTo: function (_fit, _actual, graphId, fitId) {
        var gd = plot(byId(graphId)), r = range(gd);
        if (!r || !r.w) { return; }
        var trig = (window.dash_clientside.callback_context.triggered || [])[0] || {};
        if (String(trig.prop_id || "").indexOf(fitId + ".") === 0) {
          window.Plotly.relayout(gd, {"xaxis.range": [0, r.w], "yaxis.range": [-r.h, 0]});
          return;
        }
        var cx = (r.x[0] + r.x[1]) / 2, cy = (r.y[0] + r.y[1]) / 2;
        window.Plotly.relayout(gd, {"xaxis.range": [cx - r.px / 2, cx + r.px / 2],
                                    "yaxis.range": [cy - r.py / 2, cy + r.py / 2]});
      },

      /* Hooks on the viewer's two pictures, (re)attached whenever a figure arrives: the zoom
         read-out and the square pixels past 2x follow every redraw; the side-by-side picture
         follows the main one's pan and zoom (and back) when it shows the same region (see linked). */
      viewerHooks: function (_main, _pair, mainId, pairId, zoomId) {
        setTimeout(function () {
          var main = plot(byId(mainId)), pair = plot(byId(pairId));
          [main, pair].forEach(function (gd) {
            if (!gd || gd._fxHooked || !gd.on) { return; }
            gd._fxHooked = true;
            gd.on("plotly_afterplot", function () {
              var r = range(gd), zoom = byId(zoomId);
              if (!r || !r.w) { return; }
              pixelated(gd, r);
              if (gd === plot(byId(mainId)) && zoom) { zoom.textContent = "zoom " + Math.round(scaleOf(r) * 100) + "%"; }
            });
            gd.on("plotly_relayout", function (event) {
              var other = plot(byId(gd === plot(byId(mainId)) ? pairId : mainId));
              follow(gd, other, event, plot(byId(pairId)));
            });
          });
        }, 0);
      }
    }
  });
})();
