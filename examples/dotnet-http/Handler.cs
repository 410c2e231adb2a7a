// dotnet-http: the .NET counterpart of go-http as a wasi:http component. The host (a
// wasi:http runtime: the shim's component support, `wasmtime serve`) owns the socket and
// the HTTP protocol and calls Handle once per request; the component answers on the
// response out-parameter. Routes as go-http's where they make sense: /, /json, /echo,
// /healthz (no /stream or /panic: the point of those is Go's socket mode).
//
// The types are the bindings wit-bindgen generates for the wasi:http 0.2.0 `proxy` world
// (ProxyWorld.wit.*), as componentize-dotnet's README and runwasi's C# test component use
// them.
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using ProxyWorld.wit.imports.wasi.http.v0_2_0;
using ProxyWorld.wit.imports.wasi.io.v0_2_0;

namespace ProxyWorld.wit.exports.wasi.http.v0_2_0;

public class IncomingHandlerImpl : IIncomingHandler
{
    /// Bodies /echo reads back, at most (go-http's limit too).
    const int MaxEchoBody = 1 << 20;

    /// wasi:io's blocking-write-and-flush takes at most 4096 bytes a call.
    const int WriteChunk = 4096;

    static readonly DateTime Started = DateTime.UtcNow;
    static long requests;

    public static void Handle(ITypes.IncomingRequest request, ITypes.ResponseOutparam responseOut)
    {
        var count = Interlocked.Increment(ref requests);
        var method = MethodName(request.Method());
        var target = request.PathWithQuery() ?? "/";
        var (path, query) = SplitTarget(target);
        Reply reply = path switch
        {
            "/" when method == "GET" => Text(200, $"Hello from Fabricks! ({RuntimeInformation.RuntimeIdentifier})\n"),
            "/json" when method == "GET" => Json(200, w =>
            {
                w.WriteString("message", "Hello from Fabricks!");
                w.WriteString("runtime", RuntimeInformation.RuntimeIdentifier);
                w.WriteString("dotnet", RuntimeInformation.FrameworkDescription);
                w.WriteString("time", DateTime.UtcNow.ToString("O"));
                w.WriteNumber("uptime_seconds", (DateTime.UtcNow - Started).TotalSeconds);
                w.WriteNumber("requests", count);
            }),
            "/echo" => Echo(request, method, path, query),
            "/healthz" when method == "GET" => Text(200, "ok\n"),
            "/" or "/json" or "/healthz" => Text(405, "method not allowed\n"),
            _ => Text(404, "not found\n"),
        };
        Respond(responseOut, reply);
        // One line per request on stdout: the pod log.
        Console.WriteLine($"{DateTime.UtcNow:O} {method} \"{target}\" {reply.Status} {reply.Body.Length}B");
    }

    record Reply(int Status, string ContentType, byte[] Body);

    static Reply Text(int status, string text) => new(status, "text/plain; charset=utf-8", Encoding.UTF8.GetBytes(text));

    /// JSON through Utf8JsonWriter: no reflection, so trimming and NativeAOT keep it.
    static Reply Json(int status, Action<Utf8JsonWriter> fields)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            fields(w);
            w.WriteEndObject();
        }
        buffer.WriteByte((byte)'\n');
        return new(status, "application/json", buffer.ToArray());
    }

    /// What was sent: method, path, query, headers, body (or body_base64 when not UTF-8).
    static Reply Echo(ITypes.IncomingRequest request, string method, string path, string query)
    {
        var headers = request.Headers().Entries();
        byte[] body;
        try
        {
            body = ReadBody(request);
        }
        catch (InvalidDataException)
        {
            return Text(413, $"body larger than {MaxEchoBody} bytes\n");
        }
        return Json(200, w =>
        {
            w.WriteString("method", method);
            w.WriteString("path", path);
            w.WriteStartObject("query");
            foreach (var group in ParseQuery(query).GroupBy(p => p.Key))
            {
                w.WriteStartArray(group.Key);
                foreach (var pair in group)
                    w.WriteStringValue(pair.Value);
                w.WriteEndArray();
            }
            w.WriteEndObject();
            w.WriteStartObject("headers");
            foreach (var group in headers.GroupBy(h => h.Item1))
            {
                w.WriteStartArray(group.Key);
                foreach (var (_, value) in group)
                    w.WriteStringValue(Encoding.UTF8.GetString(value));
                w.WriteEndArray();
            }
            w.WriteEndObject();
            if (IsUtf8(body))
                w.WriteString("body", Encoding.UTF8.GetString(body));
            else
                w.WriteString("body_base64", Convert.ToBase64String(body));
            w.WriteNumber("body_bytes", body.Length);
        });
    }

    static byte[] ReadBody(ITypes.IncomingRequest request)
    {
        using var incoming = request.Consume();
        using var stream = incoming.Stream();
        using var body = new MemoryStream();
        while (true)
        {
            byte[] chunk;
            try
            {
                chunk = stream.BlockingRead(64 * 1024);
            }
            catch (WitException e) when (e.Value is IStreams.StreamError { Tag: IStreams.StreamError.Tags.Closed })
            {
                break; // the end of the body
            }
            if (body.Length + chunk.Length > MaxEchoBody)
                throw new InvalidDataException("body too large");
            body.Write(chunk);
        }
        return body.ToArray();
    }

    static void Respond(ITypes.ResponseOutparam responseOut, Reply reply)
    {
        var headers = ITypes.Fields.FromList(new List<(string, byte[])>
        {
            ("content-type", Encoding.UTF8.GetBytes(reply.ContentType)),
            ("content-length", Encoding.UTF8.GetBytes(reply.Body.Length.ToString())),
        });
        var response = new ITypes.OutgoingResponse(headers);
        response.SetStatusCode((ushort)reply.Status);
        var body = response.Body();
        ITypes.ResponseOutparam.Set(responseOut, Result<ITypes.OutgoingResponse, ITypes.ErrorCode>.Ok(response));
        using (var stream = body.Write())
        {
            for (var at = 0; at < reply.Body.Length; at += WriteChunk)
                stream.BlockingWriteAndFlush(reply.Body[at..Math.Min(at + WriteChunk, reply.Body.Length)]);
        }
        ITypes.OutgoingBody.Finish(body, null);
    }

    static string MethodName(ITypes.Method method) => method.Tag switch
    {
        ITypes.Method.Tags.Get => "GET",
        ITypes.Method.Tags.Head => "HEAD",
        ITypes.Method.Tags.Post => "POST",
        ITypes.Method.Tags.Put => "PUT",
        ITypes.Method.Tags.Delete => "DELETE",
        ITypes.Method.Tags.Connect => "CONNECT",
        ITypes.Method.Tags.Options => "OPTIONS",
        ITypes.Method.Tags.Trace => "TRACE",
        ITypes.Method.Tags.Patch => "PATCH",
        _ => method.AsOther,
    };

    static (string Path, string Query) SplitTarget(string target)
    {
        var at = target.IndexOf('?');
        return at < 0 ? (target, "") : (target[..at], target[(at + 1)..]);
    }

    static IEnumerable<KeyValuePair<string, string>> ParseQuery(string query) =>
        query.Split('&', StringSplitOptions.RemoveEmptyEntries).Select(part =>
        {
            var eq = part.IndexOf('=');
            var key = Uri.UnescapeDataString((eq < 0 ? part : part[..eq]).Replace('+', ' '));
            var value = eq < 0 ? "" : Uri.UnescapeDataString(part[(eq + 1)..].Replace('+', ' '));
            return new KeyValuePair<string, string>(key, value);
        });

    static bool IsUtf8(byte[] bytes)
    {
        try
        {
            _ = new UTF8Encoding(false, true).GetString(bytes);
            return true;
        }
        catch (DecoderFallbackException)
        {
            return false;
        }
    }
}
