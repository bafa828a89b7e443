// Small progressive enhancements; every page works without them.
(function () {
  "use strict";

  // Times are rendered in UTC on the server; show them in the reader's own time zone.
  // Times marked data-keep are already in the schedule's own zone, which is what they mean.
  document.querySelectorAll("time[datetime]:not([data-keep])").forEach(function (el) {
    var d = new Date(el.getAttribute("datetime"));
    if (isNaN(d)) return;
    el.title = el.textContent;
    el.textContent = d.toLocaleString(undefined, {
      year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
    });
  });

  // The job form shows only the inputs of the chosen frequency.
  var kind = document.querySelector("[data-kind]");
  function showKind() {
    document.querySelectorAll("[data-for-kind]").forEach(function (el) {
      el.hidden = el.getAttribute("data-for-kind") !== kind.value;
    });
  }
  if (kind) { kind.addEventListener("change", showKind); showKind(); }

  // Move focus to the error summary so keyboard and screen-reader users hear what to fix.
  var summary = document.getElementById("error-summary");
  if (summary) summary.focus();

  // Output tabs (HTML / Text), with arrow-key navigation as the ARIA tabs pattern has it.
  document.querySelectorAll("[data-tabs]").forEach(function (box) {
    var tabs = Array.prototype.slice.call(box.querySelectorAll("[role=tab]"));
    function select(tab) {
      tabs.forEach(function (t) {
        var on = t === tab;
        t.setAttribute("aria-selected", on ? "true" : "false");
        t.tabIndex = on ? 0 : -1;
        document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
      });
      tab.focus();
    }
    tabs.forEach(function (tab, i) {
      tab.addEventListener("click", function () { select(tab); });
      tab.addEventListener("keydown", function (e) {
        if (e.key === "ArrowRight") select(tabs[(i + 1) % tabs.length]);
        if (e.key === "ArrowLeft") select(tabs[(i - 1 + tabs.length) % tabs.length]);
      });
    });
  });

  // The job-type chooser filters as one types (the search button does the same on the server).
  var filter = document.querySelector("[data-type-filter]");
  if (filter) {
    var count = document.querySelector("[data-type-count]");
    var items = Array.prototype.slice.call(document.querySelectorAll("[data-type-text]"));
    filter.addEventListener("input", function () {
      var words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
      var shown = 0;
      items.forEach(function (li) {
        var text = li.getAttribute("data-type-text");
        var on = words.every(function (w) { return text.indexOf(w) !== -1; });
        li.hidden = !on;
        if (on) shown += 1;
      });
      document.querySelectorAll("[data-family]").forEach(function (section) {
        section.hidden = !section.querySelector("[data-type-text]:not([hidden])");
      });
      if (count) count.textContent = shown + " of " + items.length + " job types";
    });
  }

  // A run that has not started yet: reload until history has it.
  var refresh = document.querySelector("[data-refresh]");
  if (refresh) setTimeout(function () { location.reload(); }, +refresh.getAttribute("data-refresh"));
})();
