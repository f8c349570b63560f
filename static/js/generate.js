// Prompt ideas on the generate page: clicking one fills the prompt box, then an `input` event (what
// the box's hx-trigger listens for: a paste gives no key event either) tells htmx to refresh the
// live preview. A static file, not an inline script, so the strict CSP holds.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var chip = event.target.closest("[data-suggestion]");
    if (!chip) return;
    var box = document.getElementById("id_prompt");
    if (!box) return;
    box.value = chip.getAttribute("data-suggestion");
    box.focus();
    box.dispatchEvent(new Event("input", { bubbles: true }));
  });
})();
