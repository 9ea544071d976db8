// Offers arriving live on an intent's page (Server-Sent Events from /intents/{id}/live).
// Each "offer" event carries the offer's card as the server renders it (or nothing when the
// page no longer shows it); the card replaces the one with the same offer id, or a new card
// is put first. Without JavaScript the page is complete as served, and a reload shows the
// same. The browser reconnects by itself, sending the last event id (Last-Event-ID).
(function () {
  "use strict";
  var section = document.getElementById("offers");
  var list = document.getElementById("offer-list");
  if (!section || !list || !window.EventSource) { return; }
  var url = section.getAttribute("data-live");
  if (!url) { return; }
  var empty = document.getElementById("no-offers");
  var sort = document.getElementById("offer-sort");
  var count = document.getElementById("offer-count");
  var nav = document.getElementById("nav-offer-count");
  var source = new EventSource(url);

  function cardOf(id) {
    return document.getElementById("offer-" + id) ? document.getElementById("offer-" + id).closest("article") : null;
  }

  function shown() {
    var any = list.querySelector("article") !== null;
    if (empty) { empty.hidden = any; }
    if (sort) { sort.hidden = !any; }
  }

  source.addEventListener("offer", function (event) {
    var data = JSON.parse(event.data);
    var old = cardOf(data.id);
    if (!data.html) {
      if (old) { old.remove(); }
      shown();
      return;
    }
    var holder = document.createElement("template");
    holder.innerHTML = data.html.trim();
    var card = holder.content.firstElementChild;
    if (!card) { return; }
    if (old) {
      old.replaceWith(card);
    } else {
      list.insertBefore(card, list.firstElementChild);
    }
    shown();
  });

  source.addEventListener("count", function (event) {
    var data = JSON.parse(event.data);
    if (count) { count.textContent = String(data.shown); }
    if (nav) {
      nav.textContent = String(data.waiting);
      nav.hidden = !data.waiting;
    }
  });

  source.addEventListener("signed-out", function () {
    source.close();
  });
})();
