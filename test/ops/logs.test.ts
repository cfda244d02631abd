import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import type { ClaimedDelivery } from "../../src/delivery/dispatcher.js";
import { channels } from "../../src/delivery/dispatcher.js";
import { createLogger, type LoggerOptions, subscribeLogs } from "../../src/log/index.js";

const SECRET = "s3cr3t-Value_42";
const QUOTED = 'pa"ss\\word-77';

function capture(options: Omit<LoggerOptions, "stream"> = {}) {
  const lines: string[] = [];
  const stream = { write: (s: string) => void lines.push(...s.split("\n").filter((l) => l !== "")) };
  const logger = createLogger({ secrets: [SECRET, QUOTED] }, { env: {}, format: "json", ...options, stream });
  // biome-ignore lint/suspicious/noExplicitAny: log lines are read field by field.
  return { logger, lines, json: () => lines.map((l) => JSON.parse(l) as Record<string, any>) };
}

const delivery: ClaimedDelivery = {
  id: "0b0e2c9e-1111-4222-8333-444455556666",
  eventId: "17",
  observer: "on_order_created",
  actionIndex: 0,
  attempt: 2,
  replayed: false,
  attemptBase: 0,
  event: {
    id: "17",
    entity: "Order",
    op: "INSERT",
    old: null,
    new: { id: 1, email: "private@example.com" },
    changed: [],
    txid: "1",
    timestamp: new Date().toISOString(),
  },
};

describe("createLogger", () => {
  it("writes JSON lines at info and above by default, with an ISO time", () => {
    const { logger, json } = capture();
    logger.debug("hidden");
    logger.info({ observer: "o" }, "shown");
    const [line, ...rest] = json();
    assert.equal(rest.length, 0);
    assert.equal(line!.msg, "shown");
    assert.equal(line!.level, 30);
    assert.equal(line!.observer, "o");
    assert.match(line!.time, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  });

  it("takes the level from FRAISEQL_LOG_LEVEL and refuses an unknown one", () => {
    const { logger, json } = capture({ env: { FRAISEQL_LOG_LEVEL: "debug" } });
    logger.debug("now shown");
    assert.equal(json()[0]!.msg, "now shown");
    assert.throws(() => capture({ env: { FRAISEQL_LOG_LEVEL: "verbose" } }), /unknown log level "verbose"/);
  });

  it("writes readable lines with FRAISEQL_LOG_FORMAT=pretty", async () => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const logger = createLogger({ secrets: [SECRET] }, { env: { FRAISEQL_LOG_FORMAT: "pretty" }, stream });
    logger.warn({ observer: "o", token: SECRET }, "attempt failed");
    await new Promise((resolve) => setImmediate(resolve));
    const text = lines.join("");
    assert.match(text, /WARN.*attempt failed/);
    assert.throws(() => JSON.parse(text));
    assert.doesNotMatch(text, new RegExp(SECRET));
    assert.throws(
      () => createLogger({ secrets: [] }, { env: { FRAISEQL_LOG_FORMAT: "xml" } }),
      /unknown log format "xml"/,
    );
  });

  it("keeps every secret out: messages, format arguments, nested objects, errors, headers, child bindings", () => {
    const { logger, lines, json } = capture();
    logger.info(`connecting with ${SECRET}`);
    logger.info("token %s and %o", SECRET, { deep: { list: [`x${SECRET}y`] } });
    logger.warn(
      { headers: { Authorization: "Bearer literal-token-not-from-env", "X-Custom": SECRET } },
      "request",
    );
    logger.error(new Error(`failed: ${SECRET}`), "boom");
    logger.error({ err: new Error(`nested ${QUOTED}`) }, "boom again");
    logger.child({ key: SECRET }).info("child");
    logger.info({ buffer: Buffer.from(SECRET) }, "bytes");
    const all = lines.join("\n");
    assert.equal(lines.length, 7);
    assert.doesNotMatch(all, new RegExp(SECRET));
    assert.ok(!all.includes(JSON.stringify(QUOTED).slice(1, -1)), "escaped secret");
    assert.ok(!all.includes("literal-token-not-from-env"), "authorization header");
    const parsed = json();
    assert.equal(parsed[0]!.msg, "connecting with [REDACTED]");
    assert.equal(parsed[2]!.headers.Authorization, "[REDACTED]");
    assert.equal(parsed[2]!.headers["X-Custom"], "[REDACTED]");
    assert.equal(parsed[3]!.err.message, "failed: [REDACTED]");
    assert.equal(parsed[3]!.err.type, "Error");
    assert.equal(parsed[4]!.err.message, "nested [REDACTED]");
    assert.equal(parsed[5]!.key, "[REDACTED]");
  });
});

describe("subscribeLogs", () => {
  it("logs failed attempts at warn, dead letters and dispatcher errors at error, without bodies", () => {
    const { logger, json } = capture();
    const unsubscribe = subscribeLogs(logger);
    try {
      channels.attempt.publish({
        delivery,
        result: {
          outcome: { kind: "http", status: 503 },
          excerpt: `upstream down ${SECRET}`,
          error: "HTTP 503",
          durationMs: 12.3,
        },
        decision: { action: "retry", delayMs: 250, reason: "http_5xx" },
        request: { url: "http://x/", method: "POST", headers: {}, body: '{"email":"private@example.com"}' },
        headers: { Authorization: "Bearer abc" },
        startedAt: new Date(),
      });
      channels.settled.publish({
        delivery,
        decision: { action: "dead", reason: "http_4xx", exhausted: false },
      });
      channels.error.publish({ error: new Error(`database unreachable: password ${SECRET}`) });
      channels.attempt.publish({
        delivery,
        result: { outcome: { kind: "success", status: 200 }, excerpt: "ok", error: undefined, durationMs: 3 },
        decision: { action: "succeeded" },
        request: undefined,
        headers: undefined,
        startedAt: new Date(),
      });
    } finally {
      unsubscribe();
    }
    channels.error.publish({ error: new Error("after unsubscribe") });
    const lines = json();
    assert.equal(lines.length, 3, JSON.stringify(lines));
    const [warn, dead, error] = lines;
    assert.equal(warn!.level, 40);
    assert.equal(warn!.observer, "on_order_created");
    assert.equal(warn!.delivery, delivery.id);
    assert.equal(warn!.attempt, 2);
    assert.equal(warn!.reason, "http_5xx");
    assert.equal(warn!.status, 503);
    assert.equal(warn!.retryInMs, 250);
    assert.equal(warn!.response, "upstream down [REDACTED]");
    assert.equal(dead!.level, 50);
    assert.equal(dead!.msg, "delivery dead-lettered");
    assert.equal(dead!.reason, "http_4xx");
    assert.equal(dead!.event, "17");
    assert.equal(error!.level, 50);
    assert.equal(error!.err.message, "database unreachable: password [REDACTED]");
    const all = JSON.stringify(lines);
    assert.doesNotMatch(all, /private@example\.com/);
    assert.doesNotMatch(all, /Bearer abc/);
  });
});
