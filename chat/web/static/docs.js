/* Start Swagger UI on /openapi.json (a separate file: the page's policy allows no inline script).

The document names every way a request may authenticate (the X-HA-* spellings, ?token= for
browsers' EventSource, the metrics token); the Authorize dialog offers only what a person
trying the API needs: the classic API's app key and session, and the KOOK-compatible API's
token. */
"use strict";

var SHOWN_SCHEMES = {
  AppKey: "Classic API, 1 of 2: the app key (X-APP-Key; `flask demo` prints one)",
  AppSession: "Classic API, 2 of 2: the session from POST /auth/login (X-APP-Session)",
  Token: "KOOK-compatible API: `Bearer <session>` or `Bot <token>` (Authorization)",
};

function forTrying(spec) {
  var schemes = (spec.components && spec.components.securitySchemes) || {};
  Object.keys(schemes).forEach(function (name) {
    if (SHOWN_SCHEMES[name]) schemes[name].description = SHOWN_SCHEMES[name];
    else delete schemes[name];
  });
  var shown = function (requirement) {
    return Object.keys(requirement).every(function (name) { return SHOWN_SCHEMES[name]; });
  };
  Object.keys(spec.paths || {}).forEach(function (path) {
    var item = spec.paths[path];
    Object.keys(item).forEach(function (method) {
      var operation = item[method];
      if (operation && Array.isArray(operation.security)) {
        operation.security = operation.security.filter(shown);
        if (!operation.security.length) delete operation.security;
      }
    });
  });
  return spec;
}

window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  fetch(root.dataset.specUrl, { credentials: "omit" })
    .then(function (response) { return response.json(); })
    .then(function (spec) {
      window.ui = SwaggerUIBundle({
        spec: forTrying(spec),
        domNode: root,
        deepLinking: true,
        // Keep what was typed into Authorize across reloads of this page.
        persistAuthorization: true,
        // No badge from the public validator: nothing is fetched from outside.
        validatorUrl: null,
        presets: [SwaggerUIBundle.presets.apis],
        layout: "BaseLayout",
      });
    })
    .catch(function (error) {
      root.textContent = "Could not load the API document (" + error + "). It is at " + root.dataset.specUrl + ".";
    });
});
