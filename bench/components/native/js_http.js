// The JS test service (test-cluster/components/js/http/app.js) on Node's own HTTP server:
// what bench/components.sh runs under runc against the componentize-js build.
// usage: node js_http.js PORT
const http = require("node:http");

http
  .createServer((request, response) => {
    if (request.method === "GET" && request.url === "/") {
      response.writeHead(200, { "content-type": "text/plain" });
      response.end("hello from componentize-js\n");
    } else if (request.method === "POST" && request.url === "/echo") {
      response.writeHead(200, { "content-type": "application/octet-stream" });
      request.pipe(response);
    } else {
      response.writeHead(404);
      response.end("not found\n");
    }
  })
  .listen(Number(process.argv[2]), "127.0.0.1");
