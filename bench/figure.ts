/** One line of the benchmark's table, and one entry of its results file. */

import type { CpuUse } from "./cpu.js";

/** A reference value a figure is read against, measured in the same run (or configured). */
export interface Baseline {
  readonly id: string;
  readonly value: number;
  readonly unit: string;
  /** Shown instead of the value in the table. (Default: the value and unit) */
  readonly display?: string;
}

/** One line of the table, and one entry of the results file. */
export interface Figure {
  readonly id: string;
  readonly label: string;
  readonly value: number;
  readonly unit: string;
  /** Shown instead of the value in the table, e.g. several percentiles. (Default: the value and unit) */
  readonly display?: string;
  readonly baseline?: Baseline;
  /** CPU use during the timed part, when measured. */
  readonly cpu?: CpuUse | undefined;
  readonly details?: Record<string, unknown>;
}
