// Signs in the background when JavaScript runs; the form works without it (303 to a thank-you
// page). Errors go next to their field, the thank-you replaces the form, and the count is
// refreshed a few times until the signature has been counted.
(function () {
  "use strict";
  var form = document.getElementById("sign-form");
  if (!form || !window.fetch || !window.URLSearchParams) return;
  var statusLine = document.getElementById("form-status");
  var count = document.getElementById("signature-count");
  var noun = document.getElementById("signature-noun");
  var callToAction = document.getElementById("call-to-action");
  var thanks = document.getElementById("thanks");
  var button = form.querySelector("button[type=submit]");
  var FIELDS = ["name", "email", "postcode", "country", "opt_in"];
  var POLL_DELAYS_MS = [1000, 2000, 3000, 5000, 8000, 13000, 21000]; // about a minute in all
  var GENERIC = "Something went wrong and your signature was not sent. Please try again.";

  function showError(field, message) {
    var input = form.elements[field];
    var slot = document.getElementById(field + "-error");
    if (!input || !slot) return false;
    slot.textContent = message || "";
    input.parentNode.classList.toggle("invalid", !!message);
    if (message) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
    return !!message;
  }

  function refused(data) {
    var first = null;
    var messages = data.messages || {};
    FIELDS.forEach(function (field) {
      if (showError(field, messages[field]) && !first) first = form.elements[field];
    });
    if (data.csrf_token) form.elements.csrf_token.value = data.csrf_token;
    statusLine.textContent = data.message || GENERIC;
    if (first) first.focus();
  }

  function showCount(petition) {
    count.dataset.count = String(petition.signature_count);
    count.textContent = petition.signature_count.toLocaleString("en-GB");
    noun.textContent = petition.signature_count === 1 ? "signature" : "signatures";
    if (callToAction && petition.call_to_action) callToAction.textContent = petition.call_to_action;
  }

  function poll(before, delays) {
    if (!delays.length) return;
    setTimeout(function () {
      fetch(form.dataset.petition, { headers: { Accept: "application/json" }, cache: "no-store" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .catch(function () { return null; })
        .then(function (petition) {
          if (petition && petition.signature_count > Number(count.dataset.count)) showCount(petition);
          if (!petition || petition.signature_count <= before) poll(before, delays.slice(1));
        });
    }, delays[0]);
  }

  function signed() {
    form.hidden = true;
    thanks.hidden = false;
    thanks.focus();
    poll(Number(count.dataset.count), POLL_DELAYS_MS);
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    FIELDS.forEach(function (field) { showError(field, ""); });
    statusLine.textContent = "";
    button.disabled = true;
    fetch(form.action, {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    })
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (data) {
          if (response.status === 202) signed();
          else refused(data);
        });
      })
      .catch(function () {
        refused({ message: "We could not reach the petition site. Check your connection and try again." });
      })
      .finally(function () { button.disabled = false; });
  });
})();
