import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { createMetrics } from "../../src/metrics/index.js";
import { configFrom } from "../helpers/app.js";
import { NO_PROMTOOL, promtool } from "./prom.js";

const DEPLOY = fileURLToPath(new URL("../../deploy/", import.meta.url));
const ALERTS = join(DEPLOY, "prometheus/alerts.yml");
const ALERT_TESTS = join(DEPLOY, "prometheus/alerts.test.yml");
const DASHBOARD = join(DEPLOY, "grafana/fraiseql-dashboard.json");

/** The metric names a default-namespace instance exports (histograms with their series suffixes). */
async function exportedNames(): Promise<Set<string>> {
  const config = configFrom(`
[[entities]]
name = "Order"
[[observers]]
name = "o"
entity = "Order"
event = "INSERT"
[[observers.actions]]
url = "http://127.0.0.1:9/"
`);
  const metrics = createMetrics(
    config,
    {
      db: { query: async () => ({ rows: [], rowCount: 0 }), exec: async () => {} },
      dlq: { sizes: async () => new Map() },
    },
    { processMetrics: false },
  );
  try {
    const names = new Set<string>();
    for (const m of await metrics.registry.getMetricsAsJSON()) {
      names.add(m.name);
      if (String(m.type) === "histogram")
        for (const s of ["_bucket", "_sum", "_count"]) names.add(m.name + s);
    }
    return names;
  } finally {
    metrics.close();
  }
}

describe("Prometheus alert rules", () => {
  it("keeps the FraiseQL alert names, thresholds and summaries", async () => {
    const text = await readFile(ALERTS, "utf8");
    assert.match(
      text,
      /- alert: WebhookFailureRate\n\s+expr: \|\n\s+sum by \(observer\) \(rate\(fraiseql_webhook_failures_total\[5m\]\)\) \/\n\s+sum by \(observer\) \(rate\(fraiseql_webhook_total\[5m\]\)\) > 0\.05\n/,
    );
    assert.match(text, /summary: "Webhook failure rate > 5%"/);
    assert.match(text, /- alert: DLQBacklog\n\s+expr: fraiseql_dlq_size > 1000\n/);
    assert.match(text, /summary: "Webhook DLQ has \{\{ \$value \}\} items"/);
  });

  it("reads only metrics that the service exports", async () => {
    const names = await exportedNames();
    const text = await readFile(ALERTS, "utf8");
    const used = new Set(text.match(/\bfraiseql_[a-z_]+/g));
    assert.ok(used.size >= 5);
    for (const name of used) assert.ok(names.has(name), `${name} is not exported`);
  });

  it("pass promtool check rules", { skip: NO_PROMTOOL }, () => {
    const r = promtool(["check", "rules", ALERTS]);
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, /SUCCESS: 4 rules found/);
  });

  it("fire on bad series and stay quiet on healthy ones (promtool test rules)", { skip: NO_PROMTOOL }, () => {
    const r = promtool(["test", "rules", ALERT_TESTS]);
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, /SUCCESS/);
  });
});

describe("docs/operations.md", () => {
  it("documents every metric the service exports", async () => {
    const doc = await readFile(fileURLToPath(new URL("../../docs/operations.md", import.meta.url)), "utf8");
    for (const name of await exportedNames()) {
      if (/_(bucket|sum|count)$/.test(name)) continue;
      assert.ok(doc.includes(`\`${name}\``), `${name} is not documented`);
    }
  });
});

describe("Grafana dashboard", () => {
  interface Panel {
    type: string;
    title: string;
    id: number;
    targets?: { expr: string }[];
  }

  async function dashboard(): Promise<{
    uid: string;
    title: string;
    panels: Panel[];
    templating: { list: { name: string }[] };
  }> {
    return JSON.parse(await readFile(DASHBOARD, "utf8"));
  }

  it("is importable JSON with unique panel ids, a datasource and an observer variable", async () => {
    const d = await dashboard();
    assert.equal(d.uid, "fraiseql-webhooks");
    assert.deepEqual(
      d.templating.list.map((v) => v.name),
      ["datasource", "observer"],
    );
    const ids = d.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length);
  });

  it("charts every seed metric and only exported ones", async () => {
    const d = await dashboard();
    const exprs = d.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
    const used = new Set(exprs.flatMap((e) => e.match(/\bfraiseql_[a-z_]+/g) ?? []));
    const names = await exportedNames();
    for (const name of used) assert.ok(names.has(name), `${name} is not exported`);
    for (const seed of [
      "fraiseql_webhook_total",
      "fraiseql_webhook_duration_seconds_bucket",
      "fraiseql_webhook_failures_total",
      "fraiseql_webhook_retries_total",
      "fraiseql_dlq_size",
    ]) {
      assert.ok(used.has(seed), `no panel shows ${seed}`);
    }
  });

  it("has PromQL that Prometheus parses", { skip: NO_PROMTOOL }, async () => {
    const d = await dashboard();
    const exprs = d.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
    const dir = await mkdtemp(join(tmpdir(), "fraiseql-dash-"));
    try {
      // Each query as a recording rule, Grafana's variables replaced by what they stand for.
      const rules = exprs
        .map((e, i) => {
          const expr = e.replaceAll("$__rate_interval", "5m").replaceAll("$observer", ".*");
          return `      - record: dashboard:query_${i}\n        expr: ${JSON.stringify(expr)}`;
        })
        .join("\n");
      const file = join(dir, "dashboard-rules.yml");
      await writeFile(file, `groups:\n  - name: dashboard\n    rules:\n${rules}\n`);
      const r = promtool(["check", "rules", file]);
      assert.equal(r.status, 0, r.output);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
