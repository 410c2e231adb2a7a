// A wasi:http service for Fabricks' tests: GET / greets, POST /echo streams the body back.
addEventListener("fetch", (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  if (request.method === "GET" && url.pathname === "/") {
    return new Response("hello from componentize-js\n", { headers: { "content-type": "text/plain" } });
  }
  if (request.method === "POST" && url.pathname === "/echo") {
    return new Response(request.body, { headers: { "content-type": "application/octet-stream" } });
  }
  return new Response("not found\n", { status: 404 });
}
