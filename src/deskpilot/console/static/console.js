// DeskPilot console: what every page shares. Written for this project; no framework.
// htmx requests carry the session's CSRF token as a header (forms also carry it as a field).
(function () {
  "use strict";
  document.addEventListener("htmx:configRequest", function (event) {
    var token = document.body ? document.body.getAttribute("data-csrf") : "";
    if (token) {
      event.detail.headers["X-CSRF-Token"] = token;
    }
  });
  // A form marked data-confirm asks once more before it is sent (the server still requires its
  // confirmation field: this is only a second chance to stop).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm) {
      if (!window.confirm(form.dataset.confirm)) {
        event.preventDefault();
      }
    }
  });
})();
