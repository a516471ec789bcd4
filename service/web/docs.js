// The API's documentation: Swagger UI from the npm package swagger-ui-dist,
// served by this service (no CDN), on the service's own /openapi.json.
window.ui = SwaggerUIBundle({
  url: '/openapi.json',
  dom_id: '#swagger-ui',
  deepLinking: true,
  persistAuthorization: false,
  presets: [SwaggerUIBundle.presets.apis],
  layout: 'BaseLayout',
});
