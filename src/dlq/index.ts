import type { DlqConfig } from "../config/types.js";
import type { Database } from "../db/driver.js";
import { FraiseqlError } from "../errors.js";
import { fileDlq } from "./file.js";
import { natsDlq } from "./nats.js";
import { postgresDlq } from "./postgres.js";
import type { DlqBackend } from "./types.js";

export { fileDlq } from "./file.js";
export { natsDlq } from "./nats.js";
export { postgresDlq } from "./postgres.js";
export { type ReplayOptions, type ReplayResult, replayDlq } from "./replay.js";
export type { DeadLetter, DlqBackend, DlqListFilter } from "./types.js";

/** Opens the backend chosen by `[webhooks.dlq] backend`. */
export async function openDlq(db: Database, config: DlqConfig): Promise<DlqBackend> {
  switch (config.backend) {
    case "postgresql":
      return postgresDlq(db, config);
    case "nats":
      return natsDlq(config);
    case "file":
      return fileDlq(config);
    default:
      throw new FraiseqlError("FQL_CONFIG_INVALID", `unknown DLQ backend "${config.backend as string}"`, {
        key: "webhooks.dlq.backend",
      });
  }
}
