import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { createServer, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { connect, StorageType } from "nats";
import { natsDlq } from "../../src/dlq/nats.js";
import type { DeadLetter } from "../../src/dlq/types.js";
import { isFraiseqlError } from "../../src/errors.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";
import { NATS_URL, natsHarness, natsSkipReason } from "./fixtures/backends.js";
import { ago, DLQ_DEFAULTS, deadLetter, HOUR, MINUTE } from "./fixtures/dead-letters.js";

const natsSkip = await natsSkipReason();

function isDlqWriteError(err: unknown): boolean {
  assert.ok(isFraiseqlError(err, "FQL_DLQ_WRITE"), `expected FQL_DLQ_WRITE, got ${String(err)}`);
  assert.equal(err.retryable, true);
  return true;
}

describe("NATS DLQ backend without a server", () => {
  it("rejects with FQL_DLQ_WRITE when nothing listens, instead of waiting", { timeout: 30_000 }, async () => {
    const dlq = await natsDlq({ ...DLQ_DEFAULTS, url: "nats://127.0.0.1:1" }, { timeout: 1000 });
    try {
      await assert.rejects(dlq.write([deadLetter()]), (err) => {
        isDlqWriteError(err);
        assert.match((err as Error).message, /nats:\/\/127\.0\.0\.1:1/);
        return true;
      });
      await assert.rejects(dlq.list(), isDlqWriteError);
    } finally {
      await dlq.close();
    }
  });

  it("rejects with FQL_DLQ_WRITE when the server accepts but never answers", {
    timeout: 30_000,
  }, async () => {
    const held: Socket[] = [];
    const silent = createServer((socket) => {
      held.push(socket);
    });
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", () => resolve()));
    const { port } = silent.address() as AddressInfo;
    const dlq = await natsDlq(
      { ...DLQ_DEFAULTS, url: `nats://user:s3cret@127.0.0.1:${port}` },
      { timeout: 1000 },
    );
    try {
      await assert.rejects(dlq.write([deadLetter()]), (err) => {
        isDlqWriteError(err);
        assert.doesNotMatch((err as Error).message, /s3cret/);
        return true;
      });
    } finally {
      await dlq.close();
      for (const s of held) s.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });
});

describe("NATS DLQ backend", { skip: natsSkip }, () => {
  const harness = natsHarness();
  after(async () => {
    await harness.dispose();
  });

  it("keeps entries across closing and reopening the backend (a new connection)", async () => {
    const first = await harness.open();
    const config = harness.configs.at(-1);
    assert.ok(config);
    const a = deadLetter({ failed_at: ago(HOUR) });
    const b = deadLetter({ failed_at: ago(MINUTE), observer: "on_payment_created", entity: "Payment" });
    await first.write([a, b]);
    const [replayed] = await first.markReplayed([a.id], new Date());
    await first.close();
    await assert.rejects(first.list(), isDlqWriteError);

    const second = await natsDlq(config);
    try {
      assert.deepEqual(await second.list(), [b, replayed]);
      assert.deepEqual(await second.get(a.id), replayed);
      // The delivery index survives too: a failure again returns to the same entry.
      await second.write([{ ...deadLetter({ delivery_id: a.delivery_id }), attempts: 4 }]);
      const entries = await second.list({ observer: "on_order_created" });
      assert.deepEqual(
        entries.map((e) => [e.id, e.attempts, e.replay_count]),
        [[a.id, 4, 1]],
      );
    } finally {
      await second.close();
    }
  });

  it("publishes every failure to the stream once, even when a write is retried", async () => {
    const dlq = await harness.open();
    const config = harness.configs.at(-1);
    assert.ok(config);
    const entries = [deadLetter(), deadLetter({ observer: "on_payment_created", entity: "Payment" })];
    await dlq.write(entries);
    await dlq.write(entries);
    const nc = await connect({ servers: NATS_URL });
    try {
      const jsm = await nc.jetstreamManager();
      const info = await jsm.streams.info(config.stream);
      assert.equal(info.state.messages, 2);
      const subject = `fraiseql.dlq.${config.stream}.on_payment_created`;
      const message = await jsm.streams.getMessage(config.stream, { last_by_subj: subject });
      assert.deepEqual(message.json<DeadLetter>(), entries[1]);
      assert.equal(message.header.get("FraiseQL-Delivery"), entries[1]?.delivery_id);
    } finally {
      await nc.close();
    }
  });

  it("adds its subjects to an existing stream and keeps the rest of its configuration", async () => {
    const stream = `FRAISEQL_TEST_EXISTING_${process.pid}`;
    const nc = await connect({ servers: NATS_URL });
    try {
      const jsm = await nc.jetstreamManager();
      await jsm.streams.add({
        name: stream,
        subjects: [`audit.${stream}.>`],
        storage: StorageType.File,
        max_msgs: 5000,
      });
      const dlq = await harness.open({ stream });
      await dlq.write([deadLetter()]);
      const info = await jsm.streams.info(stream);
      assert.deepEqual(info.config.subjects, [`audit.${stream}.>`, `fraiseql.dlq.${stream}.>`]);
      assert.equal(info.config.max_msgs, 5000);
      assert.equal(info.state.messages, 1);
    } finally {
      await nc.close();
    }
  });

  describe("when the connection is lost", () => {
    const target = new URL(NATS_URL);
    const proxy = new TcpProxy({ host: target.hostname, port: Number(target.port || 4222) });
    const viaProxy = natsHarness({ timeout: 1000, connection: { reconnectTimeWait: 50 } });
    before(async () => {
      await proxy.start();
    });
    after(async () => {
      await proxy.stop();
      await viaProxy.dispose();
    });

    it("fails writes with FQL_DLQ_WRITE while it is down and writes again once it is back", {
      timeout: 60_000,
    }, async () => {
      const dlq = await viaProxy.open({ url: `nats://127.0.0.1:${proxy.port}` });
      const before = deadLetter({ failed_at: ago(HOUR) });
      await dlq.write([before]);

      await proxy.stop();
      await assert.rejects(dlq.write([deadLetter()]), isDlqWriteError);
      await assert.rejects(dlq.list(), isDlqWriteError);

      await proxy.start();
      const later = deadLetter({ failed_at: ago(MINUTE) });
      // The client reconnects by itself; the dispatcher would simply try again later.
      let lastError: unknown;
      for (let attempt = 0; attempt < 100; attempt++) {
        try {
          await dlq.write([later]);
          lastError = undefined;
          break;
        } catch (err) {
          lastError = err;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
      assert.equal(lastError, undefined);
      assert.deepEqual(await dlq.get(later.id), later);
      assert.deepEqual(await dlq.get(before.id), before);
    });
  });
});
