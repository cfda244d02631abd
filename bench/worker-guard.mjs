/**
 * Preloaded (`--import`) into the worker processes the benchmark starts, which it spawns with an
 * IPC channel for this alone: when the benchmark goes away, even killed, the channel closes and
 * the worker shuts down as on SIGTERM, so no worker outlives a run.
 */

// The channel must not keep the worker alive once it has shut down.
process.channel?.unref();
process.on("disconnect", () => process.kill(process.pid, "SIGTERM"));
