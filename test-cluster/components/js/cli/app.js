// A wasi:cli command for Fabricks' tests: greets, shows its args and env, and on request
// exits with a code, throws, or spins.
import { getArguments, getEnvironment } from "wasi:cli/environment@VERSION";
import { exitWithCode } from "wasi:cli/exit@VERSION";

export const run = {
  run() {
    const args = getArguments().slice(1);
    const env = new Map(getEnvironment());
    console.log("hello from componentize-js");
    console.log(`args: ${args.join(" ")}`);
    console.log(`env FABRICKS_TEST: ${env.get("FABRICKS_TEST") ?? "<unset>"}`);
    const [verb, value] = args;
    if (verb === "exit") {
      exitWithCode(Number(value));
    } else if (verb === "throw") {
      throw new Error("thrown on request");
    } else if (verb === "spin") {
      for (;;) {}
    }
  },
};
