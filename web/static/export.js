// Progress for large exports: fetch the archive, count the bytes as they stream in, then save
// it. Without JavaScript the form downloads the file directly.
(function () {
  "use strict";
  var form = document.getElementById("export-form");
  if (!form || !window.fetch || !window.ReadableStream) { return; }
  var box = document.getElementById("export-progress");
  var bar = document.getElementById("export-bar");
  var status = document.getElementById("export-status");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var button = form.querySelector("button");
    button.disabled = true;
    box.hidden = false;
    status.textContent = "Preparing…";
    fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 401 || response.status === 403) {
          // Signed out, or the form's token is stale (signed out and in again elsewhere).
          throw new Error("This page has expired. Reload it (sign in again if asked), then download the export.");
        }
        if (!response.ok) { throw new Error("The export failed (HTTP " + response.status + ")."); }
        var estimate = parseInt(response.headers.get("X-Export-Estimate") || "0", 10);
        var disposition = response.headers.get("Content-Disposition") || "";
        var match = /filename="([^"]+)"/.exec(disposition);
        var name = match ? match[1] : "vrm-vault-export.zip";
        var reader = response.body.getReader();
        var chunks = [];
        var received = 0;
        function pump() {
          return reader.read().then(function (step) {
            if (step.done) { return; }
            chunks.push(step.value);
            received += step.value.length;
            if (estimate > 0) { bar.value = Math.min(99, Math.round(100 * received / estimate)); }
            status.textContent = (received / 1048576).toFixed(1) + " MB received";
            return pump();
          });
        }
        return pump().then(function () {
          bar.value = 100;
          status.textContent = "Done: " + (received / 1048576).toFixed(1) + " MB. Saving " + name + ".";
          var url = URL.createObjectURL(new Blob(chunks, { type: "application/zip" }));
          var link = document.createElement("a");
          link.href = url;
          link.download = name;
          document.body.appendChild(link);
          link.click();
          link.remove();
          setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
        });
      })
      .catch(function (error) { status.textContent = error.message; })
      .then(function () { button.disabled = false; });
  });
})();
