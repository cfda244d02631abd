import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { parseConfig } from "../../src/config/load.js";
import { createUndiciSender, type HttpAttempt, type HttpSender } from "../../src/delivery/http.js";
import { FraiseqlError } from "../../src/errors.js";

/** A throwaway CA and a server certificate it signed, for localhost and 127.0.0.1. */
function makeCertificates(dir: string): { ca: string; key: string; cert: string } {
  const run = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  run(
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=fraiseql test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  );
  run("req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost");
  writeFileSync(
    join(dir, "server.ext"),
    "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
  );
  run(
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.pem",
    "-days",
    "2",
    "-extfile",
    "server.ext",
  );
  const read = (f: string) => readFileSync(join(dir, f), "utf8");
  return { ca: read("ca.pem"), key: read("server.key"), cert: read("server.pem") };
}

function attempt(url: string, extra: Partial<HttpAttempt> = {}): HttpAttempt {
  return { url, method: "POST", headers: {}, body: "{}", timeout: 5_000, ...extra };
}

describe("outbound TLS: [webhooks] ca", () => {
  let dir: string;
  let pems: { ca: string; key: string; cert: string };
  let server: Server;
  let port: number;
  let received = 0;
  const senders: HttpSender[] = [];
  const sender = (options: Parameters<typeof createUndiciSender>[0] = {}) => {
    const s = createUndiciSender(options);
    senders.push(s);
    return s;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "fraiseql-tls-"));
    pems = makeCertificates(dir);
    server = createServer({ key: pems.key, cert: pems.cert }, (req, res) => {
      received++;
      req.resume();
      req.on("end", () => res.end("OK"));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    await Promise.all(senders.map((s) => s.close()));
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  it("with ca the receiver's certificate verifies and the delivery succeeds", async () => {
    const result = await sender({ ca: pems.ca }).send(attempt(`https://127.0.0.1:${port}/hook`));
    assert.equal(result.outcome.kind, "success", result.error);
  });

  it("without ca the certificate does not verify: a connection failure, nothing received", async () => {
    const before = received;
    const result = await sender().send(attempt(`https://127.0.0.1:${port}/hook`));
    assert.equal(result.outcome.kind, "connection");
    assert.match(result.error ?? "", /CERT|certificate|SIGNATURE/i);
    assert.equal(received, before);
  });

  it("NODE_TLS_REJECT_UNAUTHORIZED=0 does not turn verification off", async () => {
    const saved = process.env.NODE_TLS_REJECT_UNAUTHORIZED;
    const warn = process.emitWarning;
    process.emitWarning = () => {};
    process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";
    try {
      const result = await sender().send(attempt(`https://127.0.0.1:${port}/hook`));
      assert.equal(result.outcome.kind, "connection");
    } finally {
      if (saved === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
      else process.env.NODE_TLS_REJECT_UNAUTHORIZED = saved;
      process.emitWarning = warn;
    }
  });

  it("a checked connection verifies the certificate against the host name, not the address", async () => {
    const lookup = async () => [{ address: "127.0.0.1", family: 4 }];
    const good = await sender({ ca: pems.ca, lookup, allowedHosts: ["localhost"] }).send(
      attempt(`https://localhost:${port}/hook`, { untrustedHost: true }),
    );
    assert.equal(good.outcome.kind, "success", good.error);
    // other.example resolves to 127.0.0.1, which the certificate names, but the name is not in it.
    const wrongName = await sender({ ca: pems.ca, lookup, allowedHosts: ["other.example"] }).send(
      attempt(`https://other.example:${port}/hook`, { untrustedHost: true }),
    );
    assert.equal(wrongName.outcome.kind, "connection");
    assert.match(wrongName.error ?? "", /ALTNAME|other\.example/);
  });

  it("config: ca is read at startup relative to the config file; a missing or non-PEM file is an error", () => {
    const file = join(dir, "fraiseql.toml");
    const config = parseConfig('[webhooks]\nca = "ca.pem"\n', { file, env: {} });
    assert.equal(config.webhooks.ca, pems.ca);
    assert.equal(parseConfig("", { env: {} }).webhooks.ca, undefined);

    const missing = () => parseConfig('[webhooks]\nca = "nope.pem"\n', { file, env: {} });
    assert.throws(missing, (err: unknown) => {
      assert.ok(err instanceof FraiseqlError);
      assert.equal(err.code, "FQL_CONFIG_INVALID");
      assert.match(err.message, /cannot read the CA file .*nope\.pem \(ENOENT\)/);
      assert.equal(err.location.key, "webhooks.ca");
      return true;
    });
    assert.throws(
      () => parseConfig('[webhooks]\nca = "server.ext"\n', { file, env: {} }),
      /holds no PEM certificate/,
    );
  });
});
