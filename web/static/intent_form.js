// The intent form: on a new intent, fill in the browser's time zone, so "today at 18:00" and a
// closing time mean the person's local time. The field is marked by the server only while it
// holds the default (an edited intent's times are shown in UTC and keep it). Without
// JavaScript the field says UTC and can be changed by hand.
(function () {
  "use strict";
  var field = document.getElementById("time_zone");
  if (!field || !field.hasAttribute("data-browser-zone") || !window.Intl) { return; }
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (zone) { field.value = zone; }
})();
