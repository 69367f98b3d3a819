// Pre-fill the time zone from the browser; the field still works without JavaScript.
(function () {
  var field = document.getElementById("timezone");
  if (field && !field.value && window.Intl) {
    field.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  }
})();
