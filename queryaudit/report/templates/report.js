// queryaudit report: copy buttons for fix SQL, and open every <details> before printing.
(function () {
  "use strict";
  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    return ok;
  }
  function done(button, ok) {
    var label = button.textContent;
    button.textContent = ok ? "Copied" : "Select + Ctrl-C";
    button.classList.toggle("done", ok);
    setTimeout(function () { button.textContent = label; button.classList.remove("done"); }, 1500);
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button.copy") : null;
    if (!button) { return; }
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) { return; }
    var text = source.textContent;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done(button, true); },
        function () { done(button, fallbackCopy(text)); });
    } else {
      done(button, fallbackCopy(text));
    }
  });
  window.addEventListener("beforeprint", function () {
    var all = document.querySelectorAll("details");
    for (var i = 0; i < all.length; i++) { all[i].setAttribute("open", ""); }
  });
  document.documentElement.setAttribute("data-ready", "1");
})();
