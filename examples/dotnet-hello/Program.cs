// dotnet-hello: the .NET counterpart of go-hello. It prints a greeting, the runtime it
// runs on, its arguments and the environment variable GREETING, and exits with the
// status `--exit N` asks for: what a runtime has to pass through (args, env, stdout,
// exit status) to a .NET program compiled to WebAssembly.
using System.Runtime.InteropServices;

var exitCode = 0;
var positional = new List<string>();
for (var i = 0; i < args.Length; i++)
{
    // Flags come before the positional arguments; `-x` and `--x` both work, as in go-hello.
    var flag = args[i].TrimStart('-');
    if (args[i].StartsWith('-') && flag == "exit" && i + 1 < args.Length && int.TryParse(args[i + 1], out var code))
    {
        exitCode = code;
        i++;
    }
    else if (args[i].StartsWith('-') && positional.Count == 0)
    {
        Console.Error.WriteLine($"dotnet-hello: unknown flag {args[i]}; the only flag is --exit N");
        return 2;
    }
    else
    {
        positional.Add(args[i]);
    }
}

Console.WriteLine("Hello from Fabricks!");
Console.WriteLine($"runtime: {RuntimeInformation.RuntimeIdentifier} ({RuntimeInformation.FrameworkDescription})");
Console.WriteLine($"args: [{string.Join(" ", positional.Select(a => $"\"{a}\""))}]");
Console.WriteLine($"GREETING: {Environment.GetEnvironmentVariable("GREETING") ?? "(unset)"}");
return exitCode;
