// Progressive enhancement: the page works without it. Every data-refresh seconds the
// page's own URL is fetched again and <main> is replaced, unless the operator is busy
// with it (a box ticked, a field focused, a click or key press in the last 3 s), so a
// selection is never lost and a button is never swapped out under the pointer.
(function () {
  "use strict";
  // The notice an action left (?notice=...) is said once: a reload does not repeat it.
  if (window.history && window.URL && window.location.search.indexOf("notice=") !== -1) {
    var url = new URL(window.location.href);
    url.searchParams.delete("notice");
    url.searchParams.delete("sig");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
  var seconds = parseFloat(document.body.getAttribute("data-refresh") || "0");
  if (!(seconds > 0) || !window.fetch || !window.DOMParser) return;
  var lastInput = 0;
  ["pointerdown", "keydown"].forEach(function (name) {
    document.addEventListener(name, function () { lastInput = Date.now(); }, true);
  });
  function busy(main) {
    if (Date.now() - lastInput < 3000) return true;  // a click or key press under way
    var active = document.activeElement;
    if (active && main.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName)) return true;
    return main.querySelector("input[type=checkbox]:checked") !== null;
  }
  function refresh() {
    var main = document.getElementById("live");
    if (!main || busy(main) || document.hidden) return;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Live-Refresh": "1" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null) return;
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
        var current = document.getElementById("live");
        if (fresh && current && !busy(current) && fresh.innerHTML !== current.innerHTML) current.replaceWith(fresh);
      })
      .catch(function () { /* the next round tries again */ });
  }
  window.setInterval(refresh, seconds * 1000);
})();
