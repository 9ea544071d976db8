// Times on a page are written in UTC (the page is complete without JavaScript). Where a time is
// marked data-local, this adds the same moment in the browser's time zone beside it, so that a
// person who chose "Today at 18:00" in Tokyo reads 18:00 and not only 09:00 UTC.
(function () {
  "use strict";
  var zone;
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
  if (!zone || zone === "UTC" || zone === "Etc/UTC") { return; }
  var format = new Intl.DateTimeFormat("en-GB", {
    timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", hourCycle: "h23"
  });
  function local(moment) {
    var parts = {};
    format.formatToParts(moment).forEach(function (p) { parts[p.type] = p.value; });
    return parts.year + "-" + parts.month + "-" + parts.day + " " + parts.hour + ":" + parts.minute;
  }
  document.querySelectorAll("time[data-local]").forEach(function (time) {
    var moment = new Date(time.getAttribute("datetime"));
    if (isNaN(moment.getTime())) { return; }
    var note = document.createElement("span");
    note.className = "local-time";
    note.textContent = " (" + local(moment) + " " + zone.replace(/_/g, " ") + ")";
    time.after(note);
  });
})();
