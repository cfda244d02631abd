import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { type DoctorReport, diagnose, formatDoctorReport, probeTarget } from "../../src/cli/doctor.js";
import type { Service } from "../../src/cli/serve.js";
import { MockWebhookServer } from "../../src/testing/index.js";
import { startTestService } from "../helpers/app.js";
import { openTestDatabase, type TestDatabase } from "../helpers/db.js";

/** A port nothing listens on: bound once, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

// Independent setups in one config: healthy ones, and three broken in one way each.
const TOML = `
[[entities]]
name = "Customer"
[entities.fields]
id = "ID"
email = "String"

[[entities]]
name = "Order"
[entities.fields]
id = "ID"
status = "String"

[[entities]]
name = "Invoice"
[entities.fields]
id = "ID"
amount = "Float"

[[entities]]
name = "Voucher"
[entities.fields]
id = "ID"
status = "String"

[[entities]]
name = "Shipment"
[entities.fields]
id = "ID"
carrier = "String"

[[observers]]
name = "healthy"
entity = "Customer"
event = "INSERT"
condition = "email != ''"
[[observers.actions]]
url = "RECEIVER/customers"
[[observers.actions]]
url = "https://{{ email }}/tenant-hook"

[[observers]]
name = "never_true"
entity = "Order"
event = "UPDATE"
condition = "status.changed() && status == 'Shipped'"
[[observers.actions]]
url = "RECEIVER/orders"

[[observers]]
name = "unreachable"
entity = "Invoice"
event = "INSERT"
[[observers.actions]]
url = "http://127.0.0.1:CLOSED_PORT/invoices/{{ id }}"

[[observers]]
name = "voucher_voided"
entity = "Voucher"
event = "DELETE"
condition = "status == 'void'"
[[observers.actions]]
url = "RECEIVER/vouchers"

[[observers]]
name = "not_captured"
entity = "Shipment"
event = "INSERT"
[[observers.actions]]
url = "RECEIVER/shipments?token=\${SHIPMENT_TOKEN}"
`;

function section(report: DoctorReport, observer: string) {
  const s = report.sections.find((x) => x.title === `observer ${observer}`);
  assert.ok(s, `no section for ${observer}`);
  return s;
}

function problems(report: DoctorReport, observer: string): string[] {
  return section(report, observer)
    .checks.filter((c) => c.ok === false)
    .map((c) => c.text);
}

describe("fraiseql doctor", () => {
  let db: TestDatabase;
  let mock: MockWebhookServer;
  let service: Service;
  let report: DoctorReport;

  before(async () => {
    db = await openTestDatabase();
    mock = await MockWebhookServer.start();
    // No dispatcher: doctor reads the captured events themselves, and nothing is dead-lettered.
    const toml = TOML.replaceAll("RECEIVER", mock.url).replace("CLOSED_PORT", String(await closedPort()));
    service = await startTestService(
      db,
      toml,
      { SHIPMENT_TOKEN: "tok-9f8e7d6c5b" },
      { dispatch: false, http: false },
    );
    await db.query("INSERT INTO customers (email) VALUES ('a@example.com')");
    await db.query("INSERT INTO orders (status) VALUES ('paid'), ('paid')");
    await db.query("UPDATE orders SET status = 'shipped' WHERE id = (SELECT min(id) FROM orders)");
    await db.query("INSERT INTO invoices (amount) VALUES (12.5)");
    await db.query("INSERT INTO vouchers (status) VALUES ('void'), ('open')");
    await db.query("DELETE FROM vouchers WHERE status = 'void'");
    await db.query("DROP TRIGGER fraiseql_capture ON shipments");
    await db.query("INSERT INTO shipments (carrier) VALUES ('ups')");
    report = await diagnose(service.app, { probeTimeoutMs: 2000 });
  });
  after(async () => {
    await service?.close();
    await mock?.close();
    await db?.close();
  });

  it("passes a healthy observer: registered, captured, condition matching, receiver reachable", () => {
    assert.deepEqual(problems(report, "healthy"), []);
    const text = section(report, "healthy").checks.map((c) => `${c.ok} ${c.text}`);
    assert.ok(
      text.some((t) => /^true registered: INSERT on Customer/.test(t)),
      text.join("\n"),
    );
    assert.ok(
      text.some((t) => /^true INSERT on public\.customers is captured/.test(t)),
      text.join("\n"),
    );
    assert.ok(
      text.some((t) => /^true condition `email != ''` matches 1 of 1 rows/.test(t)),
      text.join("\n"),
    );
    assert.ok(
      text.some((t) => /^true 1 of 1 INSERT events on Customer .* matched/.test(t)),
      text.join("\n"),
    );
    assert.ok(
      text.some((t) =>
        /^true action 0: POST http:\/\/127\.0\.0\.1:\d+\/customers: reachable \(HTTP 200/.test(t),
      ),
      text.join("\n"),
    );
    assert.ok(
      text.some((t) => /^undefined action 1: .*not probed, the host is a \{\{ \}\} template/.test(t)),
      text.join("\n"),
    );
    assert.ok(mock.calls.some((c) => c.method === "OPTIONS" && c.path === "/customers" && c.body === ""));
  });

  it("does not count a DELETE observer's condition matching none of the rows left", () => {
    assert.deepEqual(problems(report, "voucher_voided"), []);
    const text = section(report, "voucher_voided").checks.map((c) => `${c.ok} ${c.text}`);
    assert.ok(
      text.some((t) => /^undefined condition .* matches none of the 1 rows .*would not fire it/.test(t)),
      text.join("\n"),
    );
    assert.ok(
      text.some((t) => /^true 1 of 1 DELETE events on Voucher .* matched/.test(t)),
      text.join("\n"),
    );
  });

  it("names a condition that matches neither the rows nor the recent events", () => {
    const found = problems(report, "never_true");
    assert.equal(found.length, 2, found.join("\n"));
    assert.match(
      found[0]!,
      /condition `status.changed\(\) && status == 'Shipped'` matches none of the 2 rows of public\.orders/,
    );
    assert.match(found[1]!, /none of 1 UPDATE events on Order of the last 24 h matched the condition/);
    const fix = section(report, "never_true").checks.find((c) => c.ok === false)?.fix ?? "";
    assert.match(fix, /fraiseql explain never_true/);
  });

  it("names an unreachable receiver", () => {
    const found = problems(report, "unreachable");
    assert.equal(found.length, 1, found.join("\n"));
    assert.match(
      found[0]!,
      /action 0: POST http:\/\/127\.0\.0\.1:\d+\/invoices\/\{\{ id \}\}: unreachable \(ECONNREFUSED\)/,
    );
  });

  it("names a missing capture trigger", () => {
    const found = problems(report, "not_captured");
    assert.equal(found.length, 1, found.join("\n"));
    assert.match(found[0]!, /capture trigger fraiseql_capture is missing on public\.shipments/);
    const fix = section(report, "not_captured").checks.find((c) => c.ok === false)?.fix ?? "";
    assert.match(fix, /fraiseql migrate/);
  });

  it("prints no secret: values from ${ENV} are redacted", () => {
    const text = formatDoctorReport(report);
    assert.doesNotMatch(text, /tok-9f8e7d6c5b/);
    assert.match(text, /\/shipments\?token=\[REDACTED\]: reachable/);
  });

  it("counts the problems and prints a checklist with a fix under each", () => {
    assert.equal(report.problems, 4);
    const text = formatDoctorReport(report);
    assert.match(text, /^installation\n {2}✓ database reachable/m);
    assert.match(
      text,
      /✗ capture trigger fraiseql_capture is missing on public\.shipments.*\n {6}fix: run `fraiseql migrate`/,
    );
    assert.match(text, /\n4 problems found\n$/);
  });

  it("checks one observer when named, and refuses an unknown name", async () => {
    const one = await diagnose(service.app, { observer: "healthy" });
    assert.deepEqual(
      one.sections.map((s) => s.title),
      ["installation", "observer healthy"],
    );
    assert.equal(one.problems, 0);
    assert.match(formatDoctorReport(one), /\nno problem found\n$/);
    await assert.rejects(
      diagnose(service.app, { observer: "helthy" }),
      (err: Error & { code?: string; hint?: string }) => {
        assert.equal(err.code, "FQL_NOT_FOUND");
        assert.match(err.hint ?? "", /healthy, never_true, unreachable, voucher_voided, not_captured/);
        return true;
      },
    );
  });

  it("says when no worker takes the captured changes", async () => {
    const stalled = await diagnose(service.app, { observer: "healthy", stallMs: 0 });
    const installation = stalled.sections[0]!.checks.filter((c) => c.ok === false);
    assert.equal(installation.length, 1);
    assert.match(installation[0]!.text, /captured changes? not routed/);
    assert.match(installation[0]!.fix ?? "", /fraiseql serve.*fraiseql worker/);
  });

  it("says when the internal tables are not installed", async () => {
    const other = {
      ...service.app,
      config: { ...service.app.config, database: { ...service.app.config.database, schema: "nowhere" } },
    };
    const r = await diagnose(other, { observer: "healthy" });
    const failed = r.sections[0]!.checks.filter((c) => c.ok === false);
    assert.equal(failed.length, 1);
    assert.match(failed[0]!.text, /internal tables are not installed in schema nowhere/);
  });

  it("says when a newer fraiseql migrated the database", async () => {
    await db.query("INSERT INTO fraiseql.migrations (id, name) VALUES (999, '999_from_the_future')");
    try {
      const r = await diagnose(service.app, { observer: "healthy" });
      const failed = r.sections[0]!.checks.filter((c) => c.ok === false);
      assert.equal(failed.length, 1);
      assert.match(failed[0]!.text, /at migration 999, newer than this version of fraiseql knows/);
    } finally {
      await db.query("DELETE FROM fraiseql.migrations WHERE id = 999");
    }
  });
});

describe("probeTarget", () => {
  it("probes the fixed part of a URL and skips templated hosts", () => {
    assert.deepEqual(probeTarget("https://api.example.com/orders/{{ id }}"), {
      url: "https://api.example.com/orders/",
    });
    assert.deepEqual(probeTarget("http://127.0.0.1:8080/hook?x=1"), {
      url: "http://127.0.0.1:8080/hook?x=1",
    });
    assert.ok("skip" in probeTarget("https://{{ tenant }}.example.com/hook"));
    assert.ok("skip" in probeTarget("{{ url }}"));
    assert.ok("skip" in probeTarget("ftp://example.com/x"));
  });
});
