// Passkeys (WebAuthn) for the portal's forms. A form marked data-passkey="create" or "get"
// asks the server for options (POST to its data-options URL, with the CSRF token as a
// header), lets the browser create or use a passkey, puts the answer in the form's hidden
// "ticket" and "credential" fields and submits the form. No inline script: the CSP forbids it.
"use strict";

(function () {
  function toBytes(b64url) {
    const b64 = b64url.replace(/-/g, "+").replace(/_/g, "/");
    const padded = b64 + "===".slice((b64.length + 3) % 4);
    const raw = atob(padded);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i += 1) bytes[i] = raw.charCodeAt(i);
    return bytes.buffer;
  }

  function toB64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let raw = "";
    for (let i = 0; i < bytes.length; i += 1) raw += String.fromCharCode(bytes[i]);
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function creationOptions(options) {
    options.challenge = toBytes(options.challenge);
    options.user.id = toBytes(options.user.id);
    options.excludeCredentials = (options.excludeCredentials || []).map(function (c) {
      return Object.assign({}, c, { id: toBytes(c.id) });
    });
    return options;
  }

  function requestOptions(options) {
    options.challenge = toBytes(options.challenge);
    options.allowCredentials = (options.allowCredentials || []).map(function (c) {
      return Object.assign({}, c, { id: toBytes(c.id) });
    });
    return options;
  }

  function answer(credential) {
    const r = credential.response;
    const out = {
      id: credential.id,
      rawId: toB64url(credential.rawId),
      type: credential.type,
      clientExtensionResults: credential.getClientExtensionResults(),
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      response: { clientDataJSON: toB64url(r.clientDataJSON) },
    };
    if (r.attestationObject) {
      out.response.attestationObject = toB64url(r.attestationObject);
      out.response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      out.response.authenticatorData = toB64url(r.authenticatorData);
      out.response.signature = toB64url(r.signature);
      if (r.userHandle) out.response.userHandle = toB64url(r.userHandle);
    }
    return JSON.stringify(out);
  }

  function showError(form, message) {
    const box = form.querySelector("[data-passkey-error]");
    if (box) {
      box.textContent = message;
      box.hidden = false;
    }
  }

  async function ceremony(form) {
    const name = form.querySelector("input[name=name]");
    if (name && !name.value.trim()) {
      name.focus();
      throw new Error("Give the passkey a name, such as the device it is on.");
    }
    const csrf = form.querySelector("input[name=csrf_token]").value;
    const reply = await fetch(form.dataset.options, {
      method: "POST",
      headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
      credentials: "same-origin",
    });
    let body = null;
    try {
      body = await reply.json();
    } catch (e) {
      body = null;
    }
    if (!reply.ok || !body || !body.options) {
      throw new Error((body && body.detail) || "The passkey request failed. Reload the page and try again.");
    }
    let credential;
    if (form.dataset.passkey === "create") {
      credential = await navigator.credentials.create({ publicKey: creationOptions(body.options) });
    } else {
      credential = await navigator.credentials.get({ publicKey: requestOptions(body.options) });
    }
    form.querySelector("input[name=ticket]").value = body.ticket;
    form.querySelector("input[name=credential]").value = answer(credential);
    form.submit();
  }

  document.querySelectorAll("form[data-passkey]").forEach(function (form) {
    if (!window.PublicKeyCredential) {
      showError(form, "This browser cannot use passkeys.");
      return;
    }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      ceremony(form).catch(function (error) {
        const cancelled = error && (error.name === "NotAllowedError" || error.name === "AbortError");
        showError(form, cancelled ? "No passkey was used. Try again." : error.message);
      });
    });
  });
})();
