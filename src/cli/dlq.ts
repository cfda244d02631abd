import { openFraiseql } from "../app.js";
import { loadConfig } from "../config/load.js";
import { replayDlq } from "../dlq/replay.js";
import type { DeadLetter } from "../dlq/types.js";
import { FraiseqlError } from "../errors.js";
import { durationArg, limitArg, parseCommandArgs, timeArg, withinLimit } from "./args.js";
import { table } from "./table.js";

/** The text of `fraiseql dlq list`: one aligned row per dead letter. */
export function formatDeadLetterList(entries: readonly DeadLetter[]): string {
  const rows = [
    ["ID", "FAILED", "OBSERVER", "DELIVERY", "REASON", "LAST", "ATTEMPTS", "REQUEST"],
    ...entries.map((d) => [
      d.id,
      d.failed_at.replace(/\.\d{3}Z$/, "Z"),
      d.observer,
      d.delivery_id,
      d.reason,
      d.last_status === null ? "-" : String(d.last_status),
      String(d.attempts),
      `${d.method} ${d.url}`,
    ]),
  ];
  return `${table(rows)}\n`;
}

/** A progress bar on a terminal (stderr), plain lines otherwise. */
function progressReporter(): { update: (done: number, total: number) => void; finish: () => void } {
  const tty = process.stderr.isTTY === true;
  let last = "";
  return {
    update(done, total) {
      if (tty) {
        const width = 30;
        const filled = total === 0 ? width : Math.round((done / total) * width);
        last = `\r[${"#".repeat(filled)}${".".repeat(width - filled)}] ${done}/${total}`;
        process.stderr.write(last);
      } else {
        process.stderr.write(`replayed ${done}/${total}\n`);
      }
    },
    finish() {
      if (tty && last) process.stderr.write("\n");
    },
  };
}

/** `fraiseql dlq list|show|replay|purge` */
export async function runDlq(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parseCommandArgs(`dlq ${sub ?? ""}`.trim(), rest, {
    config: { type: "string" },
    json: { type: "boolean" },
    since: { type: "string" },
    observer: { type: "string" },
    limit: { type: "string" },
    "older-than": { type: "string" },
    "failed-after": { type: "string" },
    entity: { type: "string" },
    reason: { type: "string" },
    status: { type: "string" },
    delay: { type: "string" },
  });
  if (sub !== "list" && sub !== "show" && sub !== "purge" && sub !== "replay") {
    throw new FraiseqlError("FQL_USAGE", `unknown dlq command "${sub ?? ""}"`, {
      hint: "Use: fraiseql dlq list | show ID | replay ID... | replay --failed-after DATE | purge",
    });
  }
  if (sub === "replay" && positionals.length === 0 && values["failed-after"] === undefined) {
    throw new FraiseqlError("FQL_USAGE", "dlq replay needs entry ids or --failed-after DATE", {
      hint: "fraiseql dlq replay ID... [--delay 30s]  or  fraiseql dlq replay --failed-after 2025-02-10 [--observer NAME]",
    });
  }
  const delay = values.delay === undefined ? 0 : durationArg(values.delay, "--delay");
  const limit = limitArg(values.limit, 100);
  const config = await loadConfig(values.config === undefined ? {} : { path: values.config });
  const app = await openFraiseql(config);
  try {
    await app.migrate();
    if (sub === "list") {
      const failedAfter = timeArg(values.since, "--since");
      const entries = withinLimit(
        await app.dlq.list({
          ...(failedAfter ? { failedAfter } : {}),
          ...(values.observer ? { observer: values.observer } : {}),
          limit: limit + 1,
        }),
        limit,
        "dead letters",
      );
      if (values.json) process.stdout.write(`${JSON.stringify(entries, null, 2)}\n`);
      else if (entries.length === 0) process.stdout.write("no dead letters\n");
      else process.stdout.write(formatDeadLetterList(entries));
      return 0;
    }
    if (sub === "show") {
      const id = positionals[0];
      if (!id) throw new FraiseqlError("FQL_USAGE", "dlq show takes an id", { hint: "fraiseql dlq show ID" });
      const entry = await app.dlq.get(id);
      if (!entry) throw new FraiseqlError("FQL_NOT_FOUND", `no dead letter with id "${id}"`);
      process.stdout.write(
        values.json
          ? `${JSON.stringify(entry, null, 2)}\n`
          : `${Object.entries(entry)
              .map(([k, v]) => `${k}: ${typeof v === "object" && v !== null ? JSON.stringify(v) : String(v)}`)
              .join("\n")}\n`,
      );
      return 0;
    }
    if (sub === "replay") {
      const failedAfter = timeArg(values["failed-after"], "--failed-after");
      const progress = progressReporter();
      const result = await replayDlq(
        { db: app.db, dlq: app.dlq, schema: config.database.schema },
        {
          ...(positionals.length > 0 ? { ids: positionals } : {}),
          ...(failedAfter ? { failedAfter } : {}),
          filter: {
            ...(values.observer ? { observer: values.observer } : {}),
            ...(values.entity ? { entity: values.entity } : {}),
            ...(values.reason ? { reason: values.reason } : {}),
            ...(values.status ? { status: Number(values.status) } : {}),
          },
          delay,
          onProgress: progress.update,
        },
      );
      progress.finish();
      process.stdout.write(
        `replayed ${result.replayed} of ${result.selected} dead letters${delay ? ` (sent after ${values.delay})` : ""}` +
          `${result.skipped.length ? `; skipped ${result.skipped.length}` : ""}\n`,
      );
      for (const s of result.skipped) process.stdout.write(`  skipped ${s.id}: ${s.reason}\n`);
      return 0;
    }
    const olderThan = timeArg(values["older-than"], "--older-than") ?? new Date();
    const removed = await app.dlq.purge(olderThan);
    process.stdout.write(`purged ${removed} dead letters\n`);
    return 0;
  } finally {
    await app.close();
  }
}
