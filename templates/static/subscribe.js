// Pre-fill the time zone from the browser, add a suggested topic when its pill is tapped, and
// preview today's matching papers as topics are typed. The form works without JavaScript;
// the list is built with textContent only.
(function () {
  var zone = document.getElementById("timezone");
  if (zone && !zone.value && window.Intl) {
    zone.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  }
  var topics = document.getElementById("topics");
  if (!topics) { return; }
  function typed() {
    return topics.value.split(/[\n,]/).map(function (t) { return t.trim().toLowerCase(); })
      .filter(function (t) { return t; });
  }
  Array.prototype.forEach.call(document.querySelectorAll(".chip"), function (chip) {
    if (typed().indexOf(chip.getAttribute("data-topic").toLowerCase()) !== -1) {
      chip.setAttribute("aria-pressed", "true");
    }
    chip.addEventListener("click", function () {
      var topic = chip.getAttribute("data-topic");
      if (typed().indexOf(topic.toLowerCase()) === -1) {
        var text = topics.value.replace(/\s+$/, "");
        topics.value = text ? text + "\n" + topic : topic;
        topics.dispatchEvent(new Event("input"));
      }
      chip.setAttribute("aria-pressed", "true");
    });
  });
  var box = document.getElementById("preview");
  var list = document.getElementById("preview-list");
  var heading = document.getElementById("preview-heading");
  if (!box || !list || !heading || !window.fetch) { return; }
  var timer = null;
  function show(papers, said) {
    heading.textContent = said || "";  // "Today ..." or "This week ...", as the server says
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
  // Choices that change what the digest picks from (the preferences page's "How often")
  // go with the topics, and a change previews again.
  var choices = document.querySelectorAll("select[data-previews]");
  function preview() {
    var base = topics.dataset.previewUrl;  // may name the list: "/preview?list=ml-weekly"
    var url = base + (base.indexOf("?") < 0 ? "?" : "&") + "topics=" + encodeURIComponent(topics.value);
    Array.prototype.forEach.call(choices, function (choice) {
      if (choice.value) { url += "&" + choice.name + "=" + encodeURIComponent(choice.value); }
    });
    fetch(url).then(function (r) { return r.json(); })
      .then(function (data) { show(data.papers || [], data.heading); })
      .catch(function () { show([]); });
  }
  topics.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(preview, 500);
  });
  Array.prototype.forEach.call(choices, function (choice) {
    choice.addEventListener("change", function () { if (topics.value.trim()) { preview(); } });
  });
  if (topics.value.trim()) { preview(); }
})();
