import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  assertWebhook,
  fraiseqlSignature,
  type HeadersInput,
  readHeader,
  signatureHeaders,
  standardSignature,
  standardWebhookKey,
  verifyWebhook,
} from "../../src/delivery/signing.js";
import { isFraiseqlError } from "../../src/errors.js";
import { SEED_VERIFY_PY } from "../helpers/seed-receiver.js";

const NOW = 1_707_604_800;
const BODY = '{"id":"42","status":"shipped","note":"café ☕"}';

function python3Available(): boolean {
  return spawnSync("python3", ["--version"]).status === 0;
}
const noPython = python3Available() ? false : "python3 is not installed";

/** Runs `script` with `input` as JSON on stdin; the script prints JSON on stdout. */
function runPython(script: string, input: unknown): unknown {
  const r = spawnSync("python3", ["-c", script], { input: JSON.stringify(input), encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

describe("fraiseql scheme", () => {
  it("produces the documented header format", () => {
    const h = signatureHeaders(BODY, {
      scheme: "fraiseql",
      secrets: ["s3cret"],
      deliveryId: "d1",
      timestamp: NOW,
    });
    const expected = createHmac("sha256", "s3cret").update(`${NOW}.${BODY}`, "utf8").digest("hex");
    assert.deepEqual(h, {
      "X-FraiseQL-Timestamp": String(NOW),
      "X-FraiseQL-Signature": `sha256=${expected}`,
    });
    assert.equal(fraiseqlSignature(BODY, "s3cret", NOW), `sha256=${expected}`);
  });

  it("honours custom header names, and signs bytes and text alike", () => {
    const bytes = new TextEncoder().encode(BODY);
    const h = signatureHeaders(bytes, {
      scheme: "fraiseql",
      secrets: ["k"],
      deliveryId: "d",
      timestamp: NOW,
      header: "X-Sig",
      timestampHeader: "X-Ts",
    });
    assert.equal(h["X-Sig"], fraiseqlSignature(BODY, "k", NOW));
    assert.equal(h["X-Ts"], String(NOW));
    const ok = verifyWebhook(BODY, h, { secret: "k", now: NOW, header: "x-sig", timestampHeader: "X-TS" });
    assert.deepEqual(ok, { ok: true });
  });

  it("defaults the timestamp to now", () => {
    const before = Math.floor(Date.now() / 1000);
    const h = signatureHeaders(BODY, { scheme: "fraiseql", secrets: ["k"], deliveryId: "d" });
    const ts = Number(h["X-FraiseQL-Timestamp"]);
    assert.ok(ts >= before && ts <= Math.floor(Date.now() / 1000));
    assert.deepEqual(verifyWebhook(BODY, h, { secret: "k" }), { ok: true });
  });

  it("sign then verify holds for any body and secret", () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ unit: "binary" }), fc.uint8Array()),
        fc.string({ unit: "binary", minLength: 1 }),
        fc.integer({ min: 0, max: 2 ** 40 }),
        (body, secret, ts) => {
          const h = signatureHeaders(body, {
            scheme: "fraiseql",
            secrets: [secret],
            deliveryId: "x",
            timestamp: ts,
          });
          assert.deepEqual(verifyWebhook(body, h, { secret, now: ts }), { ok: true });
        },
      ),
    );
  });

  it("any change to the body breaks the signature", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1 }),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        (body, i, x) => {
          const h = signatureHeaders(body, {
            scheme: "fraiseql",
            secrets: ["k"],
            deliveryId: "x",
            timestamp: NOW,
          });
          const tampered = Uint8Array.from(body);
          const at = i % tampered.length;
          tampered[at] = tampered[at]! ^ x;
          assert.deepEqual(verifyWebhook(tampered, h, { secret: "k", now: NOW }), {
            ok: false,
            reason: "signature_mismatch",
          });
        },
      ),
    );
  });

  describe("each failure has its reason", () => {
    const h = signatureHeaders(BODY, { scheme: "fraiseql", secrets: ["k"], deliveryId: "d", timestamp: NOW });
    const sig = h["X-FraiseQL-Signature"]!;
    const cases: Array<[string, string | Uint8Array, HeadersInput, string, number]> = [
      ["tampered body", BODY.replace("42", "43"), h, "k", NOW],
      ["wrong secret", BODY, h, "other", NOW],
      ["tampered timestamp", BODY, { ...h, "X-FraiseQL-Timestamp": String(NOW + 1) }, "k", NOW],
      ["old timestamp", BODY, h, "k", NOW + 301],
      ["future timestamp", BODY, h, "k", NOW - 301],
      ["no signature", BODY, { "X-FraiseQL-Timestamp": String(NOW) }, "k", NOW],
      ["no timestamp", BODY, { "X-FraiseQL-Signature": sig }, "k", NOW],
      ["bad timestamp", BODY, { ...h, "X-FraiseQL-Timestamp": "12:00" }, "k", NOW],
      ["bad signature", BODY, { ...h, "X-FraiseQL-Signature": "sha256=xyz" }, "k", NOW],
      ["bare hex", BODY, { ...h, "X-FraiseQL-Signature": sig.slice(7) }, "k", NOW],
    ];
    const expected = [
      "signature_mismatch",
      "signature_mismatch",
      "signature_mismatch",
      "timestamp_out_of_window",
      "timestamp_out_of_window",
      "missing_signature",
      "missing_timestamp",
      "malformed_timestamp",
      "malformed_signature",
      "malformed_signature",
    ];
    cases.forEach(([name, body, headers, secret, now], i) => {
      it(name, () => {
        assert.deepEqual(verifyWebhook(body, headers, { secret, now }), { ok: false, reason: expected[i] });
      });
    });

    it("the window edge is inclusive, like the documented receiver", () => {
      assert.deepEqual(verifyWebhook(BODY, h, { secret: "k", now: NOW + 300 }), { ok: true });
      assert.deepEqual(verifyWebhook(BODY, h, { secret: "k", now: NOW + 10, toleranceSeconds: 5 }), {
        ok: false,
        reason: "timestamp_out_of_window",
      });
    });
  });

  it("rotation: one signature per secret, comma-separated; any configured secret verifies", () => {
    const h = signatureHeaders(BODY, {
      scheme: "fraiseql",
      secrets: ["new", "old"],
      deliveryId: "d",
      timestamp: NOW,
    });
    assert.equal(
      h["X-FraiseQL-Signature"],
      `${fraiseqlSignature(BODY, "new", NOW)},${fraiseqlSignature(BODY, "old", NOW)}`,
    );
    assert.deepEqual(verifyWebhook(BODY, h, { secret: "old", now: NOW }), { ok: true });
    assert.deepEqual(verifyWebhook(BODY, h, { secret: "new", now: NOW }), { ok: true });
    assert.deepEqual(verifyWebhook(BODY, h, { secret: ["x", "old"], now: NOW }), { ok: true });
    assert.deepEqual(verifyWebhook(BODY, h, { secret: ["x", "y"], now: NOW }), {
      ok: false,
      reason: "signature_mismatch",
    });
  });

  it("reads headers in any case, from plain objects, arrays and Headers", () => {
    const h = signatureHeaders(BODY, { scheme: "fraiseql", secrets: ["k"], deliveryId: "d", timestamp: NOW });
    const lower = Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
    assert.deepEqual(verifyWebhook(BODY, lower, { secret: "k", now: NOW }), { ok: true });
    assert.deepEqual(verifyWebhook(BODY, new Headers(h), { secret: "k", now: NOW }), { ok: true });
    const upper = Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toUpperCase(), [v]]));
    assert.deepEqual(verifyWebhook(BODY, upper, { secret: "k", now: NOW }), { ok: true });
    assert.equal(readHeader({ "X-A": 5 }, "x-a"), "5");
    assert.equal(readHeader({}, "x-a"), undefined);
  });

  it("assertWebhook throws FQL_SIGNATURE_INVALID naming the reason", () => {
    assert.throws(
      () => assertWebhook(BODY, {}, { secret: "k" }),
      (e: unknown) => isFraiseqlError(e, "FQL_SIGNATURE_INVALID") && e.message.includes("missing_signature"),
    );
  });

  it("refuses to sign without a secret", () => {
    assert.throws(
      () => signatureHeaders(BODY, { scheme: "fraiseql", secrets: [], deliveryId: "d" }),
      (e: unknown) => isFraiseqlError(e, "FQL_CONFIG_INVALID"),
    );
  });
});

describe("the receiver in the FraiseQL documentation (Python)", () => {
  // verify_webhook is copied verbatim from the FraiseQL document; only the indentation, lost in
  // that document's text, is restored.
  const script = SEED_VERIFY_PY;

  it("accepts our signature and rejects tampering", { skip: noPython }, () => {
    const secret = "whs-🔑-secret";
    const now = Math.floor(Date.now() / 1000);
    const body = Buffer.from(BODY, "utf8");
    const sign = (ts: number) =>
      signatureHeaders(body, { scheme: "fraiseql", secrets: [secret], deliveryId: "d", timestamp: ts });
    const h = sign(now);
    const old = sign(now - 1000);
    const c = (payload: Buffer, headers: Record<string, string>, s = secret) => ({
      payload: payload.toString("base64"),
      signature: headers["X-FraiseQL-Signature"],
      timestamp: headers["X-FraiseQL-Timestamp"],
      secret: s,
    });
    const results = runPython(script, [
      c(body, h),
      c(Buffer.from(BODY.replace("42", "43")), h),
      c(body, h, "other"),
      c(body, old),
    ]);
    assert.deepEqual(results, [true, false, false, false]);
  });
});

describe("standard scheme (Standard Webhooks)", () => {
  it("reproduces the specification's published test vector", () => {
    const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const body = '{"test": 2432232314}';
    const expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    assert.equal(standardSignature(body, secret, id, 1614265330), expected);
    const h = signatureHeaders(body, {
      scheme: "standard",
      secrets: [secret],
      deliveryId: id,
      timestamp: 1614265330,
    });
    assert.deepEqual(h, {
      "webhook-id": id,
      "webhook-timestamp": "1614265330",
      "webhook-signature": expected,
    });
    assert.deepEqual(verifyWebhook(body, h, { scheme: "standard", secret, now: 1614265330 }), { ok: true });
  });

  it("matches the algorithm computed by hand, prefix optional", () => {
    const key = Buffer.from("0123456789abcdef0123456789abcdef");
    const secret = `whsec_${key.toString("base64")}`;
    const h = signatureHeaders(BODY, {
      scheme: "standard",
      secrets: [secret],
      deliveryId: "evt_1",
      timestamp: NOW,
    });
    const byHand = createHmac("sha256", key).update(`evt_1.${NOW}.${BODY}`).digest("base64");
    assert.equal(h["webhook-signature"], `v1,${byHand}`);
    assert.deepEqual(standardWebhookKey(key.toString("base64")), key);
    const noPrefix = signatureHeaders(BODY, {
      scheme: "standard",
      secrets: [key.toString("base64")],
      deliveryId: "evt_1",
      timestamp: NOW,
    });
    assert.deepEqual(noPrefix, h);
  });

  it("rotation: space-separated v1 entries; unknown versions are skipped", () => {
    const a = `whsec_${Buffer.from("a".repeat(24)).toString("base64")}`;
    const b = `whsec_${Buffer.from("b".repeat(24)).toString("base64")}`;
    const h = signatureHeaders(BODY, {
      scheme: "standard",
      secrets: [a, b],
      deliveryId: "d",
      timestamp: NOW,
    });
    const parts = h["webhook-signature"]!.split(" ");
    assert.equal(parts.length, 2);
    assert.ok(parts.every((p) => p.startsWith("v1,")));
    assert.deepEqual(verifyWebhook(BODY, h, { scheme: "standard", secret: b, now: NOW }), { ok: true });
    const withV1a = { ...h, "webhook-signature": `v1a,AAAA ${h["webhook-signature"]}` };
    assert.deepEqual(verifyWebhook(BODY, withV1a, { scheme: "standard", secret: a, now: NOW }), { ok: true });
  });

  it("sign then verify holds for any body and key", () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ unit: "binary" }), fc.uint8Array()),
        fc.uint8Array({ minLength: 1, maxLength: 64 }),
        fc.string({ minLength: 1, maxLength: 40 }).filter((s) => !/[\s,]/.test(s)),
        (body, key, id) => {
          const secret = `whsec_${Buffer.from(key).toString("base64")}`;
          const h = signatureHeaders(body, {
            scheme: "standard",
            secrets: [secret],
            deliveryId: id,
            timestamp: NOW,
          });
          assert.deepEqual(verifyWebhook(body, h, { scheme: "standard", secret, now: NOW }), { ok: true });
        },
      ),
    );
  });

  it("each failure has its reason", () => {
    const secret = `whsec_${Buffer.from("k".repeat(32)).toString("base64")}`;
    const h = signatureHeaders(BODY, {
      scheme: "standard",
      secrets: [secret],
      deliveryId: "d1",
      timestamp: NOW,
    });
    const v = (headers: HeadersInput, body = BODY, now = NOW) =>
      verifyWebhook(body, headers, { scheme: "standard", secret, now });
    const { "webhook-id": _id, ...noId } = h;
    const { "webhook-signature": _s, ...noSig } = h;
    const { "webhook-timestamp": _t, ...noTs } = h;
    assert.deepEqual(v(h, BODY + " "), { ok: false, reason: "signature_mismatch" });
    assert.deepEqual(v({ ...h, "webhook-id": "d2" }), { ok: false, reason: "signature_mismatch" });
    assert.deepEqual(v(noId), { ok: false, reason: "missing_id" });
    assert.deepEqual(v(noSig), { ok: false, reason: "missing_signature" });
    assert.deepEqual(v(noTs), { ok: false, reason: "missing_timestamp" });
    assert.deepEqual(v({ ...h, "webhook-signature": "v1,@@" }), { ok: false, reason: "malformed_signature" });
    assert.deepEqual(v(h, BODY, NOW + 301), { ok: false, reason: "timestamp_out_of_window" });
  });

  it("rejects a secret that is not base64, without echoing it", () => {
    assert.throws(
      () => signatureHeaders(BODY, { scheme: "standard", secrets: ["whsec_not base64!"], deliveryId: "d" }),
      (e: unknown) => isFraiseqlError(e, "FQL_CONFIG_INVALID") && !e.message.includes("not base64!"),
    );
  });

  it("verifies with an independent Python implementation of the specification", { skip: noPython }, () => {
    const script = `
import base64, hashlib, hmac, json, sys
def verify(secret, msg_id, ts, payload, header):
    key = base64.b64decode(secret[len("whsec_"):] if secret.startswith("whsec_") else secret)
    signed = f"{msg_id}.{ts}.".encode() + payload
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(p[3:], expected) for p in header.split(" ") if p.startswith("v1,"))
out = []
for c in json.load(sys.stdin):
    out.append(verify(c["secret"], c["id"], c["ts"], base64.b64decode(c["payload"]), c["sig"]))
print(json.dumps(out))
`;
    const secret = `whsec_${Buffer.from("python-interop-key-32-bytes-long").toString("base64")}`;
    const body = Buffer.from(BODY);
    const h = signatureHeaders(body, {
      scheme: "standard",
      secrets: [`whsec_${Buffer.from("other").toString("base64")}`, secret],
      deliveryId: "evt_py",
      timestamp: NOW,
    });
    const c = (payload: Buffer) => ({
      secret,
      id: h["webhook-id"],
      ts: h["webhook-timestamp"],
      payload: payload.toString("base64"),
      sig: h["webhook-signature"],
    });
    assert.deepEqual(runPython(script, [c(body), c(Buffer.from(BODY.replace("42", "24")))]), [true, false]);
  });
});

describe("the Python receivers in docs/signing.md", () => {
  const docs = readFileSync(new URL("../../docs/signing.md", import.meta.url), "utf8");
  const blocks = [...docs.matchAll(/```python\n([\s\S]*?)```/g)].map((m) => m[1]!);
  const fn = (name: string) => {
    const b = blocks.find(
      (x) => x.includes(`def ${name}(`) && (name !== "verify_webhook" || x.includes("secrets")),
    );
    assert.ok(b, `docs/signing.md has a Python block defining ${name}`);
    return b;
  };
  const run = `
import base64, json, sys
out = []
for c in json.load(sys.stdin):
    payload = base64.b64decode(c["payload"])
    if c["kind"] == "rotation":
        out.append(verify_webhook(payload, c["signature"], c["timestamp"], c["secrets"]))
    else:
        out.append(verify_standard(payload, c["headers"], c["secret"]))
print(json.dumps(out))
`;

  it("the documented receiver block is the seed's, verbatim", () => {
    assert.ok(blocks[0]?.includes("return hmac.compare_digest(signature, expected)"));
    assert.ok(blocks[0]?.includes('message = f"{timestamp}.".encode() + payload'));
  });

  it("the rotation-aware and standard receivers accept ours and refuse tampering", { skip: noPython }, () => {
    const script = `${fn("verify_webhook")}\n${fn("verify_standard")}\n${run}`;
    const now = Math.floor(Date.now() / 1000);
    const body = Buffer.from(BODY);
    const tampered = Buffer.from(BODY.replace("42", "24"));
    const rot = signatureHeaders(body, {
      scheme: "fraiseql",
      secrets: ["new", "old"],
      deliveryId: "d",
      timestamp: now,
    });
    const stdSecret = `whsec_${Buffer.from("documented-receiver-key").toString("base64")}`;
    const std = signatureHeaders(body, {
      scheme: "standard",
      secrets: [stdSecret],
      deliveryId: "d9",
      timestamp: now,
    });
    const r = (payload: Buffer, secrets: string[]) => ({
      kind: "rotation",
      payload: payload.toString("base64"),
      signature: rot["X-FraiseQL-Signature"],
      timestamp: rot["X-FraiseQL-Timestamp"],
      secrets,
    });
    const s = (payload: Buffer) => ({
      kind: "standard",
      payload: payload.toString("base64"),
      headers: std,
      secret: stdSecret,
    });
    assert.deepEqual(
      runPython(script, [
        r(body, ["old"]),
        r(body, ["x", "new"]),
        r(body, ["x"]),
        r(tampered, ["old"]),
        s(body),
        s(tampered),
      ]),
      [true, true, false, false, true, false],
    );
  });
});
