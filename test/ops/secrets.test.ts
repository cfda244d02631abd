import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import {
  formatDeliveryDetail,
  formatDeliveryList,
  getDelivery,
  listDeliveries,
} from "../../src/cli/deliveries.js";
import { diagnose, formatDoctorReport } from "../../src/cli/doctor.js";
import type { Service } from "../../src/cli/serve.js";
import { createLogger, subscribeLogs } from "../../src/log/index.js";
import { createMetrics, type Metrics } from "../../src/metrics/index.js";
import { createRedactor } from "../../src/redact.js";
import { MockWebhookServer } from "../../src/testing/index.js";
import { startTestService } from "../helpers/app.js";
import { openTestDatabase, type TestDatabase } from "../helpers/db.js";

const KEY = randomBytes(32);
const ENV = {
  PARTNER_KEY: `pk_live_${randomBytes(8).toString("hex")}`,
  API_TOKEN: `tok_${randomBytes(8).toString("hex")}`,
  URL_TOKEN: `url_${randomBytes(8).toString("hex")}`,
  SIGNING_SECRET: `whsig_${randomBytes(12).toString("hex")}`,
  ENC_KEY: KEY.toString("base64"),
};
/** Every secret, in every form it could leak in (the key also as hex). */
const SECRETS = [...Object.values(ENV), KEY.toString("hex")];

const TOML = `
[[entities]]
name = "Order"
[entities.fields]
id = "ID"
total = "Float"

[[observers]]
name = "echo_500"
entity = "Order"
event = "INSERT"
[[observers.actions]]
url = "RECEIVER/fail?key=\${URL_TOKEN}"
headers = { "X-Partner-Key" = "\${PARTNER_KEY}", Authorization = "Bearer \${API_TOKEN}" }
encryption = { enabled = true, algorithm = "AES-256-GCM", key = "\${ENC_KEY}" }

[[observers]]
name = "echo_400"
entity = "Order"
event = "INSERT"
[[observers.actions]]
url = "RECEIVER/refuse?key=\${URL_TOKEN}"
headers = { "X-Partner-Key" = "\${PARTNER_KEY}" }
body = { order = "{{ id }}", note = "partner \${PARTNER_KEY}" }

[webhooks.signing]
secret = "\${SIGNING_SECRET}"

[webhooks.retry]
max_attempts = 2
initial_delay = "10ms"
max_delay = "50ms"

[webhooks.dispatch]
poll_interval = "20ms"
`;

describe("secrets never leave the process", () => {
  let db: TestDatabase;
  let mock: MockWebhookServer;
  let service: Service;
  let metrics: Metrics;
  const logLines: string[] = [];
  let unsubscribe: () => void = () => {};

  before(async () => {
    db = await openTestDatabase();
    mock = await MockWebhookServer.start();
    // A receiver that echoes the credentials it got: the response excerpt would carry them.
    mock.respond((call) => ({
      status: call.path === "/refuse" ? 400 : 500,
      body: `${call.headers["x-partner-key"]} ${call.headers.authorization} ${call.url} ${call.body.slice(0, 200)}`,
    }));
    service = await startTestService(db, TOML.replaceAll("RECEIVER", mock.url), ENV);
    const config = service.app.config;
    const sink = new Writable({
      write(chunk, _encoding, done) {
        logLines.push(String(chunk));
        done();
      },
    });
    const json = createLogger(config, { env: { FRAISEQL_LOG_LEVEL: "debug" }, format: "json", stream: sink });
    const pretty = createLogger(config, {
      env: { FRAISEQL_LOG_LEVEL: "debug" },
      format: "pretty",
      stream: sink,
    });
    const stopJson = subscribeLogs(json);
    const stopPretty = subscribeLogs(pretty);
    unsubscribe = () => {
      stopJson();
      stopPretty();
    };
    // What careless code might log: the resolved config itself.
    json.info({ webhooks: config.webhooks, observers: config.observers }, "config loaded");
    pretty.info({ signing: config.webhooks.signing }, "signing");
    metrics = createMetrics(config, service.app, { queueCacheMs: 0, dlqCacheMs: 0 });

    await db.query("INSERT INTO orders (total) VALUES (10), (20)");
    await mock.waitForCalls(6, 10_000);
    await service.app.dispatcher.waitForIdle();
    await new Promise((resolve) => setImmediate(resolve));
  });
  after(async () => {
    unsubscribe();
    metrics?.close();
    await service?.close();
    await mock?.close();
    await db?.close();
  });

  function assertClean(what: string, text: string): void {
    for (const secret of SECRETS)
      assert.ok(!text.includes(secret), `${what} contains a secret: ${text.slice(0, 2000)}`);
  }

  it("sent the secrets to the receiver, which echoed them back (so there was something to leak)", () => {
    assert.equal(mock.callCount, 6);
    const echoed = mock.calls
      .map((c) => `${c.headers["x-partner-key"]} ${c.headers.authorization} ${c.url}`)
      .join("\n");
    assert.ok(echoed.includes(ENV.PARTNER_KEY));
    assert.ok(echoed.includes(ENV.API_TOKEN));
    assert.ok(echoed.includes(ENV.URL_TOKEN));
  });

  it("keeps them out of the delivery history", async () => {
    const { rows } = await db.query<{ row: string }>(
      "SELECT row_to_json(a)::text AS row FROM fraiseql.delivery_attempts a",
    );
    assert.equal(rows.length, 6);
    const text = rows.map((r) => r.row).join("\n");
    assertClean("delivery_attempts", text);
    assert.match(text, /\[REDACTED\]/);
    const { rows: deliveries } = await db.query<{ row: string }>(
      "SELECT row_to_json(d)::text AS row FROM fraiseql.deliveries d",
    );
    assertClean("deliveries", deliveries.map((r) => r.row).join("\n"));
  });

  it("keeps them out of the DLQ", async () => {
    const { rows } = await db.query<{ row: string }>("SELECT row_to_json(w)::text AS row FROM webhook_dlq w");
    assert.equal(rows.length, 4);
    assertClean("webhook_dlq", rows.map((r) => r.row).join("\n"));
    const entries = await service.app.dlq.list({ limit: 0 });
    assert.equal(entries.length, 4);
    assertClean("dlq list", JSON.stringify(entries));
    assert.ok(entries.every((e) => e.url.includes("key=[REDACTED]")));
  });

  it("keeps them out of every log line, JSON and pretty", () => {
    const text = logLines.join("");
    assert.ok(logLines.length >= 10, `only ${logLines.length} log lines`);
    assert.match(text, /webhook attempt failed/);
    assert.match(text, /delivery dead-lettered/);
    assertClean("logs", text);
  });

  it("keeps them out of /metrics", async () => {
    const text = await metrics.text();
    assert.match(text, /fraiseql_webhook_failures_total\{observer="echo_500",reason="http_5xx"\} 4/);
    assert.match(text, /fraiseql_dlq_size\{observer="echo_400"\} 2/);
    assertClean("metrics", text);
  });

  it("keeps them out of the deliveries and doctor commands", async () => {
    const config = service.app.config;
    const redact = createRedactor(config.secrets);
    const list = await listDeliveries(service.app.db, config.database.schema);
    assert.equal(list.length, 4);
    let text = formatDeliveryList(list, redact) + JSON.stringify(list);
    for (const d of list) {
      const detail = await getDelivery(service.app.db, config, d.id);
      assert.ok(detail);
      text += formatDeliveryDetail(detail, redact) + JSON.stringify(detail);
    }
    assert.match(text, /response: ".*\[REDACTED\]/);
    text += formatDoctorReport(await diagnose(service.app, { probeTimeoutMs: 2000 }));
    assertClean("commands", text);
  });
});
