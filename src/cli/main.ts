#!/usr/bin/env node
import { FraiseqlError } from "../errors.js";
import { packageVersion } from "./args.js";

export const USAGE = `fraiseql - observers and signed webhooks for PostgreSQL row changes

Usage: fraiseql <command> [options]

Commands:
  init [DIR]                 write a starter fraiseql.toml and schema.ts
  serve                      migrate, then run the GraphQL server, the dispatcher and /metrics
  worker                     run only the dispatcher (run several against one database)
  migrate                    install/update internal tables and capture triggers, then exit
  check                      validate the config, conditions, templates and \${ENV} references
  explain OBSERVER           print the SQL that lists the rows an observer's condition matches
  dlq list [--since 24h] [--observer NAME] [--limit 100] [--json]
  dlq show ID [--json]
  dlq replay ID... [--delay 30s]
  dlq replay --failed-after DATE [--observer NAME] [--delay 30s]
  dlq purge [--older-than 7d]  without --older-than: every dead letter
  deliveries list [--observer NAME] [--status failed|succeeded|dead|pending] [--since 24h] [--limit 50] [--json]
  deliveries show ID [--json]  one delivery and its attempt timeline
  doctor [OBSERVER]          check capture, conditions against the data and receivers; exit 1 on a problem
  demo [--once]              the self-contained demo (embedded database, local receiver)

Common options:
  --config PATH              config file (default: ./fraiseql.toml)
`;

type Command = (args: string[]) => Promise<number>;

const COMMANDS: Record<string, () => Promise<Command>> = {
  init: async () => (await import("./init.js")).runInit,
  serve: async () => (await import("./serve.js")).runServe,
  worker: async () => (await import("./serve.js")).runWorker,
  migrate: async () => (await import("./serve.js")).runMigrate,
  check: async () => (await import("./check.js")).runCheck,
  explain: async () => (await import("./explain.js")).runExplain,
  dlq: async () => (await import("./dlq.js")).runDlq,
  deliveries: async () => (await import("./deliveries.js")).runDeliveries,
  doctor: async () => (await import("./doctor.js")).runDoctor,
  demo: async () => (await import("./demo.js")).runDemo,
};

/** Runs the command line; resolves to the exit code. User errors print one paragraph, no stack. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    process.stdout.write(USAGE);
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "-v") {
    process.stdout.write(`${await packageVersion()}\n`);
    return 0;
  }
  const load = COMMANDS[name];
  try {
    if (!load) {
      throw new FraiseqlError("FQL_USAGE", `unknown command "${name}"`, {
        hint: `Commands: ${Object.keys(COMMANDS).join(", ")}. Run "fraiseql help".`,
      });
    }
    return await (await load())(rest);
  } catch (err) {
    return reportError(err);
  }
}

export function reportError(err: unknown): number {
  if (err instanceof FraiseqlError && err.isUserError) {
    process.stderr.write(`error: ${err.describe()}\n`);
    return err.code === "FQL_USAGE" ? 2 : 1;
  }
  if (err instanceof FraiseqlError) {
    process.stderr.write(`error: ${err.describe()}\n`);
    if (process.env.FRAISEQL_DEBUG) process.stderr.write(`${err.stack}\n`);
    return 1;
  }
  const e = err as Error;
  process.stderr.write(`internal error: ${e?.message ?? String(err)}\n`);
  process.stderr.write(
    process.env.FRAISEQL_DEBUG ? `${e?.stack}\n` : "(set FRAISEQL_DEBUG=1 for the stack trace)\n",
  );
  return 1;
}

const isEntry = process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isEntry || process.env.FRAISEQL_CLI_ENTRY === "1") {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
