// Pre-fill the time zone from the browser, and preview today's matching papers as topics
// are typed. The form works without JavaScript; the list is built with textContent only.
(function () {
  var zone = document.getElementById("timezone");
  if (zone && !zone.value && window.Intl) {
    zone.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  }
  var topics = document.getElementById("topics");
  var box = document.getElementById("preview");
  var list = document.getElementById("preview-list");
  if (!topics || !box || !list || !window.fetch) { return; }
  var timer = null;
  function show(papers) {
    list.textContent = "";
    papers.forEach(function (paper) {
      var item = document.createElement("li");
      var link = document.createElement("a");
      link.href = paper.url;
      link.textContent = paper.title;
      link.rel = "noopener";
      var why = document.createElement("div");
      why.className = "hint";
      why.textContent = paper.reason;
      item.appendChild(link);
      item.appendChild(why);
      list.appendChild(item);
    });
    box.hidden = papers.length === 0;
  }
  topics.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () {
      var url = topics.dataset.previewUrl + "?topics=" + encodeURIComponent(topics.value);
      fetch(url).then(function (r) { return r.json(); })
        .then(function (data) { show(data.papers || []); })
        .catch(function () { show([]); });
    }, 500);
  });
})();
