// Fluxsite: behaviour every page shares. Everything here is an enhancement: each page works without it.
(function () {
  "use strict";

  // The main menu is a <details> element: closed on a phone, shown as a row on wider screens (the
  // stylesheet does that on its own where ::details-content is supported; opening it here covers the rest).
  var wide = window.matchMedia("(min-width: 761px)");
  function menuSync() {
    var menu = document.getElementById("navmenu");
    if (menu && wide.matches) menu.open = true;
  }

  // A button says it is working while its request runs, so a second tap does not send it twice.
  // Ordinary forms: after the submit event (the form data, with the clicked button's name, is built
  // first), unless a script took the submission over (defaultPrevented). htmx requests: from
  // htmx:beforeRequest to htmx:afterRequest, for a form's buttons or the button that made it.
  function submitButtons(form) {
    return Array.prototype.slice.call(form.querySelectorAll("button:not([type=button]), input[type=submit]"));
  }
  function busy(buttons, on) {
    buttons.forEach(function (button) {
      if (on) {
        if (button.disabled) return;
        button.disabled = true;
        button.setAttribute("data-busy", "");
        button.setAttribute("aria-busy", "true");
      } else if (button.hasAttribute("data-busy")) {
        button.disabled = false;
        button.removeAttribute("data-busy");
        button.removeAttribute("aria-busy");
      }
    });
  }
  function requestButtons(elt) {
    if (!elt || !elt.tagName) return [];
    if (elt.tagName === "FORM") return submitButtons(elt);
    if (elt.tagName === "BUTTON") return [elt];
    return [];
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (event.defaultPrevented || form.hasAttribute("hx-post") || form.hasAttribute("hx-get")) return;
    var buttons = submitButtons(form);
    window.setTimeout(function () { busy(buttons, true); }, 0);
  });
  // Back to a page kept in the browser's cache: its buttons work again.
  window.addEventListener("pageshow", function () { busy(Array.prototype.slice.call(document.querySelectorAll("[data-busy]")), false); });
  document.addEventListener("htmx:beforeRequest", function (event) { busy(requestButtons(event.detail.elt), true); });
  document.addEventListener("htmx:afterRequest", function (event) { busy(requestButtons(event.detail.elt), false); });

  // The browser's time zone, for pages that show times (fluxsite.timezones reads it). A cookie, not
  // a request, so the first page is in UTC and every later one in the person's own zone.
  function zoneRemember() {
    var zone;
    try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
    if (!zone || !/^[A-Za-z0-9_+\-\/]{1,64}$/.test(zone)) return;
    // Unencoded: the pattern above admits only characters a cookie value may hold, and Django
    // reads cookie values as they are (no percent-decoding).
    if (document.cookie.split("; ").indexOf("tz=" + zone) === -1) {
      document.cookie = "tz=" + zone + "; path=/; max-age=31536000; samesite=lax";
    }
  }

  function start() { menuSync(); zoneRemember(); }
  if (wide.addEventListener) wide.addEventListener("change", menuSync);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
