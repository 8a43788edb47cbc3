/* Clientside callbacks of the FaXplainer app (run in the browser, no server round trip). */
window.dash_clientside = Object.assign({}, window.dash_clientside, {
  faxplainer: {
    /* Image view: hovering a thumbnail shows it larger, with its label / prediction text.
       The picture comes from the thumbnail route, by run id and image index only. */
    thumbnailTooltip: function (hoverData, run) {
      var none = window.dash_clientside.no_update;
      if (!hoverData || !hoverData.points || !hoverData.points.length || !run) {
        return [false, none, none, none];
      }
      var p = hoverData.points[0];
      var index = Array.isArray(p.customdata) ? p.customdata[0] : p.customdata;
      if (index === undefined || index === null) {
        return [false, none, none, none];
      }
      var src = "/files/thumb/" + encodeURIComponent(run) + "/" + parseInt(index, 10) + ".jpg";
      return [true, p.bbox, src, p.text || ""];
    },
    /* Attention view: when the analyst selects images in the grid, bring the (below the fold)
       attention panel into view, where their maps appear. */
    scrollToAttention: function (sel, panelId) {
      if (sel && sel.from === "graph" && sel.ids && sel.ids.length) {
        var panel = document.getElementById(panelId);
        if (panel) { panel.scrollIntoView({behavior: "smooth", block: "start"}); }
      }
      return window.dash_clientside.no_update;
    },
    /* A panel opened by a button elsewhere on the page: bring it into view. */
    scrollToOpened: function (style, panelId) {
      if (!style || style.display !== "none") {
        var panel = document.getElementById(panelId);
        if (panel) { setTimeout(function () { panel.scrollIntoView({behavior: "smooth", block: "nearest"}); }, 0); }
      }
      return window.dash_clientside.no_update;
    }
  }
});
