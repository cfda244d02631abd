import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { createUndiciSender, type HttpAttempt } from "../../src/delivery/http.js";

type Route = (req: IncomingMessage, res: ServerResponse, body: string) => void;

/** One receiver on a real socket; each test routes its own path. */
const routes = new Map<string, Route>();
let server: Server;
let base = "";

before(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const route = routes.get(req.url ?? "");
      if (!route) {
        res.writeHead(404).end("no route");
        return;
      }
      route(req, res, Buffer.concat(chunks).toString("utf8"));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

function attempt(path: string, extra: Partial<HttpAttempt> = {}): HttpAttempt {
  return {
    url: `${base}${path}`,
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Test": "1" },
    body: '{"a":1}',
    timeout: 2000,
    ...extra,
  };
}

describe("the undici sender", () => {
  const sender = createUndiciSender({ excerptBytes: 8 });
  after(() => sender.close());

  it("sends method, path with query, headers and body, and keeps an excerpt of the answer", async () => {
    let seen: Record<string, string | undefined> = {};
    routes.set("/ok?x=1", (req, res, body) => {
      seen = { method: req.method, url: req.url, header: req.headers["x-test"] as string, body };
      res.writeHead(201).end("accepted and stored");
    });
    const result = await sender.send(attempt("/ok?x=1"));
    assert.deepEqual(seen, { method: "POST", url: "/ok?x=1", header: "1", body: '{"a":1}' });
    assert.deepEqual(result.outcome, { kind: "success", status: 201 });
    assert.equal(result.excerpt, "accepted");
    assert.equal(result.error, undefined);
    assert.ok(result.durationMs >= 0);
  });

  it("keeps the excerpt's bytes across chunks, decoding the whole at the end", async () => {
    routes.set("/chunks", (_req, res) => {
      res.writeHead(200);
      // "é" is two bytes, split across two writes.
      const bytes = Buffer.from("abcé", "utf8");
      res.write(bytes.subarray(0, 4));
      setTimeout(() => res.end(Buffer.concat([bytes.subarray(4), Buffer.from("0123456789")])), 20);
    });
    const result = await sender.send(attempt("/chunks"));
    assert.deepEqual(result.outcome, { kind: "success", status: 200 });
    assert.equal(result.excerpt, "abcé012");
  });

  it("reads Retry-After on an error answer, in seconds or as an HTTP date", async () => {
    routes.set("/busy", (_req, res) => res.writeHead(429, { "Retry-After": "7" }).end("slow down"));
    const busy = await sender.send(attempt("/busy"));
    assert.deepEqual(busy.outcome, { kind: "http", status: 429, retryAfterMs: 7000 });
    assert.equal(busy.error, "HTTP 429");
    assert.equal(busy.excerpt, "slow dow");

    const at = new Date(Date.now() + 60_000).toUTCString();
    routes.set("/later", (_req, res) => res.writeHead(503, { "Retry-After": at }).end());
    const later = await sender.send(attempt("/later"));
    assert.equal(later.outcome.kind, "http");
    const ms = later.outcome.kind === "http" ? later.outcome.retryAfterMs : undefined;
    assert.ok(ms !== undefined && ms > 55_000 && ms <= 60_000, `retryAfterMs ${ms}`);

    routes.set("/plain", (_req, res) => res.writeHead(500).end());
    assert.deepEqual((await sender.send(attempt("/plain"))).outcome, { kind: "http", status: 500 });
  });

  it("waits past an informational answer (103 Early Hints) for the real one", async () => {
    routes.set("/hints", (_req, res) => {
      res.writeEarlyHints({ link: "</style.css>; rel=preload; as=style" });
      setTimeout(() => res.writeHead(202).end("later"), 20);
    });
    const result = await sender.send(attempt("/hints"));
    assert.deepEqual(result.outcome, { kind: "success", status: 202 });
    assert.equal(result.excerpt, "later");

    // Headers of the informational answer are not the real answer's.
    routes.set("/hints-then-500", (_req, res) => {
      res.writeEarlyHints({ link: "</a.css>; rel=preload", "retry-after": "9" });
      setTimeout(() => res.writeHead(500).end(), 20);
    });
    const failed = await sender.send(attempt("/hints-then-500"));
    assert.deepEqual(failed.outcome, { kind: "http", status: 500 });
  });

  it("does not follow a redirect: a 3xx is the receiver's answer", async () => {
    let followed = false;
    routes.set("/moved", (_req, res) => res.writeHead(302, { Location: "/target" }).end());
    routes.set("/target", (_req, res) => {
      followed = true;
      res.writeHead(200).end();
    });
    const result = await sender.send(attempt("/moved"));
    assert.deepEqual(result.outcome, { kind: "http", status: 302 });
    assert.equal(followed, false);
  });

  it("is a timeout when no answer comes within the attempt's timeout", async () => {
    routes.set("/silent", () => {});
    const result = await sender.send(attempt("/silent", { timeout: 200 }));
    assert.deepEqual(result.outcome, { kind: "timeout" });
    assert.equal(result.error, "no response within 200ms");
  });

  it("is a timeout when the body is still arriving at the deadline, though never silent for long", async () => {
    routes.set("/drip", (_req, res) => {
      res.writeHead(200);
      const timer = setInterval(() => res.write("x"), 40);
      res.on("close", () => clearInterval(timer));
    });
    const started = performance.now();
    const result = await sender.send(attempt("/drip", { timeout: 300 }));
    assert.deepEqual(result.outcome, { kind: "timeout" });
    assert.equal(result.error, "the response did not finish within 300ms");
    assert.ok(performance.now() - started < 2000);
  });

  it("counts the timeout from the connection: waiting in the pool behind other requests is not the receiver's", async () => {
    routes.set("/slow-ok", (_req, res) => {
      setTimeout(() => res.writeHead(200).end("accepted"), 250);
    });
    // One connection, three requests: the last waits about 500 ms for it, more than its timeout.
    const single = createUndiciSender({ connections: 1 });
    try {
      const results = await Promise.all(
        [0, 1, 2].map(() => single.send(attempt("/slow-ok", { timeout: 400 }))),
      );
      assert.deepEqual(
        results.map((r) => r.outcome),
        [0, 1, 2].map(() => ({ kind: "success", status: 200 })),
      );
      assert.ok(Math.max(...results.map((r) => r.durationMs)) > 400, "the whole wait is still its duration");
    } finally {
      await single.close();
    }
  });

  it("is a connection outcome, with its code, when nothing listens", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const result = await sender.send({ ...attempt("/"), url: `http://127.0.0.1:${port}/` });
    assert.deepEqual(result.outcome, { kind: "connection", code: "ECONNREFUSED" });
    assert.match(result.error ?? "", /^ECONNREFUSED: /);
  });

  it("refuses a body over the payload limit, and an unparsable url, without sending", async () => {
    let calls = 0;
    routes.set("/big", (_req, res) => {
      calls++;
      res.writeHead(200).end();
    });
    const small = createUndiciSender({ maxPayloadSize: 10 });
    try {
      const big = await small.send(attempt("/big", { body: "x".repeat(11) }));
      assert.equal(big.outcome.kind, "invalid_request");
      assert.match(big.error ?? "", /the body is 11 bytes, over \[webhooks\] max_payload_size \(10 bytes\)/);
      const bad = await small.send({ ...attempt("/big"), url: "not a url" });
      assert.equal(bad.outcome.kind, "invalid_request");
      assert.equal(calls, 0);
    } finally {
      await small.close();
    }
  });

  it("sends a GET without a body", async () => {
    let seen: Record<string, string | undefined> = {};
    routes.set("/get", (req, res, body) => {
      seen = { method: req.method, length: req.headers["content-length"], body };
      res.writeHead(204).end();
    });
    const result = await sender.send(attempt("/get", { method: "GET" }));
    assert.deepEqual(result.outcome, { kind: "success", status: 204 });
    assert.deepEqual(seen, { method: "GET", length: undefined, body: "" });
  });

  it("reuses keep-alive connections across many concurrent requests, answering each once", async () => {
    const ports = new Set<number>();
    routes.set("/many", (req, res) => {
      ports.add(req.socket.remotePort ?? 0);
      res.writeHead(200).end("ok");
    });
    const pooled = createUndiciSender({ connections: 4 });
    try {
      const results = await Promise.all(Array.from({ length: 200 }, () => pooled.send(attempt("/many"))));
      assert.equal(results.filter((r) => r.outcome.kind === "success" && r.excerpt === "ok").length, 200);
      assert.ok(ports.size <= 4, `${ports.size} connections`);
    } finally {
      await pooled.close();
    }
  });
});
