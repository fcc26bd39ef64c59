/* Start Swagger UI on /openapi.json (a separate file: the page's policy allows no inline script). */
"use strict";
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    domNode: root,
    deepLinking: true,
    // Keep what was typed into Authorize across reloads of this page.
    persistAuthorization: true,
    // No badge from the public validator: nothing is fetched from outside.
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
