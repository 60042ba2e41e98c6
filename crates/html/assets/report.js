// netdissect report: sorting and filtering the unit cards of a layer page.
// Plain JavaScript, no library; the page works without it (cards in unit order).
(function () {
  "use strict";
  var cards = document.getElementById("cards");
  if (!cards) return;
  var all = Array.prototype.slice.call(cards.querySelectorAll("article.card"));
  var sort = document.getElementById("sort");
  var category = document.getElementById("category");
  var filter = document.getElementById("filter");
  var detectors = document.getElementById("detectors");
  var shown = document.getElementById("shown");

  function num(card, key) { return parseFloat(card.dataset[key]); }
  function byUnit(a, b) { return num(a, "unit") - num(b, "unit"); }
  function byIou(a, b) { return num(b, "iou") - num(a, "iou") || byUnit(a, b); }
  function byText(key) {
    return function (a, b) {
      var x = a.dataset[key], y = b.dataset[key];
      // Units without a label go last.
      if (!x !== !y) return x ? -1 : 1;
      return x.localeCompare(y) || byIou(a, b);
    };
  }
  var orders = { unit: byUnit, iou: byIou, label: byText("label"), category: byText("category") };

  var sorted = "unit";  // the order of the cards in the document

  function reorder() {
    if (sort.value === sorted) return;
    var order = all.slice().sort(orders[sort.value] || byUnit);
    var fragment = document.createDocumentFragment();
    order.forEach(function (card) { fragment.appendChild(card); });
    cards.appendChild(fragment);
    sorted = sort.value;
  }

  function apply() {
    reorder();
    var query = filter.value.trim().toLowerCase();
    var visible = 0;
    all.forEach(function (card) {
      var ok = (!category.value || card.dataset.category === category.value) &&
        (!detectors.checked || card.classList.contains("detector")) &&
        (!query || card.dataset.search.indexOf(query) !== -1);
      // Only touch the cards whose visibility changes: each change costs layout.
      if (card.hidden === ok) card.hidden = !ok;
      if (ok) visible += 1;
    });
    shown.textContent = visible + " of " + all.length + " units";
    var state = new URLSearchParams();
    if (sort.value !== "unit") state.set("sort", sort.value);
    if (category.value) state.set("category", category.value);
    if (query) state.set("q", query);
    if (detectors.checked) state.set("detectors", "1");
    var hash = state.toString();
    try {
      history.replaceState(null, "", hash ? "#" + hash : location.pathname);
    } catch (e) {
      // Some browsers refuse history changes on file:// pages; the state is only a convenience.
    }
  }

  // Restore the state a link or a reload carries in the fragment.
  var saved = new URLSearchParams(location.hash.replace(/^#/, ""));
  if (saved.has("sort") && orders[saved.get("sort")]) sort.value = saved.get("sort");
  if (saved.has("category")) category.value = saved.get("category");
  if (saved.has("q")) filter.value = saved.get("q");
  detectors.checked = saved.get("detectors") === "1";

  [sort, category, detectors].forEach(function (el) { el.addEventListener("change", apply); });
  filter.addEventListener("input", apply);
  document.getElementById("controls").addEventListener("submit", function (e) { e.preventDefault(); });
  apply();
})();
