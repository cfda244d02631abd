import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { Agent, request } from "undici";
import { signatureHeaders } from "../../src/delivery/signing.js";
import { MockWebhookServer } from "../../src/testing/index.js";

// One agent for the file; closed at the end so no socket outlives the tests.
const agent = new Agent({ keepAliveTimeout: 1000 });
after(() => agent.close());

async function post(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string; headers: Record<string, unknown> }> {
  const res = await request(url, {
    method: "POST",
    body: typeof body === "string" ? body : JSON.stringify(body),
    headers: { "content-type": "application/json", ...headers },
    dispatcher: agent,
  });
  return { status: res.statusCode, text: await res.body.text(), headers: res.headers };
}

describe("MockWebhookServer", () => {
  it("records calls: method, path, headers, raw body, parsed JSON", async () => {
    await using mock = await MockWebhookServer.start();
    assert.equal(mock.called, false);
    assert.equal(mock.lastPayload, undefined);
    assert.match(mock.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(mock.url, `http://127.0.0.1:${mock.port}`);

    const r = await post(
      `${mock.url}/hooks/orders?x=1`,
      { customer_email: "user@example.com" },
      {
        "X-FraiseQL-Delivery": "dlv_1",
        "X-FraiseQL-Attempt": "2",
      },
    );
    assert.equal(r.status, 200);
    assert.equal(r.text, "OK");
    await post(`${mock.url}/raw`, "not json");

    assert.equal(mock.called, true);
    assert.equal(mock.callCount, 2);
    const [first, second] = mock.calls;
    assert.equal(first?.method, "POST");
    assert.equal(first?.path, "/hooks/orders");
    assert.equal(first?.url, "/hooks/orders?x=1");
    assert.equal(first?.headers["content-type"], "application/json");
    assert.equal(first?.body, '{"customer_email":"user@example.com"}');
    assert.deepEqual(first?.json, { customer_email: "user@example.com" });
    assert.equal(first?.deliveryId, "dlv_1");
    assert.equal(first?.attempt, 2);
    assert.equal(first?.signatureValid, undefined);
    assert.equal(second?.json, undefined);
    assert.equal(mock.lastPayload, "not json");
    assert.deepEqual(
      mock.callsTo("/raw").map((c) => c.body),
      ["not json"],
    );
  });

  it("scripted responses are consumed in order, then the default", async () => {
    await using mock = await MockWebhookServer.start({
      responses: [{ status: 500 }, { status: 500 }, { status: 200 }],
    });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await post(mock.url, { i })).status);
    assert.deepEqual(statuses, [500, 500, 200, 200]);
    assert.equal(mock.callCount, 4);
    assert.deepEqual(mock.lastPayload, { i: 3 });
  });

  it("responses carry status, headers and a JSON or text body; defaultResponse replaces 200", async () => {
    await using mock = await MockWebhookServer.start({
      responses: [{ status: 429, headers: { "Retry-After": "7" }, body: { error: "slow down" } }],
      defaultResponse: { status: 202, body: "accepted" },
    });
    const a = await post(mock.url, {});
    assert.equal(a.status, 429);
    assert.equal(a.headers["retry-after"], "7");
    assert.equal(a.headers["content-type"], "application/json");
    assert.deepEqual(JSON.parse(a.text), { error: "slow down" });
    const b = await post(mock.url, {});
    assert.deepEqual([b.status, b.text], [202, "accepted"]);
  });

  it("drop: the connection is destroyed without an answer", async () => {
    await using mock = await MockWebhookServer.start({ responses: [{ drop: true }] });
    await assert.rejects(post(mock.url, { n: 1 }), (e: Error) =>
      /closed|socket|ECONNRESET/i.test(`${e.message} ${(e as { code?: string }).code}`),
    );
    assert.equal(mock.callCount, 1);
    assert.equal((await post(mock.url, { n: 2 })).status, 200);
  });

  it("hang: never answers; close() still closes and the client sees an error", async () => {
    const mock = await MockWebhookServer.start({ responses: [{ hang: true }] });
    const pending = post(mock.url, { n: 1 });
    const calls = await mock.waitForCalls(1, 5000);
    assert.equal(calls.length, 1);
    await mock.close();
    await assert.rejects(pending);
    await mock.close(); // idempotent
  });

  it("delayMs answers late; a client that gives up first sees its timeout; close clears the timer", async () => {
    await using mock = await MockWebhookServer.start({
      responses: [{ delayMs: 20, status: 201 }, { delayMs: 60_000 }],
    });
    assert.equal((await post(mock.url, {})).status, 201);
    await assert.rejects(
      request(mock.url, { method: "POST", body: "{}", dispatcher: agent, signal: AbortSignal.timeout(50) }),
      (e: Error) => e.name === "AbortError" || e.name === "TimeoutError",
    );
  });

  it("waitForCalls resolves at n calls, and rejects on timeout naming what arrived", async () => {
    await using mock = await MockWebhookServer.start();
    const waiting = mock.waitForCalls(3, 5000);
    await Promise.all([post(`${mock.url}/a`, {}), post(`${mock.url}/b`, {}), post(`${mock.url}/a`, {})]);
    assert.equal((await waiting).length, 3);
    assert.equal((await mock.waitForCalls(2, 100, "/a")).length, 2);
    await assert.rejects(
      mock.waitForCalls(5, 30),
      /expected 5 call\(s\) within 30 ms, received 3 \(POST \/[ab]/,
    );
    await assert.rejects(mock.waitForCalls(2, 30, "/b"), /to \/b within 30 ms, received 1/);
  });

  it("close() rejects pending waiters", async () => {
    const mock = await MockWebhookServer.start();
    const waiting = mock.waitForCalls(1, 60_000);
    await mock.close();
    await assert.rejects(waiting, /closed while waiting/);
  });

  it("route() scripts one path; respond() decides per request; reset() forgets", async () => {
    await using mock = await MockWebhookServer.start({ responses: [{ status: 503 }] });
    mock.route("/flaky", [{ status: 500 }], { status: 204 });
    assert.equal((await post(`${mock.url}/flaky`, {})).status, 500);
    assert.equal((await post(`${mock.url}/flaky?q=1`, {})).status, 204);
    assert.equal((await post(`${mock.url}/other`, {})).status, 503);
    assert.equal((await post(`${mock.url}/other`, {})).status, 200);

    mock.respond((call) => (call.json?.fail === true ? { status: 418 } : undefined));
    assert.equal((await post(`${mock.url}/x`, { fail: true })).status, 418);
    assert.equal((await post(`${mock.url}/x`, { fail: false })).status, 200);

    mock.reset();
    assert.equal(mock.callCount, 0);
    assert.equal((await post(`${mock.url}/flaky`, { fail: true })).status, 200);
    mock.script([{ status: 502 }]);
    assert.equal((await post(mock.url, {})).status, 502);
  });

  it("checks signatures when given a secret", async () => {
    await using mock = await MockWebhookServer.start({ secret: "s3cret" });
    const body = JSON.stringify({ id: 1 });
    const good = signatureHeaders(body, { scheme: "fraiseql", secrets: ["s3cret"], deliveryId: "d" });
    const bad = signatureHeaders(body, { scheme: "fraiseql", secrets: ["wrong"], deliveryId: "d" });
    await post(mock.url, body, good);
    await post(mock.url, body, bad);
    await post(mock.url, body);
    assert.deepEqual(
      mock.calls.map((c) => c.signatureValid),
      [true, false, false],
    );
    assert.deepEqual(mock.calls[1]?.signature, { ok: false, reason: "signature_mismatch" });
    assert.deepEqual(mock.calls[2]?.signature, { ok: false, reason: "missing_signature" });
  });

  it("standard scheme and rejectInvalidSignatures answer 401 to bad signatures", async () => {
    const secret = `whsec_${Buffer.from("0123456789abcdef0123456789abcdef").toString("base64")}`;
    await using mock = await MockWebhookServer.start({
      secret,
      scheme: "standard",
      rejectInvalidSignatures: true,
    });
    const body = '{"a":1}';
    const h = signatureHeaders(body, { scheme: "standard", secrets: [secret], deliveryId: "msg_1" });
    assert.equal((await post(mock.url, body, h)).status, 200);
    const r = await post(mock.url, '{"a":2}', h);
    assert.equal(r.status, 401);
    assert.match(r.text, /signature_mismatch/);
  });

  it("takes many concurrent requests", async () => {
    await using mock = await MockWebhookServer.start();
    const n = 500;
    await Promise.all(Array.from({ length: n }, (_, i) => post(`${mock.url}/bulk`, { i })));
    assert.equal(mock.callCount, n);
    const seen = new Set(mock.calls.map((c) => c.json.i));
    assert.equal(seen.size, n);
  });

  it("start() on a port in use rejects", async () => {
    await using mock = await MockWebhookServer.start();
    await assert.rejects(MockWebhookServer.start({ port: mock.port }), /EADDRINUSE/);
  });
});
