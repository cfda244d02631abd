import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Service } from "../../src/cli/serve.js";
import {
  createMetrics,
  type Metrics,
  type MetricsServer,
  startMetricsServer,
} from "../../src/metrics/index.js";
import { readyCheck } from "../../src/metrics/server.js";
import { MockWebhookServer } from "../../src/testing/index.js";
import { startTestService } from "../helpers/app.js";
import { openTestDatabase, type TestDatabase } from "../helpers/db.js";
import { NO_PROMTOOL, parseMetrics, promtool, type Sample, sampleSum, sampleValue } from "./prom.js";

const TOML = `
[[entities]]
name = "Payment"
[entities.fields]
id = "ID"
amount = "Float"

[[observers]]
name = "on_ok"
entity = "Payment"
event = "INSERT"
[[observers.actions]]
url = "\${RECEIVER}/ok"

[[observers]]
name = "on_flaky"
entity = "Payment"
event = "INSERT"
[[observers.actions]]
url = "\${RECEIVER}/flaky"

[[observers]]
name = "on_bad"
entity = "Payment"
event = "INSERT"
[[observers.actions]]
url = "\${RECEIVER}/bad"

[[observers]]
name = "on_big"
entity = "Payment"
event = "INSERT"
condition = "amount > 1000"
[[observers.actions]]
url = "\${RECEIVER}/big"

[webhooks.retry]
max_attempts = 3
initial_delay = "20ms"
max_delay = "100ms"

[webhooks.dispatch]
poll_interval = "20ms"
`;

describe("/metrics after a scripted run: 200, 500 then 200, 400", () => {
  let db: TestDatabase;
  let mock: MockWebhookServer;
  let service: Service;
  let metrics: Metrics;
  let server: MetricsServer;
  let text: string;
  let samples: Sample[];

  before(async () => {
    db = await openTestDatabase();
    mock = await MockWebhookServer.start();
    mock.route("/flaky", [{ status: 500 }], { status: 200 });
    mock.route("/bad", [{ status: 400, body: "no" }]);
    service = await startTestService(db, TOML, { RECEIVER: mock.url });
    metrics = createMetrics(service.app.config, service.app, { queueCacheMs: 0, dlqCacheMs: 0 });
    server = await startMetricsServer({
      port: 0,
      metrics,
      ready: readyCheck(service.app.db, service.app.config.database.schema),
    });
    await db.query("INSERT INTO payments (amount) VALUES (10)");
    await mock.waitForCalls(4, 10_000);
    await service.app.dispatcher.waitForIdle();
    const res = await fetch(`${server.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    text = await res.text();
    samples = parseMetrics(text);
  });
  after(async () => {
    metrics?.close();
    await server?.close();
    await service?.close();
    await mock?.close();
    await db?.close();
  });

  it("counts attempts per observer in fraiseql_webhook_total", () => {
    assert.equal(sampleValue(samples, "fraiseql_webhook_total", { observer: "on_ok" }), 1);
    assert.equal(sampleValue(samples, "fraiseql_webhook_total", { observer: "on_flaky" }), 2);
    assert.equal(sampleValue(samples, "fraiseql_webhook_total", { observer: "on_bad" }), 1);
    // Did not match: present at 0, so rates exist before the first delivery.
    assert.equal(sampleValue(samples, "fraiseql_webhook_total", { observer: "on_big" }), 0);
  });

  it("counts failed attempts by reason in fraiseql_webhook_failures_total", () => {
    assert.equal(
      sampleValue(samples, "fraiseql_webhook_failures_total", { observer: "on_flaky", reason: "http_5xx" }),
      1,
    );
    assert.equal(
      sampleValue(samples, "fraiseql_webhook_failures_total", { observer: "on_bad", reason: "http_4xx" }),
      1,
    );
    assert.equal(sampleSum(samples, "fraiseql_webhook_failures_total", { observer: "on_ok" }), 0);
    assert.equal(sampleSum(samples, "fraiseql_webhook_failures_total"), 2);
  });

  it("counts scheduled retries in fraiseql_webhook_retries_total", () => {
    assert.equal(sampleValue(samples, "fraiseql_webhook_retries_total", { observer: "on_flaky" }), 1);
    assert.equal(sampleValue(samples, "fraiseql_webhook_retries_total", { observer: "on_ok" }), 0);
    assert.equal(sampleValue(samples, "fraiseql_webhook_retries_total", { observer: "on_bad" }), 0);
  });

  it("observes attempt durations by observer and status", () => {
    const count = (observer: string, status: string) =>
      sampleValue(samples, "fraiseql_webhook_duration_seconds_count", { observer, status });
    assert.equal(count("on_ok", "success"), 1);
    assert.equal(count("on_flaky", "success"), 1);
    assert.equal(count("on_flaky", "failure"), 1);
    assert.equal(count("on_bad", "failure"), 1);
    assert.equal(count("on_bad", "success"), undefined);
    const inf = sampleValue(samples, "fraiseql_webhook_duration_seconds_bucket", {
      observer: "on_ok",
      status: "success",
      le: "+Inf",
    });
    assert.equal(inf, 1);
  });

  it("reads fraiseql_dlq_size per observer from the DLQ, zeros included", () => {
    assert.equal(sampleValue(samples, "fraiseql_dlq_size", { observer: "on_bad" }), 1);
    assert.equal(sampleValue(samples, "fraiseql_dlq_size", { observer: "on_ok" }), 0);
    assert.equal(sampleValue(samples, "fraiseql_dlq_size", { observer: "on_flaky" }), 0);
  });

  it("counts dead letters, matches, captures and latencies", () => {
    assert.equal(
      sampleValue(samples, "fraiseql_dead_letters_total", { observer: "on_bad", reason: "http_4xx" }),
      1,
    );
    assert.equal(sampleSum(samples, "fraiseql_dead_letters_total"), 1);
    for (const observer of ["on_ok", "on_flaky", "on_bad"]) {
      assert.equal(sampleValue(samples, "fraiseql_events_matched_total", { observer }), 1, observer);
    }
    assert.equal(sampleValue(samples, "fraiseql_events_matched_total", { observer: "on_big" }), 0);
    assert.equal(sampleSum(samples, "fraiseql_events_captured_total"), 1);
    assert.equal(sampleValue(samples, "fraiseql_delivery_latency_seconds_count", { observer: "on_ok" }), 1);
    assert.equal(
      sampleValue(samples, "fraiseql_delivery_latency_seconds_count", { observer: "on_flaky" }),
      1,
    );
    assert.equal(
      sampleValue(samples, "fraiseql_delivery_latency_seconds_count", { observer: "on_bad" }),
      undefined,
    );
  });

  it("reports an empty queue once everything is settled", () => {
    for (const status of ["pending", "running", "waiting"]) {
      assert.equal(sampleValue(samples, "fraiseql_queue_depth", { status }), 0, status);
    }
    assert.equal(sampleValue(samples, "fraiseql_queue_oldest_pending_seconds"), 0);
    assert.equal(sampleValue(samples, "fraiseql_events_unrouted"), 0);
  });

  it("labels nothing with a URL or an id", () => {
    const allowed = new Set([
      "observer",
      "status",
      "reason",
      "entity",
      "le",
      "source",
      "kind",
      "type",
      "space",
      "version",
      "major",
      "minor",
      "patch",
      "code",
    ]);
    for (const s of samples.filter((x) => x.name.startsWith("fraiseql_"))) {
      for (const [k, v] of Object.entries(s.labels)) {
        assert.ok(allowed.has(k), `${s.name} has label ${k}`);
        assert.doesNotMatch(v, /https?:|127\.0\.0\.1|[0-9a-f]{8}-[0-9a-f]{4}-/, `${s.name}{${k}="${v}"}`);
      }
    }
  });

  it("passes promtool check metrics", { skip: NO_PROMTOOL }, () => {
    const r = promtool(["check", "metrics"], text);
    assert.equal(r.status, 0, r.output);
  });

  it("serves /health and /ready beside /metrics", async () => {
    const health = await fetch(`${server.url}/health`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: "ok" });
    const ready = await fetch(`${server.url}/ready`);
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), { status: "ready" });
    const post = await fetch(`${server.url}/metrics`, { method: "POST" });
    assert.equal(post.status, 405);
    await post.text();
    const other = await fetch(`${server.url}/nope`);
    assert.equal(other.status, 404);
    await other.text();
  });

  it("stops counting after close()", async () => {
    const c = await createCountingMetrics();
    c.close();
    await db.query("INSERT INTO payments (amount) VALUES (20)");
    await mock.waitForCalls(7, 10_000);
    await service.app.dispatcher.waitForIdle();
    const after = parseMetrics(await c.text());
    assert.equal(sampleValue(after, "fraiseql_webhook_total", { observer: "on_ok" }), 0);
    const live = parseMetrics(await metrics.text());
    assert.equal(sampleValue(live, "fraiseql_webhook_total", { observer: "on_ok" }), 2);
  });

  function createCountingMetrics(): Metrics {
    return createMetrics(service.app.config, service.app, { processMetrics: false });
  }
});

describe("queue gauges while no dispatcher runs", () => {
  let db: TestDatabase;
  let service: Service;
  let metrics: Metrics;

  before(async () => {
    db = await openTestDatabase();
    service = await startTestService(
      db,
      `${TOML}\n[observability.prometheus]\nnamespace = "shop"\n`,
      { RECEIVER: "http://127.0.0.1:9" },
      { dispatch: false, http: false },
    );
    metrics = createMetrics(service.app.config, service.app, { queueCacheMs: 0, processMetrics: false });
  });
  after(async () => {
    metrics?.close();
    await service?.close();
    await db?.close();
  });

  it("counts unrouted events, deliveries by status and the age of the oldest due one, under the configured namespace", async () => {
    await db.query("INSERT INTO payments (amount) VALUES (5), (2000)");
    // Changes waiting in the outbox are due work too: busy workers leave them there.
    await db.query("UPDATE fraiseql.events SET created_at = now() - interval '45 seconds'");
    let samples = parseMetrics(await metrics.text());
    assert.equal(sampleValue(samples, "shop_events_unrouted"), 2);
    assert.equal(sampleValue(samples, "shop_queue_depth", { status: "pending" }), 0);
    const unroutedAge = sampleValue(samples, "shop_queue_oldest_pending_seconds");
    assert.ok(
      unroutedAge !== undefined && unroutedAge >= 45 && unroutedAge < 90,
      `oldest unrouted ${unroutedAge}`,
    );
    assert.equal(sampleValue(samples, "shop_webhook_total", { observer: "on_ok" }), 0);
    assert.equal(sampleValue(samples, "fraiseql_webhook_total", { observer: "on_ok" }), undefined);

    // The state a backlog leaves: routed events, deliveries due for 90 s, one retry later, one
    // being sent, two behind an earlier action.
    await db.query("UPDATE fraiseql.events SET routed_at = now()");
    const { rows } = await db.query<{ id: string }>(
      "SELECT id::text FROM fraiseql.events ORDER BY id LIMIT 1",
    );
    const eventId = rows[0]!.id;
    const states = [
      ["pending", "now() - interval '90 seconds'"],
      ["pending", "now() - interval '30 seconds'"],
      ["pending", "now() + interval '1 hour'"],
      ["running", "now() - interval '1 hour'"],
      ["waiting", "now() - interval '2 hours'"],
      ["waiting", "now()"],
    ];
    for (const [i, [status, runAt]] of states.entries()) {
      await db.query(
        `INSERT INTO fraiseql.deliveries (id, event_id, observer, action_index, status, run_at)
         VALUES (gen_random_uuid(), $1, 'on_ok', $2, $3, ${runAt})`,
        [eventId, i, status],
      );
    }
    samples = parseMetrics(await metrics.text());
    assert.equal(sampleValue(samples, "shop_events_unrouted"), 0);
    assert.equal(sampleValue(samples, "shop_queue_depth", { status: "pending" }), 3);
    assert.equal(sampleValue(samples, "shop_queue_depth", { status: "running" }), 1);
    assert.equal(sampleValue(samples, "shop_queue_depth", { status: "waiting" }), 2);
    const oldest = sampleValue(samples, "shop_queue_oldest_pending_seconds");
    assert.ok(oldest !== undefined && oldest >= 90 && oldest < 3600, `oldest pending ${oldest}`);
  });

  it("keeps the last values and counts a read error when the database fails", async () => {
    const failing = createMetrics(
      service.app.config,
      {
        db: { query: () => Promise.reject(new Error("connection lost")), exec: async () => {} },
        dlq: { sizes: () => Promise.reject(new Error("DLQ down")) },
      },
      { processMetrics: false },
    );
    try {
      const samples = parseMetrics(await failing.text());
      assert.equal(sampleValue(samples, "shop_metrics_read_errors_total", { source: "queue" }), 1);
      assert.equal(sampleValue(samples, "shop_metrics_read_errors_total", { source: "dlq" }), 1);
      assert.equal(sampleValue(samples, "shop_webhook_total", { observer: "on_ok" }), 0);
    } finally {
      failing.close();
    }
  });
});
