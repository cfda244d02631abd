// biome-ignore-all lint/suspicious/noTemplateCurlyInString: "${NAME}" is the config's environment reference syntax, not a mistaken template literal.
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { loadConfig, parseConfig } from "../../src/config/load.js";
import type { ResolvedConfig } from "../../src/config/types.js";

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "fixtures");
const KEY = Buffer.alloc(32, 7).toString("base64");
const ENV = {
  WEBHOOK_API_KEY: "api-key-1",
  WEBHOOK_SECRET: "whsec-secret-1",
  WEBHOOK_ENCRYPTION_KEY: KEY,
  API_TOKEN: "token-1",
  DATABASE_URL: "postgres://app:pw-1@db.example.com:5432/app",
};

function load(dir: string, name: string): Promise<ResolvedConfig> {
  return loadConfig({ path: join(FIXTURES, dir, name), env: ENV });
}

describe("every TOML snippet of the seed document and of SPEC.md loads", () => {
  for (const dir of ["seed", "spec"]) {
    for (const name of readdirSync(join(FIXTURES, dir)).filter((f) => f.endsWith(".toml"))) {
      it(`${dir}/${name}`, async () => {
        const config = await load(dir, name);
        assert.equal(config.file, join(FIXTURES, dir, name));
        assert.ok(Object.isFrozen(config));
      });
    }
  }
});

describe("snippet values", () => {
  it("seed retry: both snippets in one table", async () => {
    const { retry } = (await load("seed", "retry.toml")).webhooks;
    assert.deepEqual(retry, {
      maxAttempts: 3,
      backoff: "exponential",
      initialDelay: 100,
      maxDelay: 5000,
      multiplier: 2.5,
      jitter: 0,
      retryOn: [408, 429, 500, 502, 503, 504],
      dontRetryOn: [400, 401, 403, 404, 422],
    });
  });

  it("seed dlq variants", async () => {
    const pg = (await load("seed", "dlq.toml")).webhooks.dlq;
    assert.equal(pg.backend, "postgresql");
    assert.equal(pg.retention, 7 * 24 * 3600 * 1000);
    assert.equal(pg.maxSize, 10_000_000_000);
    const nats = (await load("seed", "dlq-nats.toml")).webhooks.dlq;
    assert.deepEqual(
      [nats.backend, nats.stream, nats.bucket, nats.url],
      ["nats", "WEBHOOK_DLQ", "webhook-failures", "nats://127.0.0.1:4222"],
    );
    const file = (await load("seed", "dlq-file.toml")).webhooks.dlq;
    assert.deepEqual(
      [file.backend, file.path, file.rotation, file.compress],
      ["file", "/var/log/fraiseql/webhook_dlq.jsonl", "daily", true],
    );
  });

  it("seed signing: the secret comes from the environment and is a secret", async () => {
    const config = await load("seed", "signing.toml");
    assert.deepEqual(config.webhooks.signing, {
      enabled: true,
      scheme: "fraiseql",
      algorithm: "sha256",
      secrets: ["whsec-secret-1"],
      header: "X-FraiseQL-Signature",
      timestampHeader: "X-FraiseQL-Timestamp",
    });
    assert.ok(config.secrets.includes("whsec-secret-1"));
  });

  it("seed dispatch, batching, rate limiting, test_url, timeout, prometheus", async () => {
    assert.equal((await load("seed", "dispatch.toml")).webhooks.dispatch.timeout, 30_000);
    assert.deepEqual((await load("seed", "batching.toml")).webhooks.batching, {
      enabled: true,
      batchSize: 50,
      timeout: 10_000,
    });
    assert.deepEqual((await load("seed", "rate-limiting.toml")).webhooks.rateLimiting, {
      enabled: true,
      maxPerSecond: 100,
      burst: 200,
    });
    assert.equal((await load("seed", "test-url.toml")).webhooks.testUrl, "https://abc123.ngrok.io/webhook");
    assert.equal((await load("seed", "timeout.toml")).webhooks.timeout, 60_000);
    assert.deepEqual((await load("seed", "prometheus.toml")).observability.prometheus, {
      enabled: true,
      port: 9090,
      host: "127.0.0.1",
      namespace: "fraiseql",
    });
  });

  it("seed observers: entities, retry override, fan-out, batch and encryption", async () => {
    const config = await load("seed", "observers.toml");
    assert.deepEqual(
      config.entities.map((e) => [e.name, e.table, e.schema]),
      [
        ["Order", "orders", "public"],
        ["Payment", "payments", "public"],
        ["User", "users", "public"],
      ],
    );
    assert.deepEqual(config.entities[0]!.fields.at(-1), {
      name: "tracking_number",
      type: "String",
      nullable: true,
    });
    const byName = new Map(config.observers.map((o) => [o.name, o]));
    assert.equal(byName.size, 7);

    const created = byName.get("on_order_created")!;
    assert.equal(created.actions[0]!.headers.Authorization, "Bearer api-key-1");
    assert.equal(created.actions[0]!.method, "POST");
    assert.equal(created.actions[0]!.timeout, 30_000);
    assert.deepEqual(created.actions[0]!.body, {
      event: "order.created",
      order_id: "{{ id }}",
      customer_email: "{{ customer_email }}",
      total: "{{ total }}",
      timestamp: "{{ _timestamp }}",
    });

    const critical = byName.get("critical_payment_notification")!;
    assert.deepEqual(
      [
        critical.retry.maxAttempts,
        critical.retry.backoff,
        critical.retry.initialDelay,
        critical.retry.maxDelay,
      ],
      [5, "linear", 1000, 5000],
    );

    const fanOut = byName.get("fan_out_user_registration")!;
    assert.deepEqual(
      fanOut.actions.map((a) => [a.index, a.condition]),
      [
        [0, "country == 'US'"],
        [1, "country IN ('DE', 'FR', 'UK')"],
        [2, undefined],
      ],
    );

    assert.deepEqual(byName.get("batch_order_analytics")!.actions[0]!.batch, { size: 10, timeout: 5000 });

    const encryption = byName.get("send_user_data")!.actions[0]!.encryption!;
    assert.equal(encryption.algorithm, "AES-256-GCM");
    assert.ok(encryption.key.equals(Buffer.alloc(32, 7)));
    assert.equal(encryption.fields, undefined);
    assert.ok(config.secrets.includes(KEY));
    assert.ok(config.secrets.includes("api-key-1"));
  });

  it("spec database and auth", async () => {
    const db = await load("spec", "database.toml");
    assert.equal(db.database.url, ENV.DATABASE_URL);
    assert.ok(db.secrets.includes("pw-1"), "the URL's password is redacted on its own too");
    const auth = (await load("spec", "entities.toml")).server.auth;
    assert.deepEqual([auth.mode, auth.tokens], ["bearer", ["token-1"]]);
  });

  it("spec observer: merged retry, per-action condition, batch, encryption", async () => {
    const config = await load("spec", "observers.toml");
    const [observer] = config.observers;
    assert.equal(observer!.event, "UPDATE");
    assert.equal(observer!.retry.maxAttempts, 5);
    assert.equal(observer!.retry.retryOn.length, 6, "unset keys come from [webhooks.retry]");
    const [action] = observer!.actions;
    assert.equal(action!.condition, "country == 'US'");
    assert.deepEqual(action!.batch, { size: 10, timeout: 5000 });
    assert.equal(action!.encryption!.key.length, 32);
  });
});

describe("defaults", () => {
  it("an empty file gives every default, frozen all the way down", () => {
    const config = parseConfig("", { env: {} });
    assert.equal(config.file, undefined);
    assert.deepEqual(config.database, {
      url: undefined,
      dataDir: ".fraiseql/data",
      schema: "fraiseql",
      retention: 7 * 24 * 3600 * 1000,
    });
    assert.deepEqual(config.server, {
      host: "127.0.0.1",
      port: 4000,
      auth: {
        mode: "none",
        tokens: [],
        secret: undefined,
        publicKey: undefined,
        issuer: undefined,
        audience: undefined,
      },
    });
    assert.deepEqual(config.webhooks.dispatch, {
      async: true,
      timeout: 30_000,
      backgroundRetry: true,
      maxQueueSize: 1000,
      pollInterval: 200,
      lease: 5000,
      concurrency: 256,
      livenessLock: true,
    });
    assert.deepEqual(config.webhooks.signing, {
      enabled: false,
      scheme: "fraiseql",
      algorithm: "sha256",
      secrets: [],
      header: "X-FraiseQL-Signature",
      timestampHeader: "X-FraiseQL-Timestamp",
    });
    assert.deepEqual(config.webhooks.dlq, {
      enabled: true,
      backend: "postgresql",
      table: "webhook_dlq",
      schema: "public",
      retention: 604_800_000,
      maxSize: 10_000_000_000,
      url: "nats://127.0.0.1:4222",
      stream: "WEBHOOK_DLQ",
      bucket: "webhook-failures",
      path: ".fraiseql/webhook_dlq.jsonl",
      rotation: "daily",
      compress: false,
    });
    assert.deepEqual(config.entities, []);
    assert.deepEqual(config.secrets, []);
    assert.ok(Object.isFrozen(config.webhooks.retry.retryOn));
    assert.throws(() => {
      (config.webhooks.retry as { maxAttempts: number }).maxAttempts = 9;
    }, TypeError);
  });

  it("derives table names and puts id first", () => {
    const names = [
      "Order",
      "Payment",
      "User",
      "Category",
      "Address",
      "OrderItem",
      "Box",
      "Day",
      "HTTPRequest",
    ];
    const toml = names.map((n) => `[[entities]]\nname = "${n}"\n`).join("");
    const config = parseConfig(toml, { env: {} });
    assert.deepEqual(
      config.entities.map((e) => e.table),
      [
        "orders",
        "payments",
        "users",
        "categories",
        "addresses",
        "order_items",
        "boxes",
        "days",
        "http_requests",
      ],
    );
    const withId = parseConfig('[[entities]]\nname = "A"\n[entities.fields]\nx = "Int"\nid = "ID"\n', {
      env: {},
    });
    assert.deepEqual(
      withId.entities[0]!.fields.map((f) => f.name),
      ["id", "x"],
    );
  });

  it("signing turns itself on when a secret is given, and takes several for rotation", () => {
    const one = parseConfig('[webhooks.signing]\nsecret = "s1"\n', { env: {} });
    assert.equal(one.webhooks.signing.enabled, true);
    const rotation = parseConfig('[webhooks.signing]\nsecrets = ["s2", "s1"]\n', { env: {} });
    assert.deepEqual(rotation.webhooks.signing.secrets, ["s2", "s1"]);
    assert.deepEqual(
      rotation.secrets,
      ["s2", "s1"].sort((a, b) => b.length - a.length),
    );
    const off = parseConfig('[webhooks.signing]\nenabled = false\nsecret = "s1"\n', { env: {} });
    assert.equal(off.webhooks.signing.enabled, false);
  });

  it("accepts numbers and booleans written as ${ENV}", () => {
    const config = parseConfig('[server]\nport = "${PORT}"\n[webhooks.dispatch]\nasync = "${ASYNC}"\n', {
      env: { PORT: "8080", ASYNC: "false" },
    });
    assert.equal(config.server.port, 8080);
    assert.equal(config.webhooks.dispatch.async, false);
  });

  it("an empty DATABASE_URL selects the embedded database", () => {
    const config = parseConfig('[database]\nurl = "${DATABASE_URL}"\n', { env: { DATABASE_URL: "" } });
    assert.equal(config.database.url, undefined);
  });

  it("resolves include paths relative to the config file", async () => {
    const config = await loadConfig({ path: join(FIXTURES, "ts", "fraiseql.toml"), env: ENV });
    assert.equal(config.entities.length, 3);
  });
});
