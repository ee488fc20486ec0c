// The desk console's script (src/admin/console.rs): loaded from this node
// only (the Content-Security-Policy allows nothing else). Pages work
// without it; it adds live updates where a page asks for them with
// data-live (an event stream) and data-refresh (the fragment to reload).
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-live]").forEach(function (box) {
    var refresh = box.getAttribute("data-refresh");
    var busy = false;
    var again = false;
    function reload() {
      if (busy) { again = true; return; }
      busy = true;
      fetch(refresh, { credentials: "same-origin" })
        .then(function (r) {
          if (r.status !== 200) { throw new Error("status " + r.status); }
          return r.text();
        })
        .then(function (html) {
          // Server-rendered and escaped by the node's templates.
          box.innerHTML = html;
          box.setAttribute("data-updated", String(Date.now()));
        })
        .catch(function () { /* the next event tries again */ })
        .then(function () {
          busy = false;
          if (again) { again = false; reload(); }
        });
    }
    var source = new EventSource(box.getAttribute("data-live"));
    source.addEventListener("hit", reload);
    source.addEventListener("open", function () { box.setAttribute("data-live-open", "1"); });
  });
});
