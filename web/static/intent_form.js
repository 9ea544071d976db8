// The intent form: fill in the browser's time zone when the person has not chosen one, so
// "today at 18:00" and a closing time mean their local time. Without JavaScript the field
// says UTC and can be changed by hand.
(function () {
  "use strict";
  var field = document.getElementById("time_zone");
  if (!field || !window.Intl || !Intl.DateTimeFormat) { return; }
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (zone && (field.value === "" || field.value === "UTC") && !field.hasAttribute("aria-invalid")) {
    field.value = zone;
  }
})();
