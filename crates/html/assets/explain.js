// netdissect report: filtering the explained images by predicted class, by right or wrong
// and by concept. Plain JavaScript, no library; the page works without it (every image).
(function () {
  "use strict";
  var table = document.getElementById("images");
  if (!table) return;
  var rows = Array.prototype.slice.call(table.querySelectorAll("tbody tr.image"));
  var byClass = document.getElementById("class");
  var correct = document.getElementById("correct");  // absent when no truth is known
  var concept = document.getElementById("concept");
  var shown = document.getElementById("shown");
  var concepts = rows.map(function (row) { return JSON.parse(row.dataset.concepts || "[]"); });

  function apply() {
    var visible = 0;
    rows.forEach(function (row, i) {
      var ok = (!byClass.value || row.dataset.class === byClass.value) &&
        (!correct || !correct.value || row.dataset.correct === correct.value) &&
        (!concept.value || concepts[i].indexOf(concept.value) !== -1);
      if (row.hidden === ok) row.hidden = !ok;
      if (ok) visible += 1;
    });
    shown.textContent = visible + " of " + rows.length + " images";
    var state = new URLSearchParams();
    if (byClass.value) state.set("class", byClass.value);
    if (correct && correct.value) state.set("correct", correct.value);
    if (concept.value) state.set("concept", concept.value);
    var hash = state.toString();
    try {
      history.replaceState(null, "", hash ? "#" + hash : location.pathname);
    } catch (e) {
      // Some browsers refuse history changes on file:// pages; the state is only a convenience.
    }
  }

  // Restore the state a link or a reload carries in the fragment.
  var saved = new URLSearchParams(location.hash.replace(/^#/, ""));
  if (saved.has("class")) byClass.value = saved.get("class");
  if (correct && saved.has("correct")) correct.value = saved.get("correct");
  if (saved.has("concept")) concept.value = saved.get("concept");

  [byClass, correct, concept].forEach(function (el) { if (el) el.addEventListener("change", apply); });
  document.getElementById("explain-controls").addEventListener("submit", function (e) { e.preventDefault(); });
  apply();
})();
