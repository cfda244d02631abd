#!/usr/bin/env node
// Runs the compiled CLI when the package is built; falls back to the TypeScript sources
// (through tsx) in a checkout that has not been built.
import { existsSync } from "node:fs";

const dist = new URL("../dist/cli/main.js", import.meta.url);
process.env.FRAISEQL_CLI_ENTRY = "1";
if (existsSync(dist)) {
  await import(dist.href);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import(new URL("../src/cli/main.ts", import.meta.url).href);
}
