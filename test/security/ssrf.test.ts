import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { HostLookup } from "../../src/delivery/address-policy.js";
import { createUndiciSender, type HttpAttempt, type HttpSender } from "../../src/delivery/http.js";
import { MockWebhookServer } from "../../src/testing/index.js";

function attempt(url: string, extra: Partial<HttpAttempt> = {}): HttpAttempt {
  return {
    url,
    method: "POST",
    headers: { "content-type": "application/json" },
    body: '{"ok":true}',
    timeout: 2_000,
    ...extra,
  };
}

/** A resolver that answers from a table and counts its calls; unknown names fail like DNS does. */
function stubLookup(answers: Record<string, string[] | (() => string[])>): HostLookup & { calls: string[] } {
  const calls: string[] = [];
  const lookup = async (hostname: string) => {
    calls.push(hostname);
    const entry = answers[hostname];
    const list = typeof entry === "function" ? entry() : entry;
    if (list === undefined)
      throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND" });
    return list.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));
  };
  return Object.assign(lookup, { calls });
}

describe("outbound SSRF protection (sender)", () => {
  let v4: MockWebhookServer;
  let v6: MockWebhookServer;
  const senders: HttpSender[] = [];
  const sender = (options: Parameters<typeof createUndiciSender>[0] = {}) => {
    const s = createUndiciSender(options);
    senders.push(s);
    return s;
  };

  before(async () => {
    v4 = await MockWebhookServer.start({ host: "127.0.0.1" });
    v6 = await MockWebhookServer.start({ host: "::1" });
  });
  after(async () => {
    await Promise.all(senders.map((s) => s.close()));
    await v4?.close();
    await v6?.close();
  });

  it("refuses a templated host that is 127.0.0.1, naming the host and the rule; nothing is sent", async () => {
    const before = v4.callCount;
    const result = await sender().send(attempt(`${v4.url}/x`, { untrustedHost: true }));
    assert.equal(result.outcome.kind, "invalid_request");
    assert.match(result.error ?? "", /127\.0\.0\.1/);
    assert.match(result.error ?? "", /loopback/);
    assert.match(result.error ?? "", /event data/);
    assert.match(result.error ?? "", /allowed_hosts/);
    assert.equal(v4.callCount, before);
  });

  it("refuses templated hosts 10.0.0.1, 169.254.169.254 and [::1] without connecting", async () => {
    const s = sender();
    for (const [url, rule] of [
      ["http://10.0.0.1/x", /private network/],
      ["http://169.254.169.254/latest/meta-data/", /link-local/],
      [`${v6.url}/x`, /loopback/],
      ["http://[::ffff:127.0.0.1]:9/x", /loopback, IPv4-mapped/],
    ] as const) {
      const result = await s.send(attempt(url, { untrustedHost: true }));
      assert.equal(result.outcome.kind, "invalid_request", `${url}: ${result.error}`);
      assert.match(result.error ?? "", rule);
    }
    assert.equal(v6.callCount, 0);
  });

  it("allows a templated host listed in allowed_hosts (address, CIDR or name)", async () => {
    const lookup = stubLookup({ "hooks.internal": ["127.0.0.1"] });
    for (const [allowedHosts, url] of [
      [["127.0.0.1"], `${v4.url}/a`],
      [["127.0.0.0/8"], `${v4.url}/b`],
      [["::1"], `${v6.url}/c`],
      [["hooks.internal"], `http://hooks.internal:${v4.port}/d`],
    ] as const) {
      const result = await sender({ allowedHosts, lookup }).send(attempt(url, { untrustedHost: true }));
      assert.equal(result.outcome.kind, "success", `${allowedHosts}: ${result.error}`);
    }
    assert.deepEqual(
      v4.calls.map((c) => c.path).filter((p) => p !== "/x"),
      ["/a", "/b", "/d"],
    );
    assert.equal(v6.callsTo("/c").length, 1);
  });

  it("checks the resolved address of a templated name, and allows a public one", async () => {
    const lookup = stubLookup({ "internal.example": ["10.1.2.3"], "localhost.example": ["127.0.0.1"] });
    const s = sender({ lookup });
    const refused = await s.send(attempt(`http://localhost.example:${v4.port}/x`, { untrustedHost: true }));
    assert.equal(refused.outcome.kind, "invalid_request");
    assert.match(refused.error ?? "", /localhost\.example \(resolved to 127\.0\.0\.1\): loopback/);
    const internal = await s.send(attempt("http://internal.example/x", { untrustedHost: true }));
    assert.match(internal.error ?? "", /resolved to 10\.1\.2\.3\): private network/);
  });

  it("an unknown name is a connection error (retried), not a refusal", async () => {
    const result = await sender({ lookup: stubLookup({}) }).send(
      attempt("http://nowhere.example/x", { untrustedHost: true }),
    );
    assert.equal(result.outcome.kind, "connection");
  });

  it("a loopback host written in the config is the everyday local receiver: allowed", async () => {
    const result = await sender().send(attempt(`${v4.url}/literal`));
    assert.equal(result.outcome.kind, "success", result.error);
    assert.equal(v4.callsTo("/literal").length, 1);
  });

  it("with block_private_networks even a host written in the config is checked", async () => {
    const refused = await sender({ blockPrivateNetworks: true }).send(attempt(`${v4.url}/blocked`));
    assert.equal(refused.outcome.kind, "invalid_request");
    assert.match(refused.error ?? "", /block_private_networks/);
    assert.equal(v4.callsTo("/blocked").length, 0);
    const listed = await sender({ blockPrivateNetworks: true, allowedHosts: ["127.0.0.1"] }).send(
      attempt(`${v4.url}/listed`),
    );
    assert.equal(listed.outcome.kind, "success", listed.error);
  });

  it("DNS rebinding: the address checked is the address connected to, one lookup per connection", async () => {
    // The name answers an allowed address first and a refused one afterwards. A check made
    // apart from the connection would pass on the first answer and connect on the second:
    // the receiver on 127.0.0.1 would get the request.
    const allowedReceiver = await MockWebhookServer.start({ host: "127.0.0.2" });
    const forbidden = await MockWebhookServer.start({ host: "127.0.0.1", port: allowedReceiver.port });
    try {
      let n = 0;
      const lookup = stubLookup({ "rebind.example": () => (n++ === 0 ? ["127.0.0.2"] : ["127.0.0.1"]) });
      const url = `http://rebind.example:${allowedReceiver.port}/hook`;
      const first = await sender({ lookup, allowedHosts: ["127.0.0.2"] }).send(
        attempt(url, { untrustedHost: true }),
      );
      assert.equal(first.outcome.kind, "success", first.error);
      assert.equal(allowedReceiver.callCount, 1);
      assert.equal(lookup.calls.length, 1, "one lookup, both checked and used");

      // A new connection resolves again, and this time the answer is refused.
      const second = await sender({ lookup, allowedHosts: ["127.0.0.2"] }).send(
        attempt(url, { untrustedHost: true }),
      );
      assert.equal(second.outcome.kind, "invalid_request");
      assert.match(second.error ?? "", /resolved to 127\.0\.0\.1/);
      assert.equal(forbidden.callCount, 0);
    } finally {
      await allowedReceiver.close();
      await forbidden.close();
    }
  });

  it("hosts written in the config do not go through the resolver at all", async () => {
    const lookup = stubLookup({});
    const s = sender({ lookup });
    for (let i = 0; i < 3; i++)
      assert.equal((await s.send(attempt(`${v4.url}/fast`))).outcome.kind, "success");
    assert.equal(lookup.calls.length, 0);
  });

  it("does not follow redirects: a 302 is the receiver's answer", async () => {
    const mock = await MockWebhookServer.start({
      responses: [{ status: 302, headers: { Location: "http://169.254.169.254/latest/meta-data/" } }],
    });
    try {
      const result = await sender().send(attempt(`${mock.url}/moved`));
      assert.deepEqual(result.outcome, { kind: "http", status: 302 });
      assert.equal(mock.callCount, 1);
    } finally {
      await mock.close();
    }
  });
});

describe("outgoing payload limit (sender)", () => {
  let mock: MockWebhookServer;
  let sender: HttpSender;
  before(async () => {
    mock = await MockWebhookServer.start();
    sender = createUndiciSender({ maxPayloadSize: 100 });
  });
  after(async () => {
    await sender?.close();
    await mock?.close();
  });

  it("a body over max_payload_size is invalid_request and never sent; one at the limit is sent", async () => {
    const over = await sender.send(attempt(`${mock.url}/big`, { body: JSON.stringify("x".repeat(99)) }));
    assert.equal(over.outcome.kind, "invalid_request");
    assert.match(over.error ?? "", /101 bytes, over \[webhooks\] max_payload_size \(100 bytes\)/);
    const at = await sender.send(attempt(`${mock.url}/fits`, { body: JSON.stringify("x".repeat(98)) }));
    assert.equal(at.outcome.kind, "success");
    assert.equal(mock.callsTo("/big").length, 0);
    assert.equal(mock.callsTo("/fits").length, 1);
  });

  it("counts bytes, not characters", async () => {
    // 40 characters of 3 bytes each, plus quotes: 122 bytes in 42 characters.
    const result = await sender.send(attempt(`${mock.url}/utf8`, { body: JSON.stringify("€".repeat(40)) }));
    assert.equal(result.outcome.kind, "invalid_request");
    assert.equal(mock.callsTo("/utf8").length, 0);
  });
});
